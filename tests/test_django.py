"""hueyd.contrib.django with a real minimal Django project (tests/django_project): tasks run
through `manage.py run_hueyd` (the daemon, as a subprocess), or inline under DEBUG."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_harness import Daemon, _clean_environ, stop_gracefully
from ops_support import Project

PROJECT = Path(__file__).resolve().parent / 'django_project'


def manage(directory, *args, timeout=60, **env):
    """python manage.py ARGS in the project, its files in ``directory``."""
    return subprocess.run(
        [sys.executable, 'manage.py', *args], cwd=PROJECT, capture_output=True, text=True,
        timeout=timeout, env={**_clean_environ(), 'DJANGO_TEST_DIR': str(directory),
                              'PYTHONDONTWRITEBYTECODE': '1', **env})


@pytest.fixture(scope='module')
def migrated(tmp_path_factory):
    """A database with the shop's tables, made once and copied for each test."""
    directory = tmp_path_factory.mktemp('migrated')
    done = manage(directory, 'migrate', '-v', '0')
    assert done.returncode == 0, done.stderr
    return directory / 'db.sqlite3'


@pytest.fixture
def project_dir(tmp_path, migrated):
    shutil.copy(migrated, tmp_path / 'db.sqlite3')
    return tmp_path


def demo(directory, **env):
    done = manage(directory, 'enqueue_demo', **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_run_hueyd_runs_the_projects_tasks_in_the_daemon(project_dir):
    # -w 3 overrides settings.HUEY['consumer']['workers'] = 2; -w is hueyd's, not Django's.
    daemon = Daemon(Project(project_dir, {'DJANGO_TEST_DIR': str(project_dir)}), cwd=str(PROJECT))
    daemon.argv = [sys.executable, 'manage.py', 'run_hueyd', '-w', '3']
    daemon.start()
    try:
        daemon.wait_ready(1)
        result = demo(project_dir)
        assert result['immediate'] is False and result['queue'] == 'shop'
        assert result['add'] == 3
        pids = daemon.pool_pids()
        assert all(order['pid'] in pids for order in result['orders'])
        # db_task closed the connection the pre-execute hook had opened, and closed it after.
        assert [order['closed_before'] for order in result['orders']] == [True, True]
        log = (project_dir / 'connections.log').read_text().splitlines()
        assert log == ['closed after: True'] * 2
        assert result['paid'] == 1
        assert result['on_commit'] == [None, 1, None]  # run after the commit; never if rolled back
        assert result['in_database'] == [['book', True], ['committed', False], ['pen', False]]
        text = daemon.log_text()
        assert 'pool 1/1 ready: 3 thread worker(s)' in text, text
        for name in ('shop.tasks.add', 'shop.tasks.create_order', 'shop.tasks.confirm'):
            assert name in text  # autodiscovered: the daemon imported shop/tasks.py
        assert 'periodic tasks: every_five_minutes, nightly_cleanup' in text
        stop_gracefully(daemon)
    finally:
        daemon.stop()


def test_debug_runs_tasks_immediately_as_huey_does(project_dir):
    result = demo(project_dir, DJANGO_DEBUG='1')
    assert result['immediate'] is True and result['add'] == 3
    assert result['orders'][0]['pid'] == result['orders'][1]['pid'] != os.getpid()
    assert result['on_commit'] == [None, 1, None]
    assert result['in_database'] == [['book', True], ['committed', False], ['pen', False]]
    assert not (project_dir / 'huey.db').exists(), 'immediate mode wrote to the real storage'


def test_settings_huey_may_be_an_instance(project_dir):
    result = demo(project_dir, DJANGO_DEBUG='1', DJANGO_HUEY_INSTANCE='1')
    assert (result['queue'], result['immediate'], result['add']) == ('shop-instance', True, 3)


def test_configuration_errors_name_the_setting(project_dir):
    done = manage(project_dir, 'check', DJANGO_HUEY_CLASS='nowhere.Huey')
    assert done.returncode != 0
    assert "settings.HUEY['huey_class'] = 'nowhere.Huey' cannot be imported" in done.stderr
    done = manage(project_dir, 'run_hueyd', DJANGO_HUEY_WORKERS='many')
    assert done.returncode == 78 and 'Traceback' not in done.stderr
    assert ("settings.HUEY['consumer']['workers'] = 'many' is not valid; must be a whole number"
            in done.stderr), done.stderr
    done = manage(project_dir, 'run_hueyd', '--help')
    assert done.returncode == 0 and '--metrics-port' in done.stdout
    assert 'manage.py run_hueyd' in done.stdout
