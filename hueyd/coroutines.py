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
from hueyd.storage.batch import Unbatched


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


async def unbatched(coroutine):
    """Await ``coroutine`` with its writes sent at once, and those of the asyncio Tasks it
    starts (they copy its context), while the thread's other writes wait for a flush.

    hueyd.executor awaits an async task's coroutine in it: in an asyncio pool, whose loop
    thread batches, the task's own writes (a task it enqueues and waits for) go out at
    once, the pool's still wait for a flush. The switch is a context variable, which each
    asyncio Task has its own copy of, so the coroutines of other tasks running between
    this one's steps are not affected, and it costs nothing per step.
    """
    with Unbatched():
        return await coroutine


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
