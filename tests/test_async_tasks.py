"""``async def`` tasks in the library: run by sync workers on the process's task loop, awaited
by ``Huey.aexecute`` (asyncio pools), under their timeout, with huey's features; and results
awaited from coroutines (``await result``) on every storage."""
import asyncio
import threading
import time

import pytest

from hueyd import (MemoryHuey, ResultTimeout, RetryTask, SqliteHuey, TaskException, chord,
                   crontab)
from hueyd import signals as S
from drain import drain
from support import make_huey


@pytest.fixture
def memory():
    return MemoryHuey('async-tasks')


def test_a_sync_worker_runs_an_async_task_on_the_task_loop(memory):
    @memory.task()
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b, threading.current_thread().name

    result = add(1, 2)
    drain(memory)
    assert result.get() == (3, 'hueyd-task-loop')


def test_aexecute_awaits_the_task_on_the_running_loop(memory):
    @memory.task()
    async def where():
        return threading.current_thread().name

    result = where()
    assert asyncio.run(memory.aexecute(memory.dequeue())) == threading.current_thread().name
    assert result.get() == threading.current_thread().name


def test_many_async_tasks_run_at_once_on_one_loop(memory):
    @memory.task()
    async def nap(n):
        await asyncio.sleep(0.5)
        return n

    results = [nap(n) for n in range(50)]
    tasks = [memory.dequeue() for _ in results]

    async def run_all():
        started = time.monotonic()
        await asyncio.gather(*(memory.aexecute(task) for task in tasks))
        return time.monotonic() - started

    assert asyncio.run(run_all()) < 10  # one after the other would take 25s
    assert [result.get() for result in results] == list(range(50))


@pytest.mark.parametrize('runner', ['sync worker', 'aexecute'])
def test_the_timeout_cancels_an_async_task(memory, runner):
    seen = []

    @memory.task(timeout=0.2)
    async def stuck():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append('cancelled')
            raise

    result = stuck()
    started = time.monotonic()
    if runner == 'sync worker':
        drain(memory)
    else:
        asyncio.run(memory.aexecute(memory.dequeue()))
    assert time.monotonic() - started < 10
    with pytest.raises(TaskException, match='TaskTimeout'):
        result.get()
    assert seen == ['cancelled']


def test_a_timeout_error_of_the_task_itself_is_not_its_timeout(memory):
    @memory.task(timeout=30)
    async def own():
        raise TimeoutError('the remote end is slow')

    result = own()
    drain(memory)
    with pytest.raises(TaskException, match="TimeoutError\\('the remote end"):
        result.get()


def test_retries_pipelines_context_and_signals(memory):
    attempts, signals = [], []
    memory.signal(S.SIGNAL_EXECUTING, S.SIGNAL_COMPLETE, S.SIGNAL_RETRYING)(
        lambda signal, task, *args: signals.append((signal, task.name)))

    @memory.task(retries=1, context=True)
    async def flaky(n, task=None):
        attempts.append(task.id)
        if len(attempts) == 1:
            raise RetryTask()
        return n + 1

    @memory.task()
    async def double(n):
        return n * 2

    results = memory.enqueue(flaky.s(1).then(double))
    drain(memory)
    assert [result.get() for result in results] == [2, 4]
    assert len(attempts) == 2 and attempts[0] == attempts[1]
    assert signals == [('executing', 'flaky'), ('retrying', 'flaky'), ('executing', 'flaky'),
                       ('complete', 'flaky'), ('executing', 'double'), ('complete', 'double')]


def test_chord_of_async_tasks(memory):
    @memory.task()
    async def square(n):
        return n * n

    @memory.task()
    async def total(values):
        return sum(values)

    result = memory.enqueue(chord([square.s(n) for n in range(4)], total.s()))
    drain(memory)
    assert result.get() == 14


def test_a_lock_holds_while_the_coroutine_runs(memory):
    @memory.task()
    @memory.lock_task('one-at-a-time')
    async def guarded():
        await asyncio.sleep(0)
        return memory.is_locked('one-at-a-time')

    @memory.task()
    async def with_block():
        async with memory.lock_task('block'):
            return memory.is_locked('block')

    results = [guarded(), with_block()]
    drain(memory)
    assert [result.get() for result in results] == [True, True]
    assert not memory.is_locked('one-at-a-time') and not memory.is_locked('block')


def test_async_periodic_and_context_tasks(memory):
    opened = []

    class Resource:
        def __enter__(self):
            opened.append('open')
            return 'resource'

        def __exit__(self, *exc):
            opened.append('closed')

    @memory.periodic_task(crontab())
    async def every_minute():
        opened.append('tick')

    @memory.context_task(Resource(), as_argument=True)
    async def uses(resource):
        opened.append(resource)
        return resource

    for task in memory.read_periodic():
        memory.execute(task)
    result = uses()
    drain(memory)
    assert result.get() == 'resource'
    assert opened == ['tick', 'open', 'resource', 'closed']


def test_call_local_returns_the_coroutine(memory):
    @memory.task()
    async def add(a, b):
        return a + b

    assert asyncio.run(add.call_local(1, 2)) == 3


def test_an_async_task_runs_immediately_in_immediate_mode():
    huey = MemoryHuey('immediate', immediate=True)

    @huey.task()
    async def add(a, b):
        return a + b

    assert add(1, 2).get() == 3


@pytest.fixture
def writer_and_reader(tmp_path):
    """Two Hueys on one SQLite file: one runs tasks as an asyncio pool does, the other reads
    what has reached the storage."""
    path = str(tmp_path / 'huey.db')
    return SqliteHuey('batch', filename=path), SqliteHuey('batch', filename=path)


def test_in_an_asyncio_pool_the_tasks_own_writes_go_out_at_once_the_results_wait(
        writer_and_reader):
    """What an asyncio pool relies on: the loop's thread batches, the task's steps do not."""
    huey, reader = writer_and_reader
    seen = {}

    @huey.task()
    def child():
        pass

    @huey.task()
    async def parent():
        child()
        await asyncio.sleep(0.05)  # the other task writes its result meanwhile
        seen['queued'] = reader.pending_count()
        return 'parent'

    @huey.task()
    async def quick():
        return 'quick'

    parent_result, quick_result = parent(), quick()
    tasks = [huey.dequeue(), huey.dequeue()]
    huey.storage.begin_batch()

    async def run_both():
        await asyncio.gather(*(huey.aexecute(task) for task in tasks))

    asyncio.run(run_both())
    assert seen['queued'] == 1, 'the enqueue of a task step waited for a flush'
    assert reader.result(quick_result.id) is None, 'a result went out before the flush'
    huey.storage.end_batch()
    assert (parent_result.get(), quick_result.get()) == ('parent', 'quick')


def test_in_an_asyncio_pool_the_asyncio_tasks_a_task_starts_write_at_once_too(
        writer_and_reader):
    """An asyncio Task that a task's coroutine starts (asyncio.gather, create_task) runs its
    steps apart from the task's, yet its writes are the task's own: they go out at once.
    A task awaiting the result of a subtask that such a Task enqueued would wait for the
    pool's next flush otherwise."""
    huey, reader = writer_and_reader
    seen = {}

    @huey.task()
    def child():
        pass

    @huey.task()
    async def parent():
        async def enqueue_child():
            await asyncio.sleep(0)
            child()
        await asyncio.gather(enqueue_child())
        await asyncio.create_task(enqueue_child())
        seen['queued'] = reader.pending_count()
        return 'parent'

    parent_result = parent()
    task = huey.dequeue()
    huey.storage.begin_batch()
    asyncio.run(huey.aexecute(task))
    assert seen['queued'] == 2, 'the enqueue of a Task the task started waited for a flush'
    assert reader.result(parent_result.id) is None, 'the result went out before the flush'
    huey.storage.end_batch()
    assert parent_result.get() == 'parent'


# --- awaiting results ----------------------------------------------------------

def test_await_result_on_every_storage(huey):
    @huey.task()
    async def add(a, b):
        return a + b

    @huey.task()
    def fail():
        raise ValueError('no')

    result, failing = add(1, 2), fail()
    group = add.map([(1, 1), (2, 2)])

    async def main():
        worker = asyncio.create_task(asyncio.to_thread(drain, huey))
        value = await result
        values = await group
        with pytest.raises(TaskException):
            await failing.aget(timeout=10)
        await worker
        return value, values

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (3, [2, 4])


@pytest.mark.parametrize('notify', [True, False])
def test_await_result_times_out_on_redis(redis_server, queue_name, notify):
    huey = make_huey(queue_name, redis_server.url, notify_result=notify)
    result = huey.enqueue(huey.task()(lambda: None).s())
    started = time.monotonic()
    with pytest.raises(ResultTimeout):
        asyncio.run(result.aget(timeout=0.3))
    assert time.monotonic() - started < 5
    huey.flush()


def test_await_result_is_woken_by_redis_without_polling(redis_server, queue_name):
    huey = make_huey(queue_name, redis_server.url, notify_result=True)

    @huey.task()
    async def answer():
        return 42

    result = answer()

    async def main():
        waiting = asyncio.create_task(result.aget(timeout=20))
        await asyncio.sleep(0)
        await asyncio.to_thread(drain, huey)
        return await waiting

    assert asyncio.run(main()) == 42
    huey.flush()
