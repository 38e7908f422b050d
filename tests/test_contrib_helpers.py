"""hueyd.contrib.helpers: RedisSemaphore and lock_task_semaphore against a real Redis."""
import threading

import pytest

from hueyd import ConfigurationError, MemoryHuey, TaskLockedException
from hueyd.contrib.helpers import RedisSemaphore, lock_task_semaphore
from support import make_huey, wait_until


@pytest.fixture
def huey(redis_server, queue_name):
    return make_huey(queue_name, redis_server.url)  # a queue name of its own: nothing shared


def test_a_semaphore_admits_value_holders(huey):
    semaphore = RedisSemaphore(huey, 'pair', 2)
    first, second = semaphore.acquire(), semaphore.acquire()
    assert first and second and semaphore.acquire() is None


def test_a_released_place_can_be_taken_again(huey):
    semaphore = RedisSemaphore(huey, 'one', 1)
    holder = semaphore.acquire()
    assert semaphore.release(holder) == 1 and semaphore.release(holder) == 0
    assert semaphore.acquire() is not None


def test_acquiring_again_under_the_same_name_keeps_one_place(huey):
    semaphore = RedisSemaphore(huey, 'same', 2)
    holder = semaphore.acquire()
    assert semaphore.acquire(holder) == holder
    assert semaphore.acquire() is not None and semaphore.acquire() is None


def test_twenty_threads_at_once_get_exactly_value_places(huey):
    semaphore = RedisSemaphore(huey, 'crowd', 5)
    barrier, taken = threading.Barrier(20), []

    def take():
        barrier.wait()
        taken.append(semaphore.acquire())

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([name for name in taken if name]) == 5


def test_a_holder_that_stops_renewing_loses_its_place(huey):
    semaphore = RedisSemaphore(huey, 'expiring', 1, timeout=0.3)
    holder = semaphore.acquire()
    wait_until(lambda: semaphore.acquire() is not None, timeout=5)
    assert semaphore.renew(holder) is False


def test_lock_task_semaphore_refuses_a_run_beyond_its_places(huey):
    inside, release = threading.Event(), threading.Event()

    @lock_task_semaphore(huey, 'guarded', 1)
    def guarded():
        inside.set()
        release.wait(10)

    thread = threading.Thread(target=guarded)
    thread.start()
    assert inside.wait(10)
    with pytest.raises(TaskLockedException):
        guarded()
    release.set()
    thread.join()
    guarded()  # the place was given back


def test_a_semaphore_on_another_storage_names_what_it_needs():
    semaphore = RedisSemaphore(MemoryHuey('no-redis'), 'm', 1)
    with pytest.raises(ConfigurationError) as info:
        semaphore.acquire()
    assert 'Redis storage' in str(info.value) and 'MemoryStorage' in str(info.value)
