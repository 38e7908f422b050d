"""hueyd.contrib.stats beyond huey's own tests: real tasks, recorders with their own
databases, peewee missing, and a real daemon whose pool processes record."""
import os
import subprocess
import sys

import pytest

peewee = pytest.importorskip('peewee')

from daemon_harness import make_app, start_daemon, stop_gracefully  # noqa: E402,F401 (fixtures)
from hueyd import MemoryHuey, signals as S  # noqa: E402
from hueyd.contrib import stats as stats_mod  # noqa: E402
from hueyd.contrib.stats import HueyEvent, HueyInflight, HueyStats, enable_stats  # noqa: E402
from support import wait_until  # noqa: E402

STATS_SOURCE = '''

import peewee
from hueyd.contrib.stats import enable_stats

if os.environ.get('HUEYD_TEST_STATS'):  # in the daemon only: the test process records nothing
    stats = enable_stats(huey, peewee.SqliteDatabase(os.path.join(DIR, 'stats.db')),
                         flush_interval=float(os.environ.get('HUEYD_TEST_STATS_FLUSH', '0.05')))


@huey.task(retries=1)
def fails_once(tag):
    write('fail', tag, os.getpid())
    raise ValueError('boom ' + tag)
'''


@pytest.fixture
def db(tmp_path):
    database = peewee.SqliteDatabase(str(tmp_path / 'stats.db'))
    stats_mod.database.initialize(database)
    yield database
    database.close()


@pytest.fixture
def huey():
    return MemoryHuey('stats-test', utc=False)


@pytest.fixture
def recorder(huey, db):
    stats = enable_stats(huey, db, flush_interval=60)
    yield stats
    stats.close()


def signals_of(stats):
    return sorted(row['signal'] for row in stats.recent_events())


def test_real_tasks_are_recorded(huey, recorder):
    @huey.task()
    def add(a, b):
        return a + b

    @huey.task(retries=1)
    def fails():
        raise ValueError('nope')

    huey.execute(add.s(1, 2))
    task = fails.s()
    huey.execute(task)          # the first attempt: error, retrying, enqueued again
    recorder.close()            # writes what is buffered

    total, rows = recorder.search_events(q=str(task.id))
    assert total == 4
    error = next(row for row in rows if row['signal'] == S.SIGNAL_ERROR)
    assert 'nope' in error['error'] and error['duration'] is not None
    assert recorder.inflight() == []
    by_task = {row['task']: row for row in recorder.task_breakdown()}
    assert by_task['add']['completed'] == 1 and by_task['add']['avg'] is not None
    assert (by_task['fails']['errors'], by_task['fails']['retries']) == (1, 1)
    assert recorder.overview()['error_rate'] == 0.5
    assert sum(recorder.throughput(5)['complete']) == 1


def test_enable_stats_is_idempotent_and_close_stops_recording(huey, recorder):
    assert enable_stats(huey, recorder.db) is recorder

    @huey.task()
    def noop():
        pass

    recorder.close()
    huey.execute(noop.s())      # no longer recorded
    again = enable_stats(huey, recorder.db, flush_interval=60)
    assert again is not recorder
    again.close()
    assert recorder.search_events()[0] == 0


def test_a_recorder_writes_to_its_own_database(huey, db, tmp_path):
    # The models' proxy names ``db``; a second queue's recorder keeps another database.
    other_db = peewee.SqliteDatabase(str(tmp_path / 'other.db'))
    stats = HueyStats(huey, other_db, flush_interval=60)
    stats.connect()

    @huey.task()
    def noop():
        pass

    noop()
    stats.close()
    assert signals_of(stats) == [S.SIGNAL_ENQUEUED]
    assert not db.table_exists('huey_event')  # nothing in the proxy's database
    other_db.close()


def test_stored_stats_read_what_the_pools_recorded_in_the_storage(huey):
    from hueyd.taskstats import Recorder
    recorder = Recorder(huey)  # what every daemon pool installs

    @huey.task()
    def add(a, b):
        return a + b

    for i in range(3):
        huey.execute(add.s(i, i))
    recorder.flush()
    stored = stats_mod.StoredStats(huey)
    assert [(row['task'], row['executed'], row['completed'], row['errors'])
            for row in stored.task_breakdown()] == [('add', 3, 3, 0)]
    assert stored.overview()['completed'] == 3


def test_without_peewee_the_error_says_what_to_install():
    code = ("import sys; sys.modules['peewee'] = None\n"
            "import hueyd.contrib.stats\n")
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "pip install 'hueyd[sql]'" in done.stderr


# --- a real daemon -------------------------------------------------------------

def stats_app(make_app):
    app = make_app('sqlite')
    with open(app.path, 'a') as f:
        f.write(STATS_SOURCE)
    app.module = app._load()  # fails_once, for this process to enqueue
    app.huey = app.module.huey
    return app


def read_events(app):
    """(signal, task, duration) of every event the daemon wrote."""
    database = peewee.SqliteDatabase(os.path.join(app.dir, 'stats.db'))
    try:
        if not database.table_exists('huey_event'):
            return []
        query = HueyEvent.select(HueyEvent.signal, HueyEvent.task, HueyEvent.duration).tuples()
        return list(query.execute(database))
    finally:
        database.close()


def inflight_count(app):
    database = peewee.SqliteDatabase(os.path.join(app.dir, 'stats.db'))
    try:
        return HueyInflight.select().count(database)
    finally:
        database.close()


@pytest.mark.parametrize('pools,args', [(1, ('-w', '2')),
                                        (2, ('--preload', '-k', 'process', '-w', '2'))],
                         ids=['threads', 'preload-processes'])
def test_daemon_pools_record_their_tasks(make_app, start_daemon, pools, args):  # noqa: F811
    # With --preload the master imports the app (and starts a writer) before it
    # forks: each pool must start a writer of its own.
    app = stats_app(make_app)
    daemon = start_daemon(app, *args, env={'HUEYD_TEST_STATS': '1'})
    daemon.wait_ready(pools)
    for tag in 'abc':
        app.record(tag)
    app.fails_once('x')

    def recorded():
        events = read_events(app)
        return (sum(1 for signal, task, _ in events if signal == S.SIGNAL_COMPLETE) == 3
                and sum(1 for signal, *_ in events if signal == S.SIGNAL_ERROR) == 2)
    daemon.wait_until(recorded, message='the pools did not record the tasks\n%s'
                      % daemon.describe())
    events = read_events(app)
    assert all(duration is not None for signal, _, duration in events
               if signal in (S.SIGNAL_COMPLETE, S.SIGNAL_ERROR))
    assert [signal for signal, *_ in events].count(S.SIGNAL_RETRYING) == 1
    wait_until(lambda: inflight_count(app) == 0, timeout=10)
    stop_gracefully(daemon)


def test_daemon_graceful_stop_writes_what_is_buffered(make_app, start_daemon):  # noqa: F811
    # A flush interval far longer than the test: only the shutdown hook, which runs
    # before the pool's os._exit, can write these rows.
    app = stats_app(make_app)
    daemon = start_daemon(app, '-k', 'process', '-w', '1',
                          env={'HUEYD_TEST_STATS': '1', 'HUEYD_TEST_STATS_FLUSH': '600'})
    daemon.wait_ready(1)
    app.record('a')
    daemon.wait_until(lambda: app.recorded('a'))
    stop_gracefully(daemon)
    signals = sorted(signal for signal, *_ in read_events(app))
    assert signals == [S.SIGNAL_COMPLETE, S.SIGNAL_EXECUTING]
