"""The in-process Consumer (huey's ``huey.create_consumer()``), on every storage."""
import threading

import pytest

from hueyd import ConfigurationError, crontab
from hueyd.consumer_options import ConsumerConfig
from support import wait_until

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
    (dict(worker_type='process'), "hueyd <module>.huey -k process"),
    (dict(worker_type='fiber'), "worker_type='fiber'"),
    (dict(scheduler_interval=7), 'scheduler_interval=7'),
    (dict(graceful_signal='HUP'), "graceful_signal='HUP'"),
    (dict(max_tasks=10), '--max-tasks 10'),
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
