"""At-least-once delivery through a real daemon: claims survive kill -9, SIGTERM hands
them back at once, at_most_once tasks never run twice, bad messages become dead
letters, and a Redis outage is ridden out."""
import os
import pickle
import signal

import pytest

from daemon_harness import app, make_app, start_daemon  # noqa: F401 (fixtures)
from hueyd import SignedSerializer
from hueyd.exceptions import TaskException
from support import wait_until

LEASE_SECONDS = 1.5
LEASE = ('--lease-timeout', str(LEASE_SECONDS))


def claim_probe(app):
    """Claim a probe task for a worker that never renews its lease (the only worker is busy).

    Only the scheduler's lease recovery returns it to the queue, and a pass that returns it
    returns whatever a pool that went right after the claim still held: its lease, renewed
    last just before, ran out earlier.
    """
    app.record('probe')
    assert app.huey.storage.claim('probe-host:1', 1, lease=2 * LEASE_SECONDS), 'a pool took it'


def wait_past_recovery(daemon, app, tag, runs):
    """Wait until ``tag`` could no longer start again unnoticed: the probe was recovered and
    ran, then a task queued behind anything put back ran too (one worker runs them in queue
    order). Returns early once ``tag`` started more than ``runs`` times."""
    def too_many():
        return app.count('start', tag) > runs
    daemon.wait_until(lambda: app.recorded('probe') or too_many(), timeout=30,
                      message='lease recovery never returned the probe')
    app.record('last')
    daemon.wait_until(lambda: app.recorded('last') or too_many(), timeout=30)


# (storage, worker type, task): a plain task in a process worker, an async one on a loop.
KILLED = [(storage, 'process', 'slow_once') for storage in ('sqlite', 'file', 'redis', 'postgres')]
KILLED += [(storage, 'asyncio', 'aslow_once') for storage in ('sqlite', 'redis', 'postgres')]


@pytest.mark.parametrize('storage, worker_type, task', KILLED)
def test_task_of_a_killed_pool_runs_again_after_its_lease(make_app, start_daemon, storage,
                                                          worker_type, task):
    app = make_app(storage)
    daemon = start_daemon(app, '-k', worker_type, '-w', '1', *LEASE)
    daemon.wait_ready(1)
    getattr(app, task)('a', 60)
    daemon.wait_until(lambda: app.count('start', 'a') == 1)
    claim_probe(app)
    (pool,) = daemon.pool_pids()
    os.kill(pool, signal.SIGKILL)
    daemon.wait_until(lambda: app.count('done', 'a') == 1, timeout=30,
                      message='the killed pool\'s task never ran again')
    wait_past_recovery(daemon, app, 'a', runs=2)
    assert app.count('start', 'a') == 2
    # Acknowledgements may follow a task's last effect by a moment (they are batched).
    wait_until(lambda: app.huey.storage.claimed_items() == {} and app.pending() == 0)


# (storage, worker type, task): asyncio cancels an async task, abandons a plain one's thread;
# -k process interrupts the task's code in each pool's main thread.
HANDED_BACK = [(storage, 'thread', 'slow') for storage in ('sqlite', 'file', 'redis', 'postgres')]
HANDED_BACK += [('sqlite', 'process', 'slow')]
HANDED_BACK += [('sqlite', 'asyncio', 'slow'), ('sqlite', 'asyncio', 'aslow'),
                ('redis', 'asyncio', 'aslow'), ('postgres', 'asyncio', 'aslow')]


@pytest.mark.parametrize('storage, worker_type, task', HANDED_BACK)
def test_sigterm_hands_claims_back_at_once_without_duplicates(make_app, start_daemon, storage,
                                                              worker_type, task):
    app = make_app(storage)
    # The seed's old advice: re-enqueue in a SIGNAL_INTERRUPTED handler. It must not double.
    daemon = start_daemon(app, '-k', worker_type, '-w', '2', *LEASE,
                          env={'HUEYD_TEST_SEED_REQUEUE': '1'})
    daemon.wait_ready(2 if worker_type == 'process' else 1)  # -k process: a pool per worker
    first, second = getattr(app, task)('a', 60), getattr(app, task)('b', 60)
    daemon.wait_until(lambda: app.count('start', 'a') and app.count('start', 'b'))
    daemon.send(signal.SIGTERM)
    assert daemon.wait(15) == 0
    assert len(app.events('interrupted')) == 2
    pending = sorted(task.id for task in app.huey.pending())
    assert pending == sorted([first.id, second.id]), 'each task exactly once, right away'
    assert app.huey.storage.claimed_items() == {}  # the daemon has exited: nothing in flight


@pytest.mark.parametrize('how', ['sigterm', 'kill'])
def test_at_most_once_task_is_never_run_twice(app, start_daemon, how):
    daemon = start_daemon(app, '-k', 'process', '-w', '1', *LEASE)
    daemon.wait_ready(1)
    result = app.slow_at_most_once('once', 60)
    daemon.wait_until(lambda: app.count('start', 'once') == 1)
    claim_probe(app)
    if how == 'sigterm':
        daemon.send(signal.SIGTERM)
        assert daemon.wait(15) == 0
        assert [tid for tid, _ in app.events('interrupted')] == [result.id]
        daemon = start_daemon(app, '-k', 'process', '-w', '1', *LEASE)
    else:
        os.kill(daemon.pool_pids()[0], signal.SIGKILL)
    daemon.wait_ready(1)
    # A lost acknowledgement would come back only through lease recovery: wait past it.
    wait_past_recovery(daemon, app, 'once', runs=1)
    assert app.count('start', 'once') == 1
    letters = app.huey.dead_letters()
    assert [(letter.task_id, letter.task) for letter in letters] == [(result.id, 'slow_at_most_once')]
    assert 'at_most_once' in letters[0].reason
    with pytest.raises(TaskException, match='will not run again'):  # its caller is told
        result.get(blocking=True, timeout=15)
    wait_until(lambda: app.pending() == 0 and app.huey.storage.claimed_items() == {})


def test_bad_messages_become_dead_letters_and_the_daemon_goes_on(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '2')
    daemon.wait_ready(1)
    master = daemon.pid
    storage = app.huey.storage
    storage.enqueue(b'not a pickle at all')
    storage.enqueue(pickle.dumps({'what': 'a dict, not a message'}))
    unknown = app.huey.registry.create_message(app.record.s('x'))._replace(name='app.nothere')
    storage.enqueue(app.huey.serializer.serialize(unknown))
    for i in range(5):
        app.record('good%d' % i)
    daemon.wait_until(lambda: all(app.recorded('good%d' % i) for i in range(5)))
    wait_until(lambda: len(app.huey.dead_letters()) == 3, message='dead letters missing')
    reasons = ' | '.join(letter.reason for letter in app.huey.dead_letters())
    assert 'not found in TaskRegistry' in reasons, reasons
    assert daemon.pid == master and daemon.running
    # Inspect, requeue and purge, as an operator would.
    letters = app.huey.dead_letters()
    assert {letter.payload for letter in letters} >= {b'not a pickle at all'}
    assert app.huey.requeue_dead_letters([letters[0].id]) == 1
    wait_until(lambda: len(app.huey.dead_letters()) == 3, message='requeued letter not buried again')
    assert app.huey.purge_dead_letters() == 3
    assert app.huey.dead_letters() == []


def test_unsigned_messages_are_refused_into_dead_letters(tmp_path, make_app, start_daemon):
    app = make_app('sqlite')
    # Rewrite the app to sign its messages, then push unsigned ones from outside.
    with open(app.path) as f:
        source = f.read()
    with open(app.path, 'w') as f:
        f.write(source.replace("huey = Huey(NAME, url=URL)",
                               "from hueyd import SignedSerializer\n"
                               "huey = Huey(NAME, url=URL, serializer=SignedSerializer(secret='s'))"))
    app.module = app._load()
    app.huey = app.module.huey
    daemon = start_daemon(app, '-k', 'thread', '-w', '1')
    daemon.wait_ready(1)
    app.huey.storage.enqueue(pickle.dumps(('forged',)))
    app.huey.storage.enqueue(SignedSerializer(secret='other').serialize(('forged',)))
    app.record('signed')
    daemon.wait_until(lambda: app.recorded('signed'))
    wait_until(lambda: len(app.huey.dead_letters()) == 2)
    reasons = [letter.reason for letter in app.huey.dead_letters()]
    assert all('signature' in reason for reason in reasons), reasons


def test_result_that_cannot_be_stored_is_reported_not_rerun(app, start_daemon):
    daemon = start_daemon(app, '-k', 'thread', '-w', '1')
    daemon.wait_ready(1)
    result = app.unstorable('u')
    app.record('after')
    daemon.wait_until(lambda: app.recorded('after'))
    errors = [words for words in app.lines() if words[0] == 'error']
    assert errors and errors[0][1] == result.id
    wait_until(lambda: app.pending() == 0 and app.huey.storage.claimed_items() == {})
    assert app.count('ran', 'u') == 1


def test_redis_outage_is_ridden_out(make_app, start_daemon, redis_server):
    app = make_app('redis')
    daemon = start_daemon(app, '-k', 'thread', '-w', '2')
    daemon.wait_ready(1)
    app.record('before')
    daemon.wait_until(lambda: app.recorded('before'))
    master, pools = daemon.pid, daemon.pool_pids()
    redis_server.stop()
    try:
        # Down until the scheduler failed too, then restarted: the pool retries meanwhile.
        daemon.wait_until(lambda: 'cannot read the queue' in daemon.log_text() and
                          'scheduler cannot reach the storage' in daemon.log_text(), timeout=15)
    finally:
        redis_server.start()
    app.record('after')
    daemon.wait_until(lambda: app.recorded('after'), timeout=30,
                      message='tasks did not run after Redis came back')
    assert daemon.pid == master and daemon.pool_pids() == pools, 'nothing was restarted'
    assert daemon.log_text().count('cannot read the queue') == 1, 'not once per outage'


def test_another_node_recovers_claims_of_a_dead_worker(app, start_daemon):
    # A "node" that claimed a task and died: its lease runs out, this daemon takes over.
    app.record('orphan')
    claimed = app.huey.storage.claim('gone-host:1234', 1, lease=0.5)
    assert len(claimed) == 1
    daemon = start_daemon(app, '-k', 'thread', '-w', '1', *LEASE)
    daemon.wait_until(lambda: app.recorded('orphan'), timeout=30)
    wait_until(lambda: app.huey.storage.claimed_items() == {})
