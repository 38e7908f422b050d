"""A heartbeat the master reads without any storage: a few bytes of memory shared across fork."""
import mmap
import struct
import time

_LAYOUT = struct.Struct('dd')  # last beat, moment the child finished booting (monotonic)


class Heartbeat:
    def __init__(self):
        self._memory = mmap.mmap(-1, _LAYOUT.size)

    def beat(self):
        struct.pack_into('d', self._memory, 0, time.monotonic())

    def mark_booted(self):
        struct.pack_into('d', self._memory, 8, time.monotonic())
        self.beat()

    @property
    def booted(self):
        return _LAYOUT.unpack_from(self._memory)[1] > 0

    def silence(self, since):
        """Seconds since the last beat, or since ``since`` when the child never beat."""
        last = _LAYOUT.unpack_from(self._memory)[0]
        return time.monotonic() - max(last, since)

    def close(self):
        self._memory.close()
