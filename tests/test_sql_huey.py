"""hueyd.contrib.sql_huey on a real SQLite file through peewee: what huey's own
test_sql_huey (run by tools/huey_suite.py) and the storage suite (conftest's 'sql'
kind) do not cover, and at-least-once delivery through a real daemon."""
import os
import signal
import subprocess
import sys
import time

import peewee
import pytest

from daemon_harness import APP_SOURCE, App, start_daemon  # noqa: F401 (fixture)
from hueyd.constants import EmptyData
from hueyd.contrib.sql_huey import SqlHuey, SqlStorage
from hueyd.exceptions import ConfigurationError
from support import wait_until

# The daemon harness's application, its huey a SqlHuey (HUEYD_TEST_URL: a peewee URL).
SQL_APP_SOURCE = APP_SOURCE.replace(
    'from hueyd import Huey\n', 'from hueyd.contrib.sql_huey import SqlHuey\n').replace(
    'huey = Huey(NAME, url=URL)', 'huey = SqlHuey(NAME, database=URL)')


@pytest.fixture
def sql_huey(tmp_path):
    huey = SqlHuey('app', database='sqlite:///%s' % (tmp_path / 'huey.db'))
    yield huey
    huey.storage.close()


def test_without_peewee_the_import_says_what_to_install():
    # A None in sys.modules makes ``import peewee`` fail as if it were not installed.
    code = ('import sys; sys.modules["peewee"] = None\n'
            'import hueyd.contrib.sql_huey')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "ImportError: hueyd.contrib.sql_huey needs peewee: pip install 'hueyd[sql]'" \
        in done.stderr


def test_a_database_is_required():
    with pytest.raises(ConfigurationError, match='database='):
        SqlStorage('app')


def test_queues_share_a_peewee_database_and_keep_apart(tmp_path):
    database = peewee.SqliteDatabase(str(tmp_path / 'shared.db'))
    first, second = SqlStorage('first', database=database), SqlStorage('second', database=database)
    first.enqueue(b'a')
    second.enqueue(b'b')
    first.put_data('k', b'1')
    assert (first.dequeue(), first.dequeue()) == (b'a', None)
    assert (second.queue_size(), second.peek_data('k')) == (1, EmptyData)
    assert first.location() == str(tmp_path / 'shared.db')


def test_a_lock_whose_ttl_ran_out_can_be_taken_again(sql_huey):
    storage = sql_huey.storage
    assert storage.put_if_empty('lock', b'first', ttl=0.05)
    assert not storage.put_if_empty('lock', b'second')
    wait_until(lambda: not storage.has_data_for_key('lock'), timeout=5)
    assert storage.result_items() == {}
    assert storage.put_if_empty('lock', b'third')
    assert storage.peek_data('lock') == b'third'


def test_move_due_queues_scheduled_messages_with_their_priority(sql_huey):
    storage, now = sql_huey.storage, time.time()
    storage.add_to_schedule(b'low', now - 2, priority=1)
    storage.add_to_schedule(b'high', now - 1, priority=9)
    storage.add_to_schedule(b'later', now + 3600)
    assert storage.next_schedule_time() == pytest.approx(now - 2)
    assert storage.move_due(now) == [b'low', b'high']
    assert storage.enqueued_items() == [b'high', b'low']
    assert storage.scheduled_items() == [b'later']


def test_a_forked_child_opens_its_own_connection(sql_huey):
    storage = sql_huey.storage
    storage.enqueue(b'parent')
    inherited = storage.database.connection()
    pid = os.fork()
    if pid == 0:  # the child: exit at once, without pytest's cleanup
        ok = storage.database.connection() is not inherited and storage.dequeue() == b'parent'
        os._exit(0 if ok else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert storage.queue_size() == 0  # and the parent's connection still works


def test_a_consumer_runs_tasks_and_scheduled_tasks(sql_huey):
    @sql_huey.task()
    def add(a, b):
        return a + b

    consumer = sql_huey.create_consumer(workers=2, initial_delay=0.01, max_delay=0.05)
    consumer.start()
    try:
        results = [add(i, i) for i in range(5)] + [add.schedule((1, 2), delay=1)]
        assert [r.get(blocking=True, timeout=10) for r in results] == [0, 2, 4, 6, 8, 3]
    finally:
        consumer.stop(graceful=True)


@pytest.fixture
def sql_app(tmp_path):
    app = App(tmp_path, 'sqlite:///%s' % (tmp_path / 'huey.db'), source=SQL_APP_SOURCE)
    assert isinstance(app.huey.storage, SqlStorage)
    yield app
    app.close()


def test_the_daemon_runs_again_what_a_killed_pool_or_a_lapsed_lease_held(sql_app, start_daemon):
    app = sql_app
    daemon = start_daemon(app, '-k', 'process', '-w', '1', '--lease-timeout', '1.5')
    daemon.wait_ready(1)
    app.slow_once('a', 60)
    daemon.wait_until(lambda: app.count('start', 'a') == 1)
    # Claimed for a worker that never renews its lease (the pool's only worker is busy):
    # only the scheduler's lease recovery puts it back.
    app.record('probe')
    assert app.huey.storage.claim('gone-host:1', 1, lease=1.5), 'a pool took it'
    assert len(app.huey.storage.claimed_items()) == 2  # claimed, not dequeued
    (pool,) = daemon.pool_pids()
    os.kill(pool, signal.SIGKILL)
    daemon.wait_until(lambda: app.count('done', 'a') == 1, timeout=30,
                      message="the killed pool's task never ran again")
    daemon.wait_until(lambda: app.recorded('probe'), timeout=30,
                      message='lease recovery never returned the probe')
    assert app.count('start', 'a') == 2
    wait_until(lambda: app.huey.storage.claimed_items() == {} and app.pending() == 0)
    assert 'cannot claim messages' not in daemon.log_text()  # no at-most-once warning


def test_the_daemon_buries_a_bad_message_and_goes_on(sql_app, start_daemon):
    app = sql_app
    daemon = start_daemon(app, '-k', 'thread', '-w', '2')
    daemon.wait_ready(1)
    app.huey.storage.enqueue(b'not a pickle at all')
    app.record('good')
    daemon.wait_until(lambda: app.recorded('good'))
    wait_until(lambda: len(app.huey.dead_letters()) == 1, message='no dead letter')
    assert app.huey.dead_letters()[0].payload == b'not a pickle at all'
    assert app.huey.purge_dead_letters() == 1
