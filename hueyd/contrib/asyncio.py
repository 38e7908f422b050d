"""huey's ``huey.contrib.asyncio``: await a task's result from a coroutine.

These are huey's names for ``await result`` (``Result.aget``): the event loop runs
on while the result is awaited, and where the storage can wait for a result to land
(Redis, PostgreSQL) nothing polls (see hueyd.result).
"""


async def aget_result(result, backoff=1.15, max_delay=1.0, preserve=False, timeout=None):
    """The value of ``result`` (a Result) once its task has run; raises TaskException if
    the task failed, ResultTimeout after ``timeout`` seconds when given."""
    return await result.aget(timeout, backoff, max_delay, preserve=preserve)


async def aget_result_group(group, *args, **kwargs):
    """The values of every Result in ``group`` (a ResultGroup), in order."""
    return [await aget_result(result, *args, **kwargs) for result in group]
