"""Riding out a storage outage: retry an operation while its errors are transient."""
import logging
import time

logger = logging.getLogger('hueyd')


def patiently(storage, what, operation, *args, patience=None, stopping=None):
    """``operation(*args)``, retried with backoff (0.1 s doubling to 5 s) while it raises
    one of ``storage.transient_errors``.

    The last error is raised after ``patience`` seconds (None: never), or as soon as
    ``stopping()`` is true. Any other error is raised at once. ``what`` completes
    "could not ..." in the log.
    """
    deadline = None if patience is None else time.monotonic() + patience
    delay = 0.1
    while True:
        try:
            return operation(*args)
        except storage.transient_errors as exc:
            if (stopping is not None and stopping()) or (
                    deadline is not None and time.monotonic() > deadline):
                raise
            logger.warning('could not %s (%s); retrying', what, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
