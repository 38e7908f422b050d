"""What a child tells the master without any storage: a few bytes of memory shared across fork.

* its last beat, and the moment it finished booting (monotonic clock);
* whether it gave up booting because the application cannot be loaded. Only
  the child's own boot code sets this, so no exit status a task could choose
  (``sys.exit(3)``, ``os._exit(3)``) passes for a broken deployment;
* the id of the task each of its workers is running, so that when the child
  dies the master knows which tasks were running (hueyd.daemon.deaths).
  Messages claimed but not started are never written here.
"""
import mmap
import struct
import time

_HEADER = struct.Struct('ddB')  # last beat, moment booted, boot failed
TASK_ID_SIZE = 128              # bytes per worker: a length byte, then the id (UTF-8)


class Heartbeat:
    def __init__(self, workers=0):
        self.workers = workers
        self._memory = mmap.mmap(-1, _HEADER.size + workers * TASK_ID_SIZE)

    def beat(self):
        struct.pack_into('d', self._memory, 0, time.monotonic())

    def mark_booted(self):
        struct.pack_into('d', self._memory, 8, time.monotonic())
        self.beat()

    def mark_boot_failed(self):
        struct.pack_into('B', self._memory, 16, 1)

    @property
    def booted(self):
        return _HEADER.unpack_from(self._memory)[1] > 0

    @property
    def boot_failed(self):
        return bool(_HEADER.unpack_from(self._memory)[2])

    def silence(self, since):
        """Seconds since the last beat, or since ``since`` when the child never beat."""
        last = _HEADER.unpack_from(self._memory)[0]
        return time.monotonic() - max(last, since)

    def running(self, worker, task_id):
        """Worker number ``worker`` now runs ``task_id`` (None: nothing).

        An id too long to fit is not recorded: that task's crashes go uncounted.
        """
        offset = _HEADER.size + worker * TASK_ID_SIZE
        if task_id is None:
            self._memory[offset] = 0  # the length alone says "nothing"
            return
        encoded = task_id.encode()
        if len(encoded) >= TASK_ID_SIZE:
            encoded = b''
        self._memory[offset + 1:offset + 1 + len(encoded)] = encoded
        self._memory[offset] = len(encoded)  # written last: the id is whole once it counts

    def running_tasks(self):
        """The ids of the tasks running now (read by the master once the child is dead)."""
        ids = []
        for worker in range(self.workers):
            offset = _HEADER.size + worker * TASK_ID_SIZE
            length = self._memory[offset]
            if length:
                ids.append(self._memory[offset + 1:offset + 1 + length].decode())
        return ids

    def close(self):
        self._memory.close()


class MasterState:
    """What the master tells its children, the other way round: the moment its loop last
    turned, and how many of the pools it wants have booted. The scheduler reads it to
    answer /healthz and /readyz without asking the master anything."""

    _LAYOUT = struct.Struct('dII')  # loop turned (monotonic), pools booted, pools wanted

    def __init__(self):
        self._memory = mmap.mmap(-1, self._LAYOUT.size)

    def update(self, booted, wanted):
        self._LAYOUT.pack_into(self._memory, 0, time.monotonic(), booted, wanted)

    def silence(self):
        """Seconds since the master's loop last turned (infinite before it first did)."""
        turned = self._LAYOUT.unpack_from(self._memory)[0]
        return time.monotonic() - turned if turned else float('inf')

    def pools(self):
        """``(booted, wanted)``: pool processes that finished booting, and how many the
        master runs (0 until the first preflight passed)."""
        return self._LAYOUT.unpack_from(self._memory)[1:]
