"""huey's ``huey.contrib.asyncio``: await a task's result from a coroutine.

The result is polled, with a growing delay, without blocking the event loop
between reads (each read is one short storage call).
"""
import asyncio
import time

from hueyd.exceptions import ResultTimeout


async def aget_result(result, backoff=1.15, max_delay=1.0, preserve=False, timeout=None):
    """The value of ``result`` (a Result) once its task has run; raises TaskException if
    the task failed, ResultTimeout after ``timeout`` seconds when given."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while not result.is_ready(preserve=preserve):
        if deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeout('%s: no result after %ss' % (result.task, timeout))
        await asyncio.sleep(delay)
        delay = min(delay * backoff, max_delay)
    return result.get(preserve=preserve)


async def aget_result_group(group, *args, **kwargs):
    """The values of every Result in ``group`` (a ResultGroup), awaited together."""
    return await asyncio.gather(*(aget_result(result, *args, **kwargs) for result in group))
