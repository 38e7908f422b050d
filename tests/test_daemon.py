"""The hueyd daemon end to end: real ``python -m hueyd`` processes, real signals.

Reload (SIGHUP) tests are in test_daemon_reload.py.  The harness is
tests/daemon_harness.py.
"""
import collections
import os
import signal
import time

import psutil
import pytest

from daemon_harness import (alive, app, make_app, notify_socket, start_daemon,  # noqa: F401
                            stop_gracefully, write_config)
from hueyd.daemon.child import FAST_STOP_TIMEOUT

# -k/-w/--processes -> number of pool processes.
POOLS = {'thread': 1, 'greenlet': 1, 'process': 2, 'asyncio': 1}
WORKER_TYPES = ['thread', 'process', 'greenlet', 'asyncio']


# -- tasks run ----------------------------------------------------------------

@pytest.mark.parametrize('storage', ['sqlite', 'redis', 'postgres', 'sentinel', 'cluster'])
@pytest.mark.parametrize('worker_type', WORKER_TYPES)
def test_tasks_run(make_app, start_daemon, worker_type, storage):
    """Plain and async tasks, whatever the worker type."""
    app = make_app(storage)
    daemon = start_daemon(app, '-k', worker_type, '-w', '2')
    daemon.wait_ready(POOLS[worker_type])
    tags = ['t%d' % i for i in range(10)]
    for tag in tags:
        (app.arecord if int(tag[1:]) % 2 else app.record)(tag)
    daemon.wait_until(lambda: all(app.recorded(tag) for tag in tags),
                      message='not every task ran')
    pool_pids = set(daemon.pool_pids())
    ran_in = {pid for tag in tags for pid in app.recorded(tag)}
    assert ran_in <= pool_pids, 'tasks ran outside the pool processes %s: %s' % (pool_pids, ran_in)
    assert all(len(app.recorded(tag)) == 1 for tag in tags), 'a task ran twice: %r' % app.lines()
    assert app.pending() == 0
    stop_gracefully(daemon)


def test_delayed_task_runs(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', '-s', '1')
    daemon.wait_ready(1)
    app.record.schedule(args=('late',), delay=1)
    daemon.wait_until(lambda: app.recorded('late'), message='the delayed task did not run')
    stop_gracefully(daemon)


# -- process tree and titles --------------------------------------------------

@pytest.mark.parametrize('args, pools', [
    (('-k', 'process', '-w', '4'), 4),
    (('-k', 'thread', '-w', '8'), 1),
    (('--processes', '2', '-k', 'thread', '-w', '3'), 2),
    (('-k', 'greenlet', '-w', '20'), 1),
    (('-k', 'asyncio', '-w', '100'), 1),
], ids=['process-4', 'thread-8', 'thread-3x2', 'greenlet-20', 'asyncio-100'])
def test_process_tree(app, start_daemon, args, pools):
    daemon = start_daemon(app, *args)
    daemon.wait_ready(pools)
    assert daemon.title().startswith('hueyd: master'), daemon.title()
    titles = [title for _, title in daemon.descendants()]
    # Nothing else than the pools and the scheduler (e.g. no stray helper process).
    assert len(titles) == pools + 1, titles
    stop_gracefully(daemon)


# -- stopping -----------------------------------------------------------------

def test_sigint_lets_running_task_finish_and_takes_no_new_one(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', '--graceful-timeout', '10')
    daemon.wait_ready(1)
    app.slow('a', 1.5)
    daemon.wait_until(lambda: app.count('start', 'a'))
    app.record('queued')            # the only worker is busy: this one waits in the queue
    daemon.send(signal.SIGINT)
    status = daemon.wait(15)
    assert status == 0, daemon.describe()
    assert app.count('done', 'a') == 1, 'the running task did not finish: %r' % app.lines()
    assert not app.events('interrupted'), app.lines()
    assert not app.recorded('queued'), 'a new task started during the graceful stop'
    assert app.pending() == 1
    daemon.wait_no_leftovers()


def test_with_graceful_signal_term_sigterm_lets_running_task_finish(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', '--graceful-signal', 'TERM')
    daemon.wait_ready(1)
    app.slow('a', 1.5)
    daemon.wait_until(lambda: app.count('start', 'a'))
    daemon.send(signal.SIGTERM)
    assert daemon.wait(15) == 0, daemon.describe()
    assert app.count('done', 'a') == 1 and not app.events('interrupted'), app.lines()


def test_sigint_falls_back_to_fast_stop_after_graceful_timeout(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', '--graceful-timeout', '1')
    daemon.wait_ready(1)
    result = app.slow_once('a', 60)
    daemon.wait_until(lambda: app.count('start', 'a'))
    sent = time.monotonic()
    daemon.send(signal.SIGINT)
    status = daemon.wait(15)
    took = time.monotonic() - sent
    assert status == 0, daemon.describe()
    assert took < 10, 'graceful timeout 1s, but the stop took %.1fs' % took
    assert not app.count('done', 'a')
    assert [tid for tid, _ in app.events('interrupted')] == [result.id], app.lines()
    assert app.pending() == 1, 'the interrupted task was not put back on the queue'
    daemon.wait_no_leftovers()


def test_second_sigint_escalates_to_fast_stop(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', '--graceful-timeout', '60')
    daemon.wait_ready(1)
    result = app.slow_once('a', 60)
    daemon.wait_until(lambda: app.count('start', 'a'))
    daemon.send(signal.SIGINT)
    daemon.wait_until(lambda: 'graceful stop' in daemon.log_text())
    assert daemon.running, 'exited on the first SIGINT with a task running\n' + daemon.describe()
    sent = time.monotonic()
    daemon.send(signal.SIGINT)
    status = daemon.wait(15)
    took = time.monotonic() - sent
    assert status == 0, daemon.describe()
    assert took < 10, 'second SIGINT: still took %.1fs to stop' % took
    assert [tid for tid, _ in app.events('interrupted')] == [result.id], app.lines()
    assert app.pending() == 1
    daemon.wait_no_leftovers()


# Every worker type on SQLite; a sync and an async task on every other shared storage, whose
# requeue of an interrupted task is its own.
@pytest.mark.parametrize('storage, worker_type, task', [
    ('sqlite', 'thread', 'slow_once'), ('sqlite', 'process', 'slow_once'),
    ('sqlite', 'greenlet', 'slow_once'), ('sqlite', 'asyncio', 'slow_once'),
    ('sqlite', 'asyncio', 'aslow_once'), ('sqlite', 'thread', 'aslow_once'),
    ('sqlite', 'process', 'aslow_once'), ('sqlite', 'greenlet', 'aslow_once'),
] + [(storage, worker_type, task) for storage in ('redis', 'postgres', 'sentinel', 'cluster')
     for worker_type, task in (('thread', 'slow_once'), ('asyncio', 'aslow_once'))])
def test_sigterm_interrupts_requeues_and_next_start_reruns(make_app, start_daemon, storage,
                                                           worker_type, task):
    app = make_app(storage)
    daemon = start_daemon(app, '-k', worker_type, '-w', '1')
    daemon.wait_ready(1)
    result = getattr(app, task)('a', 60)
    daemon.wait_until(lambda: app.count('start', 'a'))
    [(_, task_pid)] = app.events('start', 'a')
    sent = time.monotonic()
    daemon.send(signal.SIGTERM)
    status = daemon.wait(15)
    took = time.monotonic() - sent
    assert status == 0, daemon.describe()
    assert took < 10, 'SIGTERM (fast stop) took %.1fs' % took
    daemon.wait_no_leftovers()
    assert not app.count('done', 'a')
    interrupted = app.events('interrupted')
    assert [tid for tid, _ in interrupted] == [result.id], \
        'SIGNAL_INTERRUPTED did not fire once for the task: %r\n%s' % (app.lines(), daemon.describe())
    assert interrupted[0][1] == task_pid, 'SIGNAL_INTERRUPTED fired outside the pool process'
    assert app.pending() == 1, 'the interrupted task is not back on the queue'

    again = start_daemon(app, '-k', worker_type, '-w', '1')
    again.wait_until(lambda: app.count('done', 'a'), message='the requeued task did not run again')
    assert app.count('start', 'a') == 2
    stop_gracefully(again)


def test_sigterm_interrupts_only_the_tasks_own_code(app, start_daemon):
    """An exception from the SIGTERM handler surfacing in the pool's own steps could leave
    a lock held and hang the pool on its way out: the step under way when SIGTERM comes (a
    pre-execute hook here) finishes, and the task's code does not start."""
    daemon = start_daemon(app, '-k', 'process', '-w', '1')
    daemon.wait_ready(1)
    result = app.gated('g')
    daemon.wait_until(lambda: app.count('gate', 'g'))
    daemon.send(signal.SIGTERM)
    daemon.wait_until(lambda: 'stopping: fast stop requested' in daemon.log_text())
    open(os.path.join(app.dir, 'open-g'), 'w').close()
    assert daemon.wait(15) == 0, daemon.describe()
    assert app.count('gate-passed', 'g') == 1, 'the hook was interrupted: %r' % app.lines()
    assert not app.count('start', 'g'), 'the task started during a fast stop'
    assert [tid for tid, _ in app.events('interrupted')] == [result.id], app.lines()
    assert app.pending() == 1, 'the task is not back on the queue'


def test_kill_master_leaves_no_orphans(app, start_daemon):
    daemon = start_daemon(app, '-k', 'process', '-w', '2')
    daemon.wait_ready(2)
    children = [proc for proc, _ in daemon.descendants()]
    assert len(children) == 3
    daemon.send(signal.SIGKILL)
    assert daemon.wait(5) == -signal.SIGKILL
    try:
        psutil.wait_procs([p for p in children if alive(p)], timeout=10)
    except psutil.Error:
        pass
    survivors = [p for p in children if alive(p)]
    assert not survivors, 'children outlived the master by 10s: %s\n%s' % (
        [(p.pid, p.status()) for p in survivors], daemon.describe())
    daemon.wait_no_leftovers(timeout=2)


def test_a_pool_whose_task_ignores_sigterm_exits_after_its_master_is_killed(app, start_daemon):
    daemon = start_daemon(app, '-k', 'process', '-w', '1')
    [pool_pid] = daemon.wait_ready(1)
    pool = psutil.Process(pool_pid)
    app.stubborn('s')
    daemon.wait_until(lambda: app.count('start', 's'))
    daemon.send(signal.SIGKILL)
    assert daemon.wait(5) == -signal.SIGKILL
    try:
        daemon.wait_until(lambda: app.count('swallowed', 's'), need_running=False,
                          message='the task was not interrupted')
        _, left = psutil.wait_procs([pool], timeout=FAST_STOP_TIMEOUT + 10)
        assert not left, 'the pool outlived its master by %ss' % (FAST_STOP_TIMEOUT + 10)
    finally:
        if alive(pool):
            pool.kill()


# -- supervision --------------------------------------------------------------

def test_killed_pool_is_replaced(app, start_daemon):
    daemon = start_daemon(app, '-k', 'process', '-w', '2', '-c', '0.5', '--worker-timeout', '3')
    old = daemon.wait_ready(2)
    victim = old[0]
    os.kill(victim, signal.SIGKILL)
    daemon.wait_until(lambda: len(daemon.pools()) == 2 and victim not in daemon.pool_pids(),
                      message='the killed pool %d was not replaced' % victim)
    new = daemon.pool_pids()
    assert old[1] in new, 'the surviving pool was replaced as well: %s -> %s' % (old, new)
    tags = ['k%d' % i for i in range(6)]
    for tag in tags:
        app.record(tag)
    daemon.wait_until(lambda: all(app.recorded(tag) for tag in tags))
    stop_gracefully(daemon)


def test_stopped_pool_is_killed_after_worker_timeout(app, start_daemon):
    daemon = start_daemon(app, '-k', 'process', '-w', '1', '-c', '0.5', '--worker-timeout', '3')
    [stuck] = daemon.wait_ready(1)
    stuck_proc = psutil.Process(stuck)
    stopped = time.monotonic()
    os.kill(stuck, signal.SIGSTOP)
    daemon.wait_until(lambda: daemon.pools() and stuck not in daemon.pool_pids(), timeout=20,
                      message='the SIGSTOPped pool %d was not replaced' % stuck)
    took = time.monotonic() - stopped
    assert took > 1, 'replaced %.1fs after SIGSTOP, before --worker-timeout 3' % took
    daemon.wait_until(lambda: not alive(stuck_proc), timeout=10,
                      message='the stopped pool %d was replaced but not killed' % stuck)
    app.record('after')
    daemon.wait_until(lambda: app.recorded('after'))
    stop_gracefully(daemon)


def test_max_tasks_recycles_pool(app, start_daemon):
    daemon = start_daemon(app, '-k', 'process', '-w', '1', '--max-tasks', '3')
    daemon.wait_ready(1)
    tags = ['m%d' % i for i in range(9)]
    for tag in tags:
        app.record(tag)
    daemon.wait_until(lambda: all(app.recorded(tag) for tag in tags),
                      message='not all 9 tasks completed')
    per_pid = collections.Counter(pid for tag in tags for pid in app.recorded(tag))
    assert len(per_pid) > 1, 'one pool ran all 9 tasks despite --max-tasks 3: %s' % per_pid
    assert max(per_pid.values()) <= 3, 'a pool ran more than --max-tasks 3: %s' % per_pid
    stop_gracefully(daemon)


def test_ttin_ttou_change_process_pools(app, start_daemon):
    daemon = start_daemon(app, '-k', 'process', '-w', '2')
    before = daemon.wait_ready(2)
    daemon.send(signal.SIGTTIN)
    daemon.wait_until(lambda: len(daemon.pools()) == 3, message='SIGTTIN: no third pool')
    assert set(before) <= set(daemon.pool_pids()), 'SIGTTIN replaced existing pools'
    daemon.send(signal.SIGTTOU)
    daemon.wait_until(lambda: len(daemon.pools()) == 2, message='SIGTTOU: still 3 pools')
    daemon.send(signal.SIGTTOU)
    daemon.wait_until(lambda: len(daemon.pools()) == 1, message='second SIGTTOU: not 1 pool')
    assert daemon.scheduler() is not None
    app.record('after')
    daemon.wait_until(lambda: app.recorded('after'))
    stop_gracefully(daemon)


def test_ttin_restarts_a_thread_pool_with_one_thread_more(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1')
    [old] = daemon.wait_ready(1)
    daemon.send(signal.SIGTTIN)   # README: the pools restart with one thread more

    def replaced():
        pids = daemon.pool_pids()
        return len(pids) == 1 and old not in pids and pids
    [new] = daemon.wait_until(replaced, message='SIGTTIN did not replace the thread pool')
    app.slow('a', 1.5)
    app.slow('b', 1.5)
    daemon.wait_until(lambda: app.count('done', 'a') and app.count('done', 'b'), timeout=20)
    assert [(kind, pid) for kind, _, pid in app.lines()] == \
        [('start', str(new))] * 2 + [('done', str(new))] * 2, 'not two at once: %r' % app.lines()
    stop_gracefully(daemon)


# -- files, logs and systemd ----------------------------------------------------

def test_pidfile_written_and_removed(app, start_daemon):
    pidfile = os.path.join(app.dir, 'hueyd.pid')
    daemon = start_daemon(app, '--pidfile', pidfile)
    daemon.wait_ready(1)

    def content():
        try:
            with open(pidfile) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None
    daemon.wait_until(lambda: content() == str(daemon.pid),
                      message='pidfile holds %r, not the master pid' % content())
    stop_gracefully(daemon)
    assert not os.path.exists(pidfile), 'pidfile left behind after exit'


def _read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def test_usr1_reopens_logfile(app, start_daemon):
    logfile = os.path.join(app.dir, 'hueyd.log')
    daemon = start_daemon(app, '-v', '-l', logfile)
    daemon.wait_ready(1, booted=True)
    children = sorted(proc.pid for proc, _ in daemon.descendants())
    daemon.wait_until(lambda: _read(logfile), message='nothing logged to %s' % logfile)
    os.rename(logfile, logfile + '.1')
    daemon.send(signal.SIGUSR1)
    pool = daemon.pool_pids()[0]
    # The pool reopens from its heartbeat thread, a moment after the signal; it says so.
    daemon.wait_until(lambda: 'pool %d: log files reopened' % pool in _read(logfile),
                      message='SIGUSR1: the pool never reopened its log file')
    result = app.record('after-usr1')      # the pool logs "executing app.record: <id>"
    daemon.wait_until(lambda: app.recorded('after-usr1'))
    daemon.wait_until(lambda: result.id in _read(logfile),
                      message='SIGUSR1: the pool still logs to the renamed file')
    assert sorted(proc.pid for proc, _ in daemon.descendants()) == children, \
        'SIGUSR1 replaced children\n' + daemon.describe()
    stop_gracefully(daemon)


def test_usr1_while_children_boot_does_not_kill_them(app, start_daemon):
    """logrotate may send SIGUSR1 at any time, e.g. while a reload starts new children."""
    logfile = os.path.join(app.dir, 'hueyd.log')
    daemon = start_daemon(app, '-k', 'process', '-w', '2', '-l', logfile)
    daemon.wait_ready(2, booted=False)     # as early as the children are visible
    children = [proc for proc, _ in daemon.descendants()]
    daemon.send(signal.SIGUSR1)
    daemon.wait_ready(2, booted=True)
    app.record('after')
    daemon.wait_until(lambda: app.recorded('after'))
    dead = [proc.pid for proc in children if not alive(proc)]
    assert not dead, 'SIGUSR1 killed children %s while they booted\n%s' % (dead, daemon.describe())
    stop_gracefully(daemon)


def test_sd_notify_start_sends_mainpid_and_ready_with_status(app, start_daemon, notify_socket):
    daemon = start_daemon(app, env={'NOTIFY_SOCKET': notify_socket.path})
    daemon.wait_ready(1)
    daemon.wait_until(lambda: 'READY' in notify_socket.keys(), message='no READY=1')
    sent = {key: value for m in notify_socket.received for key, value in m.items()}
    assert sent['MAINPID'] == str(daemon.pid), notify_socket.received
    ready = next(m for m in notify_socket.received if 'READY' in m)
    assert ready['READY'] == '1' and ready['STATUS'], notify_socket.received
    assert 'STOPPING' not in sent and 'RELOADING' not in sent


def test_sd_notify_reload_then_stop(app, start_daemon, notify_socket):
    daemon = start_daemon(app, env={'NOTIFY_SOCKET': notify_socket.path})
    daemon.wait_ready(1)
    daemon.wait_until(lambda: 'READY' in notify_socket.keys(), message='no READY=1')
    seen = len(notify_socket.keys())
    daemon.send(signal.SIGHUP)

    def reloaded():
        later = notify_socket.keys()[seen:]
        return 'RELOADING' in later and 'READY' in later[later.index('RELOADING'):]
    daemon.wait_until(reloaded, message='SIGHUP: no RELOADING=1 then READY=1: %r'
                      % notify_socket.received)

    daemon.send(signal.SIGINT)
    assert daemon.wait(15) == 0
    assert 'STOPPING' in notify_socket.keys(), notify_socket.received
    daemon.wait_no_leftovers()


def test_invalid_config_exits_78(app, start_daemon):
    config = write_config(os.path.join(app.dir, 'bad.conf'), workers=2, worker_type='fork')
    daemon = start_daemon(app, '--config', config)
    status = daemon.wait(15)
    err = daemon.stderr_text()
    assert status == 78, 'exit status %s\n%s' % (status, err)
    assert 'worker_type' in err and 'fork' in err, err
    assert config in err and 'line 3' in err, err
    daemon.wait_no_leftovers()


def test_unimportable_app_fails_with_hint(app, start_daemon):
    daemon = start_daemon(app, app_path='no_such_module_xyz.huey')
    status = daemon.wait(20)
    err = daemon.stderr_text()
    assert status == 1, 'exit status %s\n%s' % (status, err)  # README: "exits with status 1"
    assert 'no_such_module_xyz' in err, err
    assert 'PYTHONPATH' in err, err
    assert os.path.realpath(app.dir) in err, 'the working directory is not named:\n' + err
    daemon.wait_no_leftovers()


@pytest.mark.parametrize('broken, culprit', [
    ('import requestz\n', 'import requestz'),        # a module the app imports is missing
    ('settings = {}\nsettings["KEY"]\n', 'settings["KEY"]'),   # an error inside the app
    ('def broken(:\n    pass\n', 'def broken(:'),     # a syntax error, shown with its caret
])
def test_an_app_that_fails_inside_shows_its_own_traceback_and_no_path_advice(
        app, start_daemon, broken, culprit):
    with open(os.path.join(app.dir, 'badapp.py'), 'w') as f:
        f.write(broken)
    daemon = start_daemon(app, app_path='badapp.huey')
    assert daemon.wait(20) == 1
    err = daemon.stderr_text()
    assert 'badapp.py", line' in err and culprit in err, err
    assert 'the error above happened inside it' in err, err
    assert 'PYTHONPATH' not in err, 'path advice for a module that was found:\n' + err
