"""``-k asyncio``: a pool process whose workers are coroutines on one event loop.

``-w N`` tasks run at once. An ``async def`` task is awaited on the loop (its
``timeout`` an ``asyncio.timeout``); a plain ``def`` task runs in a small thread pool
(SYNC_THREADS), so an application with both runs unchanged. Either way it holds one of
the N slots, whose numbers are the heartbeat's worker numbers.

Storage calls that wait on the network run in two I/O threads, off the loop: one
claims messages for the free slots (a blocking claim waits there), the other sends
the write batch (results, events, acknowledgements) once a task has finished: group
commit, at one round trip per batch. A claim sends the writes made before it first
(in its own round trip where the storage's claim carries them, hueyd.storage's
``claim_sends_writes``), so while claims follow one another the writes go with them,
and the flusher sends them only when no claim follows soon. The acknowledgements join
the batch as one storage call for all the tasks finished since the last one, when it
is sent. What the executor does between a task's steps (the revocation check, a chord's
counter, the results and events that join the batch) runs on the loop: short calls.

A slot that finishes its task starts the next claimed message at once, in the same
asyncio Task, so that while the pool is busy no slot waits for a claim's round trip:
the claims run ahead of the slots by what they will free while the next claim is on
its way (``ahead``, from the rate tasks end at and the time a claim takes, at most -w).
Slow tasks end seldom, so they are not claimed ahead of time (and a message claimed
ahead that waits WAITED_TOO_LONG for a slot stops it at once), and an idle pool claims
only for its free slots. One claim takes up to MAX_CLAIM messages.

SIGINT stops claiming and lets the running tasks finish; SIGTERM cancels the running
coroutines (a task sees CancelledError) and hands every claim back to the queue. A plain
task in a thread cannot be cancelled: as under ``-k thread``, its claim goes back, and
it runs again elsewhere.
"""
import asyncio
import collections
import concurrent.futures
import logging
import threading
import time

from hueyd.daemon.inbox import REVOCATIONS_FRESH
from hueyd.daemon.pool import Pool

logger = logging.getLogger('hueyd.daemon')

SYNC_THREADS = 8     # threads for plain (def) tasks, at most -w
IO_THREADS = 2       # the claiming thread and the flushing thread
CANCEL_GRACE = 5.0   # seconds cancelled coroutines get to run their except/finally blocks
MAX_CLAIM = 128      # messages per claim
AHEAD_MARGIN = 4     # claim ahead what the slots free in this many claim round trips
CLAIM_PART = 2       # claim once 1/CLAIM_PART of that is wanted: fewer claims, and larger
SMOOTHING = 0.2      # weight of the latest claim in the running estimates of rate and latency
# A message claimed ahead that waited this long for a slot stops the claiming ahead; well
# within REVOCATIONS_FRESH, past which each of them would ask the storage for revocations.
WAITED_TOO_LONG = REVOCATIONS_FRESH / 2


class AsyncioPool(Pool):
    loop = None  # the running loop, once serve() starts

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync_threads = min(self.workers, SYNC_THREADS)
        self.free = list(range(self.workers))  # slot numbers not running a task
        self.tasks = {}  # slot number -> the asyncio Task running its messages
        self.ready = collections.deque()  # claimed, not started (only while no slot is free)
        self.ahead = 0   # messages to claim beyond the free slots
        self.rate = 0.0  # running estimate of the messages ended a second
        self.ended = 0   # messages run to their end so far
        self.acks = []   # receipts of finished tasks, acknowledged with the next flush
        self.acks_lock = threading.Lock()
        self.claim_at = 1  # claim once this many messages are wanted
        self.fetching = False  # a claim is on its way
        self.fetches = 0       # claims sent so far
        self.fetch_started = 0.0  # when the last one was sent (loop time)
        self.fetch_waiter = None  # the flusher's, resolved when the fetcher sends a claim or idles
        self.flush_wait = 0.001   # seconds the flusher waits for a claim to carry its writes

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
        self.wanted = asyncio.Event()   # the fetcher may have messages to claim
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
        self.wanted.set()        # and a fetcher waiting for a free slot looks at stopping
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

    def ack(self, receipt):
        """Acknowledge a finished task with the next flush (its result is in the batch already):
        one storage call for all the tasks finished since the last one."""
        if receipt is not None:
            self.acks.append(receipt)  # from the loop, or a thread of plain tasks

    def flush_writes(self, wait=False):
        self.batch_acks()
        return super().flush_writes(wait)

    def claim(self, count=1):
        self.batch_acks()  # a storage whose claim sends the write batch sends them with it
        return super().claim(count)

    def batch_acks(self):
        """Put the acknowledgements so far into the write batch, after the results of their tasks.

        Under a lock: a flush that follows (hand_back's) finds every one of them in the batch,
        none still in the hands of another thread."""
        with self.acks_lock:
            acks = self.acks
            if acks:
                self.acks = []  # an append meanwhile went to the list in hand, and is sent with it
                self.patiently('acknowledge tasks', self.huey.storage.ack, self.worker_id, acks)

    def start_sync_thread(self):
        self.huey.storage.begin_batch()
        self.huey.run_startup_hooks()

    async def cancel_running(self):
        self.huey.handing_back([task for task, *_ in list(self.current.values())])
        running = list(self.tasks.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=CANCEL_GRACE)
        self.huey.notify_interrupted_tasks()  # the plain tasks, whose threads run on

    async def fetch_loop(self):
        loop = self.loop
        latency = 0.0  # running estimate of the seconds a claim takes
        last, ended = loop.time(), self.ended
        while not self.stopping:
            count = len(self.free) + self.ahead - len(self.ready)
            if count < self.claim_at:
                self.fetching = False
                self.fetched()
                self.wanted.clear()
                await self.wanted.wait()
                continue
            count = min(count, MAX_CLAIM)
            self.fetching = True
            self.fetches += 1
            self.dirty.clear()  # the claim sends the writes so far first
            self.fetched()
            started = self.fetch_started = loop.time()
            messages = await loop.run_in_executor(self.io, self.fetch, count)
            if self.stopping:
                return  # claimed, not started: hand_back() returns them with the rest
            now = loop.time()
            if len(messages) == count:  # else the queue ran dry: the time includes waiting
                latency += SMOOTHING * (now - started - latency)
            self.rate += SMOOTHING * ((self.ended - ended) / max(now - last, 1e-3) - self.rate)
            last, ended = now, self.ended
            self.ahead = min(int(AHEAD_MARGIN * self.rate * latency + 0.5), self.workers)
            self.claim_at = max(1, self.ahead // CLAIM_PART)
            self.flush_wait = 2 * latency + 0.001
            free, ready = self.free, self.ready
            for message in messages:
                if free:
                    slot = free.pop()
                    self.tasks[slot] = loop.create_task(self.run_slot(slot, message))
                else:
                    ready.append(message)

    def fetched(self):
        """The fetcher sent a claim, or stopped claiming: wake the flusher waiting for that."""
        waiter = self.fetch_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def flush_loop(self):
        """Send the writes of the finished tasks: with the next claim when one follows the
        claim on its way at once (the fetcher clears ``dirty`` as it sends one), else in a
        batch of their own."""
        loop = self.loop
        while True:
            await self.dirty.wait()
            while self.fetching:
                # A claim out for longer than a claim takes waits for a message: no wait then.
                wait = self.fetch_started + self.flush_wait - loop.time()
                if wait <= 0:
                    break
                fetch = self.fetches
                waiter = self.fetch_waiter = loop.create_future()
                timer = loop.call_later(wait, _resolve, waiter)
                await waiter
                timer.cancel()
                if self.fetches == fetch:
                    break  # the claim on its way is slow, or waits for a message: flush now
            if self.dirty.is_set():
                self.dirty.clear()
                await loop.run_in_executor(self.io, self.flush_writes)

    async def run_slot(self, slot, message):
        """Run ``message`` in slot ``slot``, then the claimed messages waiting, while any are."""
        ready = self.ready
        try:
            while True:
                try:
                    if isinstance(message.task, Exception) or message.task.is_async:
                        await self.arun_message(slot, message)
                    else:
                        await self.loop.run_in_executor(self.sync, self.run_message, slot, message)
                except asyncio.CancelledError:
                    return  # SIGTERM: its claim goes back with hand_back()
                except BaseException:
                    logger.exception('a bug: running %s failed', message.task)
                self.ended += 1
                self.dirty.set()  # its acknowledgement waits in the batch
                if self.stopping or not ready:
                    return
                message = ready.popleft()
                if time.monotonic() - message.batch.claimed_at > WAITED_TOO_LONG:
                    # Claimed too far ahead (the tasks have become slow): claim for the
                    # free slots only, until the rate tasks end at is known again.
                    self.rate = self.ahead = 0
                    self.claim_at = 1
                elif self.ahead - len(ready) >= self.claim_at:
                    self.wanted.set()
        finally:
            del self.tasks[slot]
            self.free.append(slot)
            self.wanted.set()
            if self.stopping:
                self.changed.set()

    async def arun_message(self, number, message):
        """``run_message`` for an async task: awaited here, on the loop. Its steps that may
        wait on the storage (burying a message that cannot run, an at_most_once task's
        start and end, handing a task back) run in a thread of plain tasks instead, so the
        loop's other tasks go on meanwhile, even through a storage outage."""
        task = message.task
        if isinstance(task, Exception) or task.at_most_once:
            admitted = await self.off_loop(self.admit, number, message)
        else:
            admitted = self.admit(number, message)
        if admitted is None:
            return
        task, receipt = admitted
        try:
            await self.huey.aexecute(task, revocations=message.batch.fresh_revocations())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not await self.off_loop(self.execute_failed, number, task, receipt, exc):
                return
        if receipt is None:  # at_most_once: its running record is cleared from the storage
            await self.off_loop(self.finish, number, task, receipt)
        else:
            self.finish(number, task, receipt)  # the acknowledgement waits in the batch

    def off_loop(self, function, *args):
        return self.loop.run_in_executor(self.sync, function, *args)


def _resolve(future):
    if not future.done():
        future.set_result(None)
