"""huey's ``huey.contrib.mini``: ``MiniHuey``, tasks in greenlets of this process, no storage.

For a gevent application that wants background calls and a cron without a
queue: calling a task starts it at once in a greenlet and returns a result to
``get()``; ``schedule()`` starts it later; periodic tasks are checked once a
minute. Nothing is stored, so nothing survives the process. Needs gevent.
"""
import datetime
import functools
import heapq
import itertools
import logging

import gevent
import gevent.event
from gevent.event import AsyncResult
from gevent.pool import Pool

from hueyd.times import normalize_time

logger = logging.getLogger('hueyd.mini')


class MiniHueyResult(AsyncResult):
    """A gevent AsyncResult that is also callable, like hueyd's Result: ``result()``."""

    __call__ = AsyncResult.get


class MiniHuey:
    def __init__(self, name='huey', interval=1, pool_size=None):
        self.name = name
        self.interval = interval      # seconds between looks at the schedule
        self.pool = Pool(pool_size)   # None: as many greenlets as there are calls
        self.periodic = []            # (validate(now) -> bool, function)
        self.schedule = []            # heap of (eta, order, function, args, kwargs, result)
        self.order = itertools.count()  # keeps equal etas first-in first-out
        self._run_t = None            # the scheduler greenlet, while started
        self._stopping = None         # set to end it, between two ticks
        self._last_check = datetime.datetime.now().replace(second=0, microsecond=0)

    def task(self, validate_func=None):
        """Decorator: a task; with ``validate_func(now) -> bool``, a periodic one."""
        if validate_func is not None:
            return self.periodic_task(validate_func)

        def decorator(fn):
            @functools.wraps(fn)
            def call(*args, **kwargs):
                result = MiniHueyResult()
                self.pool.spawn(self.run, fn, args, kwargs, result)
                return result

            def schedule(args=None, kwargs=None, delay=None, eta=None):
                if (delay is None) == (eta is None):
                    raise ValueError('schedule() needs exactly one of delay= (seconds) and '
                                     'eta= (a datetime)')
                when = normalize_time(eta, delay, utc=False)  # local time, as the loop reads it
                result = MiniHueyResult()
                heapq.heappush(self.schedule, (when, next(self.order), fn, args or (),
                                               kwargs or {}, result))
                return result

            call.schedule = schedule
            call.call_local = fn
            return call
        return decorator

    def periodic_task(self, validate_func):
        def decorator(fn):
            self.periodic.append((validate_func, fn))
            return fn
        return decorator

    def start(self):
        if self._run_t is None:
            self._last_check = datetime.datetime.now().replace(second=0, microsecond=0)
            self._stopping = gevent.event.Event()
            self._run_t = gevent.spawn(self.loop, self._stopping)

    def stop(self):
        """End the scheduler after its current tick (a kill could lose a call mid-start)."""
        if self._run_t is not None:
            self._stopping.set()
            self._run_t.join()
            self._run_t = None

    @staticmethod
    def run(fn, args, kwargs, result):
        try:
            result.set(fn(*args, **kwargs))
        except Exception as exc:
            logger.exception('%s failed', getattr(fn, '__name__', fn))
            result.set_exception(exc)

    def loop(self, stopping):
        while not stopping.is_set():
            try:
                self.tick(datetime.datetime.now())
            except Exception:  # a broken validate function must not stop the scheduler
                logger.exception('MiniHuey scheduler error; it goes on')
            stopping.wait(self.interval)

    def tick(self, now):
        """Start what is due at ``now``; once a minute, the periodic tasks that want it."""
        while self.schedule and self.schedule[0][0] <= now:
            _, _, fn, args, kwargs, result = heapq.heappop(self.schedule)
            self.pool.spawn(self.run, fn, args, kwargs, result)
        minute = now.replace(second=0, microsecond=0)
        if minute > self._last_check:
            self._last_check = minute
            for validate, fn in list(self.periodic):
                if validate(minute):
                    self.pool.spawn(self.run, fn, (), {}, MiniHueyResult())
