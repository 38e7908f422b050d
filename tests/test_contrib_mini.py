"""hueyd.contrib.mini: MiniHuey, tasks in greenlets without a storage."""
import datetime

import gevent
import pytest

from hueyd.contrib.mini import MiniHuey


@pytest.fixture
def mini():
    huey = MiniHuey(interval=0.05)
    huey.start()
    yield huey
    huey.stop()


def test_a_call_runs_at_once_and_returns_its_value(mini):
    @mini.task()
    def add(a, b):
        return a + b

    assert add(1, 2).get(timeout=5) == 3 and add(3, 4)(timeout=5) == 7


def test_a_failing_call_raises_its_error_on_get(mini):
    @mini.task()
    def fail():
        raise ValueError('nope')

    with pytest.raises(ValueError):
        fail().get(timeout=5)


def test_a_scheduled_call_runs_after_its_delay(mini):
    @mini.task()
    def add(a, b):
        return a + b

    assert add.schedule((2, 3), delay=0.1).get(timeout=5) == 5


def test_schedule_needs_exactly_one_of_delay_and_eta(mini):
    @mini.task()
    def noop():
        pass

    with pytest.raises(ValueError):
        noop.schedule()
    with pytest.raises(ValueError):
        noop.schedule(delay=1, eta=datetime.datetime.now())


def test_a_periodic_task_runs_when_its_minute_comes(mini):
    ran = gevent.event.Event()

    @mini.periodic_task(lambda now: True)
    def tick():
        ran.set()

    mini.tick(datetime.datetime.now() + datetime.timedelta(minutes=1))
    assert ran.wait(5)


def test_a_broken_validate_function_does_not_stop_the_scheduler(mini):
    @mini.periodic_task(lambda now: 1 / 0)
    def broken():
        pass

    @mini.task()
    def add(a, b):
        return a + b

    mini._last_check -= datetime.timedelta(minutes=1)  # the next tick checks periodic tasks
    assert add.schedule((1, 2), delay=0.1).get(timeout=5) == 3
