"""BlackHoleStorage: every write dropped, every read empty; the daemon refuses it."""
import os

import daemon_harness
from hueyd import Huey
from hueyd.constants import EmptyData
from hueyd.storage import BlackHoleStorage
from hueyd.storage.protocols import Claims, Counters, DataStore, DeadLetters, Queue, Schedule

# The daemon fixtures, bound as names of this module (pytest finds fixtures there).
app, make_app, start_daemon = daemon_harness.app, daemon_harness.make_app, daemon_harness.start_daemon


def test_every_write_is_dropped_and_every_read_is_empty():
    storage = BlackHoleStorage()
    storage.enqueue(b'm', 5)
    storage.enqueue_many([(b'a', None), (b'b', 1)])
    storage.add_to_schedule(b's', 1.0, priority=2)
    storage.put_data('k', b'v', is_result=True)
    storage.put_revocation('r', b'1')
    assert (storage.dequeue(), storage.queue_size(), storage.enqueued_items()) == (None, 0, [])
    assert storage.read_schedule(2.0) == storage.move_due(2.0) == storage.scheduled_items() == []
    assert (storage.next_schedule_time(), storage.schedule_size()) == (None, 0)
    assert storage.peek_data('k') is storage.pop_data('k') is EmptyData
    assert storage.peek_many(['k', 'r']) == {}
    assert storage.read_revocations(['k', 'r']) == [EmptyData] * 2
    assert not storage.has_data_for_key('k') and not storage.delete_revocation('r')
    assert (storage.result_store_size(), storage.result_items()) == (0, {})
    # As in huey: a lock is always free, a counter always starts again.
    assert storage.put_if_empty('lock', b'1') and storage.put_if_empty('lock', b'1', ttl=5)
    assert storage.incr('c', 3) == storage.incr('c', 3) == 3
    storage.delete_counter('c')
    storage.flush_all()


def test_it_has_the_four_base_protocols_only_and_is_not_shared():
    storage = BlackHoleStorage('q')
    assert storage.name == 'q' and storage.shared is False
    assert all(storage.supports(p) for p in (Queue, Schedule, DataStore, Counters))
    assert not storage.supports(Claims) and not storage.supports(DeadLetters)


def test_a_huey_on_it_loses_every_task():
    huey = Huey('hole', storage_class=BlackHoleStorage)

    @huey.task()
    def add(a, b):
        return a + b

    result = add(1, 2)
    assert huey.pending_count() == 0 and huey.dequeue() is None
    assert result.get() is None


BLACKHOLE_APP = '''\
from hueyd import Huey
from hueyd.storage import BlackHoleStorage

huey = Huey('hole', storage_class=BlackHoleStorage)
'''


def test_the_daemon_refuses_it(app, start_daemon):
    with open(os.path.join(app.dir, 'hole.py'), 'w') as f:
        f.write(BLACKHOLE_APP)
    daemon = start_daemon(app, app_path='hole.huey')
    status = daemon.wait(20)
    err = daemon.stderr_text()
    assert status == 1, 'exit status %s\n%s' % (status, err)
    assert 'BlackHoleStorage' in err and 'the daemon needs storage its processes share' in err, err
    daemon.wait_no_leftovers()
