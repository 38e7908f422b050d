"""The in-process Consumer (huey's ``huey.create_consumer()``), on every storage."""
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import threading

import pytest

from hueyd import ConfigurationError, TaskException, crontab
from hueyd.consumer_options import ConsumerConfig, OptionParserHandler
from support import make_huey, wait_until

FAST = dict(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def consumer(huey):
    consumers = []

    def start(**options):
        made = huey.create_consumer(**{**FAST, **options})
        made.start()
        consumers.append(made)
        return made

    yield start
    for made in consumers:
        made.stop(graceful=True)


def test_worker_threads_run_enqueued_tasks(huey, consumer):
    @huey.task()
    def add(a, b):
        return a + b

    consumer(workers=2)
    results = [add(i, i) for i in range(10)]
    assert [result.get(blocking=True, timeout=10) for result in results] == list(range(0, 20, 2))


def test_worker_threads_run_async_tasks(huey, consumer):
    @huey.task()
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    consumer(workers=2)
    results = [add(i, i) for i in range(4)]
    assert [result.get(blocking=True, timeout=10) for result in results] == [0, 2, 4, 6]


def test_a_scheduled_task_runs_when_due(huey, consumer):
    @huey.task()
    def ping():
        return 'pong'

    consumer()
    assert ping.schedule(delay=1).get(blocking=True, timeout=10) == 'pong'


def test_periodic_tasks_are_enqueued_each_minute(huey, consumer):
    ran = threading.Event()

    @huey.periodic_task(crontab())
    def every_minute():
        ran.set()

    consumer()
    assert ran.wait(10), 'the periodic task did not run in the first minute'


def test_a_graceful_stop_waits_for_the_running_task(huey):
    started, release, finished = threading.Event(), threading.Event(), []

    @huey.task()
    def slow():
        started.set()
        release.wait(10)
        finished.append(1)

    consumer = huey.create_consumer(**FAST)
    consumer.start()
    slow()
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    consumer.stop(graceful=True)
    assert finished == [1]


def test_claims_of_a_consumer_that_stopped_without_acknowledging_are_run_again(huey, consumer):
    @huey.task()
    def value():
        return 7

    result = value()
    huey.storage.claim('consumer-that-died:1', 1, lease=0.2)  # claimed, never acknowledged
    assert huey.pending_count() == 0
    consumer()
    assert result.get(blocking=True, timeout=10) == 7


def test_a_message_that_cannot_run_becomes_a_dead_letter(huey, consumer):
    huey.storage.enqueue(b'not a task message')
    consumer()
    wait_until(lambda: len(huey.dead_letters()) == 1, timeout=10)
    assert 'cannot run this message' in huey.dead_letters()[0].reason


@pytest.mark.parametrize('options, named', [
    (dict(worker_type='fiber'), "worker_type='fiber'"),
    (dict(scheduler_interval=7), 'scheduler_interval=7'),
    (dict(graceful_signal='HUP'), "graceful_signal='HUP'"),
    (dict(max_tasks=10, check_worker_health=False), 'max_tasks=10 needs check_worker_health'),
    (dict(wokers=2), 'wokers'),
])
def test_an_option_it_cannot_run_with_is_named(huey, options, named):
    with pytest.raises(ConfigurationError) as info:
        huey.create_consumer(**options)
    assert named in str(info.value)


def test_consumer_config_values_make_a_consumer(huey):
    config = ConsumerConfig(workers=3, shutdown_timeout=5, graceful_signal='TERM', verbose=True)
    config.validate()
    consumer = huey.create_consumer(**config.values)
    assert (consumer.workers, consumer.shutdown_timeout, consumer.graceful_signal) == (3, 5, 'TERM')
    assert len(consumer.worker_threads) == 3


@pytest.mark.parametrize('options', [dict(backoff=0.5), dict(scheduler_interval=45),
                                     dict(graceful_signal='HUP')])
def test_consumer_config_validate_rejects_what_a_consumer_cannot_run(options):
    with pytest.raises(ValueError) as info:
        ConsumerConfig(**options).validate()
    assert next(iter(options)) in str(info.value)


def test_two_consumers_on_one_storage_enqueue_a_minute_of_periodic_tasks_once(shared_storage_url,
                                                                               queue_name):
    from support import make_huey
    hueys = [make_huey(queue_name, shared_storage_url) for _ in range(2)]
    runs = []
    for huey in hueys:
        huey.periodic_task(crontab(), name='tick')(lambda: runs.append(1))
    minute = hueys[0].now().replace(second=0, microsecond=0)
    assert [huey.enqueue_periodic(minute) is not None for huey in hueys] == [True, False]
    assert hueys[0].pending_count() == 1


def test_an_at_most_once_task_is_acknowledged_before_it_starts(huey, consumer):
    seen = []

    @huey.task(at_most_once=True)
    def once():
        seen.append(huey.storage.claimed_items())

    consumer()
    once()
    wait_until(lambda: seen, timeout=10)
    assert seen == [{}]


def test_a_worker_that_ran_max_tasks_is_replaced_by_the_health_check(huey):
    @huey.task()
    def value(n):
        return n

    consumer = huey.create_consumer(max_tasks=1, **FAST)
    consumer.start()
    try:
        assert value(1).get(blocking=True, timeout=10) == 1
        (first, thread), = consumer.worker_threads
        thread.join(10)
        second = value(2)
        assert consumer.check_worker_health() is False
        assert second.get(blocking=True, timeout=10) == 2
        assert consumer.worker_threads[0][0].id != first.id
    finally:
        consumer.stop(graceful=True)


def test_option_parser_handler_gives_huey_consumers_options_unset_by_default():
    options, args = OptionParserHandler().get_option_parser().parse_args(
        ['-w', '4', '-k', 'process', '-t', '2.5', '-n', 'app.huey'])
    given = {name: value for name, value in vars(options).items() if value is not None}
    assert given == dict(workers=4, worker_type='process', shutdown_timeout=2.5, periodic=False)
    assert args == ['app.huey']
    assert ConsumerConfig(**given).values['worker_type'] == 'process'


# --- process workers: real forks, real signals ------------------------------------------

@pytest.fixture
def shared_huey(shared_storage_url, queue_name):
    huey = make_huey(queue_name, shared_storage_url)
    yield huey
    huey.flush()
    huey.storage.close()


@pytest.fixture
def process_consumer(shared_huey):
    consumers = []

    def start(**options):
        made = shared_huey.create_consumer(worker_type='process', **{**FAST, **options})
        made.start()
        consumers.append(made)
        return made

    yield start
    for made in consumers:
        made.stop()


@pytest.fixture
def marks(tmp_path):
    """A folder where the tasks below leave a file named after their process id."""
    folder = tmp_path / 'marks'
    folder.mkdir()
    return folder


def pids_in(folder):
    return {int(path.name) for path in folder.iterdir()}


def test_process_workers_run_tasks_in_processes_of_their_own(shared_huey, process_consumer):
    @shared_huey.task()
    def add(a, b):
        return a + b, os.getpid()

    consumer = process_consumer(workers=2)
    results = [add(i, i) for i in range(6)]
    values = [result.get(blocking=True, timeout=20) for result in results]
    assert [value for value, _ in values] == list(range(0, 12, 2))
    worker_pids = {proc.pid for _, proc in consumer.worker_threads}
    assert {pid for _, pid in values} <= worker_pids and os.getpid() not in worker_pids


def test_a_worker_process_killed_mid_task_has_its_claim_run_again(shared_huey, process_consumer,
                                                                  marks):
    @shared_huey.task()
    def once_slow():
        first = not any(marks.iterdir())
        (marks / str(os.getpid())).touch()
        if first:
            signal.pause()  # until it is killed
        return 'done'

    consumer = process_consumer()
    result = once_slow()
    wait_until(lambda: pids_in(marks), timeout=20)
    (_, proc), = consumer.worker_threads
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert consumer.check_worker_health() is False  # a new worker; the claim goes back now
    assert result.get(blocking=True, timeout=20) == 'done'
    assert pids_in(marks) == {proc.pid, consumer.worker_threads[0][1].pid}


def test_a_stop_hands_back_the_claim_of_a_worker_process_that_was_killed(shared_huey,
                                                                        process_consumer, marks):
    @shared_huey.task()
    def slow():
        (marks / str(os.getpid())).touch()
        signal.pause()

    consumer = process_consumer(check_worker_health=False)
    slow()
    wait_until(lambda: pids_in(marks), timeout=20)
    (_, proc), = consumer.worker_threads
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    consumer.stop(graceful=True)
    assert shared_huey.pending_count() == 1  # not left claimed until its lease runs out


def test_a_fast_stop_interrupts_a_worker_process_and_its_task_goes_back(shared_huey,
                                                                       process_consumer, marks):
    @shared_huey.task()
    def slow():
        (marks / str(os.getpid())).touch()
        signal.pause()

    consumer = process_consumer()
    slow()
    wait_until(lambda: pids_in(marks), timeout=20)
    consumer.stop(graceful=False)
    assert not consumer.worker_threads[0][1].is_alive()
    assert shared_huey.pending_count() == 1  # back on the queue at once, not after a lease


def test_a_worker_process_enforces_a_timeout_on_a_blocking_task(shared_huey, process_consumer):
    @shared_huey.task(timeout=0.2)
    def blocks():
        signal.pause()

    process_consumer()
    with pytest.raises(TaskException) as info:
        blocks().get(blocking=True, timeout=20)
    assert 'TaskTimeout' in info.value.metadata['error']


def test_process_workers_cannot_share_a_memory_storage():
    huey = make_huey('memory-only', 'memory://')
    with pytest.raises(ConfigurationError) as info:
        huey.create_consumer(worker_type='process').start()
    assert 'memory storage' in str(info.value)


APP = """
import os, pathlib, time
from hueyd import SqliteHuey
here = pathlib.Path(__file__).parent
huey = SqliteHuey('run', filename=str(here / 'huey.db'))

@huey.task()
def slow():
    (here / 'started').touch()
    while not (here / 'finish').exists():
        time.sleep(0.01)
    return os.getpid()
"""
RUN_APP = ("import app; app.huey.create_consumer(worker_type='process', initial_delay=0.01, "
           "max_delay=0.05).run()")


def test_run_stops_on_the_graceful_signal_once_the_running_task_finishes(tmp_path):
    (tmp_path / 'app.py').write_text(APP)
    spec = importlib.util.spec_from_file_location('app', tmp_path / 'app.py')
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    consumer = subprocess.Popen([sys.executable, '-c', RUN_APP], cwd=tmp_path)
    try:
        result = app.slow()
        wait_until(lambda: (tmp_path / 'started').exists(), timeout=20)
        consumer.send_signal(signal.SIGINT)  # graceful: the running task may finish
        (tmp_path / 'finish').touch()
        assert consumer.wait(20) == 0
        assert result.get(blocking=True, timeout=10) != consumer.pid  # ran in a worker process
        assert app.huey.pending_count() == 0 and app.huey.storage.claimed_items() == {}
    finally:
        consumer.kill()
        app.huey.storage.close()
