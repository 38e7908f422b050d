"""The master, a pool and the scheduler in this process, with real forked children and a real SQLite file.

The daemon tests drive ``python -m hueyd`` from outside; these call the
master's and the pool's steps one at a time, to check the decisions that are
hard to provoke from outside at the right moment: a boot failure told apart
from a crash, crash-loop backoff, the deaths handed to a replacement pool, a
preflight that hangs or is killed, an at-most-once task whose acknowledgement
cannot be stored, the settling of a death (which tasks count a crash), a
scheduler whose storage is locked for a while.
"""
import faulthandler
import logging
import os
import signal
import sqlite3
import threading
import time

import pytest

from hueyd import SqliteHuey
from hueyd.cli.config import load_config
from hueyd.daemon import deaths
from hueyd.daemon import master as master_module
from hueyd.daemon.deaths import Death
from hueyd.daemon.heartbeat import Heartbeat
from hueyd.daemon.master import ChildRecord, Master, PendingPreflight, Stop, pool_slot
from hueyd.daemon.pool import Pool, worker_id
from hueyd.daemon.scheduler import Scheduler
from hueyd.exceptions import TaskException
from support import wait_until

HANGING_APP = 'import time\ntime.sleep(60)  # an import that never finishes\n'


@pytest.fixture
def master():
    master = Master(load_config(['app.huey'], {}), lambda: load_config(['app.huey'], {}),
                    environ={})
    yield master
    for pid in list(master.children):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def fork(body):
    """A child process running ``body()``; it exits 0 if ``body`` returns."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def child_ends(master, body, slot=pool_slot(0), heartbeat=None, **record):
    """Run ``body`` in a child the master knows as ``slot``; once it has exited, let the
    master reap it. Returns the child's pid."""
    heartbeat = heartbeat or Heartbeat(1)
    pid = fork(body)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, left for the master to reap
    master.children[pid] = ChildRecord(pid, slot, master.generation, heartbeat,
                                       time.monotonic(), **record)
    master.reap()
    assert pid not in master.children
    return pid


# -- boot failures and crashes ------------------------------------------------------------

def test_exit_status_3_without_the_boot_flag_is_a_crash_not_a_broken_app(master):
    for _ in range(master_module.BOOT_FAILURE_LIMIT):
        child_ends(master, lambda: os._exit(3))  # what sys.exit(3) in a task used to do
    assert (master.boot_failures, master.stopping, master.exit_code) == (0, None, 0)


def test_children_that_flag_a_boot_failure_three_times_stop_the_master_with_status_1(master):
    def cannot_load(heartbeat):
        def body():
            heartbeat.mark_boot_failed()
            os._exit(3)
        return body

    for attempt in range(1, master_module.BOOT_FAILURE_LIMIT + 1):
        heartbeat = Heartbeat(1)
        child_ends(master, cannot_load(heartbeat), heartbeat=heartbeat)
        assert master.boot_failures == attempt
    assert (master.stopping, master.exit_code) == (Stop.FAST, 1)


def test_a_child_that_keeps_dying_before_it_booted_waits_longer_each_time(master):
    delays = []
    for _ in range(4):
        child_ends(master, lambda: os.kill(os.getpid(), signal.SIGKILL), slot=pool_slot(1))
        delays.append(master.respawn_at.get(pool_slot(1), 0) - time.monotonic())
    assert delays[0] <= 0 < delays[1] < delays[2] < delays[3], delays
    assert master.boot_failures == 0 and master.stopping is None


def test_a_pool_killed_while_running_tasks_leaves_a_death_for_its_replacement(master):
    heartbeat = Heartbeat(2)

    def body():
        heartbeat.mark_booted()
        heartbeat.running(0, 'first-task')
        heartbeat.running(1, 'second-task')
        heartbeat.running(1, None)  # finished: not counted
        faulthandler.disable()  # pytest's: no stack dump for a crash on purpose
        os.kill(os.getpid(), signal.SIGSEGV)

    pid = child_ends(master, body, heartbeat=heartbeat)
    assert master.deaths[pool_slot(0)] == [Death(worker_id(pid), ('first-task',), 'signal SIGSEGV')]


def test_a_pool_that_exits_0_while_running_a_task_was_ended_by_it_not_recycled(master):
    heartbeat = Heartbeat(1)

    def body():
        heartbeat.mark_booted()
        heartbeat.running(0, 'the-task')
        os._exit(0)

    pid = child_ends(master, body, heartbeat=heartbeat)
    assert master.deaths[pool_slot(0)] == [Death(worker_id(pid), ('the-task',), 'exit 0 while running a task')]


def test_a_pool_that_booted_has_settled_its_deaths_and_hands_them_to_no_other(master):
    death = Death('host:1', ('t',), 'signal SIGKILL')
    master.deaths[pool_slot(0)] = [death]
    heartbeat = Heartbeat(1)
    pid = fork(lambda: (heartbeat.mark_booted(), time.sleep(60)))
    record = ChildRecord(pid, pool_slot(0), master.generation, heartbeat, time.monotonic(),
                         deaths=(death,))
    master.children[pid] = record
    wait_until(lambda: heartbeat.booted, timeout=10)
    master.check_health()
    assert master.deaths[pool_slot(0)] == [] and record.deaths == ()


# -- the preflight ------------------------------------------------------------------------

def drive(master, until, timeout=20):
    """Run the master's loop steps (without signals or sleeping in select) until ``until()``."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, 'the master never got there'
        master.run_preflight()
        master.reap()
        master.kill_unresponsive()
        time.sleep(0.02)


def test_a_preflight_that_hangs_is_given_up_and_the_running_children_are_kept(
        master, tmp_path, monkeypatch, caplog):
    (tmp_path / 'app.py').write_text(HANGING_APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(master_module, 'PREFLIGHT_TIMEOUT', 0.5)
    master.started = True  # a reload: the children of the old configuration run
    master.preflight = PendingPreflight(master.config, announce=False)
    with caplog.at_level(logging.INFO, logger='hueyd.master'):
        drive(master, lambda: master.preflight is None)
    assert 'loading the application took over 0.5s' in caplog.text
    assert 'keeping the running children' in caplog.text
    assert (master.stopping, master.exit_code) == (None, 0)


def test_a_preflight_killed_before_it_could_tell_is_started_again_later_each_time(
        master, tmp_path, monkeypatch):
    (tmp_path / 'app.py').write_text(HANGING_APP)
    monkeypatch.chdir(tmp_path)
    pending = master.preflight = PendingPreflight(master.config, announce=True)
    waits = []
    for _ in range(3):
        drive(master, lambda: pending.pid is not None)
        os.kill(pending.pid, signal.SIGKILL)
        drive(master, lambda: pending.pid is None)
        waits.append(pending.start_at - time.monotonic())
    assert pending.deaths == 3 and master.preflight is pending
    assert 0 < waits[0] < waits[1] < waits[2], waits
    assert (master.stopping, master.exit_code) == (None, 0)  # not taken for a broken app


# -- the pool ---------------------------------------------------------------------------

def test_an_at_most_once_task_is_not_started_while_its_record_cannot_be_stored(tmp_path):
    huey = SqliteHuey('q', filename=str(tmp_path / 'huey.db'), timeout=0.05)
    ran = []

    @huey.task(at_most_once=True)
    def charge_card():
        ran.append(True)

    charge_card()
    pool = Pool(load_config(['app.huey'], {}), Heartbeat(1), os.getpid(), 0, 1, app=huey)
    pool.huey, pool.worker_id, pool.claims = huey, 'test:1', True
    message, = pool.fetch(1)

    lock = sqlite3.connect(tmp_path / 'huey.db', isolation_level=None, check_same_thread=False)
    lock.execute('BEGIN IMMEDIATE')  # another process holds the file past the busy timeout

    class UnlockWhenRefused(logging.Handler):  # so the pool can hand the task back
        def emit(self, record):
            if 'not started' in record.getMessage() and lock.in_transaction:
                lock.execute('ROLLBACK')

    handler = UnlockWhenRefused()
    logging.getLogger('hueyd.daemon').addHandler(handler)
    try:
        pool.run_message(0, message)
    finally:
        logging.getLogger('hueyd.daemon').removeHandler(handler)
        if lock.in_transaction:
            lock.execute('ROLLBACK')
    assert ran == []
    assert huey.storage.queue_size() == 1 and huey.storage.claimed_items() == {}


def test_a_death_counts_only_the_tasks_that_were_running_and_returns_the_rest_at_once(tmp_path):
    huey = SqliteHuey('q', filename=str(tmp_path / 'huey.db'))

    @huey.task()
    def job(n):
        return n

    first, poison, third = job(1), job(2), job(3)

    def crash(worker):
        """``worker`` claims everything, starts the poison, and dies; a new pool settles it."""
        huey.storage.claim(worker, 10)
        deaths.settle(huey, Death(worker, (poison.id,), 'signal SIGSEGV'), max_deliveries=2)

    crash('host:1')
    crashes = {task.id: task.crashes for task in huey.pending()}
    assert crashes == {first.id: 0, poison.id: 1, third.id: 0}  # claimed ahead: not counted
    assert huey.storage.claimed_items() == {} and huey.dead_letters() == []

    crash('host:2')
    assert sorted(task.id for task in huey.pending()) == sorted([first.id, third.id])
    (letter,) = huey.dead_letters()
    assert letter.task_id == poison.id and 'died 2 time(s), the last by signal SIGSEGV' in letter.reason
    with pytest.raises(TaskException, match='dead letter'):
        poison.get()


# -- the scheduler ----------------------------------------------------------------------

def test_the_scheduler_rides_out_a_locked_database_and_then_moves_due_tasks(tmp_path, caplog):
    huey = SqliteHuey('q', filename=str(tmp_path / 'huey.db'), timeout=0.05)

    @huey.task()
    def later():
        return 1

    later.schedule(delay=0.2)
    scheduler = Scheduler(load_config(['app.huey', '-n', '-d', '0.05'], {}), Heartbeat(),
                          os.getpid(), app=huey)
    scheduler.huey = huey
    scheduler.open_wakeups()
    lock = sqlite3.connect(tmp_path / 'huey.db', isolation_level=None)
    lock.execute('BEGIN IMMEDIATE')  # another process holds the file past the busy timeout
    thread = threading.Thread(target=scheduler.loop)
    with caplog.at_level(logging.INFO, logger='hueyd.daemon'):
        thread.start()
        try:
            wait_until(lambda: 'scheduler cannot reach the storage' in caplog.text, timeout=10)
            lock.execute('ROLLBACK')
            wait_until(lambda: huey.pending_count() == 1, timeout=10,
                       message='the due task never reached the queue')
            wait_until(lambda: 'scheduler reaches the storage again' in caplog.text, timeout=10)
        finally:
            if lock.in_transaction:
                lock.execute('ROLLBACK')
            scheduler.request_stop()
            thread.join(10)
    assert not thread.is_alive()
