"""The storage contract, run against every backend, then backend-specific behaviour."""
import datetime
import hashlib
import json
import multiprocessing
import os
import sqlite3
import sys
import threading
import time
import uuid

import pytest

from hueyd.constants import EmptyData
from hueyd.contrib.sql_huey import SqlStorage
from hueyd.exceptions import ConfigurationError
from hueyd.storage import (BaseStorage, FileStorage, MemoryStorage, PostgresStorage,
                           PriorityRedisStorage, RedisStorage, SqliteStorage, storage_from_url)
from hueyd.storage.protocols import (Claims, Counters, DataStore, DeadLetters, Events, NodeState,
                                     Queue, Schedule, Stats, WriteBatching)
from hueyd.storage import CySqliteStorage, PriorityRedisExpireStorage, RedisExpireStorage
from support import make_storage, wait_until
from conftest import REDIS_KINDS, SHARED_STORAGE_KINDS, STORAGE_KINDS, url_for


def drain(storage):
    items = []
    while (item := storage.dequeue()) is not None:
        items.append(item)
    return items


# conftest's fixtures build the storages a URL names (its STORAGE_KINDS). These
# override them here, so the contract also runs on the storages no URL names: kind ->
# (class, the conftest kind of the deployment it runs on).
CLASS_KINDS = {'redis-expire': (RedisExpireStorage, 'redis'),
               'priority-redis-expire': (PriorityRedisExpireStorage, 'redis'),
               # A cluster's keys carry a hash tag: the priority queue's and the expiring
               # results' keys too.
               'cluster-priority-expire': (PriorityRedisExpireStorage, 'cluster'),
               'cysqlite': (CySqliteStorage, None)}


def open_redis(request, tmp_path, storage_class, kind, name, **options):
    """A new ``storage_class`` on the Redis deployment of conftest kind ``kind``."""
    return make_storage(url_for(kind, request, tmp_path), name, storage_class=storage_class,
                        **options)


@pytest.fixture
def opener(request, tmp_path):
    """``opener(kind, name)``: a new storage of a conftest kind or of CLASS_KINDS."""
    def open_storage(kind, name):
        if kind not in CLASS_KINDS:
            return make_storage(url_for(kind, request, tmp_path), name)
        if kind == 'cysqlite':
            pytest.importorskip('cysqlite')
            return CySqliteStorage(name, filename=str(tmp_path / 'huey.db'))
        return open_redis(request, tmp_path, *CLASS_KINDS[kind], name)
    return open_storage


@pytest.fixture(params=STORAGE_KINDS + list(CLASS_KINDS))
def storage(request, opener, queue_name):
    storage = opener(request.param, queue_name)
    yield storage
    storage.flush_all()
    storage.close()


@pytest.fixture(params=SHARED_STORAGE_KINDS + list(CLASS_KINDS))
def shared_kind(request):
    return request.param


@pytest.fixture
def shared_storage(shared_kind, opener, queue_name):
    storage = opener(shared_kind, queue_name)
    yield storage
    storage.flush_all()
    storage.close()


# --- queue -----------------------------------------------------------------

def test_queue_is_fifo(storage):
    for i in range(5):
        storage.enqueue(b'm%d' % i)
    assert storage.queue_size() == 5
    assert drain(storage) == [b'm0', b'm1', b'm2', b'm3', b'm4']
    assert storage.dequeue() is None
    assert storage.queue_size() == 0


def test_priority_order(storage):
    for data, priority in [(b'low', None), (b'high-1', 10), (b'mid', 5),
                           (b'high-2', 10), (b'negative', -1), (b'zero', 0)]:
        storage.enqueue(data, priority)
    if storage.priority:
        expected = [b'high-1', b'high-2', b'mid', b'low', b'zero', b'negative']
    else:
        expected = [b'low', b'high-1', b'mid', b'high-2', b'negative', b'zero']
    assert storage.enqueued_items() == expected
    assert drain(storage) == expected


def test_enqueue_many(storage):
    storage.enqueue(b'first')
    storage.enqueue_many([(b'a', None), (b'b', 0), (b'c', None)])
    storage.enqueue_many([])
    assert storage.queue_size() == 4
    assert drain(storage) == [b'first', b'a', b'b', b'c']


def test_enqueued_items_does_not_remove(storage):
    for i in range(5):
        storage.enqueue(b'm%d' % i)
    assert storage.enqueued_items() == [b'm0', b'm1', b'm2', b'm3', b'm4']
    assert storage.enqueued_items(limit=2) == [b'm0', b'm1']
    assert storage.enqueued_items(limit=10) == [b'm0', b'm1', b'm2', b'm3', b'm4']
    assert storage.enqueued_items(limit=0) == []
    assert storage.queue_size() == 5


def test_flush_queue(storage):
    storage.enqueue_many([(b'a', None), (b'b', None)])
    storage.flush_queue()
    assert storage.queue_size() == 0
    assert storage.enqueued_items() == []
    assert storage.dequeue() is None
    storage.enqueue(b'c')
    assert storage.dequeue() == b'c'


def test_binary_messages_round_trip(storage):
    blobs = [bytes(range(256)), b'\x00', b'', b'\xff' * 10000]
    for blob in blobs:
        storage.enqueue(blob)
    assert drain(storage) == blobs


def test_threads_never_dequeue_the_same_message(storage):
    messages = [b'%d' % i for i in range(400)]
    storage.enqueue_many([(m, None) for m in messages])
    got = [[] for _ in range(4)]

    def worker(out):
        out.extend(drain(storage))
        storage.close()

    threads = [threading.Thread(target=worker, args=(out,)) for out in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [m for out in got for m in out]
    assert sorted(everything) == sorted(messages)


def test_queues_with_other_names_are_separate(shared_kind, shared_storage, opener, queue_name):
    storage = shared_storage  # a memory storage shares nothing, so there is nothing to keep apart
    other = opener(shared_kind, queue_name + '-other')
    try:
        storage.enqueue(b'mine')
        storage.add_to_schedule(b'later', 1)
        storage.put_data('k', b'v', is_result=True)
        storage.incr('c')
        assert (other.queue_size(), other.schedule_size(), other.result_store_size()) == (0, 0, 0)
        assert other.peek_data('k') is EmptyData
        assert other.incr('c') == 1
        other.flush_all()
        assert storage.dequeue() == b'mine'
        assert storage.read_schedule(2) == [b'later']
        assert storage.peek_data('k') == b'v'
    finally:
        other.flush_all()
        other.close()


def test_a_second_instance_sees_the_same_data(shared_kind, shared_storage, opener, queue_name):
    storage = shared_storage
    assert storage.shared
    storage.enqueue(b'm')
    storage.put_data('k', b'v')
    other = opener(shared_kind, queue_name)
    try:
        assert other.dequeue() == b'm'
        assert other.pop_data('k') == b'v'
        assert storage.has_data_for_key('k') is False
    finally:
        other.close()


# The shared kinds that carry events (files and SqlStorage carry none).
@pytest.mark.parametrize('shared_kind', [kind for kind in SHARED_STORAGE_KINDS + list(CLASS_KINDS)
                                         if kind not in ('file', 'sql')])
def test_events_reach_a_listener_through_another_instance(shared_kind, shared_storage, opener,
                                                          queue_name):
    listening = opener(shared_kind, queue_name)
    listener = listening.listener()
    try:
        shared_storage.publish_events([b'{"n": 1}', b'{"n": 2}'])
        assert [listener.get_event(5), listener.get_event(5)] == [{'n': 1}, {'n': 2}]
    finally:
        listener.close()
        listening.close()


def test_close_then_use_again(storage):
    storage.enqueue(b'a')
    storage.close()
    storage.enqueue(b'b')
    assert drain(storage) == [b'a', b'b']


# --- schedule --------------------------------------------------------------

def test_read_schedule_returns_due_items_oldest_first(storage):
    now = time.time()
    storage.add_to_schedule(b'in-2', now + 2)
    storage.add_to_schedule(b'past-10', now - 10)
    storage.add_to_schedule(b'in-100', now + 100)
    storage.add_to_schedule(b'past-1', now - 1)
    storage.add_to_schedule(b'exactly-now', now)
    assert storage.schedule_size() == 5

    assert storage.read_schedule(now) == [b'past-10', b'past-1', b'exactly-now']
    assert storage.read_schedule(now) == []
    assert storage.schedule_size() == 2
    assert storage.read_schedule(now + 50) == [b'in-2']
    assert storage.read_schedule(now + 1000) == [b'in-100']
    assert storage.schedule_size() == 0


def test_equal_timestamps_keep_insertion_order(storage):
    for i in range(10):
        storage.add_to_schedule(b'm%d' % i, 100.0)
    assert storage.scheduled_items() == [b'm%d' % i for i in range(10)]
    assert storage.read_schedule(100.0) == [b'm%d' % i for i in range(10)]


def test_same_bytes_scheduled_twice_come_back_twice(storage):
    storage.add_to_schedule(b'same', 10.0)
    storage.add_to_schedule(b'same', 10.0)
    storage.add_to_schedule(b'same', 20.0)
    assert storage.schedule_size() == 3
    assert storage.scheduled_items() == [b'same'] * 3
    assert storage.read_schedule(15.0) == [b'same', b'same']
    assert storage.read_schedule(25.0) == [b'same']


def test_next_schedule_time_and_scheduled_items(storage):
    assert storage.next_schedule_time() is None
    assert storage.scheduled_items() == []
    storage.add_to_schedule(b'b', 2000.5)
    storage.add_to_schedule(b'a', 1000.25)
    storage.add_to_schedule(b'c', 3000.0)
    assert storage.next_schedule_time() == 1000.25
    assert storage.scheduled_items() == [b'a', b'b', b'c']
    assert storage.scheduled_items(limit=2) == [b'a', b'b']
    assert storage.scheduled_items(limit=0) == []
    assert storage.schedule_size() == 3
    storage.read_schedule(1500)
    assert storage.next_schedule_time() == 2000.5


def test_flush_schedule(storage):
    storage.add_to_schedule(b'a', 1.0)
    storage.add_to_schedule(b'b', 2.0)
    storage.flush_schedule()
    assert storage.schedule_size() == 0
    assert storage.next_schedule_time() is None
    assert storage.read_schedule(time.time()) == []


# --- data store ------------------------------------------------------------

def test_put_peek_pop_delete_has(storage):
    assert storage.peek_data('k') is EmptyData
    assert storage.has_data_for_key('k') is False
    storage.put_data('k', b'v1')
    assert storage.has_data_for_key('k') is True
    assert storage.peek_data('k') == b'v1'
    assert storage.peek_data('k') == b'v1'  # peeking does not consume
    storage.put_data('k', b'v2')
    assert storage.pop_data('k') == b'v2'
    assert storage.pop_data('k') is EmptyData
    assert storage.has_data_for_key('k') is False

    storage.put_data('d', b'x')
    assert storage.delete_data('d') is True
    assert storage.delete_data('d') is False
    assert storage.peek_data('d') is EmptyData


def test_empty_bytes_is_a_value_not_empty_data(storage):
    storage.put_data('empty', b'')
    assert storage.has_data_for_key('empty') is True
    assert storage.peek_data('empty') == b''
    assert storage.peek_data('empty') is not EmptyData
    assert storage.pop_data('empty') == b''
    assert storage.pop_data('empty') is EmptyData
    assert storage.put_if_empty('lock', b'') is True
    assert storage.put_if_empty('lock', b'other') is False
    assert storage.peek_data('lock') == b''


def test_peek_many(storage):
    storage.put_data('a', b'1')
    storage.put_data('c', b'', is_result=True)
    storage.put_if_empty('d', b'4', ttl=60)
    assert storage.peek_many(['a', 'b', 'c', 'd']) == {'a': b'1', 'c': b'', 'd': b'4'}
    assert storage.peek_many([]) == {}


def test_put_if_empty(storage):
    assert storage.put_if_empty('lock', b'first') is True
    assert storage.put_if_empty('lock', b'second') is False
    assert storage.peek_data('lock') == b'first'
    assert storage.pop_data('lock') == b'first'
    assert storage.put_if_empty('lock', b'third') is True
    assert storage.peek_data('lock') == b'third'

    storage.put_data('taken', b'x', is_result=True)
    assert storage.put_if_empty('taken', b'y') is False
    assert storage.put_if_empty('taken', b'y', ttl=60) is False
    assert storage.peek_data('taken') == b'x'


def test_put_if_empty_ttl_expires(storage):
    assert storage.put_if_empty('lock', b'held', ttl=0.2) is True
    assert storage.put_if_empty('lock', b'other', ttl=0.2) is False
    assert storage.has_data_for_key('lock') is True
    wait_until(lambda: not storage.has_data_for_key('lock'), timeout=5,
               message='a key put with ttl=0.2 never expired')
    assert storage.peek_data('lock') is EmptyData
    assert storage.pop_data('lock') is EmptyData
    assert storage.put_if_empty('lock', b'again', ttl=60) is True
    assert storage.peek_data('lock') == b'again'


def test_ttl_key_can_be_replaced_deleted_and_flushed(storage):
    storage.put_if_empty('lock', b'held', ttl=60)
    assert storage.delete_data('lock') is True
    assert storage.has_data_for_key('lock') is False
    storage.put_if_empty('lock', b'held', ttl=60)
    storage.put_data('lock', b'plain')  # an explicit write replaces it, without a ttl
    assert storage.peek_data('lock') == b'plain'
    assert storage.pop_data('lock') == b'plain'
    assert storage.pop_data('lock') is EmptyData
    storage.put_if_empty('lock', b'held', ttl=60)
    storage.flush_results()
    assert storage.has_data_for_key('lock') is False


def test_result_items_cover_every_key_of_the_data_store(storage):
    # huey's contract: results, revocations and locks alike, keys as str.
    storage.put_data('r1', b'one', is_result=True)
    storage.put_data(b'r2', b'', is_result=True)
    storage.put_data('revoked', b'1')
    storage.put_if_empty('lock', b'held')
    storage.put_if_empty('ttl-lock', b'held', ttl=60)
    assert storage.result_store_size() == 5
    assert storage.result_items() == {'r1': b'one', 'r2': b'', 'revoked': b'1',
                                      'lock': b'held', 'ttl-lock': b'held'}

    storage.put_data('r1', b'now plain')
    assert storage.result_items()['r1'] == b'now plain'
    for key in ('r1', 'revoked', 'lock', 'ttl-lock'):
        assert storage.pop_data(key) != EmptyData
    assert storage.pop_data(b'r2') == b''
    if isinstance(storage, RedisExpireStorage):  # its results outlive reads
        assert storage.result_items() == {'r2': b''}
        assert storage.delete_data(b'r2') is True
    assert storage.result_store_size() == 0
    assert storage.result_items() == {}


def test_result_items_leave_out_expired_keys(storage):
    storage.put_if_empty('lock', b'held', ttl=0.2)
    wait_until(lambda: not storage.has_data_for_key('lock'), timeout=5,
               message='a key put with ttl=0.2 never expired')
    assert storage.result_items() == {}
    assert storage.result_store_size() == 0


def test_wait_result_is_true_once_the_key_holds_a_value(storage):
    assert storage.wait_result('r', timeout=0.05) is False
    threading.Timer(0.1, storage.put_data, ('r', b'1'), {'is_result': True}).start()
    assert storage.wait_result('r', timeout=10) is True


def test_schedule_takes_datetimes_as_local_time(storage):
    # huey's storages are handed naive datetimes; hueyd's callers pass unix time.
    when = datetime.datetime(2000, 1, 2, 3, 4, 5)
    storage.add_to_schedule(b'later', when + datetime.timedelta(seconds=1))
    storage.add_to_schedule(b'now', when)
    assert storage.next_schedule_time() == when.timestamp()
    assert storage.read_schedule(when) == [b'now']
    assert storage.read_schedule(when.timestamp() + 1) == [b'later']


def test_flush_results(storage):
    storage.put_data('r', b'1', is_result=True)
    storage.put_data('k', b'2')
    storage.put_if_empty('lock', b'3', ttl=60)
    storage.flush_results()
    assert storage.result_store_size() == 0
    assert storage.peek_many(['r', 'k', 'lock']) == {}


# --- counters ----------------------------------------------------------------

def test_counters(storage):
    assert storage.incr('c') == 1
    assert storage.incr('c') == 2
    assert storage.incr('c', 10) == 12
    assert storage.incr('c', -20) == -8
    assert storage.incr('other', 5) == 5
    storage.delete_counter('c')
    storage.delete_counter('never-set')
    assert storage.incr('c') == 1
    storage.flush_counters()
    assert storage.incr('c') == 1
    assert storage.incr('other') == 1


def test_flush_all(storage):
    storage.enqueue(b'm')
    storage.add_to_schedule(b's', 1.0)
    storage.put_data('r', b'1', is_result=True)
    storage.put_if_empty('lock', b'1', ttl=60)
    storage.incr('c')
    storage.flush_all()
    assert storage.queue_size() == 0
    assert storage.schedule_size() == 0
    assert storage.result_store_size() == 0
    assert storage.has_data_for_key('lock') is False
    assert storage.incr('c') == 1


# --- the declared contract (the table in hueyd/storage/base.py) -------------

EVERY_PROTOCOL = (Queue, Schedule, DataStore, Counters, Claims, DeadLetters, Events, NodeState,
                  WriteBatching, Stats)


def test_each_storage_supports_what_it_declares(storage):
    events = stats = not isinstance(storage, (FileStorage, SqlStorage))
    batches = not isinstance(storage, (MemoryStorage, FileStorage, SqlStorage))
    assert [storage.supports(p) for p in EVERY_PROTOCOL] == \
        [True] * 6 + [events, True, batches, stats]
    assert storage.supports_events is events


def test_a_storage_that_leaves_out_a_required_method_names_it():
    class HalfQueue(BaseStorage):
        def __init__(self):
            super().__init__()
            self.items = []

        def enqueue(self, data, priority=None):
            self.items.append(data)

    storage = HalfQueue()
    storage.enqueue_many([(b'a', None), (b'b', 3)])  # a default built on enqueue()
    assert storage.items == [b'a', b'b']
    with pytest.raises(NotImplementedError) as info:
        storage.dequeue()
    assert 'HalfQueue' in str(info.value) and 'Queue.dequeue' in str(info.value)


def test_what_a_storage_answers_for_the_optional_protocols_it_does_not_declare():
    storage = BaseStorage('bare')
    assert [storage.supports(p) for p in EVERY_PROTOCOL] == [True] * 4 + [False] * 6
    assert not storage.supports_events
    for call in (storage.listener, lambda: iter(storage)):
        with pytest.raises(ConfigurationError) as info:
            call()
        assert 'BaseStorage' in str(info.value)
    assert storage.dead_letters() == [] and storage.remove_dead_letters(['x']) == 0
    with pytest.raises(NotImplementedError):
        storage.add_dead_letter('x', b'record')
    assert storage.states('node') == {}
    storage.begin_batch()  # writes go out at once: nothing to batch
    with storage.unbatched():
        pass
    storage.flush_batch(wait=True)
    storage.end_batch()


# --- task statistics (the Stats protocol) -------------------------------------

# The kinds that declare Stats (test_each_storage_supports_what_it_declares checks the rest).
STATS_KINDS = ['memory', 'sqlite', 'redis', 'postgres', 'redis-expire', 'priority-redis-expire',
               'cysqlite', 'sentinel', 'cluster']


@pytest.fixture(params=STATS_KINDS)
def stats_kind(request):
    return request.param


@pytest.fixture
def stats_storage(stats_kind, opener, queue_name):
    storage = opener(stats_kind, queue_name)
    yield storage
    storage.flush_all()
    storage.close()


def this_minute():
    return int(time.time()) // 60


def test_stats_are_added_up_per_minute_and_task_keeping_the_largest_max(stats_storage):
    now = this_minute()
    stats_storage.add_stats({(now, 'app.add'): {'runs': 2, 'sum': 0.5, 'max': 0.4, 'le=0.5': 2},
                             (now - 1, 'app.add'): {'runs': 1, 'failures': 1, 'max': 3.0}})
    stats_storage.add_stats({(now, 'app.add'): {'runs': 1, 'sum': 0.25, 'max': 0.25, 'le=0.5': 1},
                             (now, 'odd|name with spaces'): {'retries': 1}})
    assert stats_storage.read_stats(now - 1) == {
        (now, 'app.add'): {'runs': 3, 'sum': 0.75, 'max': 0.4, 'le=0.5': 3},
        (now - 1, 'app.add'): {'runs': 1, 'failures': 1, 'max': 3.0},
        (now, 'odd|name with spaces'): {'retries': 1}}
    assert set(stats_storage.read_stats(now)) == {(now, 'app.add'), (now, 'odd|name with spaces')}


def test_stats_past_the_retention_are_forgotten(stats_storage):
    now = this_minute()
    too_old = now - stats_storage.stats_retention // 60 - 2
    stats_storage.add_stats({(too_old, 'old'): {'runs': 1}, (now, 'new'): {'runs': 1}})
    stats_storage.add_stats({(now, 'new'): {'runs': 1}})  # the SQL storages prune as they add
    assert stats_storage.read_stats(0) == {(now, 'new'): {'runs': 2}}
    stats_storage.flush_all()
    assert stats_storage.read_stats(0) == {}


@pytest.mark.parametrize('stats_kind', [kind for kind in STATS_KINDS if kind != 'memory'])
def test_stats_are_shared_by_instances_of_one_queue_only(stats_kind, opener, queue_name):
    # memory is private to its instance: nothing to share
    first, second, other = (opener(stats_kind, name)
                            for name in (queue_name, queue_name, queue_name + '-other'))
    try:
        now = this_minute()
        first.add_stats({(now, 'app.add'): {'runs': 1, 'max': 1.0}})
        second.add_stats({(now, 'app.add'): {'runs': 1, 'max': 2.0}})
        assert first.read_stats(now) == {(now, 'app.add'): {'runs': 2, 'max': 2.0}}
        assert other.read_stats(now) == {}
        other.flush_stats()
        assert second.read_stats(now) == {(now, 'app.add'): {'runs': 2, 'max': 2.0}}
    finally:
        for storage in (first, other):
            storage.flush_all()
        for storage in (first, second, other):
            storage.close()


@pytest.mark.parametrize('kind', REDIS_KINDS)
def test_redis_keeps_a_minute_of_stats_for_the_retention(request, tmp_path, kind, queue_name):
    storage = open_redis(request, tmp_path, RedisStorage, kind, queue_name)
    try:
        storage.add_stats({(this_minute(), 'app.add'): {'runs': 1}})
        [key] = storage.conn.keys(storage.stats_prefix + '*')
        assert 0 < storage.conn.ttl(key) <= storage.stats_retention == 25 * 3600
    finally:
        storage.flush_all()
        storage.close()


# --- storage_from_url ------------------------------------------------------

@pytest.mark.parametrize('url, storage_class, kwargs', [
    ('memory://', MemoryStorage, {}),
    ('redis://localhost:6379/0', RedisStorage, {'url': 'redis://localhost:6379/0'}),
    ('rediss://:pw@host:6380/2', RedisStorage, {'url': 'rediss://:pw@host:6380/2'}),
    ('unix:///run/redis.sock?db=1', RedisStorage, {'url': 'unix:///run/redis.sock?db=1'}),
    ('sqlite:///data/huey.db', SqliteStorage, {'filename': 'data/huey.db'}),
    ('sqlite:////var/lib/huey.db', SqliteStorage, {'filename': '/var/lib/huey.db'}),
    ('sqlite:////var/lib/huey.db?journal_mode=delete&timeout=2.5&cache_mb=16&fsync=true',
     SqliteStorage, {'filename': '/var/lib/huey.db', 'journal_mode': 'delete', 'timeout': 2.5,
                     'cache_mb': 16, 'fsync': True}),
    ('file:///var/lib/hueyd', FileStorage, {'path': '/var/lib/hueyd'}),
    ('file:///var/lib/my%20queue?levels=1&use_thread_lock=yes', FileStorage,
     {'path': '/var/lib/my queue', 'levels': 1, 'use_thread_lock': True}),
    ('postgres://localhost/huey', PostgresStorage, {'dsn': 'postgres://localhost/huey'}),
    ('postgresql://u:pw@db:5433/q?sslmode=require&read_timeout=5&table_prefix=jobs',
     PostgresStorage, {'dsn': 'postgresql://u:pw@db:5433/q?sslmode=require', 'read_timeout': 5,
                       'table_prefix': 'jobs'}),
])
def test_storage_from_url(url, storage_class, kwargs):
    assert storage_from_url(url) == (storage_class, kwargs)


@pytest.mark.parametrize('url', ['', 'huey.db', 'mysql://localhost/huey', 'sqlite://',
                                 'sqlite://host/huey.db', 'http://example.com', 'file://',
                                 'file://host/folder', 'file:relative/folder'])
def test_storage_from_url_rejects_unknown_urls(url):
    with pytest.raises(ConfigurationError) as info:
        storage_from_url(url)
    message = str(info.value)
    assert repr(url) in message
    for example in ('redis://', 'rediss://', 'unix://', 'sqlite:///', 'sqlite:////', 'file:///',
                    'postgresql://', 'memory://'):
        assert example in message


def test_sqlite_relative_url_is_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage_class, kwargs = storage_from_url('sqlite:///huey.db')
    storage = storage_class(**kwargs)
    storage.enqueue(b'x')
    storage.close()
    assert (tmp_path / 'huey.db').exists()


# --- memory ----------------------------------------------------------------

def test_memory_storage_is_private():
    assert MemoryStorage.shared is False and MemoryStorage.blocking is False
    a, b = MemoryStorage('q'), MemoryStorage('q')
    a.enqueue(b'x')
    assert b.queue_size() == 0


# --- sqlite ----------------------------------------------------------------

def test_sqlite_missing_directory(tmp_path):
    missing = tmp_path / 'no' / 'such' / 'dir'
    with pytest.raises(ConfigurationError) as info:
        SqliteStorage(filename=str(missing / 'huey.db'))
    message = str(info.value)
    assert str(missing) in message
    assert 'create the directory' in message and 'another filename' in message
    assert not missing.exists()


def test_sqlite_rejects_bad_options(tmp_path):
    with pytest.raises(ConfigurationError):
        SqliteStorage(filename=str(tmp_path / 'huey.db'), journal_mode='wal; DROP TABLE x')
    with pytest.raises(ConfigurationError):
        SqliteStorage(filename=':memory:')


def test_sqlite_tables_are_prefixed(tmp_path):
    import sqlite3
    path = tmp_path / 'huey.db'
    storage = SqliteStorage('q', filename=str(path))
    storage.enqueue(b'x')
    storage.close()
    with sqlite3.connect(path) as conn:
        tables = {name for name, in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = conn.execute('PRAGMA journal_mode').fetchone()[0]
    assert {'hueyd_queue', 'hueyd_schedule', 'hueyd_kv', 'hueyd_counters'} <= tables
    assert all(t.startswith(('hueyd_', 'sqlite_')) for t in tables)
    assert mode == 'wal'


def sqlite_driver(driver):
    """``(storage class, connect(path))`` for SQLite through ``driver``.

    A test's own connection goes through the storage's driver: two SQLite
    libraries in one process do not see each other's locks.
    """
    if driver == 'cysqlite':
        cysqlite = pytest.importorskip('cysqlite')
        return CySqliteStorage, lambda path: cysqlite.connect(str(path))
    import sqlite3
    return SqliteStorage, lambda path: sqlite3.connect(path, isolation_level=None)


@pytest.mark.parametrize('driver', ['sqlite3', 'cysqlite'])
def test_sqlite_a_lock_held_past_the_busy_timeout_is_a_transient_error(tmp_path, driver):
    storage_class, connect = sqlite_driver(driver)
    storage = storage_class('q', filename=str(tmp_path / 'huey.db'), timeout=0.05)
    storage.enqueue(b'a')
    other = connect(tmp_path / 'huey.db')
    other.execute('BEGIN IMMEDIATE')
    try:
        with pytest.raises(storage.transient_errors, match='locked'):
            storage.enqueue(b'b')
    finally:
        other.execute('ROLLBACK')
        other.close()
    storage.enqueue(b'b')  # and the storage works again once the lock is gone
    assert storage.queue_size() == 2


@pytest.mark.parametrize('driver', ['sqlite3', 'cysqlite'])
def test_sqlite_a_read_only_database_is_not_a_transient_error(tmp_path, driver):
    """Retrying a write that can never succeed would hang workers for ever."""
    import sqlite3
    storage_class, _ = sqlite_driver(driver)
    path = tmp_path / 'huey.db'
    storage_class('q', filename=str(path)).enqueue(b'a')
    storage = storage_class('q', filename=str(path))
    storage.conn.execute('PRAGMA query_only = ON')  # what a read-only file does to writes
    with pytest.raises(sqlite3.OperationalError) as caught:
        storage.enqueue(b'b')
    assert not isinstance(caught.value, storage.transient_errors), caught.value


def _consumer(storage, results):
    # The instance is inherited through fork(): SQLite must open its own connection.
    # A lock wait past the busy timeout (a loaded machine) is one of the storage's
    # transient errors, which the daemon meets by trying again: so does this consumer.
    got = []
    while True:
        try:
            item = storage.dequeue()
        except storage.transient_errors:
            continue
        if item is None:
            break
        got.append(item)
    results.put(got)


@pytest.mark.parametrize('kind', ['sqlite', 'file', 'postgres', 'sql'] + REDIS_KINDS)
def test_processes_never_dequeue_the_same_message(tmp_path, kind, request, queue_name):
    if kind == 'sqlite':
        storage = SqliteStorage('q', filename=str(tmp_path / 'huey.db'))
    elif kind == 'sql':
        storage = make_storage(url_for(kind, request, tmp_path), queue_name)
    elif kind == 'file':
        storage = FileStorage('q', path=str(tmp_path))
    else:  # a child's redis-py pool (or psycopg connection) must be its own, not the parent's
        storage = make_storage(url_for(kind, request, tmp_path), queue_name, blocking=False)
    messages = [b'message-%d' % i for i in range(2000)]
    storage.enqueue_many([(m, None) for m in messages])
    assert storage.queue_size() == 2000  # the parent's connection is open while forking

    ctx = multiprocessing.get_context('fork')
    results = ctx.Queue()
    workers = [ctx.Process(target=_consumer, args=(storage, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=60) for _ in workers]  # read before join: the pipe is bounded
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    everything = [m for batch in got for m in batch]
    assert len(everything) == len(set(everything)) == 2000
    assert set(everything) == set(messages)
    assert storage.queue_size() == 0
    storage.close()


def test_sqlite_connection_reopened_after_fork(tmp_path):
    storage = SqliteStorage('q', filename=str(tmp_path / 'huey.db'))
    storage.put_data('parent', b'1')
    parent_conn = storage.conn
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's handle
        ok = storage.conn is not parent_conn and storage.peek_data('parent') == b'1'
        storage.put_data('child', b'2')
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage.conn is parent_conn
    assert storage.peek_data('child') == b'2'
    storage.close()


# --- file ------------------------------------------------------------------

@pytest.mark.parametrize('options, named', [
    ({}, ['path=']),
    ({'path': 'FILE'}, ['FILE', 'is a file', 'folder']),
    ({'path': 'FILE/below'}, ['FILE/below', 'cannot create', 'write to']),
    ({'path': 'DIR', 'levels': 5}, ['levels=5', '0 to 4']),
])
def test_file_storage_names_what_is_wrong(tmp_path, options, named):
    (tmp_path / 'FILE').write_text('not a folder')
    options = {key: str(tmp_path / value) if key == 'path' else value
               for key, value in options.items()}
    with pytest.raises(ConfigurationError) as info:
        FileStorage('q', **options)
    for words in named:
        assert words.replace('FILE', str(tmp_path / 'FILE')) in str(info.value)


def test_file_storage_priorities_are_32_bit_integers(tmp_path):
    storage = FileStorage('q', path=str(tmp_path))
    storage.enqueue(b'low', priority=1.5)  # truncated, as huey does
    storage.enqueue(b'top', priority=2 ** 31 - 1)
    storage.add_to_schedule(b'bottom', 1.0, priority=-2 ** 31)
    storage.move_due(2.0)
    assert drain(storage) == [b'top', b'low', b'bottom']
    with pytest.raises(ValueError, match='from -2147483648 to 2147483647, not 2147483648'):
        storage.enqueue(b'x', priority=2 ** 31)


def test_file_storage_layout(tmp_path):
    storage = FileStorage('a/b', path=str(tmp_path), levels=1)
    storage.enqueue(b'm')
    storage.put_data('k', b'v', is_result=True)
    folder = tmp_path / 'hueyd.a%2Fb'
    assert storage.location() == str(folder)
    assert [p.read_bytes() for p in (folder / 'queue').iterdir()] == [b'm']
    digest = hashlib.md5(b'k').hexdigest()
    assert storage.path_for_key('k') == str(folder / 'data' / digest[0] / digest)
    assert os.listdir(folder / 'tmp') == []  # written there, then renamed into place


def test_file_storage_with_a_thread_lock_is_for_one_process(tmp_path):
    storage = FileStorage('q', path=str(tmp_path), use_thread_lock=True)
    other = FileStorage('q', path=str(tmp_path), use_thread_lock=True)
    assert storage.shared is False and FileStorage.shared is True
    assert storage.lock is other.lock  # instances of one process still exclude each other
    assert not (tmp_path / 'hueyd.q' / 'lock').exists()


# --- postgres ----------------------------------------------------------------

@pytest.fixture
def pg(postgres_server, queue_name):
    """``pg(**options)``: a new PostgresStorage on the session server, emptied and closed after."""
    made = []

    def make(**options):
        made.append(PostgresStorage(queue_name, dsn=postgres_server.dsn, **options))
        return made[-1]
    yield make
    for storage in made:
        storage.flush_all()
        storage.close()


def pg_tables(storage, prefix):
    rows = storage.conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s",
                                (prefix + '%',)).fetchall()
    return sorted(name for name, in rows)


def listening(storage, channel):
    """Whether some connection LISTENs on ``channel`` (a waiter is ready to be woken)."""
    return bool(storage.conn.execute('SELECT 1 FROM pg_stat_activity WHERE query = %s',
                                     ('LISTEN "%s"' % channel,)).fetchone())


@pytest.mark.parametrize('method', ['dequeue', 'claim'])
def test_postgres_idle_workers_are_woken_by_notify(pg, method):
    waiter, producer = pg(read_timeout=30), pg()
    got = []
    thread = threading.Thread(target=lambda: got.append(getattr(waiter, method)(
        *(['w'] if method == 'claim' else []))))
    thread.start()
    wait_until(lambda: listening(producer, waiter.channel), timeout=10,
               message='the waiter never LISTENed')
    producer.enqueue(b'wake')
    thread.join(10)  # far less than read_timeout: the NOTIFY woke it
    assert not thread.is_alive()
    assert got == [b'wake'] if method == 'dequeue' else [data for _, data in got[0]] == [b'wake']
    waiter.close()


def test_postgres_wait_result_is_woken_by_notify(pg):
    waiter, writer = pg(), pg()
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.wait_result('r', timeout=30,
                                                                           max_delay=30)))
    thread.start()
    wait_until(lambda: listening(writer, waiter.result_channel), timeout=10,
               message='the waiter never LISTENed')
    writer.put_data('r', b'done', is_result=True)
    thread.join(10)
    assert got == [True]
    assert waiter.wait_result('missing', timeout=0.05) is False


@pytest.fixture
def prefixed(pg, postgres_server, queue_name):
    """``(admin, prefixed(**options))``: storages on tables of a new prefix, dropped after."""
    admin, prefix, made = pg(), 'p_' + uuid.uuid4().hex[:8], []

    def make(**options):
        made.append(PostgresStorage(queue_name, dsn=postgres_server.dsn, table_prefix=prefix,
                                    **options))
        return made[-1]
    yield admin, prefix, make
    for storage in made:
        storage.close()
    for table in pg_tables(admin, prefix):
        admin.conn.execute('DROP TABLE %s' % table)


def test_postgres_tables_only_when_asked(prefixed):
    admin, prefix, make = prefixed
    storage = make(create_tables=False)
    assert pg_tables(admin, prefix) == []
    storage.initialize_schema()
    assert pg_tables(admin, prefix) == [prefix + t for t in ('_counter', '_kv', '_schedule',
                                                             '_task')]
    storage.initialize_schema(delivery=True)
    assert len(pg_tables(admin, prefix)) == 10
    storage.enqueue(b'm')
    assert [data for _, data in storage.claim('w')] == [b'm']
    now = this_minute()
    storage.add_stats({(now, 'add'): {'runs': 1}})
    assert storage.read_stats(0) == {(now, 'add'): {'runs': 1}}


def test_postgres_takes_over_tables_made_by_huey(prefixed):
    admin, prefix, make = prefixed
    # huey 3.5's layout: no priority in the schedule, no ttl in the data store.
    admin.conn.execute('CREATE TABLE {p}_kv (queue text NOT NULL, key text NOT NULL, value bytea '
                       'NOT NULL, PRIMARY KEY (queue, key)); CREATE TABLE {p}_schedule (id '
                       'bigserial PRIMARY KEY, queue text NOT NULL, data bytea NOT NULL, '
                       'timestamp double precision NOT NULL)'.replace('{p}', prefix))
    storage = make()
    storage.add_to_schedule(b's', 1.0, priority=3)
    assert storage.put_if_empty('lock', b'1', ttl=60) is True
    assert storage.move_due(2.0) == [b's'] and storage.dequeue() == b's'


def test_postgres_events_too_big_to_notify_go_through_a_table(pg):
    storage = pg()
    listener = storage.listener()
    big = json.dumps({'status': 'error-task', 'traceback': 'x' * 20000}).encode()
    storage.publish_events([b'{"status": "started"}', big, b'{"status": "finished"}'])
    got = [listener.get_event(timeout=10) for _ in range(3)]
    listener.close()
    assert [e['status'] for e in got] == ['started', 'error-task', 'finished']
    assert got[1]['traceback'] == 'x' * 20000


def test_postgres_long_queue_names_get_short_channels(postgres_server):
    storage = PostgresStorage('q' * 100, dsn=postgres_server.dsn, read_timeout=0.05)
    assert len(storage.channel.encode()) <= 63 and storage.channel != storage.result_channel
    storage.enqueue(b'm')
    assert storage.dequeue() == b'm' and storage.dequeue() is None
    storage.flush_all()
    storage.close()


def test_postgres_without_psycopg_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'psycopg', None)  # what a missing package imports as
    with pytest.raises(ConfigurationError, match=r"pip install 'hueyd\[postgres\]'"):
        PostgresStorage('q', dsn='postgresql:///nowhere')


# --- redis -----------------------------------------------------------------

@pytest.fixture(params=REDIS_KINDS)
def priority_storage(request, tmp_path, queue_name):
    storage = open_redis(request, tmp_path, PriorityRedisStorage, request.param, queue_name)
    yield storage
    storage.flush_all()
    storage.close()


def test_priority_redis_orders_by_priority_then_fifo(priority_storage):
    storage = priority_storage
    for data, priority in [(b'low-1', None), (b'high-1', 10), (b'low-2', 0), (b'mid', 5),
                           (b'high-2', 10), (b'negative', -3), (b'high-3', 10)]:
        storage.enqueue(data, priority)
    expected = [b'high-1', b'high-2', b'high-3', b'mid', b'low-1', b'low-2', b'negative']
    assert storage.queue_size() == 7
    assert storage.enqueued_items() == expected
    assert storage.enqueued_items(limit=2) == expected[:2]
    assert drain(storage) == expected


@pytest.mark.parametrize('blocking', [True, False])
def test_priority_redis_dequeue(priority_storage, blocking):
    storage = priority_storage
    storage.blocking = blocking
    storage.enqueue_many([(b'same', 1), (b'same', 1), (b'top', 9), (b'', 1)])
    assert drain(storage) == [b'top', b'same', b'same', b'']
    assert storage.dequeue() is None


@pytest.mark.parametrize('kind', REDIS_KINDS)
def test_redis_blocking_dequeue_waits_for_a_message(request, tmp_path, kind, queue_name):
    storage = open_redis(request, tmp_path, RedisStorage, kind, queue_name, read_timeout=5)
    producer = open_redis(request, tmp_path, RedisStorage, kind, queue_name)
    try:
        timer = threading.Timer(0.1, producer.enqueue, args=(b'late',))
        timer.start()
        assert storage.dequeue() == b'late'
        timer.join()
    finally:
        storage.flush_all()
        storage.close()
        producer.close()


@pytest.mark.parametrize('kind', REDIS_KINDS)
def test_redis_read_schedule_is_atomic_across_clients(request, tmp_path, kind, queue_name):
    writer = open_redis(request, tmp_path, RedisStorage, kind, queue_name)
    readers = [open_redis(request, tmp_path, RedisStorage, kind, queue_name) for _ in range(2)]
    total = 1000
    got = [[] for _ in readers]
    done = threading.Event()

    def read(storage, out):
        while not done.is_set():
            out.extend(storage.read_schedule(time.time() + 1000))

    threads = [threading.Thread(target=read, args=pair) for pair in zip(readers, got)]
    for thread in threads:
        thread.start()
    try:
        for i in range(total):
            writer.add_to_schedule(b'item-%d' % i, time.time())
        wait_until(lambda: sum(map(len, got)) >= total, message='scheduled items went missing')
    finally:
        done.set()
        for thread in threads:
            thread.join()
    everything = [item for out in got for item in out]
    assert len(everything) == len(set(everything)) == total
    assert all(got), 'both clients should have read something'
    writer.flush_all()
    for storage in [writer] + readers:
        storage.close()


def test_redis_key_layout(redis_server, queue_name):
    storage = RedisStorage(queue_name, url=redis_server.url)
    client = redis_server.client()
    try:
        storage.enqueue(b'm')
        storage.add_to_schedule(b's', 1.0)
        storage.put_data('r', b'1', is_result=True)
        storage.put_data('k', b'2')
        storage.put_if_empty('lock', b'3', ttl=30)
        storage.incr('c')
        prefix = 'hueyd.%s.' % queue_name
        assert client.type(prefix + 'queue') == b'list'
        assert client.type(prefix + 'schedule') == b'zset'
        assert client.hgetall(prefix + 'results') == {b'r': b'1'}
        assert client.hgetall(prefix + 'data') == {b'k': b'2'}
        assert client.get(prefix + 'ttl.lock') == b'3'
        assert 0 < client.pttl(prefix + 'ttl.lock') <= 30000
        assert client.hgetall(prefix + 'counters') == {b'c': b'1'}
        storage.flush_all()
        assert client.keys(prefix + '*') == []
    finally:
        storage.flush_all()
        storage.close()
        client.close()


def test_redis_schedule_members_have_the_layout_the_scripts_read(redis_server, queue_name):
    storage = PriorityRedisStorage(queue_name, url=redis_server.url)
    client = redis_server.client()
    try:
        storage.add_to_schedule(b'msg', 1.0, priority=-3)
        assert client.zrange('hueyd.%s.schedule' % queue_name, 0, -1) == [
            b'0000000000000001' b'-0000000003' b'msg']
        assert storage.scheduled_items() == [b'msg']
        assert storage.move_due(2.0) == [b'msg']
        assert client.zrange('hueyd.%s.queue' % queue_name, 0, -1, withscores=True) == [
            (b'0000000000000001' b'msg', 3.0)]
        assert storage.dequeue() == b'msg'
    finally:
        storage.flush_all()
        storage.close()
        client.close()


def test_redis_connection_options(redis_server, queue_name):
    by_socket = RedisStorage(queue_name, unix_socket_path=redis_server.socket_path,
                             client_name='hueyd-test')
    by_params = RedisStorage(queue_name, host='127.0.0.1', port=redis_server.port, db=0)
    try:
        by_socket.enqueue(b'x')
        assert by_params.dequeue() == b'x'
        assert by_socket.conn.client_getname() == 'hueyd-test'
        by_pool = RedisStorage(queue_name, connection_pool=by_params.pool)
        assert by_pool.queue_size() == 0
    finally:
        by_socket.close()
        by_params.close()
    with pytest.raises(ConfigurationError):
        RedisStorage(url=redis_server.url, host='127.0.0.1')


# --- redis with expiring results (RedisExpireStorage) ------------------------

@pytest.mark.parametrize('kind', REDIS_KINDS)
def test_redis_notify_result_wakes_every_waiter(request, tmp_path, kind, queue_name):
    storage = open_redis(request, tmp_path, RedisStorage, kind, queue_name, notify_result=True,
                         notify_result_ttl=30)
    woken = []
    waiters = [threading.Thread(target=lambda: woken.append(storage.wait_result('r', timeout=20)))
               for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    storage.put_data('r', b'1', is_result=True)
    for waiter in waiters:
        waiter.join(timeout=30)
    assert woken == [True, True]
    storage.flush_all()


def test_waits_for_results_says_whether_wait_result_is_woken_or_polls(redis_server,
                                                                     postgres_server, queue_name):
    # A coroutine awaiting a result waits in a thread only where wait_result is woken.
    assert RedisStorage(queue_name, url=redis_server.url, notify_result=True).waits_for_results
    assert not RedisStorage(queue_name, url=redis_server.url).waits_for_results
    assert PostgresStorage(queue_name, dsn=postgres_server.dsn).waits_for_results
    assert not MemoryStorage(queue_name).waits_for_results


@pytest.mark.parametrize('kind', REDIS_KINDS)
def test_redis_notify_key_expires_after_notify_result_ttl(request, tmp_path, kind, queue_name):
    storage = open_redis(request, tmp_path, RedisStorage, kind, queue_name, notify_result=True,
                         notify_result_ttl=30)
    storage.put_data('r', b'1', is_result=True)
    assert 0 < storage.conn.ttl(storage.notify_prefix + 'r') <= 30
    storage.put_data('plain', b'1')  # only results notify
    assert not storage.conn.exists(storage.notify_prefix + 'plain')
    storage.flush_all()


def test_redis_key_names_keep_letters_digits_and_underscores(redis_server):
    assert RedisStorage('app-v1.2', url=redis_server.url).name == 'appv12'
    assert RedisStorage('app-v1', url=redis_server.url, clean_name=False).queue_key == \
        'hueyd.app-v1.queue'


# Each class, and each deployment.
@pytest.fixture(params=[(RedisExpireStorage, 'redis'), (PriorityRedisExpireStorage, 'redis'),
                        (RedisExpireStorage, 'sentinel'), (PriorityRedisExpireStorage, 'cluster')],
                ids=['expire-redis', 'priority-expire-redis', 'expire-sentinel',
                     'priority-expire-cluster'])
def expiring(request, tmp_path, queue_name):
    """``expiring(expire_time)``: a new storage of the class, emptied and closed afterwards."""
    made = []
    storage_class, kind = request.param

    def make(expire_time):
        made.append(open_redis(request, tmp_path, storage_class, kind, queue_name,
                               expire_time=expire_time))
        return made[-1]
    yield make
    for storage in made:
        storage.flush_all()
        storage.close()


def test_redis_expire_results_outlive_reads_until_they_expire(expiring):
    storage = expiring(expire_time=1)
    storage.put_data('r', b'result', is_result=True)
    storage.put_data('k', b'data')
    assert storage.pop_data('r') == b'result'
    assert storage.pop_data('r') == b'result'  # every reader gets it
    assert storage.result_items() == {'r': b'result', 'k': b'data'}
    wait_until(lambda: not storage.has_data_for_key('r'), timeout=5,
               message='a result stored with expire_time=1 never expired')
    assert storage.peek_data('r') is EmptyData
    assert storage.result_items() == {'k': b'data'}  # only results expire


def test_redis_expire_key_layout(expiring):
    storage = expiring(expire_time=3600)
    client, prefix = storage.conn, storage.key_prefix  # hueyd.{<name>}. in a cluster
    storage.put_data('r', b'1', is_result=True)
    assert client.get(prefix + 'result.r') == b'1'
    assert 3590 * 1000 < client.pttl(prefix + 'result.r') <= 3600 * 1000
    assert client.exists(prefix + 'results') == 0
    storage.put_data('r', b'plain')  # rewriting without is_result demotes it
    assert client.exists(prefix + 'result.r') == 0
    assert client.hgetall(prefix + 'data') == {b'r': b'plain'}
    storage.put_data('r', b'2', is_result=True)
    assert client.hgetall(prefix + 'data') == {}
    storage.flush_all()
    assert client.keys(prefix + '*') == []


def test_redis_expire_result_goes_out_in_the_write_batch_before_its_ack(expiring):
    storage = expiring(expire_time=60)
    storage.enqueue(b'm')
    (receipt, _), = storage.claim('w')
    storage.begin_batch()
    storage.put_data('r', b'1', is_result=True)
    storage.ack('w', [receipt])
    assert storage.peek_data('r') is EmptyData  # both wait for the flush
    assert storage.claimed_items() == {'w': [b'm']}
    storage.end_batch()
    assert storage.peek_data('r') == b'1'
    assert storage.claimed_items() == {}
    assert 0 < storage.conn.pttl(storage.key_prefix + 'result.r') <= 60000


@pytest.mark.parametrize('expire_time', [0, -1, None])
def test_redis_expire_time_must_be_positive(expire_time):
    with pytest.raises(ConfigurationError, match='expire_time'):
        RedisExpireStorage('q', expire_time=expire_time)


# --- sqlite through cysqlite (CySqliteStorage) ---------------------------------

def test_cysqlite_storage_without_cysqlite_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr('hueyd.storage.sqlite.cysqlite', None)
    with pytest.raises(ConfigurationError) as info:
        CySqliteStorage('q', filename=str(tmp_path / 'huey.db'))
    assert 'pip install cysqlite' in str(info.value) and 'SqliteStorage' in str(info.value)


def test_cysqlite_storage_talks_through_cysqlite(tmp_path):
    cysqlite = pytest.importorskip('cysqlite')
    storage = CySqliteStorage('q', filename=str(tmp_path / 'huey.db'), journal_mode='truncate')
    try:
        storage.enqueue(b'm')
        assert isinstance(storage.conn.conn, cysqlite.Connection)
        assert storage.conn.execute('PRAGMA journal_mode').fetchone() == ('truncate',)
    finally:
        storage.close()



def test_cysqlite_errors_are_both_drivers_operational_errors(tmp_path):
    cysqlite = pytest.importorskip('cysqlite')
    storage = CySqliteStorage('q', filename=str(tmp_path / 'huey.db'), create_tables=False)
    try:
        with pytest.raises(sqlite3.OperationalError) as info:
            storage.queue_size()  # no tables yet
        assert isinstance(info.value, cysqlite.OperationalError)
        storage.initialize_schema()
        assert storage.queue_size() == 0
    finally:
        storage.close()


@pytest.mark.parametrize('storage_class', ['sqlite3', 'cysqlite'])
def test_sqlite_pragmas_are_set_on_every_connection(tmp_path, storage_class):
    if storage_class == 'cysqlite':
        pytest.importorskip('cysqlite')
    cls = CySqliteStorage if storage_class == 'cysqlite' else SqliteStorage
    pragmas = {'mmap_size': 4096, 'synchronous': 0}
    storage = cls('q', filename=str(tmp_path / 'huey.db'), pragmas=pragmas, cache_mb=4)
    try:
        read = lambda name: storage.conn.execute('PRAGMA %s' % name).fetchone()[0]  # noqa: E731
        assert (read('mmap_size'), read('synchronous'), read('cache_size')) == (4096, 0, -4000)
        assert pragmas == {'mmap_size': 4096, 'synchronous': 0}  # the caller's dict untouched
    finally:
        storage.close()


def test_sqlite_without_create_tables_waits_for_initialize_schema(tmp_path):
    storage = SqliteStorage('q', filename=str(tmp_path / 'huey.db'), create_tables=False)
    try:
        with pytest.raises(sqlite3.OperationalError, match='no such table'):
            storage.queue_size()
        storage.initialize_schema()
        storage.enqueue(b'm')
        assert storage.dequeue() == b'm'
    finally:
        storage.close()
