"""Consumer events (issue 4): names, contents, orderings, transports, batching.

Events are read back the way an application would: from a real Redis
subscription, a PostgreSQL LISTEN, the SQLite events table, or the in-process memory log.
"""
import datetime
import json
import threading
import time

import pytest

from daemon_harness import start_daemon, stop_gracefully  # noqa: F401
from drain import drain, run_due
from hueyd import CancelExecution, ConfigurationError, Huey, RedisHuey
from hueyd.events import (ALL_EVENTS, EVENT_CANCELED, EVENT_CHECKING_PERIODIC,
                          EVENT_ERROR_DEQUEUEING, EVENT_ERROR_ENQUEUEING, EVENT_ERROR_INTERNAL,
                          EVENT_ERROR_SCHEDULING, EVENT_ERROR_STORING_RESULT, EVENT_ERROR_TASK,
                          EVENT_EXPIRED, EVENT_FINISHED, EVENT_LOCKED, EVENT_RATE_LIMITED,
                          EVENT_RETRYING, EVENT_REVOKED, EVENT_SCHEDULED,
                          EVENT_SCHEDULING_PERIODIC, EVENT_STARTED, EVENT_TIMEOUT,
                          SIGNAL_EVENTS)
from hueyd.signals import SIGNAL_ENQUEUED
from hueyd.storage import MemoryStorage
from hueyd.times import to_timestamp
from support import make_huey, wait_until
from test_api import ListStorage
from workflow_app import workflow_app  # noqa: F401
from conftest import REDIS_KINDS, url_for

EVENT_STORAGES = ['memory', 'sqlite', 'redis', 'postgres', 'sentinel', 'cluster']


@pytest.fixture(params=EVENT_STORAGES)
def ehuey(request, tmp_path, queue_name):
    """A Huey with events on: Redis (one server, Sentinel, Cluster) by default, the others
    when asked."""
    if request.param in REDIS_KINDS:
        huey = make_huey(queue_name, url_for(request.param, request, tmp_path))
    elif request.param == 'sqlite':
        huey = make_huey(queue_name, 'sqlite:///%s/huey.db' % tmp_path, events=True)
    elif request.param == 'postgres':
        huey = make_huey(queue_name, request.getfixturevalue('postgres_server').dsn, events=True)
    else:
        huey = make_huey(queue_name, 'memory://', events=True)
    assert huey.events
    yield huey
    huey.flush()
    huey.storage.close()


@pytest.fixture
def listener(ehuey):
    listener = ehuey.storage.listener()
    yield listener
    listener.close()


def next_events(listener, huey, timeout=10):
    """Every event up to now: publishes a marker and reads until it comes back.

    Events of one publisher arrive in order, so whatever precedes the marker is
    everything published before it, and nothing after the marker is missed.
    """
    marker = 'marker-%s' % id(object())
    huey.emit_event('test-marker', marker=marker)
    found = []
    while True:
        event = listener.get_event(timeout=timeout)
        assert event is not None, 'no marker within %ss; got %r' % (timeout, found)
        if event.get('marker') == marker:
            return found
        found.append(event)


def statuses(events, task_id=None):
    return [e['status'] for e in events if task_id is None or e['id'] == task_id]


# --- names -------------------------------------------------------------------------

def test_event_names_and_the_consumer_module():
    from hueyd.consumer import EVENT_FINISHED as finished, EVENT_STARTED as started
    assert (started, finished) == ('started', 'finished')
    assert (EVENT_ERROR_TASK, EVENT_RETRYING, EVENT_SCHEDULED, EVENT_REVOKED) == (
        'error-task', 'retrying', 'scheduled', 'revoked')
    assert (EVENT_CHECKING_PERIODIC, EVENT_SCHEDULING_PERIODIC) == (
        'checking-periodic', 'scheduling-periodic')
    assert (EVENT_ERROR_DEQUEUEING, EVENT_ERROR_ENQUEUEING, EVENT_ERROR_INTERNAL,
            EVENT_ERROR_SCHEDULING, EVENT_ERROR_STORING_RESULT) == (
        'error-dequeueing', 'error-enqueueing', 'error-internal', 'error-scheduling',
        'error-storing-result')
    assert len(set(ALL_EVENTS)) == len(ALL_EVENTS) == 19
    assert SIGNAL_ENQUEUED not in SIGNAL_EVENTS


# --- the documented orderings, read back from each transport ----------------------------

def test_simple_task(ehuey, listener):
    @ehuey.task()
    def add(a, b):
        return a + b

    result = add(1, 2)
    drain(ehuey)
    events = next_events(listener, ehuey)
    assert statuses(events) == [EVENT_STARTED, EVENT_FINISHED]
    started, finished = events
    for event in events:
        assert (event['id'], event['task'], event['retries'], event['retry_delay'],
                event['execute_time']) == (result.id, 'add', 0, 0, None)
        assert 'error' not in event
    assert abs(started['timestamp'] - time.time()) < 60
    assert 0 <= finished['duration'] < 10 and 'timestamp' not in finished


def test_scheduled_task(ehuey, listener):
    @ehuey.task()
    def add(a, b):
        return a + b

    result = add.schedule((2, 3), delay=10)
    drain(ehuey)
    run_due(ehuey, 11)
    events = next_events(listener, ehuey)
    assert statuses(events) == [EVENT_SCHEDULED, EVENT_STARTED, EVENT_FINISHED]
    eta = to_timestamp(result.task.eta, ehuey.utc)
    assert [e['execute_time'] for e in events] == [eta, eta, eta]
    assert result.get() == 5


def test_error_with_retry(ehuey, listener):
    @ehuey.task(retries=2, retry_delay=10)
    def flaky(box=[]):
        box.append(1)
        if len(box) == 1:
            raise ValueError('uh-oh')
        return 'OK'

    result = flaky()
    drain(ehuey)
    run_due(ehuey, 11)
    events = next_events(listener, ehuey)
    assert statuses(events) == [EVENT_STARTED, EVENT_ERROR_TASK, EVENT_RETRYING,
                                EVENT_SCHEDULED, EVENT_STARTED, EVENT_FINISHED]
    error = events[1]
    assert error['error'] is True and "ValueError: uh-oh" in error['traceback']
    assert error['duration'] >= 0
    assert [e['retries'] for e in events] == [2, 2, 2, 1, 1, 1]
    assert events[3]['execute_time'] is not None
    assert result.get() == 'OK'


def test_events_and_signals_agree(ehuey, listener):
    """Every signal but ENQUEUED has exactly one event, in the same order."""
    wait_until(lambda: time.time() % 3600 < 3590)  # both limited() calls in one window
    signals = []

    @ehuey.signal()
    def record(signal, task, *args, **kwargs):
        if signal != SIGNAL_ENQUEUED:
            signals.append((SIGNAL_EVENTS[signal], task.id))

    @ehuey.pre_execute()
    def veto(task):
        if task.kwargs.get('veto'):
            raise CancelExecution()

    @ehuey.task()
    def ok(veto=False):
        return 1

    @ehuey.task(retries=1)
    def bad():
        raise KeyError('k')

    @ehuey.task()
    @ehuey.lock_task('held')
    def locked():
        return 2

    @ehuey.task(timeout=0.01, context=True)
    def slow(task=None):
        wait_until(lambda: task.is_timed_out)
        task.check_timeout()

    @ehuey.task()
    def limited():
        with ehuey.rate_limit('rl', 1, 3600):
            return 3

    ok(), bad(), ok(veto=True), slow(), limited(), limited()
    revoked = ok()
    revoked.revoke()
    ehuey.enqueue(ok.s(expires=datetime.datetime(2000, 1, 1)))
    with ehuey.lock_task('held'):
        locked()
        drain(ehuey)
    events = next_events(listener, ehuey)
    assert [(e['status'], e['id']) for e in events] == signals
    seen = set(statuses(events))
    assert {EVENT_STARTED, EVENT_FINISHED, EVENT_ERROR_TASK, EVENT_RETRYING, EVENT_CANCELED,
            EVENT_TIMEOUT, EVENT_RATE_LIMITED, EVENT_SCHEDULED, EVENT_REVOKED, EVENT_EXPIRED,
            EVENT_LOCKED} <= seen
    by_status = {e['status']: e for e in events}
    for status in (EVENT_TIMEOUT, EVENT_LOCKED, EVENT_RATE_LIMITED):
        assert by_status[status]['error'] is True, status
        assert by_status[status]['traceback'], status
    assert 'TaskLockedException' in by_status[EVENT_LOCKED]['traceback']
    assert 'timestamp' in by_status[EVENT_REVOKED] and 'timestamp' in by_status[EVENT_EXPIRED]


# --- emitting and batching ------------------------------------------------------------

def test_events_of_one_execute_are_published_together_at_its_end(ehuey, listener):
    before_end = []

    @ehuey.task()
    def probe():
        # Published directly, bypassing the batch: it must arrive first, because
        # STARTED (already emitted) waits in the batch until execute() returns.
        ehuey.storage.publish_events([json.dumps({'status': 'probe'}).encode()])
        event = listener.get_event(timeout=10)
        before_end.append(event['status'])
        return 'done'

    result = probe()
    ehuey.execute(ehuey.dequeue())
    assert before_end == ['probe']
    assert statuses(next_events(listener, ehuey)) == [EVENT_STARTED, EVENT_FINISHED]
    assert result.get() == 'done'


def test_one_storage_call_per_execute(ehuey, queue_name):
    """A storage subclass counts publish_events calls (the real storage underneath)."""
    calls = []
    base = type(ehuey.storage)

    class Counting(base):
        def publish_events(self, events):
            calls.append(len(events))
            return super().publish_events(events)

    # The queue of ehuey, whose storage lends its connections: a Redis Cluster pool reaches
    # the master of that queue's slot only.
    huey = Huey(queue_name, storage_class=Counting, events=True,
                **_storage_kwargs(ehuey.storage))

    @huey.task(retries=1)
    def flaky(box=[]):
        box.append(1)
        if len(box) == 1:
            raise ValueError('again')

    @huey.task()
    def fine():
        return 1

    flaky(), fine()
    assert calls == []                      # SIGNAL_ENQUEUED has no event
    drain(huey)
    # flaky: started, error-task, retrying (then re-enqueued); flaky again: started,
    # finished; fine: started, finished. One call for each execute().
    assert sorted(calls) == [2, 2, 3]
    huey.emit_event(EVENT_CHECKING_PERIODIC)
    assert calls[-1] == 1                   # outside execute(): published at once
    huey.flush()
    huey.storage.close()


def _storage_kwargs(storage):
    if hasattr(storage, 'filename'):
        return {'filename': storage.filename}
    if hasattr(storage, 'pool'):
        return {'connection_pool': storage.pool, 'blocking': False}
    if hasattr(storage, 'dsn'):
        return {'dsn': storage.dsn, 'blocking': False}
    return {}


def test_emit_event_outside_execute(ehuey, listener):
    assert ehuey.emit_event(EVENT_CHECKING_PERIODIC)['status'] == EVENT_CHECKING_PERIODIC

    @ehuey.task()
    def periodic():
        pass

    ehuey.emit_event(EVENT_SCHEDULING_PERIODIC, periodic.s())
    try:
        raise ConnectionError('queue unreachable')
    except ConnectionError as exc:
        ehuey.emit_event(EVENT_ERROR_DEQUEUEING, exception=exc, worker=3)
    checking, scheduling, error = next_events(listener, ehuey)
    assert checking['id'] is None and checking['task'] is None and checking['timestamp'] > 0
    assert scheduling['task'] == 'periodic' and 'timestamp' in scheduling
    assert error['error'] is True and 'queue unreachable' in error['traceback']
    assert error['worker'] == 3


def test_failed_retry_scheduling_is_an_event(queue_name):
    class FullSchedule(MemoryStorage):
        def add_to_schedule(self, data, ts, priority=None):
            raise OSError('schedule is full')

    huey = Huey(queue_name, storage_class=FullSchedule, events=True)
    listener = huey.storage.listener()

    @huey.task(retries=1, retry_delay=5)
    def fails():
        raise ValueError('first')

    fails()
    with pytest.raises(OSError):
        huey.execute(huey.dequeue())
    events = next_events(listener, huey)
    assert statuses(events) == [EVENT_STARTED, EVENT_ERROR_TASK, EVENT_RETRYING,
                                EVENT_ERROR_SCHEDULING]
    assert 'schedule is full' in events[-1]['traceback']


def test_result_that_cannot_be_stored(ehuey, listener):
    @ehuey.task()
    def unpicklable():
        return lambda: 'functions do not pickle'

    result = unpicklable()
    drain(ehuey)
    events = next_events(listener, ehuey)
    assert statuses(events) == [EVENT_STARTED, EVENT_ERROR_STORING_RESULT, EVENT_FINISHED]
    assert events[1]['error'] is True and events[1]['traceback'] and events[1]['duration'] >= 0
    assert events[1]['id'] == result.id


# --- transports ------------------------------------------------------------------------

def test_iterating_the_storage_and_listen_as_in_huey(ehuey):
    @ehuey.task()
    def add(a, b):
        return a + b

    events = iter(ehuey.storage)            # subscribes now
    pubsub = ehuey.storage.listener()
    result = add(1, 2)
    drain(ehuey)
    assert next(events)['status'] == EVENT_STARTED
    finished = next(events)
    assert finished['status'] == EVENT_FINISHED and finished['id'] == result.id
    messages = pubsub.listen()
    first = next(messages)                  # no subscribe confirmation comes first
    assert first['type'] == 'message' and first['data']['status'] == EVENT_STARTED
    assert first['channel'] == 'hueyd.%s.events' % ehuey.name
    assert next(messages)['data']['status'] == EVENT_FINISHED
    pubsub.close()


def test_redis_publishes_json_on_its_channel(redis_server, queue_name):
    huey = RedisHuey(queue_name, url=redis_server.url, blocking=False)
    raw = redis_server.client().pubsub()
    raw.subscribe('hueyd.%s.events' % queue_name)
    wait_until(lambda: (raw.get_message(timeout=0.1) or {}).get('type') == 'subscribe')

    @huey.task()
    def job():
        return 1

    job()
    drain(huey)
    message = wait_until(lambda: raw.get_message(timeout=1))
    # The events of one execute() travel in one message: a JSON array.
    assert [event['status'] for event in json.loads(message['data'])] == [EVENT_STARTED,
                                                                         EVENT_FINISHED]
    raw.close()
    huey.flush()


def test_events_off_publish_nothing(redis_server, queue_name):
    quiet = RedisHuey(queue_name, url=redis_server.url, blocking=False, events=False)
    loud = RedisHuey(queue_name, url=redis_server.url, blocking=False)
    listener = loud.storage.listener()

    @quiet.task()
    def job():
        return 1

    job()
    drain(quiet)
    assert quiet.emit_event(EVENT_CHECKING_PERIODIC) is None
    # Only loud's marker arrives: quiet published nothing before it.
    assert next_events(listener, loud) == []
    listener.close()
    quiet.flush()


def run_claimed(huey, worker='host:1'):
    """A pool's round: claim what is queued, run it in a write batch, acknowledge it."""
    storage = huey.storage
    claimed = storage.claim(worker, 100, 30)
    storage.begin_batch()
    for receipt, data in claimed:
        huey.execute(huey.deserialize_task(data), revocations=claimed.revocations)
        storage.ack(worker, [receipt])
    storage.flush_batch(True)
    storage.end_batch()
    return len(claimed)


def publishes(redis_server):
    """How many PUBLISH commands the server has run."""
    return redis_server.client().info('commandstats').get('cmdstat_publish', {}).get('calls', 0)


def test_redis_tasks_nobody_listens_to_publish_no_event(redis_server, queue_name):
    huey = RedisHuey(queue_name, url=redis_server.url, blocking=False)
    job = huey.task(name='job')(lambda: 1)
    job()
    job()
    before = publishes(redis_server)
    assert run_claimed(huey) == 2
    assert publishes(redis_server) == before
    huey.flush()


def test_redis_listener_hears_tasks_enqueued_after_it_subscribed(redis_server, queue_name):
    huey = RedisHuey(queue_name, url=redis_server.url, blocking=False)
    job = huey.task(name='job')(lambda: 1)
    job()
    run_claimed(huey)  # with nobody listening: the storage knows it
    assert not huey.storage.listening()
    listener = huey.storage.listener()
    result = job()
    run_claimed(huey)
    assert [(e['status'], e['id']) for e in next_events(listener, huey)] == [
        (EVENT_STARTED, result.id), (EVENT_FINISHED, result.id)]
    listener.close()
    huey.flush()


def test_sqlite_events_are_shared_through_the_file_and_bounded(tmp_path, queue_name):
    url = 'sqlite:///%s/events.db' % tmp_path
    producer = make_huey(queue_name, url, events=True)
    consumer = make_huey(queue_name, url, events=True)   # another process would do the same
    listener = consumer.storage.listener()

    @producer.task()
    def job():
        return 1

    job()
    drain(producer)
    assert statuses(next_events(listener, producer)) == [EVENT_STARTED, EVENT_FINISHED]

    storage = producer.storage
    storage.events_keep = 100
    for i in range(1200):
        storage.publish_events([json.dumps({'status': 'n', 'i': i}).encode()])
    rows = storage.conn.execute('SELECT COUNT(*), MAX(id) FROM hueyd_events WHERE name = ?',
                                (queue_name,)).fetchone()
    assert 100 <= rows[0] <= 100 + storage.EVENTS_TRIM_EVERY
    kept = [json.loads(data)['i'] for _, data in storage.read_events(0, limit=10000)]
    assert kept[-1] == 1199 and kept == list(range(1200 - len(kept), 1200))
    listener.close()
    producer.flush()


def test_memory_listener_waits_for_events_from_another_thread(queue_name):
    huey = make_huey(queue_name, 'memory://', events=True)
    listener = huey.storage.listener()

    @huey.task()
    def job():
        return 1

    received = []
    reader = threading.Thread(target=lambda: received.extend(
        [listener.get_event(timeout=10), listener.get_event(timeout=10)]))
    reader.start()
    job()
    drain(huey)
    reader.join(15)
    assert statuses(received) == [EVENT_STARTED, EVENT_FINISHED]
    assert listener.get_event(timeout=0) is None


# --- configuration ------------------------------------------------------------------

def test_defaults_and_configuration_errors(tmp_path, redis_server, queue_name):
    assert RedisHuey(queue_name, url=redis_server.url).events is True       # as huey
    sqlite = Huey(queue_name, url='sqlite:///%s/c.db' % tmp_path)
    assert sqlite.events is False
    assert make_huey(queue_name, 'memory://').events is False
    assert Huey(queue_name, storage_class=ListStorage).events is False

    # Listening where nothing is published fails at once, saying what to do.
    for storage in (sqlite.storage, RedisHuey(queue_name, url=redis_server.url,
                                              events=False).storage):
        with pytest.raises(ConfigurationError) as info:
            storage.listener()
        assert 'events=True' in str(info.value)
        with pytest.raises(ConfigurationError):
            iter(storage)

    # A storage that cannot carry events says so, and names what can.
    with pytest.raises(ConfigurationError) as info:
        Huey(queue_name, storage_class=ListStorage, events=True)
    assert 'ListStorage' in str(info.value) and 'RedisStorage' in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        iter(Huey(queue_name, storage_class=ListStorage).storage)
    assert 'ListStorage' in str(info.value)


def test_immediate_mode_publishes_to_its_memory_storage(tmp_path, queue_name):
    huey = make_huey(queue_name, 'sqlite:///%s/i.db' % tmp_path, events=True, immediate=True)
    listener = huey.storage.listener()

    @huey.task()
    def add(a, b):
        return a + b

    assert add(1, 2).get() == 3
    assert statuses(next_events(listener, huey)) == [EVENT_STARTED, EVENT_FINISHED]


# --- the real daemon -----------------------------------------------------------------

def test_events_from_the_daemon_over_redis(workflow_app, start_daemon):  # noqa: F811
    app = workflow_app('redis')
    assert app.huey.events
    listener = app.huey.storage.listener()
    daemon = start_daemon(app, '-k', 'process', '-w', '2')
    daemon.wait_ready(2, booted=True)  # so the delayed task is still early when claimed
    ok = app.square(3)
    failing = app.huey.enqueue(app.square.s(13, retries=1, retry_delay=0.2))
    scheduled = app.record.schedule(('later',), delay=1)
    wanted = {
        ok.id: [EVENT_STARTED, EVENT_FINISHED],
        failing.id: [EVENT_STARTED, EVENT_ERROR_TASK, EVENT_RETRYING, EVENT_SCHEDULED,
                     EVENT_STARTED, EVENT_ERROR_TASK],
        scheduled.id: [EVENT_SCHEDULED, EVENT_STARTED, EVENT_FINISHED],
    }
    events = []

    def complete():
        event = listener.get_event(timeout=0.2)
        if event is not None:
            events.append(event)
        return all(len(statuses(events, tid)) >= len(w) for tid, w in wanted.items())

    try:
        daemon.wait_until(complete)
    except AssertionError as exc:
        raise AssertionError('events so far: %r\n%s' % (
            [(e['status'], e['id'], e['task']) for e in events], exc)) from None
    for task_id, expected in wanted.items():
        assert statuses(events, task_id) == expected
    pids = {e['id']: e for e in events if e['status'] == EVENT_ERROR_TASK}
    assert 'unlucky 13' in pids[failing.id]['traceback']
    listener.close()
    stop_gracefully(daemon)


def test_daemon_reports_bad_messages_and_periodic_checks(workflow_app, start_daemon):  # noqa: F811
    app = workflow_app('redis')
    listener = app.huey.storage.listener()
    daemon = start_daemon(app, '-k', 'thread', '-w', '1')
    daemon.wait_ready(1)
    app.huey.storage.enqueue(b'garbage')
    seen = []

    def arrived():
        event = listener.get_event(timeout=0.2)
        if event is not None:
            seen.append(event)
        return {'checking-periodic', 'error-dequeueing'} <= {e['status'] for e in seen}

    daemon.wait_until(arrived, message='events so far: %r' % seen)
    bad = [e for e in seen if e['status'] == 'error-dequeueing'][0]
    assert bad['dead_letter'] == app.huey.dead_letters()[0].id
    listener.close()
    stop_gracefully(daemon)
