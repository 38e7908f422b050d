"""``HueyBackend``: the tasks of Django's task framework, run by hueyd on settings.HUEY.

    TASKS = {'default': {'BACKEND': 'hueyd.contrib.djhuey.tasks_backend.HueyBackend'}}

For ``django.tasks`` (Django 6) and the ``django-tasks`` backport (Django < 6).
A Django task travels as one hueyd task, ``run_django_task``, whose id is the
TaskResult's id. The TaskResult lives as a record in the Huey's result store
(``django-task:<id>``), written when the task is enqueued and updated by the
worker when it starts and finishes, so any process can read it. ``run_after``
becomes the hueyd task's eta and ``priority`` its priority (offered only when the
storage honours priorities). ``'ENQUEUE_ON_COMMIT': True`` beside ``BACKEND`` (or
``OPTIONS = {'enqueue_on_commit': True}``) enqueues when the transaction commits.
"""
import os
import socket
import traceback

from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

try:  # Django >= 6.0
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
except ImportError:  # the django-tasks backport
    from django_tasks import exceptions
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json
    # The backport called it InvalidTaskError up to 0.12.
    InvalidTask = getattr(exceptions, 'InvalidTask', None) or exceptions.InvalidTaskError
    TaskResultDoesNotExist = exceptions.TaskResultDoesNotExist

from hueyd.contrib.djhuey import HUEY, close_db

RECORD = 'django-task:%s'


def _function(path):
    """The function a task's module path names; ImportError when it names none."""
    found = import_string(path)
    return found.func if isinstance(found, Task) else found


def _stand_in(path):
    """A function that carries ``path`` but cannot run, so that the result of a task whose
    function was since renamed or removed can still be read."""
    def missing(*args, **kwargs):
        raise ImportError('%s cannot be imported' % path)
    missing.__module__, _, missing.__name__ = path.rpartition('.')
    missing.__qualname__ = missing.__name__
    return missing


class _StoredTask(Task):
    """A Task rebuilt from a record. Not validated again: it was when enqueued, and the
    settings (or the storage's priorities) may have changed since."""

    def __post_init__(self):
        pass


def _new_record(options, args, kwargs):
    return {'task': options, 'status': TaskResultStatus.READY.value, 'args': args,
            'kwargs': kwargs, 'enqueued_at': None, 'started_at': None,
            'last_attempted_at': None, 'finished_at': None, 'return_value': None,
            'errors': [], 'worker_ids': []}


def _result(id, record):
    """The TaskResult a record describes."""
    options = record['task']
    try:
        func = _function(options['path'])
    except ImportError:
        func = _stand_in(options['path'])
    task = _StoredTask(func=func, priority=options['priority'], backend=options['backend'],
                       queue_name=options['queue_name'], run_after=options['run_after'],
                       takes_context=options['takes_context'])
    result = TaskResult(
        task=task, id=id, status=TaskResultStatus(record['status']),
        enqueued_at=record['enqueued_at'], started_at=record['started_at'],
        finished_at=record['finished_at'], last_attempted_at=record['last_attempted_at'],
        args=record['args'], kwargs=record['kwargs'], backend=options['backend'],
        errors=[TaskError(exception_class_path=path, traceback=text)
                for path, text in record['errors']],
        worker_ids=list(record['worker_ids']))
    if record['status'] == TaskResultStatus.SUCCESSFUL.value:
        # TaskResult offers no public way to set it; Django's own backends set it so.
        object.__setattr__(result, '_return_value', record['return_value'])
    return result


def _save(id, record, signal):
    HUEY.put_result(RECORD % id, record)
    signal.send(sender=HueyBackend, task_result=_result(id, record))


def run_the_django_task(options, args, kwargs, task=None):
    """The worker's side: run the function, keeping the record up to date."""
    # The record is written before the message is enqueued; it is missing only when the
    # store dropped it (a result TTL, a flush). Run the task anyway, with a new record.
    record = HUEY.get(RECORD % task.id, peek=True) or _new_record(options, args, kwargs)
    started = timezone.now()
    record.update(status=TaskResultStatus.RUNNING.value, started_at=started,
                  last_attempted_at=started)
    record['worker_ids'].append('%s:%d' % (socket.gethostname(), os.getpid()))
    _save(task.id, record, task_started)
    try:
        func = _function(options['path'])
        if options['takes_context']:
            value = func(TaskContext(task_result=_result(task.id, record)), *args, **kwargs)
        else:
            value = func(*args, **kwargs)
        value = normalize_json(value)  # what cannot be stored as JSON fails the task
    except Exception as exc:
        kind = type(exc)
        record['errors'].append(('%s.%s' % (kind.__module__, kind.__qualname__),
                                 ''.join(traceback.format_exception(exc))))
        record.update(status=TaskResultStatus.FAILED.value, finished_at=timezone.now())
        _save(task.id, record, task_finished)
        raise  # the daemon logs it, counts it and sends huey's error signal
    record.update(status=TaskResultStatus.SUCCESSFUL.value, finished_at=timezone.now(),
                  return_value=value)
    _save(task.id, record, task_finished)


run_django_task = HUEY.task(name='run_django_task', context=True)(close_db(run_the_django_task))


class HueyBackend(BaseTaskBackend):
    supports_defer = True
    supports_get_result = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        self.enqueue_on_commit = bool(params.get(
            'ENQUEUE_ON_COMMIT', self.options.get('enqueue_on_commit', False)))

    @property
    def supports_priority(self):
        return bool(HUEY.storage.priority)

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        try:
            found = _function(task.module_path)
        except ImportError:
            found = None
        if found is not task.func:
            raise InvalidTask('%s cannot be enqueued: the worker finds a task by its module '
                              'path, which names no such function (a lambda? a function '
                              'defined in a class?)' % task.module_path)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        options = {'path': task.module_path, 'priority': task.priority,
                   'queue_name': task.queue_name, 'run_after': task.run_after,
                   'takes_context': task.takes_context, 'backend': self.alias}
        message = run_django_task.s(options, args, kwargs, priority=task.priority or None,
                                    eta=task.run_after)
        record = _new_record(options, args, kwargs)

        def send():
            record['enqueued_at'] = timezone.now()
            _save(message.id, record, task_enqueued)
            HUEY.enqueue(message)

        if self.enqueue_on_commit:
            transaction.on_commit(send)
            return _result(message.id, record)
        send()
        return self.get_result(message.id)  # in immediate mode, the task has run already

    def get_result(self, result_id):
        record = HUEY.get(RECORD % result_id, peek=True)
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        return _result(result_id, record)
