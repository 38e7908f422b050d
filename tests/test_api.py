"""The task API against every storage, driven through dequeue()/execute()."""
import datetime
import logging
import pickle

import pytest

from drain import BackgroundWorker, drain, run_due
from hueyd import (CancelExecution, ConfigurationError, Huey, MemoryHuey, RedisHuey,
                   ResultTimeout, RetryTask, SignedSerializer, SqliteHuey, TaskException,
                   crontab)
from hueyd.exceptions import SignatureError, TaskNotFound
from hueyd.result import Result
from hueyd.storage import BaseStorage, MemoryStorage, SqliteStorage
from hueyd.storage.memory import MemoryStorage as _Memory
from support import make_huey


def test_call_enqueues_and_result_arrives(huey):
    @huey.task()
    def add(a, b):
        return a + b

    result = add(1, 2)
    assert huey.pending_count() == 1
    assert result.get() is None and not result.is_ready()
    assert drain(huey) == 1
    assert result.is_ready()
    assert result.get() == 3
    assert result() == 3  # cached after the first read
    assert huey.result_count() == 0  # reading consumed it from storage


def test_result_preserve_and_huey_result(huey):
    @huey.task()
    def echo(x):
        return x

    result = echo('hi')
    drain(huey)
    assert result.get(preserve=True) == 'hi'
    assert huey.result(result.id, preserve=True) == 'hi'
    assert huey.result(result.id) == 'hi'
    assert huey.result(result.id) is None


def test_store_none_and_results_off(storage_url, queue_name):
    huey = make_huey(queue_name, storage_url, store_none=True)
    quiet = make_huey(queue_name + 'q', storage_url, results=False)

    @huey.task()
    def nothing():
        return None

    @quiet.task()
    def nothing_quiet():
        return 1

    result = nothing()
    drain(huey)
    assert result.is_ready() and result.get() is None
    assert nothing_quiet() is None
    drain(quiet)
    assert quiet.result_count() == 0
    huey.flush(), quiet.flush()


def test_blocking_get_with_worker_and_timeout(huey):
    @huey.task()
    def square(x):
        return x * x

    with BackgroundWorker(huey):
        assert square(7).get(blocking=True, timeout=10) == 49
    never = square(3)  # no worker now
    with pytest.raises(ResultTimeout):
        never.get(blocking=True, timeout=0.05)
    with pytest.raises(ResultTimeout):
        never.get(blocking=True, timeout=0.05, revoke_on_timeout=True)
    assert never.is_revoked()


def test_blocking_get_wakes_on_redis_notify_result(redis_server, queue_name):
    huey = RedisHuey(queue_name, url=redis_server.url, notify_result=True)

    @huey.task()
    def square(x):
        return x * x

    with BackgroundWorker(huey):
        assert square(7).get(blocking=True, timeout=10) == 49
    huey.flush()


def test_blocking_get_raises_when_another_handle_took_the_result(huey):
    @huey.task()
    def square(x):
        return x * x

    first = square(2)
    second = Result(huey, first.task)  # a second handle on the same task
    drain(huey)
    assert first.get() == 4  # reading removes it from storage
    with pytest.raises(ResultTimeout):
        second.get(blocking=True, timeout=0.05)


def test_hueyd_records_pass_through_hueys_logger_and_its_level():
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    huey_logger, handler = logging.getLogger('huey'), Collect()
    level = huey_logger.level
    huey_logger.addHandler(handler)
    huey_logger.setLevel(logging.ERROR)
    try:
        logging.getLogger('hueyd.signals').warning('below the level set for huey')
        logging.getLogger('hueyd.signals').error('seen through huey')
    finally:
        huey_logger.removeHandler(handler)
        huey_logger.setLevel(level)
    assert seen == ['seen through huey']


def test_failure_raises_task_exception_with_traceback(huey):
    @huey.task()
    def boom():
        raise ValueError('no good')

    result = boom()
    drain(huey)
    with pytest.raises(TaskException) as info:
        result.get()
    assert "ValueError('no good')" in str(info.value)
    assert 'Traceback' in info.value.metadata['traceback']
    assert info.value.metadata['task_id'] == result.id
    assert info.value.traceback == info.value.metadata['traceback']


def test_retries_without_delay_requeue_at_once(huey):
    calls = []

    @huey.task(retries=2)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ValueError('try again')
        return 'ok'

    result = flaky()
    assert drain(huey) == 3
    assert result.get() == 'ok'


def test_retry_delay_and_backoff_go_through_schedule(huey):
    @huey.task(retries=2, retry_delay=10, retry_backoff=2)
    def always_fails():
        raise ValueError('nope')

    result = always_fails()
    drain(huey)
    assert huey.scheduled_count() == 1
    first = huey.scheduled()[0]
    assert first.retries == 1 and first.retry_delay == 20
    assert run_due(huey, 5) == 0  # not due yet
    assert run_due(huey, 11) == 1
    assert huey.scheduled()[0].retry_delay == 40
    assert run_due(huey, 60) == 1
    assert huey.scheduled_count() == 0
    with pytest.raises(TaskException):
        result.get()


def test_retry_task_exception_retries_even_without_retries(huey):
    calls = []

    @huey.task()
    def again():
        calls.append(1)
        if len(calls) == 1:
            raise RetryTask(delay=30)
        return len(calls)

    result = again()
    drain(huey)
    assert huey.scheduled_count() == 1 and result.get() is None
    run_due(huey, 31)
    assert result.get() == 2


def test_schedule_by_delay_eta_and_positional(huey):
    @huey.task()
    def stamp(x=None):
        return x

    eta = datetime.datetime.now() + datetime.timedelta(seconds=30)
    results = [stamp.schedule((1,), delay=30), stamp.schedule(args=(2,), eta=eta),
               stamp.schedule(30)]
    drain(huey)
    assert huey.scheduled_count() == 3
    assert run_due(huey, 10) == 0
    assert run_due(huey, 40) == 3
    assert [r.get() for r in results] == [1, 2, None]
    with pytest.raises(ValueError):
        stamp.schedule((1,))


def test_call_local_map_and_as_completed(huey):
    @huey.task()
    def double(x):
        return 2 * x

    assert double.call_local(4) == 8
    assert huey.pending_count() == 0
    group = double.map(range(5))
    assert len(group) == 5 and huey.pending_count() == 5
    drain(huey)
    assert group.get() == [0, 2, 4, 6, 8]
    group = double.map([1, 2, 3])
    with BackgroundWorker(huey):
        assert sorted(group.as_completed()) == [2, 4, 6]


def test_revoke_restore_on_task_function(huey):
    ran = []

    @huey.task()
    def job(x):
        ran.append(x)

    job.revoke()
    assert job.is_revoked()
    job(1)
    drain(huey)
    assert ran == []
    job.restore()
    assert not job.is_revoked()
    job(2)
    drain(huey)
    assert ran == [2]

    job.revoke(revoke_once=True)
    job(3), job(4)
    drain(huey)
    assert ran == [2, 4]

    job.revoke(revoke_until=datetime.datetime.now() + datetime.timedelta(seconds=30))
    job(5)
    drain(huey)
    assert ran == [2, 4]
    job(6)
    drain(huey, huey.now() + datetime.timedelta(seconds=60))
    assert ran == [2, 4, 6] and not job.is_revoked()


def test_revoke_restore_on_result(huey):
    @huey.task()
    def job(x):
        return x

    first, second = job(1), job(2)
    first.revoke()
    assert first.is_revoked() and not second.is_revoked()
    second.revoke()
    second.restore()
    drain(huey)
    assert first.get() is None and second.get() == 2
    third = job(3)
    huey.revoke_by_id(third.id)
    drain(huey)
    assert third.get() is None


def test_reschedule_revokes_and_enqueues_copy(huey):
    @huey.task()
    def job(x):
        return x

    result = job(5)
    new = result.reschedule(delay=30)
    assert new.id != result.id
    drain(huey)  # the original is revoked; the copy goes to the schedule
    assert result.get() is None and huey.scheduled_count() == 1
    run_due(huey, 31)
    assert new.get() == 5


def test_expires_skips_late_task(huey):
    ran = []

    @huey.task(expires=10)
    def job():
        ran.append(1)

    job()
    drain(huey, huey.now() + datetime.timedelta(seconds=20))
    assert ran == []
    job()
    drain(huey)
    assert ran == [1]


def test_cancel_execution_from_hook_and_task(huey):
    ran = []

    @huey.pre_execute()
    def veto(task):
        if task.args == ('veto',):
            raise CancelExecution()

    @huey.task(retries=1)
    def job(x):
        ran.append(x)
        if x == 'again':
            raise CancelExecution(retry=False)

    vetoed = job('veto')
    drain(huey)
    assert ran == [] and vetoed.get() is None
    result = job('again')
    drain(huey)
    assert ran == ['again']  # retry=False overrides retries=1
    with pytest.raises(TaskException):
        result.get()
    assert huey.unregister_pre_execute('veto')


def test_hooks_run_with_values(huey):
    seen = []

    @huey.post_execute()
    def after(task, value, exc):
        seen.append((task.name, value, type(exc).__name__ if exc else None))

    @huey.on_startup()
    def hello():
        seen.append('up')

    @huey.on_shutdown()
    def bye():
        seen.append('down')

    @huey.task()
    def ok():
        return 1

    @huey.task()
    def bad():
        raise KeyError('k')

    ok(), bad()
    drain(huey)
    huey.run_startup_hooks()
    huey.run_shutdown_hooks()
    assert seen == [('ok', 1, None), ('bad', None, 'KeyError'), 'up', 'down']


def test_context_and_custom_name(huey):
    @huey.task(context=True, name='renamed')
    def whoami(task=None):
        return task.id

    result = whoami()
    assert result.task.name == 'renamed'
    drain(huey)
    assert result.get() == result.id


def test_pipeline_passes_results_along(huey):
    @huey.task()
    def add(a, b):
        return a + b

    pipe = add.s(1, 2).then(add, 10).then(add, 100)
    group = huey.enqueue(pipe)
    drain(huey)
    assert group.get() == [3, 13, 113]


def test_unknown_task_names_the_task(huey, storage_url, queue_name):
    other = make_huey(queue_name, storage_url) if not storage_url.startswith('memory') else None

    @huey.task()
    def only_here():
        pass

    only_here()
    if other is None:  # memory is per-process: simulate the consumer forgetting the task
        only_here.unregister()
        consumer = huey
    else:
        consumer = other
    with pytest.raises(TaskNotFound) as info:
        consumer.dequeue()
    assert 'test_api.only_here not found in TaskRegistry' in str(info.value)


def test_signed_serializer_refuses_forgery_without_unpickling(tmp_path, storage_url, queue_name):
    marker = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), 'w'))

    huey = make_huey(queue_name, storage_url, serializer=SignedSerializer(secret='s3cret'))

    @huey.task()
    def job():
        return 1

    result = job()
    huey.storage.enqueue(pickle.dumps(Evil()))                 # unsigned
    huey.storage.enqueue(b'\0' * 32 + pickle.dumps(Evil()))    # forged signature
    other_secret = SignedSerializer(secret='other').serialize('x')
    huey.storage.enqueue(other_secret)
    huey.execute(huey.dequeue())
    for _ in range(3):
        with pytest.raises(SignatureError) as info:
            huey.dequeue()
        assert 'same' in str(info.value)
    assert not marker.exists()
    assert result.get() == 1
    with pytest.raises(ConfigurationError):
        SignedSerializer(secret='')
    huey.flush()


def test_compression_round_trip(storage_url, queue_name):
    huey = make_huey(queue_name, storage_url, compression=True)

    @huey.task()
    def big(text):
        return text * 2

    result = big('x' * 10000)
    assert len(huey.storage.enqueued_items()[0]) < 1000
    drain(huey)
    assert result.get() == 'x' * 20000
    huey.flush()


def test_immediate_mode_runs_inline(storage_url, queue_name):
    huey = make_huey(queue_name, storage_url, always_eager=True)
    inline = huey.storage
    assert huey.immediate and isinstance(inline, MemoryStorage)

    @huey.task()
    def add(a, b):
        return a + b

    assert add(2, 3).get() == 5
    huey.immediate = False      # back to the storage the url names
    add(1, 1)
    assert huey.storage is not inline and huey.pending_count() == 1
    assert inline.queue_size() == 0
    huey.flush()


def test_locks(huey):
    lock = huey.lock_task('report')
    assert not huey.is_locked('report')
    with lock:
        assert huey.is_locked('report')
    assert not huey.is_locked('report')
    with lock:
        assert huey.flush_locks() == {'report'}
    assert huey.flush_locks('never-held') == set()


def test_rate_limit_counts_per_window(huey):
    limit = huey.rate_limit('api', 2, 3600)
    with limit:
        pass
    with limit:
        pass
    from hueyd import RateLimitExceeded
    with pytest.raises(RateLimitExceeded) as info:
        with limit:
            pass
    assert 0 < info.value.delay <= 3600
    assert limit.current_usage() == 3


def test_periodic_tasks_are_read_by_minute(huey):
    @huey.periodic_task(crontab(minute='*/15'))
    def every_quarter():
        return 'tick'

    at = datetime.datetime(2026, 1, 1, 10, 30)
    assert [t.name for t in huey.read_periodic(at)] == ['every_quarter']
    assert huey.read_periodic(at.replace(minute=31)) == []
    task = huey.read_periodic(at)[0]
    huey.enqueue(task)
    drain(huey)
    assert huey.result_count() == 0  # periodic results are not stored


# --- choosing the storage -------------------------------------------------------

def test_default_storage_is_sqlite_file_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    huey = Huey('default-app')
    assert isinstance(huey.storage, SqliteStorage)

    @huey.task()
    def one():
        return 1

    one()
    assert (tmp_path / 'huey.db').exists()
    assert Huey('default-app').pending_count() == 1  # another process would see it too


def test_storage_classes_and_urls(tmp_path, redis_server):
    assert isinstance(MemoryHuey('m').storage, _Memory)
    assert isinstance(SqliteHuey('s', filename=str(tmp_path / 'a.db')).storage, SqliteStorage)
    assert isinstance(Huey('s', url='sqlite:///%s/b.db' % tmp_path).storage, SqliteStorage)
    redis_huey = RedisHuey('r', url=redis_server.url)
    assert redis_huey.storage.queue_size() == 0
    with pytest.raises(ConfigurationError) as info:
        SqliteHuey('x', url=redis_server.url)
    assert 'Huey(url=' in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        Huey('x', url='mysql://db/x')
    assert 'memory://' in str(info.value)  # the error lists the URLs that work


def test_redis_connection_pool_is_accepted(redis_server, queue_name):
    import redis
    pool = redis.ConnectionPool.from_url(redis_server.url)
    huey = RedisHuey(queue_name, connection_pool=pool)

    @huey.task()
    def job():
        return 'pooled'

    result = job()
    drain(huey)
    assert result.get() == 'pooled'
    huey.flush()


class ListStorage(BaseStorage):
    """A user's own storage: the smallest thing that satisfies the interface."""

    blocking = False
    shared = False

    def __init__(self, name='huey', **kwargs):
        super().__init__(name)
        self.queue, self.schedule, self.kv, self.counters = [], [], {}, {}
        self.results = set()

    def enqueue(self, data, priority=None):
        self.queue.append(data)

    def dequeue(self):
        return self.queue.pop(0) if self.queue else None

    def queue_size(self):
        return len(self.queue)

    def enqueued_items(self, limit=None):
        return self.queue[:limit]

    def flush_queue(self):
        self.queue.clear()

    def add_to_schedule(self, data, ts, priority=None):
        self.schedule.append((ts, data))
        self.schedule.sort(key=lambda item: item[0])

    def read_schedule(self, ts):
        due = [data for when, data in self.schedule if when <= ts]
        self.schedule = [(when, data) for when, data in self.schedule if when > ts]
        return due

    def next_schedule_time(self):
        return self.schedule[0][0] if self.schedule else None

    def schedule_size(self):
        return len(self.schedule)

    def scheduled_items(self, limit=None):
        return [data for _, data in self.schedule][:limit]

    def flush_schedule(self):
        self.schedule.clear()

    def put_data(self, key, value, is_result=False):
        self.kv[key] = value
        if is_result:
            self.results.add(key)

    def peek_data(self, key):
        from hueyd.constants import EmptyData
        return self.kv.get(key, EmptyData)

    def pop_data(self, key):
        from hueyd.constants import EmptyData
        self.results.discard(key)
        return self.kv.pop(key, EmptyData)

    def has_data_for_key(self, key):
        return key in self.kv

    def put_if_empty(self, key, value, ttl=None):
        return self.kv.setdefault(key, value) is value

    def result_store_size(self):
        return len(self.results)

    def result_items(self):
        return {key: self.kv[key] for key in self.results}

    def flush_results(self):
        self.kv.clear()
        self.results.clear()

    def incr(self, key, amount=1):
        self.counters[key] = self.counters.get(key, 0) + amount
        return self.counters[key]

    def delete_counter(self, key):
        self.counters.pop(key, None)

    def flush_counters(self):
        self.counters.clear()


def test_user_storage_subclass_works():
    huey = Huey('custom', storage_class=ListStorage)

    @huey.task(retries=1, retry_delay=5)
    def flaky(box=[]):
        box.append(1)
        if len(box) == 1:
            raise ValueError('first time')
        return len(box)

    result = flaky()
    drain(huey)
    assert huey.scheduled_count() == 1
    run_due(huey, 6)
    assert result.get() == 2
    with huey.lock_task('x'):
        assert huey.is_locked('x')


def test_periodic_task_and_lock_names_are_listed():
    huey = MemoryHuey('names')

    @huey.periodic_task(crontab(minute='0'))
    def nightly():
        pass

    @huey.periodic_task(crontab(minute='*/5'))
    def often():
        pass

    @huey.task()
    @huey.lock_task('reports')
    def report():
        pass

    assert huey.periodic_tasks == ['nightly', 'often']
    assert huey.lock_names == ['reports']


def test_a_message_buried_on_a_storage_without_dead_letters_is_logged_not_raised(caplog):
    huey = Huey('custom', storage_class=ListStorage)
    letter = huey.bury(b'not a message', 'cannot run this message')
    assert letter and 'keeps no dead letters' in caplog.text and letter in caplog.text


def test_a_task_declared_again_on_a_second_huey_runs_on_that_huey():
    first, second = MemoryHuey('first'), MemoryHuey('second')

    @first.task()
    def inc(n):
        return n + 1

    again = second.task(retries=1)(inc)
    result = again(2)
    assert (len(first), len(second)) == (0, 1)
    assert second.execute(second.dequeue()) == 3 and result.get() == 3
