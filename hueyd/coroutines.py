"""Running ``async def`` tasks: under their deadline, and from workers that are not coroutines.

A thread, greenlet or process worker hands an async task to its process's *task loop*:
one event loop per process, in a thread of its own (a greenlet under gevent, whose
patched selector lets it share the hub with the workers), and waits for the result.
One loop rather than one per worker, because an application's async clients
(aiohttp sessions, redis.asyncio pools) belong to the loop that made them, and because
under gevent every greenlet shares one OS thread, which can run only one loop.
``-k asyncio`` pools await async tasks on their own loop and do not use this one.
"""
import asyncio
import os
import threading

from hueyd.exceptions import TaskTimeout


async def within_deadline(task, coroutine):
    """Await ``coroutine`` until ``task.deadline`` (hueyd.timeouts sets it), then cancel it
    and raise TaskTimeout; a TimeoutError of the task's own passes through."""
    if task.deadline is None:
        return await coroutine
    limit = asyncio.timeout(task.time_remaining)
    try:
        async with limit:
            return await coroutine
    except TimeoutError:
        if limit.expired():
            raise TaskTimeout('%s exceeded its timeout of %ss' % (task, task.timeout)) from None
        raise


class stepwise:
    """Awaits ``coroutine`` with ``around()`` (a context manager) entered for each of its steps
    and left whenever it waits, so the state that context sets is the coroutine's alone
    while other coroutines of the same thread run between its steps.

    hueyd.executor uses it for ``storage.unbatched()``, a per-thread switch: in an
    asyncio pool the task's own writes go out at once, the pool's still wait for a flush.
    """

    def __init__(self, coroutine, around):
        self.coroutine = coroutine
        self.around = around

    def __await__(self):
        coroutine, value, error = self.coroutine, None, None
        while True:
            with self.around():
                try:
                    if error is None:
                        waiting = coroutine.send(value)
                    else:
                        waiting = coroutine.throw(error)
                except StopIteration as stop:
                    return stop.value
            try:
                value, error = (yield waiting), None
            except BaseException as exc:  # cancellation too: the coroutine gets to handle it
                value, error = None, exc


class TaskLoop:
    """The event loop of this process that thread, greenlet and process workers run async
    tasks on; started on first use, and again in a forked child (threads do not survive fork)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loop = None
        self._pid = None

    def loop(self):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._loop = asyncio.new_event_loop()
                    threading.Thread(target=self._loop.run_forever, name='hueyd-task-loop',
                                     daemon=True).start()
                    self._pid = os.getpid()
        return self._loop

    def run(self, coroutine):
        """Run ``coroutine`` on the loop and wait for its result here. If this wait is
        interrupted (SIGTERM in a process worker, a KeyboardInterrupt), the coroutine is cancelled."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise


task_loop = TaskLoop()
