"""A write batch shared by the threads (or greenlets) of one process: group commit.

The writes of every thread that called ``begin()`` collect in one pending
batch; ``flush()`` sends it. One batch is in flight at a time, so writes reach
the storage in the order they were made: a task's result always lands before
its acknowledgement, even when another thread sends the acknowledgement. A
thread that flushes while another is sending leaves its writes to that one,
which sends batches until none is pending (unless it asks to ``wait``).

``flush(wait=True)`` tells the truth about the calling thread's own writes:
it returns once the batch that holds them was sent, and raises that send's
error if it failed, whichever thread sent it.
"""
import contextvars
import threading

KEEP_FAILURES = 64  # failed batches remembered for threads that have yet to ask
# True while a task's code runs (``Unbatched``): its writes go out at once even on a thread
# whose writes wait for a flush. A context variable, so that it holds for the one thread (or
# greenlet) running the task, and for an async task's own steps and the asyncio Tasks it
# starts (they copy its context), not for the other coroutines of its event loop.
UNBATCHED = contextvars.ContextVar('hueyd_unbatched', default=False)


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
        # Batches are numbered as they are created and sent in that order.
        self._numbered = 0       # batches created so far; the pending one is the last
        self._done = 0           # every batch up to this number was sent, or failed
        self._failed = {}        # number -> the error its send raised

    def begin(self):
        self._local.batching = True

    def end(self):
        self.flush(wait=True)
        self._local.batching = False

    @property
    def active(self):
        """Whether this thread's writes wait for a flush (not in a task's code)."""
        return getattr(self._local, 'batching', False) and not UNBATCHED.get()

    def unbatched(self):
        """A context in which this thread writes at once (a task runs in one)."""
        return Unbatched()

    def adding(self):
        """A context whose value is the pending batch, to add one whole operation to (no
        flush takes half of one). Neither context is a generator: every task goes
        through them, and a generator-based context costs about 2 us."""
        return self

    def __enter__(self):  # adding()
        self._lock.acquire()
        try:
            if self._pending is None:
                self._pending = self._new()
                self._numbered += 1
        except BaseException:
            self._lock.release()
            raise
        self._local.mine = self._numbered  # the batch this thread last wrote to
        return self._pending

    def __exit__(self, *exc_info):
        self._lock.release()

    def flush(self, wait=False):
        with self._lock:
            if self._sending:  # the thread sending now sends ours next
                if not wait:
                    return
                mine = getattr(self._local, 'mine', 0)
                while self._sending and self._done < mine:
                    self._sent.wait()
                if self._done >= mine:
                    self._raise_if_lost(mine)
                    return
            self._sending = True
        try:
            while True:
                with self._lock:
                    batch, self._pending = self._pending, None
                    number = self._numbered
                if batch is None:
                    break
                self._send_numbered(batch, number)
            with self._lock:
                self._raise_if_lost(getattr(self._local, 'mine', 0))
        finally:
            with self._lock:
                self._sending = False
                self._sent.notify_all()

    def send_with(self, add):
        """Send the pending writes (every thread's) and one more operation in one round trip:
        ``add(batch)`` puts the operation in the batch, and whatever ``send`` returns for it
        is returned. Returns None, adding nothing, when no write is pending: the caller then
        runs its operation on its own. A send in progress in another thread is waited for
        first, so writes keep their order. Raises the send's error, which every thread with
        writes in the batch learns too, as after ``flush``."""
        with self._lock:
            while self._sending:
                self._sent.wait()
            if self._pending is None:
                return None
            self._sending = True
            batch, self._pending = self._pending, None
            number = self._numbered
        try:
            add(batch)
            return self._send_numbered(batch, number)
        finally:
            with self._lock:
                self._sending = False
                self._sent.notify_all()

    def _send_numbered(self, batch, number):
        """Send batch ``number`` (this thread holds the sending role). If that fails, its
        writers learn it from their next flush(wait), this thread now."""
        try:
            return self._send(batch)
        except Exception as exc:
            with self._lock:
                self._failed[number] = exc
                if getattr(self._local, 'mine', 0) == number:
                    self._local.mine = 0  # this thread is told now
                for old in [n for n in self._failed if n <= number - KEEP_FAILURES]:
                    del self._failed[old]
            raise
        finally:
            with self._lock:
                self._done = number
                self._sent.notify_all()

    def _raise_if_lost(self, mine):
        """Raise the error of this thread's last batch if its send failed (once per thread)."""
        error = self._failed.get(mine)
        if error is not None:
            self._local.mine = 0
            raise error


class Unbatched:
    """A context in which writes go out at once (UNBATCHED); a new one for each use, as it
    keeps the token that restores the variable."""
    __slots__ = ('_token',)

    def __enter__(self):
        self._token = UNBATCHED.set(True)

    def __exit__(self, *exc_info):
        UNBATCHED.reset(self._token)
