"""Concurrency controls shared through storage: task locks and rate limits."""
import functools
import inspect
import time

from hueyd.exceptions import RateLimitExceeded, TaskLockedException


class _Guard:
    """Usable as ``@decorator`` and as ``with guard:``; subclasses define acquire/release."""

    def __call__(self, fn):
        if inspect.iscoroutinefunction(fn):  # held while the coroutine runs, not while it is made
            @functools.wraps(fn)
            async def guarded(*args, **kwargs):
                with self:
                    return await fn(*args, **kwargs)
            return guarded

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return inner

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()

    # ``async with``: the same short storage calls.
    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb):
        self.__exit__(exc_type, exc, tb)


class TaskLock(_Guard):
    """A named lock held in storage: at most one holder across every consumer."""

    def __init__(self, huey, name, ttl=None):
        self.huey = huey
        self.name = name
        self.ttl = ttl
        self.key = '%s.lock.%s' % (huey.name, name)

    def is_locked(self):
        return self.huey.storage.has_data_for_key(self.key)

    def acquire(self):
        if not self.huey.storage.put_if_empty(self.key, b'1', self.ttl):
            raise TaskLockedException('unable to take lock %r: another task holds it' % self.name)

    def release(self):
        self.huey.storage.delete_data(self.key)

    clear = release


class RateLimit(_Guard):
    """At most ``limit`` entries per ``per`` seconds (fixed windows) across every consumer."""

    def __init__(self, huey, name, limit, per, retry=True):
        if limit < 0 or per <= 0:
            raise ValueError('rate_limit(%r, limit=%r, per=%r): limit must be >= 0 (0 admits '
                             'nothing) and per > 0 seconds' % (name, limit, per))
        self.huey = huey
        self.name = name
        self.limit = limit
        self.per = per
        self.retry = retry

    def _key(self, window):
        return '%s.rl.%s.%d' % (self.huey.name, self.name, window)

    def acquire(self):
        now = time.time()
        window = int(now // self.per)
        count = self.huey.storage.incr(self._key(window))
        if count == 1:
            # First use of a new window: the previous window's counter is dead weight.
            self.huey.storage.delete_counter(self._key(window - 1))
        if count > self.limit:
            raise RateLimitExceeded(self.name, (window + 1) * self.per - now, self.retry)

    def release(self):
        pass

    def current_usage(self):
        window = int(time.time() // self.per)
        return self.huey.storage.incr(self._key(window), 0)

    def reset(self):
        self.huey.storage.delete_counter(self._key(int(time.time() // self.per)))
