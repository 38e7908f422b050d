"""The registry of task classes, and the message format that travels through storage."""
from collections import namedtuple

from hueyd.exceptions import TaskNotFound

# Everything needed to rebuild a task in another process. ``on_complete`` and
# ``on_error`` hold nested Messages for pipelines; ``chord_config`` is None or
# ``(chord id, size, index, callback Message)`` for the last stage of a chord
# member. ``crashes`` counts the workers that died while running the message
# (see hueyd.daemon.deaths). ``headers`` is the task's (hueyd.tracing). The fields
# with defaults come last, so messages written before they existed still load.
MessageFields = namedtuple('MessageFields', (
    'id', 'name', 'eta', 'retries', 'retry_delay', 'retry_backoff', 'priority',
    'expires', 'expires_resolved', 'timeout', 'on_complete', 'on_error',
    'args', 'kwargs', 'chord_config', 'crashes', 'headers'), defaults=(None, 0, None))


class Message(MessageFields):
    __slots__ = ()

    def __getnewargs__(self):
        # Without headers a message pickles exactly as before they existed, so a
        # consumer that predates them (a rolling upgrade) reads it.
        return tuple(self)[:-1] if self.headers is None else tuple(self)


class Registry:
    def __init__(self):
        self._tasks = {}     # registered name -> task class
        self._periodic = {}  # the subset that runs on a crontab
        # fn(task) called before a task's message is made, in the enqueuing thread
        # (hueyd.tracing stamps the trace context on task.headers there).
        self.stamps = []

    @staticmethod
    def task_to_string(task_class):
        return '%s.%s' % (task_class.__module__, task_class.__name__)

    def register(self, task_class):
        name = self.task_to_string(task_class)
        if name in self._tasks:
            raise ValueError('a task named %r is already registered; give one of '
                             'them another name with name=...' % name)
        self._tasks[name] = task_class
        if getattr(task_class, 'validate_datetime', None) is not None:
            self._periodic[name] = task_class

    def unregister(self, task_class):
        name = self.task_to_string(task_class)
        self._periodic.pop(name, None)
        return self._tasks.pop(name, None) is not None

    def string_to_task(self, name):
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotFound(
                '%s not found in TaskRegistry: the process that ran this '
                'message does not define that task. Check that the daemon '
                'imports the module that declares it (its import path and '
                'PYTHONPATH) and that both sides run the same code.' % name) from None

    @property
    def names(self):
        return sorted(self._tasks)

    @property
    def periodic_tasks(self):
        return [task_class() for task_class in self._periodic.values()]

    def create_message(self, task):
        for stamp in self.stamps:
            stamp(task)
        return self.message(task)

    def message(self, task):
        """The Message of ``task`` as it is: nested tasks are stamped when enqueued."""
        name = self.task_to_string(type(task))
        if name not in self._tasks:
            raise TaskNotFound('%s is not registered with this Huey (was it unregistered, or '
                               'declared on another Huey?); it cannot be enqueued' % name)
        return Message(
            task.id, name, task.eta, task.retries,
            task.retry_delay, task.retry_backoff, task.priority, task.expires,
            task.expires_resolved, task.timeout,
            self.message(task.on_complete) if task.on_complete else None,
            self.message(task.on_error) if task.on_error else None,
            task.args, task.kwargs,
            self._chord_message(task.chord_config), task.crashes, task.headers)

    def _chord_message(self, config):
        if config is None:
            return None
        cid, size, index, callback = config
        return (cid, size, index, self.message(callback))

    def create_task(self, message):
        if not isinstance(message, Message):
            raise TypeError('not a task message: %r' % (type(message).__name__,))
        task_class = self.string_to_task(message.name)
        return task_class(
            message.args, message.kwargs, id=message.id, eta=message.eta,
            retries=message.retries, retry_delay=message.retry_delay,
            retry_backoff=message.retry_backoff, priority=message.priority,
            expires=message.expires, expires_resolved=message.expires_resolved,
            timeout=message.timeout,
            on_complete=self.create_task(message.on_complete) if message.on_complete else None,
            on_error=self.create_task(message.on_error) if message.on_error else None,
            chord_config=self._chord_config(message.chord_config), crashes=message.crashes,
            headers=message.headers)

    def _chord_config(self, data):
        if data is None:
            return None
        cid, size, index, callback = data
        return (cid, size, index, self.create_task(callback))
