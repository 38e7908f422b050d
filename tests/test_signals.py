"""Signals: the orderings the documentation promises, on every storage.

Each test drives the consumer's steps by hand (``dequeue()``/``execute()``,
``drain``, ``run_due``) and asserts the exact sequence of ``(signal, task id)``
pairs an all-signals handler saw.
"""
import datetime
import logging
import threading
import time

import pytest

from drain import drain, run_due
from hueyd import CancelExecution, TaskException, TaskLockedException
from hueyd.result import Error
from hueyd.signals import (SIGNAL_CANCELED, SIGNAL_COMPLETE, SIGNAL_ENQUEUED, SIGNAL_ERROR,
                           SIGNAL_EXECUTING, SIGNAL_EXPIRED, SIGNAL_INTERRUPTED,
                           SIGNAL_LOCKED, SIGNAL_RATE_LIMITED, SIGNAL_RETRYING,
                           SIGNAL_REVOKED, SIGNAL_SCHEDULED, SIGNAL_TIMEOUT)
from hueyd.times import to_timestamp
from support import wait_until


@pytest.fixture
def events(huey):
    """Every signal the huey sends, as (signal, task id), in order."""
    seen = []

    @huey.signal()
    def record(signal, task, *args, **kwargs):
        seen.append((signal, task.id))

    return seen


def sequence(task_id, *signals):
    return [(signal, task_id) for signal in signals]


# --- the documented orderings -----------------------------------------------------

def test_success(huey, events):
    stored_at_complete = []

    @huey.task()
    def add(a, b):
        return a + b

    @huey.signal(SIGNAL_COMPLETE)
    def on_complete(signal, task):
        stored_at_complete.append(huey.get(task.id, peek=True))

    result = add(1, 2)
    assert events == sequence(result.id, SIGNAL_ENQUEUED)  # sent by the application
    drain(huey)
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_COMPLETE)
    assert stored_at_complete == [3]  # the result is in the store when COMPLETE is sent
    assert result.get() == 3


def test_success_with_pipeline_enqueues_next_after_complete(huey, events):
    @huey.task()
    def add(a, b):
        return a + b

    pipe = add.s(1, 2).then(add, 10)
    first, second = pipe.id, pipe.on_complete.id
    group = huey.enqueue(pipe)
    huey.execute(huey.dequeue())
    assert events == (sequence(first, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_COMPLETE)
                      + sequence(second, SIGNAL_ENQUEUED))
    drain(huey)
    assert events[4:] == sequence(second, SIGNAL_EXECUTING, SIGNAL_COMPLETE)
    assert group.get() == [3, 13]


def test_failure_with_retry_and_no_delay(huey, events):
    errors, stored_at_error = [], []

    @huey.task(retries=1)
    def flaky(box=[]):
        box.append(1)
        if len(box) == 1:
            raise ValueError('uh-oh')
        return 'OK'

    @huey.signal(SIGNAL_ERROR)
    def on_error(signal, task, exc=None):
        errors.append(exc)
        stored_at_error.append(huey.get(task.id, peek=True))

    result = flaky()
    huey.execute(huey.dequeue())
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_ERROR,
                              SIGNAL_RETRYING, SIGNAL_ENQUEUED)
    assert huey.pending_count() == 1 and huey.scheduled_count() == 0
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert str(errors[0]) == 'uh-oh'
    # The error result was already in the store when the handler ran.
    assert len(stored_at_error) == 1 and isinstance(stored_at_error[0], Error)
    assert "ValueError('uh-oh')" in stored_at_error[0].metadata['error']

    drain(huey)
    assert events[5:] == sequence(result.id, SIGNAL_EXECUTING, SIGNAL_COMPLETE)
    assert result.get() == 'OK'


def test_failure_with_retry_delay_goes_to_schedule(huey, events):
    @huey.task(retries=2, retry_delay=10)
    def flaky(box=[]):
        box.append(1)
        if len(box) == 1:
            raise ValueError('uh-oh')
        return 'OK'

    result = flaky()
    drain(huey)
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_ERROR,
                              SIGNAL_RETRYING, SIGNAL_SCHEDULED)
    assert huey.pending_count() == 0 and huey.scheduled_count() == 1
    assert run_due(huey, 5) == 0
    assert run_due(huey, 11) == 1
    assert events[5:] == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING,
                                  SIGNAL_COMPLETE)
    assert result.get() == 'OK'  # the second attempt's value replaced the first error


@pytest.mark.parametrize('retries', [0, 1], ids=['no-retries', 'retries-exhausted'])
def test_failure_without_retry(huey, events, retries):
    errors = []

    @huey.task(retries=retries)
    def broken():
        raise KeyError('gone')

    @huey.signal(SIGNAL_ERROR)
    def on_error(signal, task, exc=None):
        errors.append(type(exc))

    result = broken()
    drain(huey)
    attempt = [SIGNAL_EXECUTING, SIGNAL_ERROR]
    expected = [SIGNAL_ENQUEUED] + attempt + [SIGNAL_RETRYING, SIGNAL_ENQUEUED] * retries
    if retries:
        expected += attempt
    assert events == sequence(result.id, *expected)
    assert errors == [KeyError] * (retries + 1)
    assert huey.pending_count() == 0 and huey.scheduled_count() == 0
    with pytest.raises(TaskException):
        result.get()


def test_scheduled_task(huey, events):
    @huey.task()
    def add(a, b):
        return a + b

    result = add.schedule((2, 3), delay=10)
    assert events == sequence(result.id, SIGNAL_ENQUEUED)  # in the application
    drain(huey)  # the worker sees it is early and hands it to the schedule
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_SCHEDULED)
    assert run_due(huey, 5) == 0
    assert len(events) == 2
    assert run_due(huey, 11) == 1  # the scheduler re-enqueues it, then it runs
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_SCHEDULED, SIGNAL_ENQUEUED,
                              SIGNAL_EXECUTING, SIGNAL_COMPLETE)
    assert result.get() == 5


def test_revoked_task_sends_nothing_after_revoked(huey, events):
    @huey.task()
    def add(a, b):
        return a + b

    add.revoke()
    result = add(1, 2)
    drain(huey)
    run_due(huey, 3600)
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_REVOKED)
    assert result.get() is None


def test_expired_task(huey, events):
    @huey.task(expires=10)
    def job():
        return 'ran'

    result = job()
    drain(huey, huey.now() + datetime.timedelta(seconds=20))
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXPIRED)
    assert result.get() is None


def test_locked_task(huey, events):
    ran = []

    @huey.task()
    @huey.lock_task('report')
    def report():
        ran.append(1)

    with huey.lock_task('report'):
        result = report()
        drain(huey)
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_LOCKED)
    assert ran == []
    with pytest.raises(TaskException) as info:
        result.get()
    assert 'TaskLockedException' in info.value.metadata['error']


def test_canceled_by_pre_execute_hook(huey, events):
    ran = []

    @huey.pre_execute()
    def veto(task):
        raise CancelExecution()

    @huey.task()
    def job():
        ran.append(1)

    result = job()
    drain(huey)
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_CANCELED)
    assert ran == []


@pytest.mark.parametrize('how', ['alarm', 'cooperative'])
def test_timeout(huey, events, how):
    never = threading.Event()

    if how == 'alarm':
        # Run in the main thread, where SIGALRM interrupts even a blocking wait.
        @huey.task(timeout=0.05)
        def slow():
            never.wait(30)
            return 'finished'

        result = slow()
        drain(huey)
    else:
        # A worker thread gets no SIGALRM: the task checks its own deadline.
        @huey.task(timeout=0.05, context=True)
        def slow(task=None):
            for _ in range(6000):
                task.check_timeout()
                never.wait(0.005)
            return 'finished'

        result = slow()
        worker = threading.Thread(target=drain, args=(huey,))
        worker.start()
        worker.join(60)
        assert not worker.is_alive()
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_TIMEOUT)
    with pytest.raises(TaskException) as info:
        result.get()
    assert 'TaskTimeout' in info.value.metadata['error']


def test_rate_limited_task_is_scheduled_for_the_next_window(huey, events):
    per = 3600
    # Both calls must fall in one window: never start in a window's last seconds.
    wait_until(lambda: time.time() % per < per - 5, timeout=10)
    etas = []

    @huey.task()
    def call_api():
        with huey.rate_limit('api', 1, per):
            return 'called'

    @huey.signal(SIGNAL_SCHEDULED)
    def on_scheduled(signal, task):
        etas.append(task.eta)

    window = int(time.time() // per)
    assert call_api().get() is None
    drain(huey)
    del events[:]
    result = call_api()
    drain(huey)
    assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING,
                              SIGNAL_RATE_LIMITED, SIGNAL_RETRYING, SIGNAL_SCHEDULED)
    assert huey.scheduled_count() == 1
    next_window = (window + 1) * per
    assert len(etas) == 1
    assert 0 <= to_timestamp(etas[0], huey.utc) - next_window < 1
    assert to_timestamp(huey.scheduled()[0].eta, huey.utc) == to_timestamp(etas[0], huey.utc)
    assert result.get() is None  # a retry is coming: no error result is stored


def test_interrupted_task(huey, events):
    started, release = threading.Event(), threading.Event()

    @huey.task()
    def long_job():
        started.set()
        release.wait(30)
        return 'done'

    result = long_job()
    task = huey.dequeue()
    worker = threading.Thread(target=huey.execute, args=(task,))
    worker.start()
    try:
        wait_until(started.is_set)
        assert huey.notify_interrupted_tasks() == [task]
        assert events == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING,
                                  SIGNAL_INTERRUPTED)
    finally:
        release.set()
        worker.join(10)
    assert not worker.is_alive()
    assert huey.notify_interrupted_tasks() == []  # reported once, and no longer running
    assert events.count((SIGNAL_INTERRUPTED, result.id)) == 1


# --- handlers ------------------------------------------------------------------------

def test_raising_handler_is_logged_and_stops_nothing(huey, caplog):
    completed = []

    @huey.signal()
    def broken_everywhere(signal, task, *args):
        raise RuntimeError('broken on %s' % signal)

    @huey.signal(SIGNAL_COMPLETE)
    def broken_handler(signal, task):
        raise ValueError('oops')

    @huey.signal(SIGNAL_COMPLETE)
    def working_handler(signal, task):
        completed.append(task.id)

    seen = []

    @huey.signal()
    def record(signal, task, *args):
        seen.append((signal, task.id))

    @huey.task()
    def add(a, b):
        return a + b

    with caplog.at_level(logging.ERROR, logger='hueyd.signals'):
        result = add(1, 2)
        drain(huey)
    assert seen == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_COMPLETE)
    assert completed == [result.id]
    assert result.get() == 3
    failures = [r for r in caplog.records if r.name == 'hueyd.signals']
    assert [type(r.exc_info[1]).__name__ for r in failures] == [
        'RuntimeError', 'RuntimeError', 'ValueError', 'RuntimeError']
    assert all(r.levelno == logging.ERROR for r in failures)
    assert 'oops' in caplog.text and 'broken on complete' in caplog.text


def test_handler_for_named_signals_only(huey):
    seen = []

    @huey.signal(SIGNAL_ERROR, SIGNAL_LOCKED)
    def not_executed(signal, task, exc=None):
        seen.append((signal, task.id))

    @huey.task()
    def ok():
        return 1

    @huey.task()
    def bad():
        raise ValueError('no')

    @huey.task()
    @huey.lock_task('only-one')
    def guarded():
        return 2

    good, failed = ok(), bad()
    drain(huey)
    with huey.lock_task('only-one'):
        locked = guarded()
        drain(huey)
    assert seen == [(SIGNAL_ERROR, failed.id), (SIGNAL_LOCKED, locked.id)]
    assert good.get() == 1


def test_disconnect_signal(huey):
    everything, chosen = [], []

    @huey.signal()
    def all_signals(signal, task, *args):
        everything.append(signal)

    @huey.signal(SIGNAL_COMPLETE, SIGNAL_LOCKED)
    def some_signals(signal, task, *args):
        chosen.append(signal)

    @huey.task()
    @huey.lock_task('l')
    def job():
        return 1

    def run_once_free_and_once_locked():
        job()
        drain(huey)
        with huey.lock_task('l'):
            job()
            drain(huey)

    run_once_free_and_once_locked()
    assert chosen == [SIGNAL_COMPLETE, SIGNAL_LOCKED]
    assert len(everything) == 6

    huey.disconnect_signal(some_signals, SIGNAL_LOCKED)  # only from LOCKED
    huey.disconnect_signal(all_signals)
    del everything[:], chosen[:]
    run_once_free_and_once_locked()
    assert chosen == [SIGNAL_COMPLETE]
    assert everything == []

    huey.disconnect_signal(some_signals)  # from all that remain
    run_once_free_and_once_locked()
    assert chosen == [SIGNAL_COMPLETE]


def test_an_observer_gets_the_exception_behind_a_failure_signal(huey):
    seen = []

    @huey.observe(SIGNAL_LOCKED)
    def observer(signal, task, outcome):
        seen.append(outcome)

    @huey.task()
    @huey.lock_task('held')
    def job():
        return 1

    with huey.lock_task('held'):
        job()
        drain(huey)
    [outcome] = seen
    assert isinstance(outcome.exception, TaskLockedException)


def test_an_observer_gets_how_long_the_task_ran(huey):
    durations = []

    @huey.observe(SIGNAL_COMPLETE)
    def observer(signal, task, outcome):
        durations.append(outcome.duration)

    @huey.task()
    def nap():
        time.sleep(0.05)

    nap()
    drain(huey)
    assert len(durations) == 1 and 0.05 <= durations[0] < 10


def test_an_observer_is_disconnected_like_a_receiver(huey):
    seen = []

    @huey.observe()
    def observer(signal, task, outcome):
        seen.append(signal)

    @huey.task()
    def job():
        return 1

    huey.disconnect_signal(observer)
    job()
    drain(huey)
    assert seen == []


def test_unknown_signal_name_raises(huey):
    with pytest.raises(ValueError) as info:
        @huey.signal(SIGNAL_COMPLETE, 'finished')
        def handler(signal, task):
            pass
    assert "'finished'" in str(info.value) and SIGNAL_COMPLETE in str(info.value)


def test_signals_fire_in_immediate_mode(huey):
    huey.immediate = True
    try:
        state, everything = [], []

        @huey.task()
        def add(a, b):
            return a + b

        @huey.signal(SIGNAL_COMPLETE)
        def on_complete(signal, task):
            state.append(task.id)

        @huey.signal()
        def record(signal, task, *args):
            everything.append((signal, task.id))

        result = add(1, 2)  # executes immediately, fires signals
        assert len(state) == 1
        assert state[0] == result.id
        assert everything == sequence(result.id, SIGNAL_ENQUEUED, SIGNAL_EXECUTING,
                                      SIGNAL_COMPLETE)
        assert result.get() == 3
    finally:
        huey.immediate = False
