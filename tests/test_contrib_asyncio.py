"""hueyd.contrib.asyncio: awaiting results from a coroutine."""
import asyncio

import pytest

from hueyd import MemoryHuey, ResultTimeout, TaskException
from hueyd.contrib.asyncio import aget_result, aget_result_group
from hueyd.result import Result
from hueyd.task import Task


@pytest.fixture
def huey():
    return MemoryHuey('asyncio-results', immediate=True)


def test_aget_result_returns_the_value(huey):
    @huey.task()
    def add(a, b):
        return a + b

    assert asyncio.run(aget_result(add(1, 2))) == 3


def test_aget_result_raises_the_task_error(huey):
    @huey.task()
    def fail():
        raise ValueError('no')

    with pytest.raises(TaskException):
        asyncio.run(aget_result(fail()))


def test_aget_result_times_out(huey):
    with pytest.raises(ResultTimeout):
        asyncio.run(aget_result(Result(huey, Task(id='never')), timeout=0.05))


def test_aget_result_waits_without_blocking_the_loop(huey):
    huey.immediate = False

    @huey.task()
    def double(n):
        return n * 2

    result = double(21)

    async def run_it_later():
        await asyncio.sleep(0.05)  # the awaiting coroutine must let this one run
        huey.execute(huey.dequeue())

    async def main():
        value, _ = await asyncio.gather(aget_result(result, timeout=5), run_it_later())
        return value

    assert asyncio.run(main()) == 42


def test_aget_result_group_returns_the_values_in_order(huey):
    @huey.task()
    def square(n):
        return n * n

    assert asyncio.run(aget_result_group(square.map([1, 2, 3]))) == [1, 4, 9]
