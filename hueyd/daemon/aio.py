"""``-k asyncio``: a pool process whose workers are coroutines on one event loop.

``-w N`` tasks run at once. An ``async def`` task is awaited on the loop (its
``timeout`` an ``asyncio.timeout``); a plain ``def`` task runs in a small thread pool
(SYNC_THREADS), so an application with both runs unchanged. Either way it holds one of
the N slots, whose numbers are the heartbeat's worker numbers.

Storage calls that wait on the network run in two I/O threads, off the loop: one
claims messages for the free slots (a blocking claim waits there), the other sends
the write batch (results, events, acknowledgements) whenever a task has finished and
the previous batch is sent: group commit, at one round trip per batch. What the
executor does between a task's steps (the revocation check, a chord's counter, the
results and acknowledgements that join the batch) runs on the loop: short calls.

SIGINT stops claiming and lets the running tasks finish; SIGTERM cancels the running
coroutines (a task sees CancelledError) and hands every claim back to the queue. A plain
task in a thread cannot be cancelled: as under ``-k thread``, its claim goes back, and
it runs again elsewhere.
"""
import asyncio
import concurrent.futures
import logging

from hueyd.daemon.inbox import MAX_CLAIM
from hueyd.daemon.pool import Pool

logger = logging.getLogger('hueyd.daemon')

SYNC_THREADS = 8     # threads for plain (def) tasks, at most -w
IO_THREADS = 2       # the claiming thread and the flushing thread
CANCEL_GRACE = 5.0   # seconds cancelled coroutines get to run their except/finally blocks


class AsyncioPool(Pool):
    loop = None  # the running loop, once serve() starts

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync_threads = min(self.workers, SYNC_THREADS)
        self.free = list(range(self.workers))  # slot numbers not running a task
        self.tasks = set()  # the asyncio Tasks running messages

    def connections(self):
        return self.sync_threads + IO_THREADS + 2  # + the loop's thread and the heartbeat

    def stop(self, reason):
        super().stop(reason)
        if self.loop is not None:
            try:  # from a signal handler, or the heartbeat thread (--max-memory)
                self.loop.call_soon_threadsafe(self.changed.set)
            except RuntimeError:  # the loop is closed: it has stopped already
                pass

    def run_workers(self):
        asyncio.run(self.serve())

    async def serve(self):
        huey = self.huey
        self.changed = asyncio.Event()  # a stop was asked for, or a task ended while stopping
        self.slot_free = asyncio.Event()
        self.dirty = asyncio.Event()    # writes wait in the batch
        self.loop = asyncio.get_running_loop()
        self.io = concurrent.futures.ThreadPoolExecutor(
            IO_THREADS, 'hueyd-io', initializer=huey.storage.begin_batch)
        self.sync = concurrent.futures.ThreadPoolExecutor(
            self.sync_threads, 'hueyd-sync', initializer=self.start_sync_thread)
        huey.run_startup_hooks()
        huey.storage.begin_batch()
        fetcher = asyncio.create_task(self.fetch_loop())
        flusher = asyncio.create_task(self.flush_loop())
        while not self.stopping:
            self.changed.clear()
            await self.changed.wait()
        self.workers_stop.set()  # a fetch pausing after an empty claim returns now
        self.slot_free.set()     # and a fetcher waiting for a free slot looks at stopping
        while self.tasks and not self.fast:  # graceful: they finish, unless SIGTERM comes
            self.changed.clear()
            await self.changed.wait()
        if self.fast:
            await self.cancel_running()
        await fetcher  # no claim may land after hand_back() retires this worker
        flusher.cancel()
        self.hand_back()
        huey.storage.end_batch()
        if not self.fast:
            huey.run_shutdown_hooks()
        self.io.shutdown(wait=False)
        self.sync.shutdown(wait=False, cancel_futures=True)

    def start_sync_thread(self):
        self.huey.storage.begin_batch()
        self.huey.run_startup_hooks()

    async def cancel_running(self):
        self.huey.handing_back([task for task, *_ in list(self.current.values())])
        for running in self.tasks:
            running.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=CANCEL_GRACE)
        self.huey.notify_interrupted_tasks()  # the plain tasks, whose threads run on

    async def fetch_loop(self):
        while not self.stopping:
            if not self.free:
                self.slot_free.clear()
                await self.slot_free.wait()
                continue
            count = min(len(self.free), MAX_CLAIM)
            messages = await self.loop.run_in_executor(self.io, self.fetch, count)
            if self.stopping:
                return  # claimed, not started: hand_back() returns them with the rest
            for message in messages:
                slot = self.free.pop()
                running = asyncio.create_task(self.run_slot(slot, message))
                self.tasks.add(running)

    async def flush_loop(self):
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            await self.loop.run_in_executor(self.io, self.flush_writes)

    async def run_slot(self, slot, message):
        try:
            if isinstance(message.task, Exception) or message.task.is_async:
                await self.arun_message(slot, message)
            else:
                await self.loop.run_in_executor(self.sync, self.run_message, slot, message)
        except asyncio.CancelledError:
            pass  # SIGTERM: its claim goes back with hand_back()
        except BaseException:
            logger.exception('a bug: running %s failed', message.task)
        finally:
            self.tasks.discard(asyncio.current_task())
            self.free.append(slot)
            self.slot_free.set()
            self.dirty.set()
            if self.stopping:
                self.changed.set()

    async def arun_message(self, number, message):
        """``run_message`` for an async task: awaited here, on the loop."""
        admitted = self.admit(number, message)
        if admitted is None:
            return
        task, receipt = admitted
        try:
            await self.huey.aexecute(task, revocations=message.batch.fresh_revocations())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not self.execute_failed(number, task, receipt, exc):
                return
        self.finish(number, task, receipt)
