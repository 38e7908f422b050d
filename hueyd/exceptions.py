"""Exceptions raised by hueyd; names and meanings follow huey's."""


class HueyException(Exception):
    """Base class for errors raised by hueyd itself."""


class ConfigurationError(HueyException):
    """A Huey instance, storage or option was set up wrongly."""


class ConfigError(ConfigurationError):
    """A problem in the daemon's configuration (its file, environment or command line);
    ``str(error)`` is the complete message for the user."""


class TaskNotFound(HueyException):
    """A message names a task that is not registered in this process."""


class SignatureError(HueyException):
    """A signed message had no signature or a wrong one; it was not deserialized."""


class TaskLockedException(HueyException):
    """A task could not take its lock because another holder has it."""


class ResultTimeout(HueyException):
    """A blocking ``Result.get()`` ran out of time before the result arrived."""


class TaskTimeout(HueyException):
    """A task ran longer than its ``timeout``."""


class RateLimitExceeded(HueyException):
    """A rate limit was reached; ``delay`` is the wait until its next window."""

    def __init__(self, key, delay, retry=True):
        super().__init__(key, delay, retry)  # the arguments, so that it pickles
        self.key = key
        self.delay = delay
        self.retry = retry

    def __str__(self):  # huey's text
        if self.retry:
            return 'Rate limit exceeded on "%s", retry in %0.1fs' % (self.key, self.delay)
        return 'Rate limit exceeded on "%s"' % self.key


class CancelExecution(Exception):
    """Raise in a pre-execute hook or a task to cancel it.

    ``retry=True`` asks for a retry (if the task has retries left), ``retry=False``
    forbids one, ``None`` lets the task's own settings decide.
    """

    def __init__(self, msg=None, retry=None):
        self.retry = retry
        super().__init__(*(() if msg is None else (msg,)))


class RetryTask(Exception):
    """Raise inside a task to have it retried, optionally after ``delay`` or at ``eta``."""

    def __init__(self, msg=None, eta=None, delay=None, *args, **kwargs):
        self.eta = eta
        self.delay = delay
        super().__init__(msg, *args, **kwargs)


class TaskException(Exception):
    """Raised by ``Result.get()`` when the task failed in the consumer.

    ``metadata`` holds what the worker stored: ``error`` (the repr of the remote
    exception), ``traceback``, ``task_id``, ``retries`` and so on.
    """

    def __init__(self, metadata=None, *args):
        self.metadata = metadata or {}
        super().__init__(*args)

    def __getattr__(self, name):
        metadata = self.__dict__.get('metadata') or {}
        if name in metadata:
            return metadata[name]
        raise AttributeError(name)

    def __str__(self):
        return self.metadata.get('error') or super().__str__()


class WorkerCrashed(HueyException):
    """The worker running the task died (a segfault, ``os._exit``, the OOM killer) too often.

    The daemon stores it as the task's error and moves the message to the dead letters.
    """


class Interrupted(KeyboardInterrupt):
    """A consumer that is stopping fast interrupts the task it runs with this.

    Passed as ``interrupt`` to ``Huey.execute``; any other exception the task
    raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is the task's error.
    """
