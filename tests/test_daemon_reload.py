"""SIGHUP: re-read the config file, replace the children, keep the master.

Settings under test live in the config file only: the command line would win
over it.  The harness is tests/daemon_harness.py.
"""
import os
import signal
import time

from daemon_harness import (alive, app, make_app, start_daemon, stop_gracefully,  # noqa: F401
                            write_config)


def children_pids(daemon):
    return sorted(proc.pid for proc, _ in daemon.descendants())


def test_valid_config_replaces_children_with_new_settings(app, start_daemon):
    config = os.path.join(app.dir, 'hueyd.conf')
    write_config(config, worker_type='process', workers=2)
    daemon = start_daemon(app, '--config', config)
    old_pools = daemon.wait_ready(2)
    old_scheduler = daemon.scheduler().pid
    old_procs = [proc for proc, _ in daemon.descendants()]
    master = daemon.master

    write_config(config, worker_type='process', workers=3)
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: len(daemon.pools()) == 3 and not set(old_pools) & set(daemon.pool_pids())
                      and daemon.scheduler() is not None,
                      message='SIGHUP with workers = 3: not 3 new pools')
    daemon.wait_until(lambda: not any(alive(p) for p in old_procs), timeout=10,
                      message='old children still alive after the reload')
    assert daemon.scheduler().pid != old_scheduler, 'the scheduler was not replaced'
    assert master.is_running() and daemon.running and master.pid == daemon.pid
    assert daemon.title().startswith('hueyd: master')

    # Another worker type: thread with 3 workers is one pool process.
    write_config(config, worker_type='thread', workers=3)
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: len(daemon.pools()) == 1 and daemon.scheduler() is not None
                      and len(daemon.descendants()) == 2,
                      message='SIGHUP with worker_type = thread: not 1 pool + scheduler')
    app.record('after')
    daemon.wait_until(lambda: app.recorded('after'))
    assert daemon.pid == master.pid
    stop_gracefully(daemon)


def test_reload_lets_running_task_finish_in_old_pool(app, start_daemon):
    config = os.path.join(app.dir, 'hueyd.conf')
    write_config(config, worker_type='thread', workers=1)
    daemon = start_daemon(app, '--config', config, '--graceful-timeout', '10')
    [old_pool] = daemon.wait_ready(1)
    app.slow('a', 2)
    daemon.wait_until(lambda: app.count('start', 'a'))
    daemon.send(signal.SIGHUP)
    # The new pool takes tasks while the old one finishes its task.
    app.record('during')
    daemon.wait_until(lambda: app.recorded('during'), message='no new pool took tasks during reload')
    assert app.recorded('during')[0] != old_pool, 'the retiring pool took a new task'
    daemon.wait_until(lambda: app.count('done', 'a'), message='the running task did not finish')
    assert not app.events('interrupted'), 'the reload interrupted a task: %r' % app.lines()
    daemon.wait_until(lambda: daemon.pool_pids() and old_pool not in daemon.pool_pids()
                      and len(daemon.pools()) == 1,
                      message='the old pool did not retire')
    assert app.pending() == 0
    stop_gracefully(daemon)


def test_reload_imports_application_code_anew(app, start_daemon):
    daemon = start_daemon(app, '-k', 'process', '-w', '1')
    daemon.wait_ready(1)
    app.version('before')
    daemon.wait_until(lambda: app.versions('before'))
    assert app.versions('before') == [1]
    old = set(children_pids(daemon))
    app.set_version(2)
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: not old & set(children_pids(daemon)) and daemon.pools(),
                      message='SIGHUP did not replace the children')
    app.version('after')
    daemon.wait_until(lambda: app.versions('after'))
    assert app.versions('after') == [2], 'the new pool runs the old code'
    stop_gracefully(daemon)


def test_invalid_config_on_reload_keeps_children(app, start_daemon):
    config = os.path.join(app.dir, 'hueyd.conf')
    write_config(config, worker_type='process', workers=2)
    daemon = start_daemon(app, '--config', config)
    daemon.wait_ready(2)
    before = children_pids(daemon)
    logged = len(daemon.log_text())

    write_config(config, workers=2, worker_type='fork')
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: 'worker_type' in daemon.log_text()[logged:],
                      message='SIGHUP with an invalid file: no error naming worker_type logged')
    error = daemon.log_text()[logged:]
    assert 'line 3' in error, 'the error does not name the line:\n' + error
    app.record('after')
    daemon.wait_until(lambda: app.recorded('after'), message='tasks stopped running')
    assert children_pids(daemon) == before, 'children replaced despite the invalid config'
    assert daemon.running

    # A fixed file is picked up by the next SIGHUP.
    write_config(config, worker_type='process', workers=1)
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: len(daemon.pools()) == 1 and not set(before) & set(children_pids(daemon))
                      and daemon.scheduler() is not None,
                      message='a valid config after an invalid one was not applied')
    stop_gracefully(daemon)


def test_reload_storm_ends_with_exactly_the_configured_children(app, start_daemon):
    config = os.path.join(app.dir, 'hueyd.conf')
    write_config(config, worker_type='process', workers=2)
    daemon = start_daemon(app, '--config', config)
    daemon.wait_ready(2)
    for _ in range(20):
        daemon.send(signal.SIGHUP)
        time.sleep(0.1)             # 20 SIGHUPs spread over 2 seconds
    # A barrier: pending signals are delivered lowest number first, and the master handles
    # them in that order, so once SIGUSR1 is logged the last SIGHUP's reload has begun.
    daemon.send(signal.SIGUSR1)
    daemon.wait_until(lambda: 'SIGUSR1: log files reopened' in daemon.log_text())
    assert daemon.running, daemon.describe()

    def settled():
        log = daemon.log_text()
        last_reload = log.rfind('SIGHUP: reloading the configuration')
        tree = daemon.descendants()
        session = daemon.session_processes()
        return ('reloaded:' in log[last_reload:] and len(daemon.pools()) == 2
                and daemon.scheduler() is not None and len(tree) == 3 and len(session) == 3)
    daemon.wait_until(settled, timeout=30,
                      message='after 20 SIGHUPs: not exactly 2 pools + 1 scheduler')
    current = {proc.pid for proc, _ in daemon.descendants()}
    orphans = [p for p in daemon.leftovers() if p.pid not in current and p.pid != daemon.pid]
    assert not orphans, 'orphans: %s' % [(p.pid, p.cmdline()) for p in orphans]
    for proc in daemon.session_processes():
        assert proc.ppid() == daemon.pid, 'process %d not a child of the master' % proc.pid
    tags = ['s%d' % i for i in range(6)]
    for tag in tags:
        app.record(tag)
    daemon.wait_until(lambda: all(app.recorded(tag) for tag in tags))
    assert all(len(app.recorded(tag)) == 1 for tag in tags), app.lines()
    stop_gracefully(daemon)
