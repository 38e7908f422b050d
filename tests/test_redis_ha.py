"""What is particular to RedisStorage on Redis Sentinel and on Redis Cluster, on real
servers started on loopback (tests/redis_ha_support.py): keys in one slot, slots that
move, events across a cluster, socket timeouts beyond the longest wait, WAIT, and a
daemon that rides out a SIGKILLed master.

The storage contract, the delivery claims and the daemon run on both as the conftest
kinds 'sentinel' and 'cluster' (conftest's session deployments ``redis_sentinels`` and
``redis_cluster``). The tests here that only read use those too; a test that moves a
slot, stops or kills a server starts a deployment of its own.
"""
import itertools
import logging
import signal
import threading
import time

import pytest
import redis
from redis.crc import key_slot

from daemon_harness import App, start_daemon  # noqa: F401
from hueyd import RedisHuey
from hueyd.exceptions import ConfigurationError
from hueyd.storage import PriorityRedisExpireStorage, RedisStorage, storage_from_url
from hueyd.storage.redis_ha import NotReplicated, hash_tag
from redis_ha_support import SERVICE, Cluster, Sentinels
from support import RedisServer, make_storage, wait_until

KINDS = {'sentinel': RedisStorage, 'cluster': RedisStorage,
         'cluster-priority-expire': PriorityRedisExpireStorage}


def open_storage(request, kind, name, **options):
    """A storage on conftest's session deployment (never one a test may disrupt)."""
    deployment = request.getfixturevalue('redis_sentinels' if kind == 'sentinel'
                                         else 'redis_cluster')
    return make_storage(deployment.url, name, storage_class=KINDS[kind], **options)


def _attempt(operation, *args):
    """True once ``operation`` went through; False while the storage is away."""
    try:
        operation(*args)
        return True
    except RedisStorage.transient_errors:
        return False


# --- both ------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['sentinel', 'cluster'])
def test_a_blocking_claim_waits_its_read_timeout_then_takes_a_message(request, kind, queue_name):
    """The socket timeout of a Sentinel or Cluster connection: beyond the longest wait."""
    waiter = open_storage(request, kind, queue_name, read_timeout=0.5)
    other = open_storage(request, kind, queue_name)
    # Set beyond the longest wait: a silent master raises, a wait is never cut short.
    assert waiter.pool.connection_kwargs['socket_timeout'] > 0.5
    started = time.monotonic()
    assert waiter.claim('w') == []
    assert time.monotonic() - started >= 0.45  # it blocked, instead of polling
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.claim('w')))
    thread.start()
    other.enqueue(b'x')
    thread.join(10)
    assert [data for _, data in got[0]] == [b'x']
    waiter.flush_all()
    for storage in (waiter, other):
        storage.close()


def test_ha_urls_and_keywords():
    _, kwargs = storage_from_url('rediss+sentinel://:secret@h1:26379,[::1],h3:5000/mymaster/2'
                                 '?wait_replicas=1&sentinel_password=s&ssl_cert_reqs=none')
    assert kwargs.pop('wait_replicas') == 1 and kwargs.pop('sentinel_password') == 's'
    storage = RedisStorage('q', **kwargs)
    assert storage.location() == "Sentinel service 'mymaster' (h1:26379,::1:26379,h3:5000)/2"
    options = storage.pool.connection_kwargs
    assert (options['password'], options['db'], options['ssl_cert_reqs']) == ('secret', 2, 'none')
    assert 'SSL' in storage.pool.connection_class.__name__
    storage = RedisStorage('q', url='redis+cluster://u:pw@h1:7000,h2', read_timeout=5)
    assert storage.queue_key == 'hueyd.{q}.queue'
    assert storage.location() == "Redis Cluster (h1:7000,h2:6379), queue 'q' (slot 11958)"
    assert storage.pool.connection_kwargs['socket_timeout'] > 5
    storage = RedisStorage('q', sentinels=[('h', 26379)], service_name='mymaster')
    assert storage.queue_key == 'hueyd.q.queue'  # one master: huey's key names
    with pytest.raises(ConfigurationError, match='socket_timeout'):
        RedisStorage('q', url='redis+cluster://h:7000?socket_timeout=1', read_timeout=5)
    with pytest.raises(ConfigurationError, match='service_name'):
        RedisStorage('q', sentinels=[('h', 26379)])
    with pytest.raises(ConfigurationError, match='database 0'):
        RedisStorage('q', cluster=True, host='h', db=1)


# --- Cluster ---------------------------------------------------------------------------

def every_key(cluster, name):
    found = {}
    for node in cluster.nodes:
        with node.client() as client:
            for key in client.scan_iter(match='*%s*' % name):
                found[key] = node.port
    return found


def test_every_key_of_a_queue_is_in_its_slot(request, redis_cluster, queue_name):
    storage = open_storage(request, 'cluster-priority-expire', queue_name, notify_result=True)
    storage.enqueue(b'a', 1)
    storage.enqueue(b'b', 2)
    storage.add_to_schedule(b's', 0, 3)
    storage.claim('worker-1')
    storage.beat('worker-1', 30)
    storage.put_data('result', b'r', is_result=True)
    storage.put_data('data', b'd')
    storage.put_if_empty('lock', b'l', ttl=30)
    storage.put_revocation('r:x', b'1')
    storage.incr('counter')
    storage.add_dead_letter('k', b'dead')
    storage.put_state('node', 'me', b'busy', 30)
    keys = every_key(redis_cluster, queue_name)
    assert len(keys) >= 14, keys
    with redis_cluster.nodes[0].client() as client:
        slots = {client.cluster('KEYSLOT', key) for key in keys}
    assert len(slots) == 1 and len(set(keys.values())) == 1, keys
    storage.flush_all()
    storage.delete_state('node', 'me')
    storage.close()


def test_a_lent_cluster_pool_serves_the_queues_of_its_slot_only(request, queue_name):
    owner = open_storage(request, 'cluster', queue_name)
    borrower = RedisStorage(queue_name, connection_pool=owner.pool, read_timeout=0.05)
    assert (borrower.queue_key, borrower.location()) == (owner.queue_key, owner.location())
    borrower.enqueue(b'x')
    assert owner.dequeue() == b'x'
    slot = key_slot(hash_tag(queue_name).encode())
    names = ('%s_%d' % (queue_name, i) for i in itertools.count())
    neighbour = next(name for name in names if key_slot(hash_tag(name).encode()) == slot)
    stranger = next(name for name in names if key_slot(hash_tag(name).encode()) != slot)
    neighbouring = RedisStorage(neighbour, connection_pool=owner.pool, read_timeout=0.05)
    neighbouring.enqueue(b'y')  # the master of the slot has it
    assert neighbouring.dequeue() == b'y' and owner.queue_size() == 0
    # Its keys are on another master: refused, instead of redirected forever (or, with one
    # server's key names, written where no storage made from the URL would look).
    with pytest.raises(ConfigurationError, match='slot %d only' % slot):
        RedisStorage(stranger, connection_pool=owner.pool)
    owner.close()


def test_queues_spread_over_the_masters(redis_cluster):
    masters = set()
    for name in ('alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'):
        port = redis_cluster.nodes[2].port  # it learns the others
        storage = RedisHuey(name, cluster=True, host='127.0.0.1', port=port).storage
        storage.conn.ping()
        masters.add(storage.pool.get_connection().port)
        storage.close()
    assert masters == {node.port for node in redis_cluster.nodes}


def test_a_published_event_reaches_every_node(request, redis_cluster, queue_name):
    """Plain PUBLISH: a cluster passes it to every node, so a subscriber anywhere hears it."""
    subscribers = [node.client().pubsub() for node in redis_cluster.nodes]
    for pubsub in subscribers:
        pubsub.subscribe('hueyd.%s.events' % queue_name)
        assert pubsub.get_message(timeout=5)['type'] == 'subscribe'
    storage = open_storage(request, 'cluster', queue_name)
    storage.publish_events([b'{"n": 1}'])
    for pubsub in subscribers:
        message = wait_until(lambda: pubsub.get_message(ignore_subscribe_messages=True,
                                                        timeout=0.1), timeout=5)
        assert message['data'] == b'{"n": 1}'
        pubsub.close()
    storage.close()


def move_slot(cluster, slot, source, target):
    """What redis-cli --cluster reshard does for one slot: its keys go, then the slot."""
    with source.client() as src, target.client() as dst:
        source_id, target_id = (client.execute_command('CLUSTER MYID') for client in (src, dst))
        dst.execute_command('CLUSTER SETSLOT', slot, 'IMPORTING', source_id)
        src.execute_command('CLUSTER SETSLOT', slot, 'MIGRATING', target_id)
        while keys := src.execute_command('CLUSTER GETKEYSINSLOT', slot, 100):
            src.execute_command('MIGRATE', '127.0.0.1', target.port, '', 0, 5000, 'KEYS', *keys)
    for node in (target, source) + tuple(n for n in cluster.nodes if n not in (source, target)):
        with node.client() as client:
            client.execute_command('CLUSTER SETSLOT', slot, 'NODE', target_id)


@pytest.fixture
def resharded_cluster():
    """A cluster of its own: the test moves a slot to another master."""
    with Cluster() as deployment:
        yield deployment


def test_a_queue_follows_its_slot_to_another_master(resharded_cluster, caplog):
    storage = make_storage(resharded_cluster.url, 'moving')
    storage.enqueue(b'a')
    storage.enqueue(b'b')
    receipt, _ = storage.claim('w')[0]
    slot = storage.conn.execute_command('CLUSTER KEYSLOT', storage.queue_key)
    source = resharded_cluster.node_serving(slot)
    target = next(node for node in resharded_cluster.nodes if node is not source)
    move_slot(resharded_cluster, slot, source, target)
    with caplog.at_level(logging.WARNING, logger='hueyd'):
        wait_until(lambda: _attempt(storage.enqueue, b'c'), timeout=10)  # MOVED, reconnects
        assert storage.pool.get_connection().port == target.port
        storage.ack('w', [receipt])
        assert [storage.dequeue(), storage.dequeue(), storage.dequeue()] == [b'b', b'c', None]
    moved = [r.getMessage() for r in caplog.records if 'moved from' in r.getMessage()]
    assert moved == ["the Redis master of queue 'moving' (slot %d) moved from 127.0.0.1:%d to "
                     "127.0.0.1:%d (a failover); reconnected" % (slot, source.port, target.port)]
    storage.flush_all()
    storage.close()


# --- Sentinel --------------------------------------------------------------------------

def test_wait_replicas_returns_once_the_replica_has_the_message(redis_sentinels, queue_name):
    sentinels = [('127.0.0.1', sentinel.port) for sentinel in redis_sentinels.sentinels]
    storage = RedisHuey(queue_name, sentinels=sentinels, service_name=SERVICE,
                        wait_replicas=1).storage
    storage.enqueue(b'a')
    storage.enqueue_many([(b'b', None), (b'c', None)])
    storage.add_to_schedule(b's', 0)
    with redis_sentinels.replica.client() as replica:
        assert replica.llen(storage.queue_key) == 3 and replica.zcard(storage.schedule_key) == 1
    storage.wait_replicas, storage.wait_timeout = 2, 0.1  # there is only one replica
    with pytest.raises(NotReplicated, match='1 of the 2 replicas'):
        storage.enqueue(b'd')
    assert storage.queue_size() == 4  # on the master all the same
    storage.flush_all()
    storage.close()


def test_a_single_server_that_stops_answering_ends_a_claim_with_an_error(queue_name):
    with RedisServer() as server:
        storage = RedisStorage(queue_name, url=server.url, read_timeout=0.5)
        assert storage.claim('w') == []
        limit = storage.pool.connection_kwargs['socket_timeout']  # 1 s (Result.get) + 2 s
        server.process.send_signal(signal.SIGSTOP)  # a partition: no reset comes
        try:
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                storage.claim('w')
            assert limit <= time.monotonic() - started < limit + 5
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert storage.claim('w') == []  # a new connection, once it answers again
        storage.close()


def test_a_socket_timeout_within_the_longest_wait_is_refused_for_a_single_server_too(
        queue_name):
    with pytest.raises(ConfigurationError, match='socket_timeout=0.5 would end blocking reads'):
        RedisStorage(queue_name, url='redis://127.0.0.1:1/0?socket_timeout=0.5')


@pytest.fixture
def doomed_sentinels():
    """A Sentinel deployment of its own: the test kills its master."""
    with Sentinels() as deployment:
        yield deployment


def test_a_master_that_stops_answering_ends_a_claim_and_the_next_finds_the_new_one(
        doomed_sentinels, queue_name):
    _, kwargs = storage_from_url(doomed_sentinels.url)
    storage = RedisStorage(queue_name, read_timeout=0.5, **kwargs)
    assert storage.claim('w') == []
    limit = storage.pool.connection_kwargs['socket_timeout']  # 1 s (Result.get) + 2 s
    doomed_sentinels.master.process.send_signal(signal.SIGSTOP)  # a partition: no reset comes
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        storage.claim('w')
    assert limit <= time.monotonic() - started < limit + 5
    wait_until(lambda: _attempt(storage.enqueue, b'x'), timeout=30)  # the sentinels fail over
    assert doomed_sentinels.master_port() == doomed_sentinels.replica.port
    assert [data for _, data in storage.claim('w')] == [b'x']
    storage.close()


def test_the_daemon_rides_out_a_failover(tmp_path, doomed_sentinels, start_daemon):  # noqa: F811
    app = App(tmp_path, doomed_sentinels.url)
    app.huey.storage.wait_replicas = 1  # what is enqueued is on the replica: none is lost
    tags = ['t%d' % i for i in range(60)]
    for tag in tags:
        app.slow(tag, 0.1)
    daemon = start_daemon(app, '-k', 'thread', '-w', '4')

    def done():
        return {tag for tag, _ in app.events('done')}
    daemon.wait_until(lambda: len(done()) >= 10, timeout=30, message='the drain did not start')
    old_master = doomed_sentinels.master_port()
    doomed_sentinels.master.kill()
    assert len(done()) < len(tags), 'the drain ended before the kill'
    daemon.wait_until(lambda: done() == set(tags), timeout=45,
                      message='not every task completed after the failover')
    assert doomed_sentinels.master_port() == doomed_sentinels.replica.port != old_master
    assert daemon.running  # the same master process throughout
    log = daemon.log_text()
    moved = [line for line in log.splitlines() if 'moved from 127.0.0.1:%d' % old_master in line]
    assert moved, log[-3000:]
    pids = [line.split()[3] for line in moved]
    assert len(pids) == len(set(pids)), 'a process logged the failover twice: %s' % moved
    daemon.stop()
    app.huey.storage.close()
