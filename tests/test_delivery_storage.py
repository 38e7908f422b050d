"""The storage side of at-least-once delivery: claims, leases, recovery, dead letters.

Runs on every storage, and on PriorityRedisStorage, whose claims differ.
"""
import time

import pytest

from hueyd.storage import PriorityRedisStorage
from support import make_storage, wait_until


@pytest.fixture(params=['memory', 'sqlite', 'redis', 'priority-redis'])
def store(request, tmp_path, queue_name):
    if request.param == 'priority-redis':
        server = request.getfixturevalue('redis_server')
        storage = PriorityRedisStorage(queue_name, url=server.url, read_timeout=0.05)
    else:
        url = {'memory': 'memory://', 'sqlite': 'sqlite:///%s/h.db' % tmp_path}.get(request.param)
        storage = make_storage(url or request.getfixturevalue('redis_server').url, queue_name)
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


def test_blocking_claim_waits_for_a_message(store, redis_server):
    if not getattr(store, 'blocking', False):
        assert store.claim('w') == []
        return
    other = type(store)(store.name, url=redis_server.url)
    assert store.claim('w') == []  # waited out read_timeout, then gave up
    other.enqueue(b'x', 3)
    assert [data for _, data in store.claim('w')] == [b'x']


def test_dead_letters(store):
    store.add_dead_letter('k1', b'one')
    store.add_dead_letter('k2', b'two')
    assert store.dead_letters() == [('k1', b'one'), ('k2', b'two')]
    assert store.remove_dead_letters(['k1', 'missing']) == 1
    assert store.dead_letters() == [('k2', b'two')]
    store.flush_all()
    assert store.dead_letters() == []
