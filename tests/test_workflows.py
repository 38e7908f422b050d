"""Workflows (issue 4): pipelines, groups, chords, locks, rate limits, timeouts,
expiry and priorities, on every storage, with real concurrency where races can show.

In-process tests drive ``dequeue()``/``execute()`` from several worker threads
(``Workers``); the daemon tests run the real ``hueyd`` on the app in
tests/workflow_app.py.
"""
import collections
import datetime
import itertools
import json
import threading
import time

import pytest

from daemon_harness import (START_TIMEOUT, TASK_TIMEOUT, start_daemon,  # noqa: F401
                            stop_gracefully)
from drain import BackgroundWorker, drain, run_due
from hueyd import (ChordResult, PriorityRedisHuey, RateLimitExceeded, ResultGroup,
                   TaskException, TaskLockedException, chord, group)
from hueyd.exceptions import CancelExecution
from hueyd.result import Error, Result, Skipped
from hueyd.signals import (SIGNAL_COMPLETE, SIGNAL_ENQUEUED, SIGNAL_EXECUTING,
                           SIGNAL_EXPIRED, SIGNAL_LOCKED, SIGNAL_RATE_LIMITED,
                           SIGNAL_RETRYING, SIGNAL_SCHEDULED)
from hueyd.times import to_timestamp
from support import make_huey, wait_until
from workflow_app import workflow_app  # noqa: F401


class Workers:
    """``count`` threads running dequeue()/execute() on one Huey until stopped."""

    def __init__(self, huey, count):
        self.workers = [BackgroundWorker(huey) for _ in range(count)]

    def __enter__(self):
        for worker in self.workers:
            worker.__enter__()
        return self

    def __exit__(self, *exc):
        for worker in self.workers:
            worker.__exit__(*exc)


def recorder(huey):
    """Every signal as (signal, task id), in order."""
    seen = []

    @huey.signal()
    def record(signal, task, *args, **kwargs):
        seen.append((signal, task.id))

    return seen


# --- pipelines -------------------------------------------------------------------

def test_s_takes_special_options_out_of_kwargs(huey):
    @huey.task()
    def echo(*args, **kwargs):
        return args, kwargs

    task = echo.s(1, 2, flag=True, id='fixed-id', retries=3, retry_delay=7, retry_backoff=2,
                  priority=5, expires=30, timeout=4)
    assert (task.args, task.kwargs) == ((1, 2), {'flag': True})
    assert (task.id, task.retries, task.retry_delay, task.retry_backoff, task.priority,
            task.expires, task.timeout) == ('fixed-id', 3, 7, 2, 5, 30, 4)
    before = huey.now()
    delayed = echo.s(delay=datetime.timedelta(seconds=60))
    assert 59 < (delayed.eta - before).total_seconds() < 61
    eta = datetime.datetime(2030, 1, 2, 3, 4, 5)
    assert echo.s(eta=eta).eta is not None
    with pytest.raises(ValueError):
        echo.s(eta=eta, delay=5)
    # Calling the task goes through .s(): options per call.
    result = echo(1, priority=9, retries=2)
    queued = huey.pending()[0]
    assert (queued.id, queued.priority, queued.retries, queued.kwargs) == (result.id, 9, 2, {})
    drain(huey)
    assert result.get() == ((1,), {})


def test_then_and_error_accept_functions_and_tasks(huey):
    @huey.task()
    def add(a, b):
        return a + b

    @huey.task()
    def join(*parts, sep='-'):
        return sep.join(str(p) for p in parts)

    # A task function plus arguments becomes .s(arguments); special options too.
    pipe = add.s(1, 2).then(add, 10).then(join, 'x', sep='+', priority=3)
    third = pipe.on_complete.on_complete
    assert third.args == ('x',) and third.kwargs == {'sep': '+'} and third.priority == 3
    # A task instance plus arguments: they are appended to its own.
    pipe2 = add.s(1, 1).then(join.s('a'), 'b', sep='/')
    assert pipe2.on_complete.args == ('a', 'b') and pipe2.on_complete.kwargs == {'sep': '/'}
    # error(): a second handler chains on the first, as in huey.
    first, second = join.s('e1'), join.s('e2')
    pipe.error(first).error(second)
    assert pipe.on_error is first and first.on_error is second

    results = huey.enqueue(pipe)
    assert isinstance(results, ResultGroup) and len(results) == 3
    results2 = huey.enqueue(pipe2)
    drain(huey)
    assert results.get() == [3, 13, 'x+13']
    assert results2.get() == [2, 'a/b/2']


def test_pipeline_with_delayed_and_scheduled_stages(huey):
    @huey.task()
    def add(a, b):
        return a + b

    eta = huey.now() + datetime.timedelta(seconds=120)
    pipe = add.s(1, 2).then(add, 10, delay=30).then(add, 100, eta=eta)
    stages = huey.enqueue(pipe)
    results = list(stages)
    assert drain(huey) == 2                     # stage 1 runs; stage 2 goes to the schedule
    assert results[0].get() == 3 and results[1].get() is None
    assert huey.scheduled_count() == 1
    assert run_due(huey, 10) == 0               # not due yet
    assert run_due(huey, 31) == 2               # stage 2 runs; stage 3 waits for its eta
    assert results[1].get() == 13 and huey.scheduled_count() == 1
    assert run_due(huey, 121) == 1
    assert stages.get() == [3, 13, 113]


def test_delayed_head_of_pipeline(huey):
    @huey.task()
    def add(a, b):
        return a + b

    results = huey.enqueue(add.s(1, 2, delay=60).then(add, 3))
    drain(huey)
    assert huey.scheduled_count() == 1 and results.get() == [None, None]
    run_due(huey, 61)
    assert results.get() == [3, 6]


def test_failed_stage_stores_its_error_for_the_rest_of_the_pipeline(huey):
    calls = []

    @huey.task()
    def add(a, b):
        calls.append(a)
        return a + b

    @huey.task(retries=1)
    def boom(value):
        raise ValueError('stage two failed on %s' % value)

    @huey.task()
    def on_error(exc):
        return 'handled %s' % type(exc).__name__

    pipe = add.s(1, 2).then(boom).then(add, 5).then(add, 6)
    handler = on_error.s()
    pipe.on_complete.error(handler)
    results = list(huey.enqueue(pipe))
    with BackgroundWorker(huey):
        # Blocking reads of the later stages raise instead of waiting forever.
        for index in (3, 2, 1):
            with pytest.raises(TaskException) as info:
                results[index].get(blocking=True, timeout=10)
            assert 'stage two failed on 3' in info.value.metadata['error']
        assert Result(huey, handler).get(blocking=True, timeout=10) == 'handled ValueError'
    assert results[0].get() == 3
    assert calls == [1]                          # stages 3 and 4 never ran


# --- groups and chords ------------------------------------------------------------

def test_group_enqueues_members_and_then_makes_a_chord(huey):
    @huey.task()
    def square(x):
        return x * x

    @huey.task()
    def total(results):
        return sum(results)

    results = huey.enqueue(group([square.s(i) for i in range(4)]))
    assert isinstance(results, ResultGroup) and len(results) == 4
    drain(huey)
    assert results.get() == [0, 1, 4, 9]

    workflow = group([square.s(i) for i in range(4)]).then(total)
    assert isinstance(workflow, chord)
    result = huey.enqueue(workflow)
    assert isinstance(result, ChordResult)
    drain(huey)
    assert result.get() == 14
    assert result.results.get() == [0, 1, 4, 9]


def test_group_error_gives_every_member_its_own_handler(huey):
    @huey.task()
    def fail(x):
        raise KeyError(x)

    @huey.task()
    def handler(tag, exc):
        return '%s:%s' % (tag, exc)

    shared = handler.s('shared')
    members = [fail.s(i) for i in range(3)]
    huey.enqueue(group(members).error(shared))
    handlers = [member.on_error for member in members]
    assert len({h.id for h in handlers}) == 3   # copies: no two write the same result
    drain(huey)
    assert sorted(Result(huey, h).get() for h in handlers) == [
        'shared:0', 'shared:1', 'shared:2']


def test_chord_callback_pipeline_and_members_that_are_pipelines(huey):
    @huey.task()
    def add(a, b):
        return a + b

    @huey.task()
    def total(results):
        return sum(results)

    @huey.task()
    def describe(label, value):
        return '%s=%s' % (label, value)

    members = [add.s(i, 0).then(add, 100) for i in range(3)]
    workflow = chord(members, total).then(describe, 'sum')
    result = huey.enqueue(workflow)
    drain(huey)
    assert result.results.get() == [100, 101, 102]     # each member's last stage
    assert result.get() == 303
    assert result.pipeline_results.get() == [303, 'sum=303']


def test_chord_with_no_members_and_nested_chord(huey):
    @huey.task()
    def total(results):
        return results

    @huey.task()
    def square(x):
        return x * x

    empty = huey.enqueue(chord([], total))
    drain(huey)
    assert empty.get() == []

    inner = chord([square.s(2), square.s(3)], total)
    outer = huey.enqueue(chord([square.s(1), inner], total))
    drain(huey)
    assert outer.get() == [1, [4, 9]]


def build_chord(huey, size, failing, revoked, expired, canceled):
    """A chord of ``size`` squares where the given indexes fail or are skipped."""
    @huey.task()
    def square(x, cancel=False):
        if x == failing:
            raise ValueError('unlucky %d' % x)
        return x * x

    @huey.pre_execute()
    def cancel_some(task):
        if task.kwargs.get('cancel'):
            raise CancelExecution()

    calls = []

    @huey.task()
    def collect(results):
        calls.append(list(results))
        return results

    members = []
    for i in range(size):
        if i == expired:
            members.append(square.s(i, expires=datetime.datetime(2000, 1, 1)))
        elif i == canceled:
            members.append(square.s(i, cancel=True))
        else:
            members.append(square.s(i))
    huey.revoke(members[revoked])
    return chord(members, collect), members, calls


def check_chord_results(results, members, failing, revoked, expired, canceled):
    for i, value in enumerate(results):
        if i == failing:
            assert isinstance(value, Error), value
            assert value.metadata['error'] == "ValueError('unlucky %d')" % i
            assert value.metadata['task_id'] == members[i].id
        elif i in (revoked, expired, canceled):
            reason = {revoked: 'revoked', expired: 'expired', canceled: 'canceled'}[i]
            assert value == Skipped(reason, members[i].id) and not value
        else:
            assert value == i * i, (i, value)


def test_chord_runs_callback_once_in_member_order_with_many_workers(huey):
    size, failing, revoked, expired, canceled = 100, 13, 40, 60, 80
    workflow, members, calls = build_chord(huey, size, failing, revoked, expired, canceled)
    result = huey.enqueue(workflow)
    with Workers(huey, 4):
        results = result.get(blocking=True, timeout=30)
        wait_until(lambda: huey.pending_count() == 0)
    assert len(calls) == 1, 'the callback ran %d times' % len(calls)
    assert calls[0] == results and len(results) == size
    check_chord_results(results, members, failing, revoked, expired, canceled)
    # The members' own results: a value, an error, or nothing for the skipped.
    members_results = list(result.results)
    with pytest.raises(TaskException):
        members_results[failing].get()
    assert members_results[revoked].get() is None and result.results[7] == 49
    # Nothing of the chord's bookkeeping is left behind in storage.
    cid = members[0].chord_config[0]
    keys = ['chord:%s:%d' % (cid, i) for i in range(size)]
    assert huey.storage.peek_many(keys) == {}
    assert huey.storage.incr('chord:%s' % cid, 0) == 0


def test_chord_member_reported_twice_counts_once(huey):
    """A redelivered member (at-least-once) must not make the callback run early."""
    @huey.task()
    def square(x):
        return x * x

    @huey.task()
    def collect(results):
        return results

    members = [square.s(i) for i in range(3)]
    result = huey.enqueue(chord(members, collect))
    first = huey.dequeue()
    copy = huey.deserialize_task(huey.serialize_task(first))
    huey.execute(first)
    huey.execute(copy)                      # the same member again
    assert not result.is_ready() and huey.pending_count() == 2
    drain(huey)
    assert result.get() == [0, 1, 4]


def test_chord_counts_across_separate_consumers(shared_storage_url, queue_name):
    """Four Huey instances (own connections, like separate consumers) share one chord."""
    instances = [make_huey(queue_name, shared_storage_url) for _ in range(4)]
    calls, wrappers = [], []
    for instance in instances:
        @instance.task()
        def square(x):
            return x * x

        @instance.task()
        def collect(results):
            calls.append(1)
            return results

        wrappers.append((square, collect))
    producer, (square, collect) = instances[0], wrappers[0]
    result = producer.enqueue(chord([square.s(i) for i in range(60)], collect))
    workers = [BackgroundWorker(instance) for instance in instances]
    for worker in workers:
        worker.__enter__()
    try:
        assert result.get(blocking=True, timeout=30) == [i * i for i in range(60)]
        wait_until(lambda: producer.pending_count() == 0)
    finally:
        for worker in workers:
            worker.__exit__()
    assert len(calls) == 1
    producer.flush()
    for instance in instances:
        instance.storage.close()


@pytest.mark.parametrize('storage, worker_type', [('sqlite', 'process'), ('redis', 'thread')])
def test_chord_under_the_daemon(workflow_app, start_daemon, storage, worker_type):  # noqa: F811
    app = workflow_app(storage)
    size, failing, revoked, expired, canceled = 100, 13, 40, 60, 80
    members = []
    for i in range(size):
        if i == expired:
            members.append(app.square.s(i, expires=datetime.datetime(2000, 1, 1)))
        else:
            members.append(app.square.s(i, cancel=(i == canceled)))
    app.huey.revoke(members[revoked])
    result = app.huey.enqueue(chord(members, app.collect.s('c')))
    daemon = start_daemon(app, '-k', worker_type, '-w', '4')
    daemon.wait_until(lambda: app.records('collect'), message='the chord callback did not run')
    assert result.get(blocking=True, timeout=10) == size
    daemon.wait_until(lambda: app.pending() == 0)
    stop_gracefully(daemon)                  # lets anything still running finish
    collected = app.records('collect')
    assert len(collected) == 1, collected
    expected = []
    for i in range(size):
        expected.append({failing: 'E:ValueError', revoked: 'S:revoked', expired: 'S:expired',
                         canceled: 'S:canceled'}.get(i, i * i))
    assert json.loads(collected[0][4]) == expected


# --- locks -------------------------------------------------------------------------

def test_lock_task_as_decorator_and_context_manager(huey):
    with huey.lock_task('report') as lock:
        assert lock.is_locked() and huey.is_locked('report')
        with pytest.raises(TaskLockedException) as info:
            with huey.lock_task('report'):
                pass
        assert "'report'" in str(info.value)
    assert not huey.is_locked('report')

    @huey.lock_task('decorated')
    def guarded():
        return huey.is_locked('decorated')

    assert guarded() is True and not huey.is_locked('decorated')
    with huey.lock_task('decorated'), pytest.raises(TaskLockedException):
        guarded()
    # flush_locks() releases the declared locks that are held, and named ones.
    huey.lock_task('report').acquire()
    huey.storage.put_if_empty('%s.lock.%s' % (huey.name, 'undeclared'), b'1')
    assert huey.flush_locks('undeclared') == {'report', 'undeclared'}
    assert not huey.is_locked('report') and not huey.is_locked('undeclared')
    assert huey.flush_locks() == set()


def test_locked_task_fails_while_another_holds_the_lock(huey):
    started, release = threading.Event(), threading.Event()
    seen = recorder(huey)

    @huey.task()
    @huey.lock_task('exclusive')
    def exclusive(tag):
        started.set()
        release.wait(30)
        return tag

    first = exclusive('first')
    with Workers(huey, 2):
        wait_until(started.is_set)
        second = exclusive('second')        # a second worker takes it while the first runs
        with pytest.raises(TaskException) as info:
            second.get(blocking=True, timeout=10)
        release.set()
        assert first.get(blocking=True, timeout=10) == 'first'
    assert 'TaskLockedException' in info.value.metadata['error']
    assert "'exclusive'" in info.value.metadata['error']
    # SIGNAL_ENQUEUED fires in this thread once the enqueue returns, the others in the
    # worker, which may already have started the task: only the worker's are ordered.
    second_signals = [s for s, tid in seen if tid == second.id]
    assert sorted(second_signals) == sorted([SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_LOCKED])
    assert [s for s in second_signals if s != SIGNAL_ENQUEUED] == [SIGNAL_EXECUTING, SIGNAL_LOCKED]
    assert (SIGNAL_COMPLETE, first.id) in seen
    assert not huey.is_locked('exclusive')


def test_lock_under_the_daemon(workflow_app, start_daemon):  # noqa: F811
    app = workflow_app('sqlite')
    daemon = start_daemon(app, '-k', 'thread', '-w', '2')
    daemon.wait_ready(1)
    held = app.exclusive('a', 2.0)
    daemon.wait_until(lambda: app.records('start'))
    refused = app.exclusive('b', 0)
    with pytest.raises(TaskException) as info:
        refused.get(blocking=True, timeout=10)
    assert 'only-one' in info.value.metadata['error']
    daemon.wait_until(lambda: app.records('done'))
    assert held.get() is None                  # it returns nothing: no error stored either
    assert [r[1] for r in app.records('locked')] == ['b']
    assert [r[1] for r in app.records('start')] == ['a']
    stop_gracefully(daemon)


# --- rate limits ---------------------------------------------------------------------

def _not_near_window_end(per):
    wait_until(lambda: time.time() % per < per - 5, timeout=10)


def test_rate_limit_as_context_manager_and_decorator(huey):
    _not_near_window_end(3600)
    limit = huey.rate_limit('api', 2, 3600)

    @huey.rate_limit('decorated', 1, 3600)
    def call():
        return 'called'

    with limit:
        pass
    with limit:
        pass
    with pytest.raises(RateLimitExceeded) as info, limit:
        pass
    assert info.value.key == 'api' and 0 < info.value.delay <= 3600
    assert call() == 'called'
    with pytest.raises(RateLimitExceeded):
        call()


@pytest.mark.parametrize('retry_delay', [0, 5], ids=['next-window', 'retry-delay'])
def test_rate_limit_without_retry_uses_the_tasks_retries(huey, retry_delay):
    """huey: retry=False with retries left schedules at retry_delay or the next window."""
    per = 3600
    _not_near_window_end(per)
    seen = recorder(huey)

    @huey.task(retries=1, retry_delay=retry_delay)
    def call_api():
        with huey.rate_limit('strict', 1, per, retry=False):
            return 'called'

    assert call_api() is not None
    drain(huey)
    result = call_api()
    before = time.time()
    drain(huey)
    assert [s for s, tid in seen if tid == result.id] == [
        SIGNAL_ENQUEUED, SIGNAL_EXECUTING, SIGNAL_RATE_LIMITED, SIGNAL_RETRYING,
        SIGNAL_SCHEDULED]
    scheduled = huey.scheduled()
    assert len(scheduled) == 1 and scheduled[0].retries == 0   # a retry was used up
    eta = to_timestamp(scheduled[0].eta, huey.utc)
    expected = before + retry_delay if retry_delay else (int(before // per) + 1) * per
    assert abs(eta - expected) < 1
    assert result.get() is None
    # Still in the same window, and no retries left: it fails for good this time.
    run_due(huey, per + 10)
    with pytest.raises(TaskException) as info:
        result.get()
    assert 'RateLimitExceeded' in info.value.metadata['error']


def test_rate_limit_without_retry_and_no_retries_fails(huey):
    _not_near_window_end(3600)

    @huey.task()
    def call_api():
        with huey.rate_limit('strict', 1, 3600, retry=False):
            return 'called'

    ok, refused = call_api(), call_api()
    drain(huey)
    assert ok.get() == 'called' and huey.scheduled_count() == 0
    with pytest.raises(TaskException):
        refused.get()


def limited_attempts(app, per):
    """Every run of workflow_app's ``limited``: {tag: [(outcome, windows)]} in the order
    they started, outcome 'ran' or 'refused', windows the window numbers (as RateLimit
    numbers them: ``int(time // per)``) its clock reading can have fallen in. The task
    writes the time just before entering the limit, the line its own time just after."""
    attempts = {}
    runs = sorted(app.records('ran') + app.records('refused'), key=lambda r: float(r[4]))
    for outcome, tag, _, after, before in runs:
        windows = range(int(float(before) // per), int(after // per) + 1)
        attempts.setdefault(tag, []).append((outcome, windows))
    return attempts


def fitting_windows(attempts, limit):
    """A window for every attempt under which the limit held: at most ``limit`` ran in a
    window, one was refused only where ``limit`` ran, and a refused task ran again only in
    a later window. {(tag, nth attempt): window}, or None if no choice fits.

    Nearly every attempt has one window; one whose two clock readings straddle a window
    boundary (a slow machine) has two, and each is tried."""
    keys = [(tag, n) for tag, runs in attempts.items() for n in range(len(runs))]
    outcome = {(tag, n): attempts[tag][n][0] for tag, n in keys}
    for chosen in itertools.product(*(attempts[tag][n][1] for tag, n in keys)):
        window = dict(zip(keys, chosen))
        ran = collections.Counter(window[k] for k in keys if outcome[k] == 'ran')
        refused = {window[k] for k in keys if outcome[k] == 'refused'}
        if (all(count <= limit for count in ran.values())
                and all(ran[w] == limit for w in refused)
                and all(window[tag, n + 1] > window[tag, n] for tag, n in keys
                        if (tag, n + 1) in window)):
            return window
    return None


def test_rate_limit_under_the_daemon(workflow_app, start_daemon):  # noqa: F811
    """2 per 1 s window across the workers: the rest are retried in later windows.

    Checked on the window each attempt counted in, from the clock readings the task
    wrote around the limit's own, so a slow machine changes which windows the attempts
    fall in, not whether the checks hold.
    """
    limit, per = 2, 1
    app = workflow_app('redis')
    tags = []

    def enqueue_five():
        new = ['t%d' % n for n in range(len(tags), len(tags) + 5)]
        app.huey.enqueue_many(app.limited.s(tag, limit, per) for tag in new)
        tags.extend(new)

    # All waiting when the workers start: the 3 workers take them at once.
    enqueue_five()
    daemon = start_daemon(app, '-k', 'thread', '-w', '3')
    timeout, deadline = START_TIMEOUT + TASK_TIMEOUT, time.monotonic() + 60
    while True:
        daemon.wait_until(lambda: len(app.records('ran')) >= len(tags), timeout=timeout)
        if app.records('refused') or time.monotonic() > deadline:
            break
        # Nothing refused yet: the attempts were spread out enough (a slow machine) that
        # no window had more than 2. Five more at once, until the limit has had to refuse.
        enqueue_five()
        timeout = TASK_TIMEOUT
    attempts = limited_attempts(app, per)
    assert app.records('refused'), 'no window ever had more than %d attempts: %s' % (
        limit, attempts)
    # Each task was refused 0 or more times, then ran once; every refusal was signalled.
    assert sorted(attempts) == sorted(tags), attempts
    assert all([outcome for outcome, _ in runs] == ['refused'] * (len(runs) - 1) + ['ran']
               for runs in attempts.values()), attempts
    signalled = collections.Counter(tag for _, tag, *_ in app.records(SIGNAL_RATE_LIMITED))
    assert signalled == collections.Counter(tag for _, tag, *_ in app.records('refused'))
    assert fitting_windows(attempts, limit) is not None, (
        'more than %d ran in a window, or one was refused in a window with room, or was '
        'retried in the same window: %s' % (limit, attempts))
    stop_gracefully(daemon)


# --- timeouts --------------------------------------------------------------------------

@pytest.mark.parametrize('worker_type, task', [
    ('process', 'sleepy'), ('greenlet', 'sleepy'), ('thread', 'cooperative')])
def test_timeout_under_the_daemon(workflow_app, start_daemon, worker_type, task):  # noqa: F811
    app = workflow_app('sqlite')
    daemon = start_daemon(app, '-k', worker_type, '-w', '1')
    result = getattr(app, task)('slow')
    with pytest.raises(TaskException) as info:
        result.get(blocking=True, timeout=15)
    assert 'TaskTimeout' in info.value.metadata['error']
    daemon.wait_until(lambda: app.records('timeout'))
    (start,), (timed_out,) = app.records('start'), app.records('timeout')
    assert 0.25 <= timed_out[3] - start[3] < 1.5, 'stopped %.2fs after it started' % (
        timed_out[3] - start[3])
    assert app.records('done') == []
    # The worker is free again at once.
    after = app.square(3)
    assert after.get(blocking=True, timeout=10) == 9
    stop_gracefully(daemon)


# --- expiry ----------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['seconds', 'timedelta', 'naive-datetime', 'aware-datetime'])
def test_expires_forms(huey, kind):
    ran = []
    seen = recorder(huey)

    @huey.task()
    def job(tag):
        ran.append(tag)
        return tag

    def expires():
        if kind == 'seconds':
            return 30
        if kind == 'timedelta':
            return datetime.timedelta(seconds=30)
        if kind == 'naive-datetime':   # naive datetimes are local time, as in huey
            return datetime.datetime.now() + datetime.timedelta(seconds=30)
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)

    in_time = job.s('in-time', expires=expires())
    late = job.s('late', expires=expires())
    huey.enqueue(in_time)
    drain(huey)
    huey.enqueue(late)
    drain(huey, huey.now() + datetime.timedelta(seconds=60))
    assert ran == ['in-time']
    assert [s for s, tid in seen if tid == late.id] == [SIGNAL_ENQUEUED, SIGNAL_EXPIRED]
    # A task-level default works the same way.
    @huey.task(expires=expires())
    def default_expiry():
        ran.append('default')

    default_expiry()
    drain(huey, huey.now() + datetime.timedelta(seconds=60))
    assert ran == ['in-time']


# --- priority ---------------------------------------------------------------------------

@pytest.fixture(params=['memory', 'sqlite', 'priority-redis'])
def priority_huey(request, tmp_path, queue_name):
    if request.param == 'memory':
        huey = make_huey(queue_name, 'memory://')
    elif request.param == 'sqlite':
        huey = make_huey(queue_name, 'sqlite:///%s/huey.db' % tmp_path)
    else:
        huey = PriorityRedisHuey(queue_name, url=request.getfixturevalue('redis_server').url,
                                 blocking=False)
    yield huey
    huey.flush()
    huey.storage.close()


def test_priority_order_through_the_api(priority_huey):
    huey = priority_huey
    order = []

    @huey.task()
    def plain(tag):
        order.append(tag)

    @huey.task(priority=5)
    def urgent(tag):
        order.append(tag)

    plain('p0-a')
    urgent('p5-a')
    plain('p9', priority=9)                       # per call
    plain.schedule(('p3',), delay=60, priority=3)
    huey.enqueue(plain.s('p5-b', priority=5))
    urgent('p5-c')
    plain('p0-b')
    huey.enqueue_many([plain.s('p1', priority=1), urgent.s('p5-d')])
    # One worker, so the queue order is the execution order (the scheduled one
    # goes to the schedule first, then back to the queue with its priority).
    while True:
        task = huey.dequeue()
        if task is None:
            break
        huey.execute(task)
    assert order == ['p9', 'p5-a', 'p5-b', 'p5-c', 'p5-d', 'p1', 'p0-a', 'p0-b']
    run_due(huey, 61)
    assert order[-1] == 'p3'


@pytest.mark.parametrize('storage', ['sqlite', 'redis'])
def test_priority_under_the_daemon_with_one_worker(workflow_app, start_daemon, storage):  # noqa: F811
    app = workflow_app(storage, priority=(storage == 'redis'))
    tags = [('low-1', None), ('high-1', 10), ('mid-1', 5), ('low-2', 0), ('high-2', 10),
            ('mid-2', 5)]
    for tag, priority in tags:
        app.huey.enqueue(app.record.s(tag, priority=priority))
    daemon = start_daemon(app, '-k', 'thread', '-w', '1')
    daemon.wait_until(lambda: len(app.records('ran')) == len(tags))
    assert [r[1] for r in app.records('ran')] == ['high-1', 'high-2', 'mid-1', 'mid-2',
                                                  'low-1', 'low-2']
    stop_gracefully(daemon)
