"""The messages a pool has claimed and not yet started, shared by its workers.

A worker with nothing to do takes the next message here. When there is none,
one idle worker at a time (the *fetcher*) claims from the storage, for itself
and for every worker idle meanwhile, and runs the first message it brings back
itself; the others wait here for the rest. So a busy pool makes one storage
round trip per batch rather than per task, an idle pool has a single
connection blocked in the storage, and a message that arrives at an idle pool
is started by the worker that received it, with no hand-over.

While the tasks stay quick the fetcher also claims a few messages beyond the
idle workers (``ahead``), doubling up to MAX_CLAIM; one slow task drops that
to none, so slow tasks are never hoarded while other pools sit idle.

``fetch`` never raises: it deals with storage errors itself (and pauses, still
the fetcher, so the other workers do not hammer a storage that is away).
"""
import collections
import threading
import time

# Messages per claim: a round trip costs the CPU of a few no-op tasks, and 100 quick tasks
# (FAST_TASK) held ahead are at most half a second of work kept from the other pools.
MAX_CLAIM = 100
# A task at least this quick is "fast": the fetcher may claim ahead of the workers.
FAST_TASK = 0.005  # seconds
# A claim's snapshot of the revocations stands in for a storage read this long;
# a revocation made later still stops the tasks of that claim started after it.
REVOCATIONS_FRESH = 0.1  # seconds


class Batch:
    """What one claim brought back besides the messages: when, and what was revoked."""
    __slots__ = ('claimed_at', 'revocations')

    def __init__(self, revocations):
        self.claimed_at = time.monotonic()
        self.revocations = revocations

    def fresh_revocations(self):
        """The snapshot while it is recent enough to trust, else None (ask the storage)."""
        if time.monotonic() - self.claimed_at <= REVOCATIONS_FRESH:
            return self.revocations
        return None


class Message:
    """One claimed message: its receipt, its raw data, and its task (or why there is none)."""
    __slots__ = ('receipt', 'data', 'task', 'batch')

    def __init__(self, receipt, data, task, batch):
        self.receipt, self.data, self.task, self.batch = receipt, data, task, batch


class Inbox:
    def __init__(self, fetch, is_stopping):
        """``fetch(count)`` claims up to ``count`` Messages (it may block for a while)."""
        self._fetch = fetch
        self._is_stopping = is_stopping
        self._messages = collections.deque()
        self._changed = threading.Condition()
        self._fetching = False
        self._waiting = 0  # workers waiting for the fetcher
        self.ahead = 0     # messages claimed beyond the idle workers
        self._fast_since_fetch = 0  # tasks, or -1 once a slow one ran since the last fetch

    def __len__(self):
        return len(self._messages)

    @property
    def fetching(self):
        """Whether a worker is claiming messages now."""
        return self._fetching

    def take(self):
        """The next Message to run, or None (stopping, nothing came, or the storage failed)."""
        with self._changed:
            while not self._messages:
                if self._is_stopping():
                    return None
                if not self._fetching:
                    break
                self._waiting += 1
                # No timeout (under gevent each one costs a timer): the fetcher wakes
                # a waiter per message plus one, and wake_all() everyone on stopping.
                self._changed.wait()
                self._waiting -= 1
            else:
                return self._messages.popleft()
            self._fetching = True
            if self._fast_since_fetch > 0:  # quick tasks, and no slow one: claim further ahead
                self.ahead = min(max(1, self.ahead * 2), MAX_CLAIM)
            self._fast_since_fetch = 0
            count = min(self._waiting + 1 + self.ahead, MAX_CLAIM)
        messages = []
        try:
            messages = self._fetch(count)
        finally:
            with self._changed:
                self._fetching = False
                self._messages.extend(messages[1:])
                # A waiter per message left here, and one more to become the next fetcher.
                self._changed.notify(len(messages))
        return messages[0] if messages else None

    def wake_all(self):
        """The pool is stopping: no worker should wait here any longer."""
        with self._changed:
            self._changed.notify_all()

    def finished(self, seconds):
        """A worker ran a task for ``seconds``; after a slow one, claim no more than needed."""
        if seconds > FAST_TASK:
            self.ahead = 0
            self._fast_since_fetch = -1
        elif self._fast_since_fetch >= 0:
            self._fast_since_fetch += 1
