"""The application ``manage.py run_huey`` (and ``run_hueyd``) gives the daemon:
``hueyd.contrib.djhuey.daemon.huey``.

Imported by the daemon's children after they fork from the management command
(so Django is set up already): settings.HUEY, with every installed app's
``tasks`` module imported, as huey's run_huey does (unless ``-A``). A SIGHUP
reload imports the tasks modules anew in the new children.
"""
import importlib.util
import logging

from django.utils.module_loading import autodiscover_modules

from hueyd.contrib import djhuey

logger = logging.getLogger('hueyd.django')

huey = djhuey.HUEY
if djhuey.AUTOLOAD:
    autodiscover_modules('tasks')
if importlib.util.find_spec('django.tasks') or importlib.util.find_spec('django_tasks'):
    # Registers the task that runs django.tasks' tasks enqueued through HueyBackend: the
    # web process loads the backend from settings.TASKS, the daemon may never do so.
    from hueyd.contrib.djhuey import tasks_backend  # noqa: F401
if huey.immediate:
    # DEBUG makes the web process run tasks inline; the daemon must take them from storage.
    logger.info('settings.HUEY is in immediate mode (DEBUG = True?); the daemon turns it off '
                'for itself. Set HUEY["immediate"] = False for your web process to enqueue here')
    huey.immediate = False
