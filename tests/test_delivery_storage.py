"""The storage side of at-least-once delivery: claims, leases, recovery, dead letters.

Runs on every storage, and on PriorityRedisStorage, whose claims differ (also as
PriorityRedisExpireStorage, built on it), on CySqliteStorage and on contrib's SqlStorage;
RedisStorage on Redis Sentinel and Redis Cluster too, and PriorityRedisExpireStorage on
the cluster (whose keys, the claims' included, carry the queue's hash tag).
"""
import threading
import time

import pytest

from hueyd.constants import EmptyData
from hueyd.storage import PriorityRedisStorage, RedisStorage, SqliteStorage
from hueyd.storage import CySqliteStorage, PriorityRedisExpireStorage
from hueyd.storage.protocols import Claimed, WriteBatching
from conftest import url_for
from support import RedisServer, make_storage, wait_until

# Kinds that are a storage class on the deployment of a conftest kind.
CLASS_KINDS = {'priority-redis': (PriorityRedisStorage, 'redis'),
               'priority-redis-expire': (PriorityRedisExpireStorage, 'redis'),
               'cluster-priority': (PriorityRedisStorage, 'cluster'),
               'cluster-priority-expire': (PriorityRedisExpireStorage, 'cluster')}


def open_store(kind, request, tmp_path, name, **options):
    """A new storage of ``kind`` (a conftest kind, CLASS_KINDS or 'cysqlite') for queue
    ``name``: a second one of the same kind shares the first one's data."""
    if kind == 'cysqlite':
        pytest.importorskip('cysqlite')
        return CySqliteStorage(name, filename=str(tmp_path / 'h.db'), **options)
    storage_class, kind = CLASS_KINDS.get(kind, (None, kind))
    return make_storage(url_for(kind, request, tmp_path), name, storage_class=storage_class,
                        **options)


def kind_of(request, fixture):
    """The kind a parametrized fixture of this test was made with."""
    return request.node.callspec.params[fixture]


@pytest.fixture(params=['memory', 'sqlite', 'cysqlite', 'file', 'redis', 'priority-redis',
                        'priority-redis-expire', 'postgres', 'sql', 'sentinel', 'cluster',
                        'cluster-priority-expire'])
def store(request, tmp_path, queue_name):
    storage = open_store(request.param, request, tmp_path, queue_name)
    yield storage
    storage.flush_all()
    storage.close()


def fill(store, *items):
    for item in items:
        store.enqueue(item)


def test_claim_moves_messages_out_of_the_queue_until_acked(store):
    fill(store, b'a', b'b', b'c')
    claimed = store.claim('w1', count=2)
    assert [data for _, data in claimed] == [b'a', b'b']
    assert store.queue_size() == 1
    assert store.claimed_items() == {'w1': [b'a', b'b']}
    store.ack('w1', [claimed[0][0]])
    assert store.claimed_items() == {'w1': [b'b']}
    store.ack('w1', [claimed[1][0]])
    assert store.claimed_items() == {}
    assert [data for _, data in store.claim('w2', count=5)] == [b'c']
    assert store.claim('w2') == []


def test_every_claim_is_a_claimed_list(store):
    fill(store, b'a')
    store.put_revocation('r:a', b'1')
    for claimed in (store.claim('w'), store.claim('w')):  # one message, then none
        assert isinstance(claimed, Claimed)
        if isinstance(store, RedisStorage):  # it reads them in the claim's round trip
            assert claimed.revocations == {'r:a': b'1'}
        else:
            assert claimed.revocations is None


def test_release_puts_messages_back_at_the_head_in_order(store):
    fill(store, b'a', b'b', b'c')
    claimed = store.claim('w1', count=2)
    store.release('w1', [receipt for receipt, _ in claimed])
    assert store.claimed_items() == {}
    assert [store.dequeue() for _ in range(3)] == [b'a', b'b', b'c']


def test_recover_returns_claims_of_lapsed_workers_only(store):
    fill(store, b'a', b'b', b'c')
    store.claim('dies', count=1, lease=0.2)
    store.claim('lives', count=1, lease=60)
    assert store.recover() == 0  # nobody lapsed yet
    wait_until(lambda: store.recover() == 1, timeout=5, message='lapsed claim not recovered')
    assert store.claimed_items() == {'lives': [b'b']}
    assert [store.dequeue() for _ in range(3)] == [b'a', b'c', None]


def test_beat_keeps_a_worker_alive(store):
    fill(store, b'a')
    store.claim('w', lease=0.3)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # beating for longer than the lease
        store.beat('w', 0.3)
        assert store.recover() == 0
    assert store.claimed_items() == {'w': [b'a']}


def test_retire_worker_releases_everything(store):
    fill(store, b'a', b'b')
    store.claim('w', count=2)
    store.retire_worker('w')
    assert store.claimed_items() == {}
    assert store.queue_size() == 2


def test_claims_honour_priority_where_the_storage_does(store):
    if not store.priority:
        fill(store, b'low', b'high')
        assert [d for _, d in store.claim('w', count=2)] == [b'low', b'high']
        return
    store.enqueue(b'low', 1)
    store.enqueue(b'high', 9)
    store.enqueue(b'low2', 1)
    claimed = store.claim('w', count=3)
    assert [data for _, data in claimed] == [b'high', b'low', b'low2']
    store.release('w', [claimed[0][0]])
    assert store.dequeue() == b'high'


def test_move_due_is_one_step_and_keeps_priority(store):
    now = time.time()
    store.add_to_schedule(b'later', now + 60, priority=5)
    store.add_to_schedule(b'first', now - 2, priority=1)
    store.add_to_schedule(b'second', now - 1, priority=7)
    assert store.move_due(now) == [b'first', b'second']
    assert store.schedule_size() == 1
    expected = [b'second', b'first'] if store.priority else [b'first', b'second']
    assert [store.dequeue(), store.dequeue()] == expected


def test_blocking_claim_waits_for_a_message(store, request, tmp_path):
    if not getattr(store, 'blocking', False):
        assert store.claim('w') == []
        return
    other = open_store(kind_of(request, 'store'), request, tmp_path, store.name)
    assert store.claim('w') == []  # waited out read_timeout, then gave up
    other.enqueue(b'x', 3)
    assert [data for _, data in store.claim('w')] == [b'x']
    other.close()


def test_dead_letters(store):
    store.add_dead_letter('k1', b'one')
    store.add_dead_letter('k2', b'two')
    assert store.dead_letters() == [('k1', b'one'), ('k2', b'two')]
    assert store.dead_letter_count() == 2
    assert store.remove_dead_letters(['k1', 'missing']) == 1
    assert (store.dead_letters(), store.dead_letter_count()) == ([('k2', b'two')], 1)
    store.flush_all()
    assert (store.dead_letters(), store.dead_letter_count()) == ([], 0)


def test_revocations_are_kept_read_and_used_up(store):
    store.put_revocation('r:a', b'1')
    store.put_revocation('rt:t', b'2')
    assert store.read_revocations(['r:a', 'r:b', 'rt:t']) == [b'1', EmptyData, b'2']
    assert store.delete_revocation('r:a') is True
    assert store.delete_revocation('r:a') is False  # one caller only uses up a revoke-once
    store.flush_results()
    assert store.read_revocations(['rt:t']) == [EmptyData]


@pytest.fixture(params=['redis', 'priority-redis', 'sentinel', 'cluster', 'cluster-priority'])
def redis_store(request, tmp_path, queue_name):
    storage = open_store(request.param, request, tmp_path, queue_name, read_timeout=5)
    yield storage
    storage.flush_all()
    storage.close()


def test_a_redis_claim_brings_every_revocation_in_its_round_trip(redis_store):
    redis_store.put_revocation('r:a', b'1')
    redis_store.enqueue(b'm')
    claimed = redis_store.claim('w')
    assert [data for _, data in claimed] == [b'm']
    assert claimed.revocations == {'r:a': b'1'}
    # So many that the worker had better read the few it needs: it is told so.
    for i in range(64):
        redis_store.put_revocation('r:%d' % i, b'x')
    redis_store.enqueue(b'n')
    assert redis_store.claim('w').revocations is None


def test_a_blocking_claim_brings_the_revocations_made_while_it_waited(redis_store, request,
                                                                     tmp_path):
    other = open_store(kind_of(request, 'redis_store'), request, tmp_path, redis_store.name)
    admin = other.conn  # on the master that serves the queue, the one the claim waits on
    got = []
    waiter = threading.Thread(target=lambda: got.append(redis_store.claim('w')))
    waiter.start()
    wait_until(lambda: any(client['cmd'] in ('brpoplpush', 'brpop')
                           for client in admin.client_list()),
               timeout=5, message='the claim never blocked')
    other.put_revocation('r:late', b'1')
    other.enqueue(b'x')
    waiter.join(10)
    claimed, = got
    assert [data for _, data in claimed] == [b'x']
    assert claimed.revocations == {'r:late': b'1'}
    other.close()


def test_the_writes_of_every_batching_thread_go_out_together(store):
    def write(item):
        store.begin_batch()
        store.enqueue(item)

    thread = threading.Thread(target=write, args=(b'from another thread',))
    thread.start()
    thread.join()
    write(b'from this one')
    # Both wait in the one batch; a storage that does not batch (memory) wrote at once.
    assert store.queue_size() == (0 if store.supports(WriteBatching) else 2)
    store.flush_batch(wait=True)
    assert sorted(store.enqueued_items()) == [b'from another thread', b'from this one']
    with store.unbatched():
        store.enqueue(b'at once')
    assert store.queue_size() == 3
    store.end_batch()


class Writer(threading.Thread):
    """A thread that makes ``write(store)`` in a write batch, then, once ``told`` is set,
    flushes it with wait=True: ``outcome`` says whether that stored it."""

    def __init__(self, store, write):
        super().__init__()
        self.store, self.write = store, write
        self.written, self.told, self.outcome = threading.Event(), threading.Event(), []
        self.start()
        assert self.written.wait(10)

    def run(self):
        self.store.begin_batch()
        self.write(self.store)
        self.written.set()
        self.told.wait(10)
        try:
            self.store.flush_batch(wait=True)
            self.outcome.append('stored')
        except self.store.transient_errors as exc:
            self.outcome.append(exc)

    def learnt_it_was_lost(self):
        self.told.set()
        self.join(10)
        return len(self.outcome) == 1 and isinstance(self.outcome[0], self.store.transient_errors)


def test_a_thread_learns_that_its_writes_were_lost_even_when_another_thread_sent_them(tmp_path):
    """The at-most-once barrier depends on it: "stored" must mean stored."""
    import sqlite3
    store = SqliteStorage('q', filename=str(tmp_path / 'huey.db'), timeout=0.05)
    writer = Writer(store, lambda store: store.enqueue(b'lost'))
    lock = sqlite3.connect(tmp_path / 'huey.db', isolation_level=None)
    lock.execute('BEGIN IMMEDIATE')
    with pytest.raises(store.transient_errors):
        store.flush_batch(wait=True)  # this thread sends the other's write, and fails
    lock.execute('ROLLBACK')
    assert writer.learnt_it_was_lost(), writer.outcome
    assert store.queue_size() == 0


def test_a_redis_claim_sends_the_pending_writes_in_its_round_trip(redis_store):
    for data in (b'a', b'b'):
        redis_store.enqueue(data)
    [(done, _)] = redis_store.claim('w')
    redis_store.begin_batch()
    try:
        redis_store.put_data('k', b'result')  # a result and an acknowledgement, not sent yet
        redis_store.ack('w', [done])
        assert redis_store.peek_data('k') is EmptyData
        [(taken, data)] = redis_store.claim('w')
        assert data == b'b'
        assert [receipt for receipt, _ in redis_store.worker_claims('w')] == [taken]
        assert redis_store.peek_data('k') == b'result'
    finally:
        redis_store.end_batch()



def test_writes_sent_with_a_claim_that_failed_are_reported_lost_to_their_writer(queue_name):
    """Another thread's claim carried them: the writer must still learn they were lost."""
    with RedisServer() as server:
        store = RedisStorage(queue_name, url=server.url, read_timeout=0.05)
        writer = Writer(store, lambda store: store.put_data('k', b'result'))
        server.stop()
        with pytest.raises(store.transient_errors):
            store.claim('w')
        assert writer.learnt_it_was_lost(), writer.outcome
        store.close()
