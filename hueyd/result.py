"""Results: handles on the value a task will store when it has run.

A coroutine awaits them (``await result``) without blocking its event loop: where the
storage waits for a result to land (Redis with notify_result, PostgreSQL's LISTEN), its
``wait_result`` runs in a thread, a slice at a time so that a cancelled await lets its
thread go soon; where the storage would only poll, the coroutine polls, sleeping between reads.
"""
import asyncio
import concurrent.futures
import os
import time

from hueyd.constants import EmptyData
from hueyd.exceptions import ResultTimeout, TaskException
from hueyd.times import normalize_time

WAIT_SLICE = 1.0      # seconds a waiting thread blocks before its coroutine looks again
RESULT_WAITERS = 32   # threads per process for blocking waits; more awaits take turns
_waiters = {}         # pid -> its thread pool (threads do not survive a fork)


async def wait_stored(storage, key, timeout=None, backoff=1.15, max_delay=1.0):
    """``storage.wait_result`` for a coroutine: True once ``key`` holds a value, False
    after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if not storage.waits_for_results:  # it would poll: poll here
        pause = 0.005
        while not storage.has_data_for_key(key):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * backoff, max_delay)
        return True
    pool = _waiters.get(os.getpid())
    if pool is None:
        pool = _waiters[os.getpid()] = concurrent.futures.ThreadPoolExecutor(
            RESULT_WAITERS, thread_name_prefix='hueyd-result-wait')
    loop = asyncio.get_running_loop()
    while True:
        left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
        if left <= 0:
            return False
        if await loop.run_in_executor(pool, storage.wait_result, key, left, backoff, max_delay):
            return True


class Error:
    """Stored in place of a value when a task failed; ``metadata`` describes the failure."""

    def __init__(self, metadata):
        self.metadata = metadata

    def __eq__(self, other):
        return isinstance(other, Error) and self.metadata == other.metadata

    __hash__ = None

    def __repr__(self):
        return '<Error %s>' % self.metadata.get('error')


class Skipped:
    """What a chord member that never ran contributes to the callback's results.

    ``reason`` is ``'revoked'``, ``'expired'`` or ``'canceled'`` (by a
    pre-execute hook; a task that raises CancelExecution ends with an Error);
    ``task_id`` is the member's id. It is falsy, so ``filter(None,
    results)`` drops it along with None. It equals huey's ``SKIPPED`` (below),
    so code written for huey compares as it did.
    """

    __slots__ = ('reason', 'task_id')

    def __init__(self, reason, task_id=None):
        self.reason = reason
        self.task_id = task_id

    def __bool__(self):
        return False

    def __eq__(self, other):
        if not isinstance(other, Skipped):
            return NotImplemented
        if self.reason is None or other.reason is None:  # SKIPPED matches any skip
            return True
        return self.reason == other.reason and self.task_id == other.task_id

    def __hash__(self):
        return hash(Skipped)  # equal to SKIPPED means the same hash as SKIPPED

    def __reduce__(self):
        return (Skipped, (self.reason, self.task_id))

    def __repr__(self):
        if self.reason is None:
            return 'SKIPPED'
        return '<Skipped %s %s>' % (self.reason, self.task_id)


# huey's name for "a chord member that did not run", whatever the reason.
SKIPPED = Skipped(None)


class Result:
    """What calling a task returns. ``get()`` reads the value once it has been stored.

    Reading removes the value from storage (unless ``preserve=True``); the Result
    keeps it, so later ``get()`` calls return it again until ``reset()``.
    """

    def __init__(self, huey, task):
        self.huey = huey
        self.task = task
        self.revoke_id = task.revoke_id  # huey's Result has it
        self._result = EmptyData

    @property
    def id(self):
        return self.task.id

    def __repr__(self):
        return '<Result %s>' % self.task

    def __call__(self, *args, **kwargs):
        return self.get(*args, **kwargs)

    def _read(self, preserve):
        self._result = self.huey.get_raw(self.id, peek=preserve)
        return self._result is not EmptyData

    def is_ready(self, preserve=False):
        """True once the result is here; like huey, it reads it into this handle (so
        ``get()`` is sure to have it, and, unless ``preserve``, another handle no longer
        sees it)."""
        return self._result is not EmptyData or self._read(preserve)

    def get_raw_result(self, blocking=False, timeout=None, backoff=1.15, max_delay=1.0,
                       revoke_on_timeout=False, preserve=False):
        if self._result is EmptyData and not self._read(preserve) and blocking:
            # The storage knows how to wait (Redis's notify_result blocks, others poll);
            # the result may still be gone when it wakes (read by another handle).
            stored = self.huey.storage.wait_result(self.id, timeout, backoff, max_delay)
            if not (stored and self._read(preserve)):
                self.no_result(stored, timeout, revoke_on_timeout)
        return None if self._result is EmptyData else self._result

    def no_result(self, stored, timeout, revoke_on_timeout):
        if revoke_on_timeout:
            self.revoke()
        raise ResultTimeout('%s: no result after %ss' % (self.task, timeout) if not stored
                            else '%s: its result was read by another handle' % self.task)

    def get(self, blocking=False, timeout=None, backoff=1.15, max_delay=1.0,
            revoke_on_timeout=False, preserve=False):
        """The task's return value; None when not ready (non-blocking).

        Raises TaskException when the task failed, ResultTimeout when ``timeout``
        seconds pass while blocking.
        """
        value = self.get_raw_result(blocking, timeout, backoff, max_delay,
                                    revoke_on_timeout, preserve)
        if isinstance(value, Error):
            raise TaskException(value.metadata)
        return value

    async def aget(self, timeout=None, backoff=1.15, max_delay=1.0, revoke_on_timeout=False,
                   preserve=False):
        """``get(blocking=True)`` for a coroutine: awaits the value without blocking the loop."""
        if self._result is EmptyData and not self._read(preserve):
            stored = await wait_stored(self.huey.storage, self.id, timeout, backoff, max_delay)
            if not (stored and self._read(preserve)):
                self.no_result(stored, timeout, revoke_on_timeout)
        if isinstance(self._result, Error):
            raise TaskException(self._result.metadata)
        return self._result

    def __await__(self):
        """``await result``: the value, as ``aget()`` gives it."""
        return self.aget().__await__()

    def reset(self):
        """Forget the cached value so the next ``get()`` reads storage again."""
        self._result = EmptyData

    def revoke(self, revoke_once=True):
        self.huey.revoke(self.task, revoke_once=revoke_once)

    def restore(self):
        return self.huey.restore(self.task)

    def is_revoked(self):
        return self.huey.is_revoked(self.task, peek=True)

    def reschedule(self, eta=None, delay=None, expires=None, priority=None,
                   preserve_pipeline=True):
        """Revoke this task and enqueue a copy with a new id (now, or at eta/delay)."""
        self.revoke(revoke_once=True)
        when = None if eta is None and delay is None else normalize_time(eta, delay, self.huey.utc)
        task = type(self.task)(
            self.task.args, self.task.kwargs, eta=when,
            retries=self.task.retries, retry_delay=self.task.retry_delay,
            retry_backoff=self.task.retry_backoff,
            priority=self.task.priority if priority is None else priority,
            expires=self.task.expires if expires is None else expires,
            timeout=self.task.timeout,
            on_complete=self.task.on_complete if preserve_pipeline else None,
            on_error=self.task.on_error if preserve_pipeline else None)
        return self.huey.enqueue(task)


class ResultGroup:
    """Results of several tasks (``map()``, pipelines, a chord's members).

    As in huey, ``group[i]`` is the value of the i-th task, waiting for it
    (``get(blocking=True)``); iterating yields the Results themselves.
    """

    def __init__(self, results):
        self._results = list(results)

    def __getitem__(self, index):
        return self._results[index].get(blocking=True)

    def __iter__(self):
        return iter(self._results)

    def __len__(self):
        return len(self._results)

    def __call__(self, *args, **kwargs):
        return self.get(*args, **kwargs)

    def get(self, *args, **kwargs):
        return [result.get(*args, **kwargs) for result in self._results]

    async def aget(self, *args, **kwargs):
        """The values in order, awaited one after the other: the wait ends with the
        slowest task either way, and it holds one waiting thread, not one per task."""
        return [await result.aget(*args, **kwargs) for result in self._results]

    def __await__(self):
        return self.aget().__await__()

    def reset(self):
        for result in self._results:
            result.reset()

    def as_completed(self, backoff=1.15, max_delay=1.0):
        """Yield each task's value as it becomes ready, in completion order."""
        pending = list(self._results)
        delay = 0.005
        while pending:
            still = []
            for result in pending:
                if result.is_ready():
                    yield result.get()
                else:
                    still.append(result)
            if len(still) == len(pending):
                time.sleep(delay)
                delay = min(delay * backoff, max_delay)
            else:
                delay = 0.005
            pending = still


class ChordResult:
    """What enqueueing a chord returns: ``get()`` waits for the callback's value.

    ``results`` is a ResultGroup of the members (each member's last stage);
    ``callback`` the callback's Result; ``pipeline_results`` a ResultGroup of
    the callback and the stages after it, when it has any (else None).
    """

    def __init__(self, results, callback_result, pipeline=None):
        self.results = ResultGroup(results)
        self.callback = callback_result
        self.pipeline_results = pipeline

    @property
    def id(self):
        return self.callback.id

    def __call__(self, *args, **kwargs):
        return self.get(*args, **kwargs)

    def get(self, *args, **kwargs):
        return self.callback.get(*args, **kwargs)

    def is_ready(self):
        return self.callback.is_ready()

    async def aget(self, *args, **kwargs):
        return await self.callback.aget(*args, **kwargs)

    def __await__(self):
        return self.aget().__await__()

    def reset(self):
        self.callback.reset()

    def __repr__(self):
        return '<ChordResult %d members -> %s>' % (len(self.results), self.callback.task)
