"""Tasks: ``Task`` is one call of a task function; ``TaskWrapper`` is the decorated function."""
import datetime
import functools
import inspect
import time
import uuid

from hueyd.coroutines import task_loop, within_deadline
from hueyd.exceptions import TaskTimeout
from hueyd.times import normalize_expires, normalize_time


class Task:
    """One invocation: the arguments plus everything that governs how it runs."""

    default_retries = 0
    default_retry_delay = 0
    default_retry_backoff = None
    default_priority = None
    default_expires = None
    default_timeout = None
    #: Never run twice: after an interruption the task goes to the dead letters instead.
    at_most_once = False
    #: An ``async def`` task: ``coroutine()`` gives its coroutine, which an asyncio pool
    #: awaits, and ``execute()`` runs it on the process's task loop (hueyd.coroutines).
    is_async = False

    def __init__(self, args=None, kwargs=None, id=None, eta=None, retries=None,
                 retry_delay=None, retry_backoff=None, priority=None, expires=None,
                 expires_resolved=None, timeout=None, on_complete=None, on_error=None,
                 chord_config=None, crashes=0, headers=None):
        self.name = type(self).__name__
        self.args = tuple(args) if args is not None else ()
        self.kwargs = dict(kwargs) if kwargs is not None else {}
        self.id = id or str(uuid.uuid4())
        self.eta = eta
        self.retries = self.default_retries if retries is None else retries
        self.retry_delay = self.default_retry_delay if retry_delay is None else retry_delay
        self.retry_backoff = self.default_retry_backoff if retry_backoff is None else retry_backoff
        self.priority = self.default_priority if priority is None else priority
        self.expires = self.default_expires if expires is None else expires
        self.expires_resolved = expires_resolved
        self.timeout = self.default_timeout if timeout is None else timeout
        self.on_complete = on_complete
        self.on_error = on_error
        # (chord id, member count, member index, callback Task) when this task
        # ends a chord member; see Huey.enqueue(chord(...)).
        self.chord_config = chord_config
        # How many workers died while running this message (a segfault, os._exit,
        # the OOM killer); at the daemon's --max-deliveries it goes to the dead letters.
        self.crashes = crashes
        # Strings that travel with the message for whoever wants them on the other side:
        # OpenTelemetry's trace context (hueyd.tracing). None: nothing travels.
        self.headers = headers
        self._deadline = None  # time.monotonic() at which the running task times out

    @property
    def revoke_id(self):
        return 'r:%s' % self.id

    @property
    def data(self):
        return self.args, self.kwargs

    def resolve_expires(self, utc=True):
        """Fix a relative ``expires`` to an absolute time, once, when first enqueued."""
        if self.expires is not None and self.expires_resolved is None:
            self.expires_resolved = normalize_expires(self.expires, utc)
        return self.expires_resolved

    # --- pipelines ------------------------------------------------------------
    def then(self, task, *args, **kwargs):
        """Run ``task`` after this pipeline's last stage, with that stage's result appended.

        ``task`` is a task function (``args``/``kwargs`` go to its ``.s()``,
        special options such as ``delay=`` included) or a task from ``.s()``
        (``args``/``kwargs`` are appended to its own). Returns this task.
        """
        if self.on_complete is not None:
            self.on_complete.then(task, *args, **kwargs)
        else:
            self.on_complete = _as_task(task, args, kwargs)
        return self

    def error(self, task, *args, **kwargs):
        """Run ``task`` with the exception appended if this task fails for good.

        A second call chains the handler onto the first handler, as huey does.
        """
        if self.on_error is not None:
            self.on_error.error(task, *args, **kwargs)
        else:
            self.on_error = _as_task(task, args, kwargs)
        return self

    def extend_data(self, data):
        """Append the previous stage's result to this task's arguments.

        A tuple is spread as arguments, a dict fills keyword arguments the task
        does not already have, anything else becomes one more argument.
        """
        if data is None or data == ():
            return
        if isinstance(data, tuple):
            self.args += data
        elif isinstance(data, dict):
            for key, value in data.items():
                self.kwargs.setdefault(key, value)
        else:
            self.args += (data,)

    # --- timeouts -------------------------------------------------------------
    @property
    def deadline(self):
        """``time.monotonic()`` at which the running task times out (hueyd.timeouts sets it)."""
        return self._deadline

    @deadline.setter
    def deadline(self, value):
        self._deadline = value

    @property
    def time_remaining(self):
        """Seconds left before this task's ``timeout`` (0 past it; infinity without one)."""
        if self._deadline is None:
            return float('inf')
        return max(0.0, self._deadline - time.monotonic())

    @property
    def is_timed_out(self):
        """True once the running task is past its ``timeout`` (a property, as in huey)."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def check_timeout(self):
        """Raise TaskTimeout when past the timeout; thread workers call this cooperatively."""
        if self.is_timed_out:
            raise TaskTimeout('%s exceeded its timeout of %ss' % (self, self.timeout))

    def execute(self):
        raise NotImplementedError('TaskWrapper creates subclasses that implement execute()')

    def coroutine(self):
        """The coroutine of an ``async def`` task (``is_async``), not yet awaited."""
        raise TypeError('%s is not an async task' % self.name)

    def __repr__(self):
        text = '%s.%s: %s' % (type(self).__module__, self.name, self.id)
        if self.eta:
            text += ' @%s' % self.eta
        return text

    def __eq__(self, other):
        return (isinstance(other, Task) and type(self) is type(other)
                and self.id == other.id and self.eta == other.eta)

    def __hash__(self):
        return hash(self.id)


class PeriodicTask(Task):
    """A task enqueued by the scheduler whenever ``validate_datetime(now)`` is true."""

    def validate_datetime(self, timestamp):
        return False


def _as_task(task, args, kwargs):
    """A pipeline stage from ``then()``/``error()`` arguments, as huey builds it."""
    if isinstance(task, Task):
        if args:
            task.extend_data(tuple(args))
        if kwargs:
            task.extend_data(dict(kwargs))
        return task
    if isinstance(task, TaskWrapper):
        return task.s(*args, **kwargs)
    raise TypeError('expected a task function or a task from .s(), got %r' % (task,))


# Keyword arguments that .s() (and so calling a task, and then()) takes as
# options of the call rather than passing them on to the task function.
SPECIAL_OPTIONS = ('id', 'retries', 'retry_delay', 'retry_backoff', 'priority',
                   'expires', 'timeout')


class TaskWrapper:
    """What ``@huey.task()`` returns: calling it enqueues a task and returns a Result."""

    def __init__(self, huey, func, retries=0, retry_delay=0, retry_backoff=None,
                 priority=None, context=False, name=None, expires=None, timeout=None,
                 task_base=Task, **settings):
        if isinstance(func, TaskWrapper):
            func = func.func  # a task of one Huey declared again on another: the same function
        self.huey = huey
        self.func = func
        self.name = name or func.__name__
        self.retries, self.retry_delay = retries, retry_delay  # as huey's TaskWrapper shows them
        self.task_class = self.create_task(
            func, context, self.name, task_base, default_retries=retries,
            default_retry_delay=retry_delay, default_retry_backoff=retry_backoff,
            default_priority=priority, default_expires=expires,
            default_timeout=timeout, **settings)
        huey.registry.register(self.task_class)
        functools.update_wrapper(self, func)

    @staticmethod
    def create_task(func, context, name, task_base, **attrs):
        if context:
            def call(self):
                return func(*self.args, task=self, **self.kwargs)
        else:
            def call(self):
                return func(*self.args, **self.kwargs)
        if inspect.iscoroutinefunction(func):  # decided here, once, not for every run
            def execute(self):
                return task_loop.run(within_deadline(self, call(self)))
            attrs.update(is_async=True, coroutine=call)
        else:
            execute = call
        attrs.update(execute=execute, __module__=func.__module__,
                     __doc__=func.__doc__)
        return type(name, (task_base,), attrs)

    def unregister(self):
        return self.huey.registry.unregister(self.task_class)

    def s(self, *args, **kwargs):
        """A task for these arguments, not yet enqueued (for pipelines).

        As in huey, the keyword arguments ``eta``, ``delay`` (seconds or a
        timedelta, counted from this call), ``id``, ``retries``, ``retry_delay``,
        ``retry_backoff``, ``priority``, ``expires`` and ``timeout`` set options
        of this call and are not passed to the function.
        """
        eta, delay = kwargs.pop('eta', None), kwargs.pop('delay', None)
        if isinstance(delay, datetime.timedelta):
            delay = delay.total_seconds()
        if eta is not None or delay is not None:
            eta = normalize_time(eta, delay, self.huey.utc)
        options = {name: kwargs.pop(name, None) for name in SPECIAL_OPTIONS}
        return self.task_class(args, kwargs, eta=eta, **options)

    def __call__(self, *args, **kwargs):
        return self.huey.enqueue(self.s(*args, **kwargs))

    def call_local(self, *args, **kwargs):
        """Run the function here and now, bypassing the queue."""
        return self.func(*args, **kwargs)

    def schedule(self, args=None, kwargs=None, eta=None, delay=None, priority=None,
                 retries=None, retry_delay=None, retry_backoff=None, expires=None,
                 timeout=None, id=None):
        """Enqueue to run at ``eta`` or after ``delay`` seconds (``schedule(10)`` works too)."""
        if eta is None and delay is None:
            # huey allows the time as the first positional argument.
            if isinstance(args, (int, float)) or hasattr(args, 'total_seconds'):
                delay, args = args, None
            elif hasattr(args, 'isoformat'):
                eta, args = args, None
            else:
                raise ValueError('schedule() needs eta= (a datetime) or delay= (seconds)')
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValueError('schedule() kwargs must be a dict, got %r' % (type(kwargs).__name__,))
        args = args or ()
        if not isinstance(args, (tuple, list)):
            args = (args,)  # huey takes one argument as it is: schedule(5, delay=10)
        task = self.task_class(
            tuple(args), kwargs or {}, id=id,
            eta=normalize_time(eta, delay, self.huey.utc), retries=retries,
            retry_delay=retry_delay, retry_backoff=retry_backoff, priority=priority,
            expires=expires, timeout=timeout)
        return self.huey.enqueue(task)

    def map(self, it):
        """Enqueue one task per item (a tuple item is spread as arguments); a ResultGroup."""
        tasks = [self.s(*(item if isinstance(item, tuple) else (item,))) for item in it]
        return self.huey.enqueue_many(tasks)

    def revoke(self, revoke_until=None, revoke_once=False):
        """Skip every call of this task (until a time, or just the next one)."""
        self.huey.revoke_all(self.task_class, revoke_until, revoke_once)

    def restore(self):
        return self.huey.restore_all(self.task_class)

    def is_revoked(self, timestamp=None, peek=True):
        return self.huey.is_revoked(self.task_class, timestamp, peek)

    def __repr__(self):
        return '<TaskWrapper %s.%s>' % (self.func.__module__, self.name)


# --- workflows ----------------------------------------------------------------

class group:
    """Tasks that run in parallel: ``huey.enqueue(group([...]))`` returns a ResultGroup.

    ``group(tasks).then(callback)`` is ``chord(tasks, callback)``.
    """

    def __init__(self, tasks):
        self.tasks = list(tasks)

    def then(self, task, *args, **kwargs):
        return chord(self.tasks, _as_task(task, args, kwargs))

    def error(self, task, *args, **kwargs):
        """Give every member the same error handler (each failure runs its own copy)."""
        for member in self.tasks:
            handler = _copy_task(task) if isinstance(task, Task) else task
            member.error(handler, *args, **kwargs)
        return self

    def __repr__(self):
        return '<group of %d>' % len(self.tasks)


class chord:
    """Members run in parallel; ``callback`` runs once, after all of them, with their results.

    The callback gets one more argument: the list of the members' results in
    member order (see ``Huey.enqueue``, which also says what a member that did
    not succeed contributes). ``then()``/``error()`` extend the callback's pipeline.
    """

    def __init__(self, tasks, callback):
        self.tasks = list(tasks)
        self.callback = _as_task(callback, (), {})

    def then(self, task, *args, **kwargs):
        self.callback.then(task, *args, **kwargs)
        return self

    def error(self, task, *args, **kwargs):
        self.callback.error(task, *args, **kwargs)
        return self

    def __repr__(self):
        return '<chord of %d -> %s>' % (len(self.tasks), self.callback)


def _copy_task(task):
    """A copy of ``task`` (and its pipeline) with fresh ids, for handlers shared by many tasks."""
    return type(task)(
        task.args, task.kwargs, eta=task.eta, retries=task.retries,
        retry_delay=task.retry_delay, retry_backoff=task.retry_backoff,
        priority=task.priority, expires=task.expires, timeout=task.timeout,
        on_complete=_copy_task(task.on_complete) if task.on_complete else None,
        on_error=_copy_task(task.on_error) if task.on_error else None)
