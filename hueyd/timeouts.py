"""Interrupting a task that runs past its ``timeout``, by the means each worker type allows.

* In a process's main thread (process workers, immediate mode): SIGALRM via
  ``setitimer``, which interrupts even blocking calls, with sub-second precision.
* Under gevent (greenlet workers): ``gevent.Timeout``.
* In other threads Python offers no safe interruption, so the task must call
  ``task.check_timeout()`` itself at convenient points (cooperative).
* An ``async def`` task, wherever it runs: cancelled by ``asyncio.timeout``.
"""
import contextlib
import time
import signal
import sys
import threading

from hueyd.exceptions import TaskTimeout


def _gevent_active():
    monkey = sys.modules.get('gevent.monkey')
    return monkey is not None and monkey.is_module_patched('threading')


@contextlib.contextmanager
def _alarm(seconds, message):
    def on_alarm(signum, frame):
        raise TaskTimeout(message)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def time_limit(seconds, message):
    """A context that raises TaskTimeout(message) once ``seconds`` pass, by the means
    this thread allows (none in a thread other than the main one: a no-op context)."""
    if _gevent_active():
        import gevent
        return gevent.Timeout(seconds, TaskTimeout(message))
    if threading.current_thread() is threading.main_thread():
        return _alarm(seconds, message)
    return contextlib.nullcontext()


_NO_LIMIT = contextlib.nullcontext()  # reusable: one for every task without a timeout


def timeout_context(task):
    """Arm the task's deadline; the returned context raises TaskTimeout when it passes."""
    if not task.timeout:
        task.deadline = None
        return _NO_LIMIT
    task.deadline = time.monotonic() + task.timeout
    if task.is_async:  # cancelled at its deadline by asyncio (hueyd.coroutines), not a signal
        return _NO_LIMIT
    return time_limit(task.timeout, '%s exceeded its timeout of %ss' % (task, task.timeout))
