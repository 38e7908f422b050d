"""The poison suite (issue 11): tasks that try to hurt the daemon, on a real daemon, on Redis and SQLite.

Every test ends the same way: the master that started is still running, the caller's
``get()`` raised TaskException within a bounded time, and a good task enqueued
after the poison still ran. A message that could not be run to completion
(its worker died, or it names no known task) is in the dead letters with why;
a task that raised SystemExit failed like a task that raised anything else.
"""
import os
import signal
import time

import pytest

from daemon_harness import APP_SOURCE, App, app_factory, start_daemon  # noqa: F401 (a fixture)
from hueyd.exceptions import TaskException

# Sentinel is RedisStorage on a plain master (test_storage covers it); a cluster lays its
# keys out differently.
STORAGES = ['sqlite', 'redis', 'cluster']
GET_TIMEOUT = 60  # seconds: three crashes, each followed by a new pool's boot, on a busy machine
MAX_DELIVERIES = 3

POISON_SOURCE = '''

import ctypes
import sys


@huey.task()
def segfault(tag):
    write('run', tag, os.getpid())
    ctypes.string_at(0)


@huey.task()
def hard_exit(tag, code):
    write('run', tag, os.getpid())
    os._exit(code)


@huey.task()
def hang(tag):
    write('run', tag, os.getpid())
    ctypes.PyDLL(None).sleep(60)  # holds the GIL: every thread stops, the heartbeat's too


@huey.task()
def soft_exit(tag, code):
    write('run', tag, os.getpid())
    sys.exit(code)
'''


class PoisonApp(App):
    """The harness's app plus tasks that segfault or exit."""

    def __init__(self, directory, url):
        super().__init__(directory, url)
        self.huey.storage.close()
        with open(self.path, 'w') as f:
            f.write(APP_SOURCE + POISON_SOURCE)
        self.module = self._load()
        self.huey = self.module.huey
        if url.startswith('redis'):
            self.huey.storage.blocking = False

    def runs(self, tag):
        return self.count('run', tag)


@pytest.fixture
def make_poison_app(tmp_path, request):
    yield from app_factory(tmp_path, request, PoisonApp)


def get_error(daemon, result):
    """The TaskException that ``result.get()`` raises within GET_TIMEOUT."""
    try:
        value = result.get(blocking=True, timeout=GET_TIMEOUT)
    except TaskException as exc:
        return exc
    raise AssertionError('get() returned %r instead of raising\n%s' % (value, daemon.describe()))


def dead_letter_of(app, task_id):
    letters = [letter for letter in app.huey.dead_letters() if letter.task_id == task_id]
    assert len(letters) == 1, 'dead letters: %r' % app.huey.dead_letters()
    return letters[0]


def running_daemon(make_poison_app, start_daemon, storage, *args):
    """A poison app on ``storage`` and a daemon running it, its pools booted."""
    app = make_poison_app(storage)
    daemon = start_daemon(app, *args)
    pools = int(args[args.index('-w') + 1]) if 'process' in args else 1
    daemon.wait_ready(pools, booted=True)
    return app, daemon


def assert_still_serving(daemon, app, tag='good'):
    """The master that started is still the one running (its pid is the daemon's), and works."""
    assert daemon.running, daemon.describe()
    app.record(tag)
    daemon.wait_until(lambda: app.recorded(tag), timeout=GET_TIMEOUT,
                      message='a good task after the poison did not run')


@pytest.mark.parametrize('storage', STORAGES)
def test_a_task_that_segfaults_its_worker_is_dead_lettered_after_max_deliveries(
        make_poison_app, start_daemon, storage):
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'process', '-w', '2', '--max-deliveries', str(MAX_DELIVERIES))
    result = app.segfault('crash')
    error = get_error(daemon, result)
    assert 'SIGSEGV' in str(error) and 'dead letter' in str(error), str(error)
    assert app.runs('crash') == MAX_DELIVERIES, daemon.describe()
    letter = dead_letter_of(app, result.id)
    assert 'SIGSEGV' in letter.reason and '%d time' % MAX_DELIVERIES in letter.reason, letter.reason
    assert_still_serving(daemon, app)


@pytest.mark.parametrize('storage', STORAGES)
def test_a_task_that_calls_os_exit_0_counts_as_a_crash_not_a_recycled_pool(
        make_poison_app, start_daemon, storage):
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'process', '-w', '2', '--max-deliveries', '2')
    result = app.hard_exit('exit0', 0)
    error = get_error(daemon, result)
    assert 'exit 0 while running a task' in str(error), str(error)
    assert app.runs('exit0') == 2, daemon.describe()
    assert 'exit 0' in dead_letter_of(app, result.id).reason
    assert_still_serving(daemon, app)


@pytest.mark.parametrize('storage', STORAGES)
def test_a_segfault_in_a_thread_pool_counts_for_the_task_that_was_running(
        make_poison_app, start_daemon, storage):
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'thread', '-w', '2', '--max-deliveries', '1')
    result = app.segfault('crash')
    error = get_error(daemon, result)
    assert 'SIGSEGV' in str(error), str(error)
    assert app.runs('crash') == 1, daemon.describe()
    dead_letter_of(app, result.id)
    assert_still_serving(daemon, app)


@pytest.mark.parametrize('storage', STORAGES)
def test_a_task_that_hangs_its_pool_leaves_its_stack_in_the_log_and_is_dead_lettered(
        make_poison_app, start_daemon, storage):
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'thread', '-w',
                                 '1', '--worker-timeout', '1', '-c', '0.2', '--max-deliveries', '1')
    result = app.hang('stuck')
    error = get_error(daemon, result)
    assert 'SIGABRT' in str(error), str(error)
    log = daemon.log_text()
    assert 'asking it for its stacks (SIGABRT)' in log, log
    assert 'app.py", line' in log and 'in hang' in log, 'no stack of the hung task in the log\n' + log
    dead_letter_of(app, result.id)
    assert_still_serving(daemon, app)


@pytest.mark.parametrize('storage', STORAGES)
def test_sys_exit_3_in_tasks_is_their_error_and_never_stops_the_daemon(
        make_poison_app, start_daemon, storage):
    """3 is the status of a child that cannot load the app; a task must not be taken for one."""
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'process', '-w', '2')
    results = [app.soft_exit('exit3-%d' % n, 3) for n in range(4)]
    for result in results:
        assert 'SystemExit(3)' in str(get_error(daemon, result))
    assert [app.runs('exit3-%d' % n) for n in range(4)] == [1] * 4
    assert app.huey.dead_letters() == []  # a failed task, not a message that could not run
    assert 'could not load' not in daemon.log_text()
    assert_still_serving(daemon, app)


@pytest.mark.parametrize('storage', STORAGES)
def test_sys_exit_0_in_a_thread_worker_is_the_task_error_and_the_worker_goes_on(
        make_poison_app, start_daemon, storage):
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'thread', '-w', '1')
    pools = daemon.pool_pids()
    error = get_error(daemon, app.soft_exit('exit0', 0))
    assert 'SystemExit(0)' in str(error), str(error)
    assert_still_serving(daemon, app)
    assert daemon.pool_pids() == pools, 'the pool was replaced\n' + daemon.describe()


@pytest.mark.parametrize('storage', STORAGES)
def test_a_result_that_cannot_be_stored_becomes_an_error_for_the_caller(
        make_poison_app, start_daemon, storage):
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'thread', '-w', '1')
    result = app.unstorable('lambda')
    error = get_error(daemon, result)
    assert 'could not be stored' in str(error), str(error)
    assert_still_serving(daemon, app)


@pytest.mark.parametrize('storage', STORAGES)
def test_a_message_for_an_unknown_task_is_dead_lettered_with_an_error_for_the_caller(
        make_poison_app, start_daemon, storage):
    app, daemon = running_daemon(make_poison_app, start_daemon, storage, '-k', 'thread', '-w', '1')

    @app.huey.task(name='only_in_the_caller')  # the daemon's copy of the app has no such task
    def only_in_the_caller():
        return 1

    result = only_in_the_caller()
    error = get_error(daemon, result)
    assert 'only_in_the_caller not found' in str(error), str(error)
    letter = dead_letter_of(app, result.id)
    assert letter.task.endswith('.only_in_the_caller') and 'not found' in letter.reason
    assert_still_serving(daemon, app)


@pytest.mark.parametrize('storage', STORAGES)
def test_a_kill_9_storm_from_the_first_moment_delays_the_start_but_never_stops_it(
        make_poison_app, start_daemon, storage):
    """The OOM killer or an operator killing children while they boot, preflight included."""
    app = make_poison_app(storage)
    daemon = start_daemon(app, '-k', 'process', '-w', '2')
    # The storm lasts until it has killed a preflight (on a loaded machine the master
    # may take seconds to fork the first one), and at least 3 seconds.
    caught = 'died (signal SIGKILL) before it finished loading'
    start, deadline = time.monotonic(), time.monotonic() + 60
    while time.monotonic() < start + 3 or caught not in daemon.log_text():
        assert time.monotonic() < deadline, \
            'the storm never caught the preflight\n' + daemon.describe()
        for proc, _ in daemon.descendants():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    daemon.wait_ready(2, booted=True, timeout=60)
    assert 'could not be loaded' not in daemon.log_text()
    assert_still_serving(daemon, app)
