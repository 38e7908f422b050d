"""A write batch shared by the threads (or greenlets) of one process: group commit.

The writes of every thread that called ``begin()`` collect in one pending
batch; ``flush()`` sends it. One batch is in flight at a time, so writes reach
the storage in the order they were made: a task's result always lands before
its acknowledgement, even when another thread sends the acknowledgement. A
thread that flushes while another is sending leaves its writes to that one,
which sends batches until none is pending (unless it asks to ``wait``).
A thread that waits learns of a failure to send even when another thread sent:
it gets that error (it may be about a batch without its writes: callers that
depend on the outcome must treat it as "not stored").
"""
import threading
from contextlib import contextmanager


class SharedBatch:
    def __init__(self, new, send):
        """``new()`` makes an empty batch; ``send(batch)`` writes one (and may raise)."""
        self._new = new
        self._send = send
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)
        self._pending = None
        self._sending = False
        self._failures = 0       # sends that raised, so far
        self._last_error = None

    def begin(self):
        self._local.batching = True

    def end(self):
        self.flush(wait=True)
        self._local.batching = False

    @property
    def active(self):
        """Whether this thread's writes wait for a flush."""
        return getattr(self._local, 'batching', False)

    @contextmanager
    def unbatched(self):
        saved, self._local.batching = self.active, False
        try:
            yield
        finally:
            self._local.batching = saved

    @contextmanager
    def adding(self):
        """The pending batch, to add one whole operation to (no flush takes half of one)."""
        with self._lock:
            if self._pending is None:
                self._pending = self._new()
            yield self._pending

    def flush(self, wait=False):
        with self._lock:
            failures = self._failures
            if self._sending:  # the thread sending now sends ours next
                while wait and self._sending:
                    self._sent.wait()
                if wait and self._failures != failures:
                    raise self._last_error
                if not wait or self._pending is None:
                    return
            self._sending = True
        try:
            while True:
                with self._lock:
                    batch, self._pending = self._pending, None
                if batch is None:
                    return
                try:
                    self._send(batch)
                except Exception as exc:
                    with self._lock:
                        self._failures += 1
                        self._last_error = exc
                    raise
        finally:
            with self._lock:
                self._sending = False
                self._sent.notify_all()
