"""hueyctl against running daemons: status, events, dead letters, revoke/restore, flush,
check-config; and the node state the daemon publishes for it."""
import json
import os
import signal
import subprocess
import sys
import time

from daemon_harness import Daemon, app, make_app, start_daemon, write_config  # noqa: F401
from hueyd.nodes import STATE_TTL
from ops_support import add_test_tasks, ctl, hueyctl, hueyctl_argv, hueyctl_env, open_gate
from support import wait_until

FAST = ('-d', '0.01', '-m', '0.1')


def status_json(app):
    code, out, err = ctl(app, 'status', '--json')
    assert code == 0, err
    return json.loads(out)


def busy_workers(status):
    return [(node['node'], pool['pid'], worker) for node in status['nodes']
            for pool in node['pools'] for worker in pool['workers'] if worker['state'] == 'busy']


# -- node state in every storage -----------------------------------------------------

def test_storage_keeps_a_state_until_its_ttl_runs_out_or_it_is_deleted(storage):
    storage.put_state('pool', 'h:1', b'one', 0.2)
    storage.put_state('pool', 'h:2', b'two', 30)
    storage.put_state('node', 'h:0', b'node', 30)
    assert storage.states('pool') == {'h:1': b'one', 'h:2': b'two'}
    assert storage.states('node') == {'h:0': b'node'}
    wait_until(lambda: storage.states('pool') == {'h:2': b'two'}, timeout=5,
               message='a state outlived its ttl')
    storage.put_state('pool', 'h:2', b'renewed', 30)
    assert storage.states('pool') == {'h:2': b'renewed'}
    storage.delete_state('pool', 'h:2')
    assert storage.states('pool') == {} and storage.states('nothing') == {}


# -- status ---------------------------------------------------------------------------

def test_status_shows_every_live_node_and_forgets_one_that_died(make_app, start_daemon, tmp_path):
    app = add_test_tasks(make_app('redis'))
    config = write_config(tmp_path / 'hueyd.conf', app='app.huey', worker_type='thread',
                          workers=2, delay=0.01, max_delay=0.1)
    first = start_daemon(app, '--config', config)
    second = start_daemon(app, '-k', 'process', '-w', '1', *FAST)
    first.wait_ready(1)
    second.wait_ready(1)
    app.huey.storage.enqueue(b'not a message')
    held = app.gate('held')

    def complete(status):
        # A pool publishes its record as soon as it runs, the node record comes from the
        # scheduler, maybe later (a slow machine): until then the node is a stand-in built
        # from its pools' records, without the node's own fields.
        nodes = status['nodes']
        return (len(nodes) == 2 and status['dead_letters'] == 1 and busy_workers(status)
                and all(not n.get('missing_record') and len(n['pools']) == 1 for n in nodes)
                and status)

    status = wait_until(lambda: complete(status_json(app)), timeout=20,
                        message='status never showed both nodes and the busy worker')
    nodes = {node['master_pid']: node for node in status['nodes']}
    assert set(nodes) == {first.pid, second.pid}
    assert nodes[first.pid]['worker_type'] == 'thread' and nodes[first.pid]['app'] == 'app.huey'
    assert [len(pool['workers']) for pool in nodes[first.pid]['pools']] == [2]
    assert [pool['pid'] for pool in nodes[second.pid]['pools']] == second.pool_pids()
    assert nodes[second.pid]['scheduler_pid'] == second.scheduler().pid
    assert all(node['uptime'] >= 0 and node['version'] for node in nodes.values())
    ((node, pool_pid, worker),) = busy_workers(status)
    assert (worker['task'], worker['id']) == ('gate', held.id) and worker['running'] >= 0

    table = hueyctl(app, 'status')
    assert table.returncode == 0, table.stderr
    text = table.stdout
    for expected in ('node %s' % node, 'dead letters 1', 'busy', 'gate', held.id,
                     str(pool_pid), 'process', 'thread'):
        assert expected in text, (expected, text)

    code, out, _ = ctl(app, 'status', '--watch', '--interval', '0.1', '--count', '3')
    assert code == 0 and out.count('tasks/s (last minute)') == 3, out

    open_gate(app, 'held')
    wait_until(lambda: app.count('done', 'held') == 1, timeout=15)

    # kill -9 every process of the second node at once: nothing removes its records...
    os.killpg(second.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # ... so they disappear when their heartbeat expires.
    wait_until(lambda: [n['master_pid'] for n in status_json(app)['nodes']] == [first.pid],
               timeout=STATE_TTL + 10, message='the dead node never disappeared')
    gone_after = time.monotonic() - killed_at   # README: within 5 s (STATE_TTL), + polling
    assert gone_after < STATE_TTL + 2, 'the dead node was listed for %.1fs' % gone_after


# -- events ---------------------------------------------------------------------------

def test_events_follows_the_stream_with_filters_and_json(make_app, start_daemon, tmp_path):
    app = add_test_tasks(make_app('redis'))
    daemon = start_daemon(app, '-k', 'thread', '-w', '2', *FAST)
    daemon.wait_ready(1)
    followers = []
    for name, args in (('lines', ['--task', 'record', '--status', 'finished', '--count', '2']),
                       ('json', ['--json', '--status', 'error-task', '--count', '1'])):
        out, err = tmp_path / (name + '.out'), tmp_path / (name + '.err')
        with open(out, 'w') as o, open(err, 'w') as e:
            proc = subprocess.Popen(hueyctl_argv('events', *args), cwd=app.dir,
                                    env=hueyctl_env(app), stdout=o, stderr=e,
                                    stdin=subprocess.DEVNULL)
        followers.append((proc, out, err))
    for proc, _, err in followers:  # subscribed: only later events are seen
        wait_until(lambda: 'following the events' in err.read_text() or proc.poll() is not None,
                   timeout=20)
        assert proc.poll() is None, err.read_text()
    one, failed, three = app.record('e1'), app.fail('e2'), app.record('e3')
    for proc, _, err in followers:
        assert proc.wait(20) == 0, err.read_text()
    lines = followers[0][1].read_text().splitlines()
    assert len(lines) == 2 and all(' finished ' in line and ' record ' in line for line in lines)
    assert {line.split()[3] for line in lines} == {one.id, three.id}
    (event,) = [json.loads(line) for line in followers[1][1].read_text().splitlines()]
    assert (event['status'], event['task'], event['id'], event['error']) == \
        ('error-task', 'fail', failed.id, True)
    assert 'ValueError: failing on purpose: e2' in event['traceback']


def test_events_explains_when_the_storage_carries_none(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', *FAST)  # SQLite: events are off
    daemon.wait_ready(1)
    done = hueyctl(app, 'events')
    assert done.returncode == 78, done
    assert 'events=True' in done.stderr and 'app.huey' in done.stderr


# -- dead letters -----------------------------------------------------------------------

def test_dead_letters_list_show_requeue_and_purge(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', *FAST)
    daemon.wait_ready(1)
    app.huey.storage.enqueue(b'garbage-1')
    app.huey.storage.enqueue(b'garbage-2')
    wait_until(lambda: len(app.huey.dead_letters()) == 2, timeout=15)
    first, second = [letter.id for letter in app.huey.dead_letters()]

    code, out, _ = ctl(app, 'dead-letters', 'list')
    assert code == 0 and first in out and second in out
    assert 'UnpicklingError' in out and '2 dead letter(s)' in out
    as_json = json.loads(ctl(app, 'dead-letters', 'list', '--json')[1])
    assert [letter['id'] for letter in as_json] == [first, second]
    code, out, _ = ctl(app, 'dead-letters', 'show', first[:8])
    assert code == 0 and "b'garbage-1'" in out and first in out
    code, _, err = ctl(app, 'dead-letters', 'show', 'nosuchid')
    assert code == 3 and 'no dead letter with id nosuchid' in err

    code, out, _ = ctl(app, 'dead-letters', 'requeue', first)
    assert code == 0 and 'requeued 1' in out
    # Still garbage: the daemon takes it and buries it again, under a new id.
    wait_until(lambda: len(app.huey.dead_letters()) == 2 and
               first not in [letter.id for letter in app.huey.dead_letters()], timeout=15)
    assert ctl(app, 'dead-letters', 'purge', second)[0] == 0
    assert len(app.huey.dead_letters()) == 1
    code, _, err = ctl(app, 'dead-letters', 'purge', input='n\n')
    assert code == 1 and 'nothing was deleted' in err
    assert 'Delete all 1 dead letter(s)' in err and len(app.huey.dead_letters()) == 1
    assert ctl(app, 'dead-letters', 'purge', '--yes')[0] == 0
    assert app.huey.dead_letters() == []


# -- revoke and restore -------------------------------------------------------------------

def test_revoke_skips_a_task_and_restore_undoes_it(make_app, start_daemon):
    app = add_test_tasks(make_app('sqlite'))
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', *FAST)
    daemon.wait_ready(1)
    app.gate('hold')  # the only worker waits: what follows stays queued meanwhile
    daemon.wait_until(lambda: app.count('start', 'hold') == 1)
    skipped, kept = app.record('r1'), app.record('r2')
    code, out, _ = ctl(app, 'revoke', skipped.id)
    assert code == 0 and 'revoked task %s' % skipped.id in out
    assert ctl(app, 'revoke', kept.id)[0] == 0
    code, out, _ = ctl(app, 'restore', kept.id)
    assert code == 0 and 'restored task %s' % kept.id in out
    done = hueyctl(app, 'restore', kept.id)  # once through the real command: its exit status
    assert done.returncode == 3 and 'is not revoked' in done.stderr
    app.record('after')
    open_gate(app, 'hold')
    daemon.wait_until(lambda: app.recorded('after'))
    assert app.recorded('r2') and not app.recorded('r1')


# -- flush ---------------------------------------------------------------------------------

def test_flush_asks_first_then_empties_each_store(make_app, start_daemon):
    app = add_test_tasks(make_app('sqlite'))
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', *FAST)
    daemon.wait_ready(1)
    app.gate('hold')
    daemon.wait_until(lambda: app.count('start', 'hold') == 1)
    for tag in 'abc':
        app.record(tag)
    assert app.pending() == 3
    code, _, err = ctl(app, 'flush', 'queue', input='n\n')
    assert code == 1 and 'nothing was flushed' in err
    assert 'Delete the 3 message(s) waiting in the queue' in err and app.pending() == 3
    code, _, err = ctl(app, 'flush', 'queue')  # stdin at its end: no answer is no
    assert code == 1 and '--yes' in err and app.pending() == 3
    assert ctl(app, 'flush', 'queue', input='y\n')[0] == 0
    assert app.pending() == 0

    app.huey.add_schedule(app.record.s('later', delay=600))
    assert app.huey.scheduled_count() == 1
    assert ctl(app, 'flush', 'schedule', '--yes')[0] == 0
    assert app.huey.scheduled_count() == 0

    # The result store also holds the daemon's own keys (a periodic task's mark for the
    # minute may appear at any moment), so the test follows its own key.
    app.huey.put_result('some-task-id', 42)
    assert 'some-task-id' in app.huey.all_results()
    assert ctl(app, 'flush', 'results', '-y')[0] == 0
    assert 'some-task-id' not in app.huey.all_results()

    app.report_lock.acquire()
    assert app.huey.is_locked('report')
    code, out, _ = ctl(app, 'flush', 'locks', 'other', '--yes')
    assert code == 0 and 'released: report' in out
    assert not app.huey.is_locked('report')
    open_gate(app, 'hold')
    daemon.wait_until(lambda: app.count('done', 'hold') == 1)


# -- check-config, info, errors -----------------------------------------------------------------

def test_check_config_validates_the_daemons_file_as_the_daemon_does(app, start_daemon, tmp_path):
    good = write_config(tmp_path / 'good.conf', app='app.huey', workers=2, delay=0.01)
    daemon = Daemon(app, ['--config', good])
    daemon.argv.remove('app.huey')  # the app comes from the file, as under systemd
    daemon.start()
    try:
        check_the_daemons_file(app, daemon, good, tmp_path)
    finally:
        daemon.stop()


def check_the_daemons_file(app, daemon, good, tmp_path):
    daemon.wait_ready(1)
    done = hueyctl(app, 'check-config', good, app_path=None)
    assert done.returncode == 0 and 'configuration is valid (%s)' % good in done.stdout
    assert 'workers = 2' in done.stdout
    code, out, _ = ctl(app, 'info', '--config', good, app_path=None)
    assert code == 0 and 'app.record' in out
    wait_until(lambda: [node['master_pid'] for node in json.loads(
        ctl(app, '--config', good, 'status', '--json', app_path=None)[1])['nodes']] == [daemon.pid])

    bad = write_config(tmp_path / 'bad.conf', app='app.huey', worker_type='fibers')
    checked = hueyctl(app, 'check-config', bad, app_path=None)
    hueyd = subprocess.run([sys.executable, '-m', 'hueyd', '--config', bad], cwd=app.dir,
                           env=hueyctl_env(app), capture_output=True, text=True, timeout=30)
    assert checked.returncode == hueyd.returncode == 78
    message = "%s, line 3: worker_type = 'fibers' is not valid; choose one of" % bad
    assert message in checked.stderr and message in hueyd.stderr
    assert checked.stderr.split('configuration error: ')[1] == \
        hueyd.stderr.split('configuration error: ')[1]
    code, _, err = ctl(app, 'check-config', str(tmp_path / 'missing.conf'), app_path=None)
    assert code == 78 and 'config file not found' in err
    code, out, _ = ctl(app, 'check-config', '--config', good, '-w', '3', app_path=None)
    assert code == 0 and 'workers = 3' in out


def test_errors_name_the_culprit_and_the_fix(app, tmp_path):
    nothing = hueyctl(app, 'status', app_path=None)
    assert nothing.returncode == 78 and '--app IMPORT_PATH' in nothing.stderr
    wrong = hueyctl(app, 'status', app_path='nowhere.huey')
    assert wrong.returncode == 1 and "cannot import 'nowhere'" in wrong.stderr
    usage = hueyctl(app, 'flush', 'everything')
    assert usage.returncode == 2 and 'invalid choice' in usage.stderr


def test_an_unreachable_storage_is_reported_not_a_traceback(make_app):
    app = make_app('redis')
    app.env['HUEYD_TEST_URL'] = 'redis://127.0.0.1:1/0'  # nothing listens there
    done = hueyctl(app, 'status')
    assert done.returncode == 1 and 'cannot reach the storage' in done.stderr, done.stderr
    assert 'Traceback' not in done.stderr
