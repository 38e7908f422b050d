"""hueyd.contrib.djhuey, huey's module name, with the test project of test_django.py installed
as 'hueyd.contrib.djhuey': huey's names, `manage.py run_huey` (hueyd's daemon, huey's
options) and HueyBackend, Django's task framework run by the daemon."""
import json
import sys

from daemon_harness import Daemon, stop_gracefully
from ops_support import Project
from test_django import PROJECT, demo, manage, migrated, project_dir  # noqa: F401 (fixtures)

DJHUEY = {'DJANGO_HUEY_APP': 'djhuey'}

# The public names of huey 3.5's huey.contrib.djhuey.
HUEY_NAMES = (
    'HUEY', 'task', 'periodic_task', 'lock_task', 'db_task', 'db_periodic_task',
    'on_commit_task', 'close_db', 'enqueue', 'restore', 'restore_all', 'restore_by_id',
    'revoke', 'revoke_all', 'revoke_by_id', 'is_revoked', 'result', 'scheduled', 'on_startup',
    'on_shutdown', 'pre_execute', 'post_execute', 'signal', 'disconnect_signal',
    'default_backend_path', 'default_queue_name', 'get_backend', 'config_error',
    'configuration_message')

NAMES = '''
import json
from django.core.management import get_commands
from hueyd.contrib import django as alias, djhuey
from hueyd.contrib.djhuey.management.commands.run_hueyd import consumer_argv
names = %r
huey_settings = {'workers': 2, 'initial_delay': 0.5, 'periodic': False, 'verbose': None,
                 'check_worker_health': True, 'shutdown_timeout': 5, 'simple_log': True}
print(json.dumps({
    'missing': [name for name in names if not hasattr(djhuey, name)],
    'alias_differs': [name for name in djhuey.__all__
                      if getattr(alias, name) is not getattr(djhuey, name)],
    'commands': {name: app for name, app in get_commands().items()
                 if name in ('run_huey', 'run_hueyd', 'create_huey_tables')},
    'huey_class': djhuey.get_backend('huey.SqliteHuey').__name__,
    'argv': consumer_argv(huey_settings, environ={}),
}))
''' % (HUEY_NAMES,)


def django_tasks_demo(directory, *args, **env):
    done = manage(directory, 'django_tasks_demo', *args, **DJHUEY, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def start_run_huey(directory, *args):
    daemon = Daemon(Project(directory, {'DJANGO_TEST_DIR': str(directory), **DJHUEY}),
                    cwd=str(PROJECT))
    daemon.argv = [sys.executable, 'manage.py', 'run_huey', *args]
    return daemon.start()


def test_djhuey_has_hueys_names_and_commands(project_dir):
    done = manage(project_dir, 'shell', '-v', '0', '-c', NAMES, **DJHUEY)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found['missing'] == [] and found['alias_differs'] == []
    assert found['commands'] == dict.fromkeys(
        ('run_huey', 'run_hueyd', 'create_huey_tables'), 'hueyd.contrib.djhuey')
    assert found['huey_class'] == 'SqliteHuey'  # huey's class paths name hueyd's classes
    # settings.HUEY['consumer'] written for huey: huey's names, None for "the default".
    assert found['argv'] == ['--workers=2', '--delay=0.5', '--no-periodic',
                             '--graceful-timeout=5']


def test_run_huey_takes_hueys_options_and_runs_the_daemon(project_dir):
    # huey's spellings: -V is huey's verbose (Django owns -v), -d/-t are huey's names for
    # hueyd's --delay and --graceful-timeout, -S is accepted. -w 3 beats the settings' 2.
    daemon = start_run_huey(project_dir, '-w', '3', '-V', '-v', '1', '-S', '-d', '0.02',
                            '-t', '4')
    try:
        daemon.wait_ready(1)
        result = demo(project_dir, **DJHUEY)
        assert (result['immediate'], result['add'], result['paid']) == (False, 3, 1)
        assert all(order['pid'] in daemon.pool_pids() for order in result['orders'])
        assert result['on_commit'] == [None, 1, None]
        text = daemon.log_text()
        assert 'app=hueyd.contrib.djhuey.daemon.huey' in text, text
        assert 'workers=3' in text and 'delay=0.02' in text and 'graceful_timeout=4.0' in text
        assert ' DEBUG ' in text  # -V
        stop_gracefully(daemon)
    finally:
        daemon.stop()


def test_django_tasks_run_in_the_daemon(project_dir):
    daemon = start_run_huey(project_dir)
    try:
        daemon.wait_ready(1)
        result = django_tasks_demo(project_dir)
        pools = daemon.pool_pids()
        assert result['immediate'] is False
        assert result['first']['later'] == 'READY'  # due a second later
        multiply = result['multiply']
        assert (multiply['status'], multiply['value']['product']) == ('SUCCESSFUL', 42)
        assert multiply['value']['pid'] in pools and multiply['attempts'] == 1
        assert multiply['fetched'] == 'SUCCESSFUL'  # Task.get_result() from another process
        assert result['fail']['status'] == 'FAILED' and result['fail']['errors'] == ['ValueError']
        assert result['attempt']['value'] == 1 and result['orders'] == ['tea']  # context, db
        later = result['later']
        assert later['status'] == 'SUCCESSFUL' and later['started_after_eta'], later
        assert later['value']['product'] == 6
        stop_gracefully(daemon)
    finally:
        daemon.stop()


def test_django_tasks_run_inline_under_debug(project_dir):
    result = django_tasks_demo(project_dir, '--no-later', DJANGO_DEBUG='1')
    assert result['immediate'] is True
    assert result['first'] == {'multiply': 'SUCCESSFUL', 'fail': 'FAILED', 'attempt': 'SUCCESSFUL'}
    assert result['multiply']['value']['product'] == 42
    assert result['fail']['errors'] == ['ValueError'] and result['orders'] == ['tea']


def test_run_huey_errors_and_create_huey_tables(project_dir):
    done = manage(project_dir, 'run_huey', '-w', '0', **DJHUEY)
    assert done.returncode == 78 and 'Traceback' not in done.stderr
    assert "run_huey option 'workers' = '0' is not valid" in done.stderr, done.stderr
    done = manage(project_dir, 'run_huey', DJANGO_HUEY_WORKERS='many', **DJHUEY)
    assert done.returncode == 78
    assert "settings.HUEY['consumer']['workers'] = 'many'" in done.stderr, done.stderr
    done = manage(project_dir, 'create_huey_tables', **DJHUEY)
    assert (done.returncode, done.stdout.strip()) == (0, 'huey tables created.'), done.stderr

