"""``-k asyncio`` end to end: a real daemon whose pools run tasks as coroutines.

That every worker type runs plain and async tasks, and that SIGTERM or kill -9 hand
their claims back, is in test_daemon.py and test_delivery.py (parametrized on -k)."""
import asyncio
import signal

import psycopg
import pytest

from daemon_harness import app, make_app, start_daemon, stop_gracefully  # noqa: F401
from hueyd import TaskException


def test_tasks_run_at_once_up_to_workers(app, start_daemon):
    daemon = start_daemon(app, '-k', 'asyncio', '-w', '20')
    daemon.wait_ready(1)
    for n in range(25):
        app.aslow('n%d' % n, 3)
    daemon.wait_until(lambda: len(app.events('done')) == 25, timeout=30)
    lines = [words[0] for words in app.lines()]
    first_done = lines.index('done')
    assert lines[:first_done].count('start') == 20, \
        'not 20 tasks at once (-w 20): %r' % app.lines()
    stop_gracefully(daemon)


def test_plain_tasks_run_in_threads_beside_coroutines(app, start_daemon):
    daemon = start_daemon(app, '-k', 'asyncio', '-w', '4')
    daemon.wait_ready(1)
    app.slow('plain', 3)       # time.sleep: it would block the loop if it ran there
    daemon.wait_until(lambda: app.count('start', 'plain'))
    app.aslow('async', 0.1)
    daemon.wait_until(lambda: app.count('done', 'async'))
    assert not app.count('done', 'plain'), 'the async task waited for the plain one'
    daemon.wait_until(lambda: app.count('done', 'plain'))
    stop_gracefully(daemon)


def test_the_timeout_cancels_the_coroutine(app, start_daemon):
    daemon = start_daemon(app, '-k', 'asyncio', '-w', '2')
    daemon.wait_ready(1)
    result = app.aslow('t', 60, timeout=0.5)
    daemon.wait_until(lambda: app.count('cancelled', 't'), message='the task was not cancelled')
    with pytest.raises(TaskException, match='TaskTimeout'):
        result.get(blocking=True, timeout=15)
    assert not app.count('done', 't')
    stop_gracefully(daemon)


def test_sigint_lets_the_coroutines_finish_and_starts_no_new_one(app, start_daemon):
    daemon = start_daemon(app, '-k', 'asyncio', '-w', '2', '--graceful-timeout', '10')
    daemon.wait_ready(1)
    app.aslow('a', 1.5)
    app.aslow('b', 1.5)
    daemon.wait_until(lambda: app.count('start', 'a') and app.count('start', 'b'))
    app.arecord('queued')  # both slots are busy: this one waits in the queue
    daemon.send(signal.SIGINT)
    assert daemon.wait(15) == 0, daemon.describe()
    assert app.count('done', 'a') == 1 and app.count('done', 'b') == 1, app.lines()
    assert not app.events('cancelled') and not app.events('interrupted'), app.lines()
    assert not app.recorded('queued'), 'a new task started during the graceful stop'
    assert app.pending() == 1
    daemon.wait_no_leftovers()


def test_sigterm_cancels_the_coroutines_and_hands_them_back(app, start_daemon):
    daemon = start_daemon(app, '-k', 'asyncio', '-w', '3')
    daemon.wait_ready(1)
    results = [app.aslow(tag, 60) for tag in 'abc']
    daemon.wait_until(lambda: all(app.count('start', tag) for tag in 'abc'))
    daemon.send(signal.SIGTERM)
    assert daemon.wait(15) == 0, daemon.describe()
    assert sorted(tag for tag, _ in app.events('cancelled')) == ['a', 'b', 'c']
    assert sorted(tid for tid, _ in app.events('interrupted')) == sorted(r.id for r in results)
    assert sorted(task.id for task in app.huey.pending()) == sorted(r.id for r in results)
    assert app.huey.storage.claimed_items() == {}
    daemon.wait_no_leftovers()


@pytest.mark.parametrize('storage', ['sqlite', 'redis'])
def test_a_caller_awaits_the_result(make_app, start_daemon, storage):
    app = make_app(storage)
    daemon = start_daemon(app, '-k', 'asyncio', '-w', '4')
    daemon.wait_ready(1)

    async def caller():
        one = await app.aadd(1, 2)
        group = await app.huey.enqueue_many([app.aadd.s(n, n) for n in range(5)])
        return one, group

    assert asyncio.run(asyncio.wait_for(caller(), 30)) == (3, [0, 2, 4, 6, 8])
    stop_gracefully(daemon)


def running_record_write_waits(dsn):
    """Whether a write to the dead letters table (an at_most_once start) waits for a lock."""
    with psycopg.connect(dsn, autocommit=True) as probe:
        return probe.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                             "'Lock' AND position('INSERT INTO huey_dead' in query) = 1"
                             ).fetchone()[0] > 0


def test_a_storage_write_that_waits_does_not_stop_the_loop(make_app, start_daemon):
    """An at_most_once task's start stores its running record: while that write waits (its
    table locked here), the loop's other coroutines go on."""
    app = make_app('postgres')
    app.huey.storage.initialize_schema(delivery=True)
    daemon = start_daemon(app, '-k', 'asyncio', '-w', '4')
    daemon.wait_ready(1)
    app.aticker('t')
    daemon.wait_until(lambda: app.count('tick', 't'))
    with psycopg.connect(app.url) as locker:
        locker.execute('LOCK TABLE huey_dead IN SHARE MODE')  # reads pass, writes wait
        app.aonce('once')
        daemon.wait_until(lambda: running_record_write_waits(app.url),
                          message='the at_most_once task did not start')
        ticks = app.count('tick', 't')
        daemon.wait_until(lambda: app.count('tick', 't') >= ticks + 20, timeout=10,
                          message='the loop stopped while a storage write waited')
        locker.rollback()
    daemon.wait_until(lambda: app.recorded('once'), message='the at_most_once task did not run')
    daemon.send(signal.SIGTERM)
    assert daemon.wait(15) == 0, daemon.describe()
