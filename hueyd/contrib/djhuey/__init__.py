"""hueyd for Django under huey's module name: ``'hueyd.contrib.djhuey'`` in INSTALLED_APPS.

A huey project changes ``huey.contrib.djhuey`` to ``hueyd.contrib.djhuey`` and
runs unchanged: the same names (``HUEY``, ``task``, ``db_task``, ...), the same
``settings.HUEY`` and ``manage.py run_huey``. ``hueyd.contrib.django`` is another
name for this module. ``settings.HUEY`` is a Huey instance, or a dict (every key
optional)::

    HUEY = {
        'huey_class': 'hueyd.RedisHuey',     # default hueyd.Huey: SQLite in BASE_DIR/huey.db
        'name': 'shop',                      # default: the settings package's name
        'url': 'redis://localhost:6379/0',   # or 'connection': {'host': ..., 'port': ...}
        'immediate': False,                  # default: settings.DEBUG (tasks run inline)
        'results': True, 'utc': True, ...    # any other Huey() keyword
        'consumer': {'workers': 4, 'worker_type': 'process'},   # for run_huey and run_hueyd
    }

Then, in any app's ``tasks.py`` (imported by ``manage.py run_huey``)::

    from hueyd.contrib.djhuey import db_periodic_task, db_task, task
    from hueyd import crontab

    @db_task()
    def mark_paid(order_id):
        Order.objects.filter(pk=order_id).update(paid=True)

``db_task`` and ``db_periodic_task`` close the database connections Django
considers old (``close_old_connections``, so ``CONN_MAX_AGE`` is honoured)
before and after the task, outside immediate mode, as huey does.
``tasks_backend.HueyBackend`` runs the tasks of ``django.tasks`` (Django 6) or of
the ``django-tasks`` backport on this Huey.
"""
import functools
import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, transaction
from django.utils.module_loading import import_string

from hueyd.api import Huey
from hueyd import crontab  # noqa: F401
from hueyd.storage import SqliteStorage

# What ``hueyd.contrib.django`` re-exports: huey's djhuey names and hueyd's own.
__all__ = [
    'DEFAULT_CLASS', 'HUEY', 'build_huey', 'close_db', 'config_error', 'configuration_message',
    'crontab', 'db_periodic_task', 'db_task', 'default_backend_path', 'default_name',
    'default_queue_name', 'disconnect_signal', 'enqueue', 'get_backend', 'is_revoked',
    'lock_task', 'on_commit_task', 'on_shutdown', 'on_startup', 'periodic_task',
    'post_execute', 'pre_execute', 'restore', 'restore_all', 'restore_by_id', 'result',
    'revoke', 'revoke_all', 'revoke_by_id', 'scheduled', 'signal', 'task']

DEFAULT_CLASS = 'hueyd.Huey'
default_backend_path = DEFAULT_CLASS  # huey's name
#: manage.py run_huey -A (or run_hueyd -A) sets it to False: the daemon then imports no tasks.py.
AUTOLOAD = True


def default_name():
    module = getattr(settings, 'SETTINGS_MODULE', None) or 'huey'
    return module.split('.')[0]


default_queue_name = default_name  # huey's name (huey's default is the database's name)
configuration_message = __doc__


def config_error(msg):
    """huey prints its help and exits; a Django project is better served by Django's error."""
    raise ImproperlyConfigured(msg)


def get_backend(path=DEFAULT_CLASS):
    """The Huey class that ``settings.HUEY['huey_class']`` names."""
    if path.startswith('huey.'):  # settings written for huey keep working
        path = 'hueyd.' + path[len('huey.'):]
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured("settings.HUEY['huey_class'] = %r cannot be imported (%s); use "
                                   "hueyd.Huey, hueyd.SqliteHuey, hueyd.RedisHuey or "
                                   "hueyd.PriorityRedisHuey" % (path, exc)) from None
    if not (isinstance(cls, type) and issubclass(cls, Huey)):
        raise ImproperlyConfigured("settings.HUEY['huey_class'] = %r is not a hueyd Huey class"
                                   % path)
    return cls


def build_huey(config):
    """The Huey instance that ``settings.HUEY`` (an instance, a dict or None) describes."""
    if isinstance(config, Huey):
        return config
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ImproperlyConfigured(
            'settings.HUEY is a %s.%s; make it a hueyd Huey instance (from hueyd import '
            'RedisHuey; HUEY = RedisHuey("name")) or a dict (see hueyd.contrib.djhuey)'
            % (type(config).__module__, type(config).__name__))
    options = dict(config)
    for key in ('consumer', 'consumer_options'):  # for run_hueyd only
        options.pop(key, None)
    cls = get_backend(options.pop('huey_class', DEFAULT_CLASS))
    name = options.pop('name', None) or default_name()
    options.update(options.pop('connection', None) or {})
    if 'immediate' not in options and 'always_eager' not in options:
        options['immediate'] = settings.DEBUG  # as huey: tasks run inline while developing
    if (cls.storage_class in (None, SqliteStorage) and 'url' not in options
            and 'filename' not in options
            and getattr(settings, 'BASE_DIR', None)):
        # The embedded SQLite default, next to the project rather than in the working directory.
        options['filename'] = os.path.join(str(settings.BASE_DIR), 'huey.db')
    try:
        return cls(name, **options)
    except TypeError as exc:
        raise ImproperlyConfigured('settings.HUEY does not suit %s: %s'
                                   % (cls.__name__, exc)) from None


HUEY = build_huey(getattr(settings, 'HUEY', None))

# Declaring tasks.
task = HUEY.task
periodic_task = HUEY.periodic_task
lock_task = HUEY.lock_task

# Managing them.
enqueue = HUEY.enqueue
restore = HUEY.restore
restore_all = HUEY.restore_all
restore_by_id = HUEY.restore_by_id
revoke = HUEY.revoke
revoke_all = HUEY.revoke_all
revoke_by_id = HUEY.revoke_by_id
is_revoked = HUEY.is_revoked
result = HUEY.result
scheduled = HUEY.scheduled

# Hooks and signals.
on_startup = HUEY.on_startup
on_shutdown = HUEY.on_shutdown
pre_execute = HUEY.pre_execute
post_execute = HUEY.post_execute
signal = HUEY.signal
disconnect_signal = HUEY.disconnect_signal


def close_db(fn):
    """Close the database connections Django considers old before and after ``fn``.

    Not in immediate mode, where the task runs inside the caller's request and
    transaction.
    """
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        if not HUEY.immediate:
            close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            if not HUEY.immediate:
                close_old_connections()
    return inner


def db_task(*args, **kwargs):
    """``@task()`` for tasks that use the database."""
    def decorator(fn):
        wrapper = task(*args, **kwargs)(close_db(fn))
        wrapper.call_local = fn
        return wrapper
    return decorator


def db_periodic_task(*args, **kwargs):
    """``@periodic_task()`` for tasks that use the database."""
    def decorator(fn):
        wrapper = periodic_task(*args, **kwargs)(close_db(fn))
        wrapper.call_local = fn
        return wrapper
    return decorator


def on_commit_task(*args, **kwargs):
    """A db_task that is enqueued only once the current transaction commits.

    Calling it returns the Result at once; the task is never enqueued if the
    transaction rolls back.
    """
    def decorator(fn):
        wrapper = task(*args, **kwargs)(close_db(fn))

        @functools.wraps(fn)
        def inner(*a, **k):
            pending = wrapper.s(*a, **k)
            transaction.on_commit(lambda: HUEY.enqueue(pending))
            return HUEY.result_handle(pending)
        inner.call_local = fn
        inner.task = wrapper
        return inner
    return decorator
