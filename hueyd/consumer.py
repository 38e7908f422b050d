"""huey's in-process consumer: ``Consumer(huey, **options)`` or ``huey.create_consumer()``.

For tests, scripts and single-process applications: worker threads and a
scheduler thread in the calling process. The ``hueyd`` daemon stays the way to
run tasks in production (processes, greenlets, health checks, reloads).

Delivery is at least once where the storage has claims (SQLite, Redis,
memory): a worker claims a message, runs it, and acknowledges it after its
result is stored; the scheduler renews the workers' leases and returns to the
queue what a consumer that died had claimed. On storages without claims a
worker dequeues, and a task running when the process dies is lost.

This module also keeps huey's ``huey.consumer`` names: the event names and
``EventListener``.
"""
import logging
import os
import signal
import socket
import threading
import time

from hueyd.events import (ALL_EVENTS, EVENT_CANCELED, EVENT_CHECKING_PERIODIC,
                          EVENT_ERROR_DEQUEUEING, EVENT_ERROR_ENQUEUEING, EVENT_ERROR_INTERNAL,
                          EVENT_ERROR_SCHEDULING, EVENT_ERROR_STORING_RESULT, EVENT_ERROR_TASK,
                          EVENT_EXPIRED, EVENT_FINISHED, EVENT_INTERRUPTED, EVENT_LOCKED,
                          EVENT_RATE_LIMITED, EVENT_RETRYING, EVENT_REVOKED, EVENT_SCHEDULED,
                          EVENT_SCHEDULING_PERIODIC, EVENT_STARTED, EVENT_TIMEOUT)
from hueyd.exceptions import ConfigurationError
from hueyd.storage.listener import EventListener
from hueyd.storage.protocols import Claims
from hueyd.times import now

logger = logging.getLogger('hueyd.consumer')

WORKER_THREAD = 'thread'
WORKER_GREENLET = 'greenlet'
WORKER_PROCESS = 'process'
WORKER_TYPES = (WORKER_THREAD, WORKER_GREENLET, WORKER_PROCESS)
LEASE = 30.0  # seconds a claim outlives a consumer that stopped renewing it

__all__ = [
    'ALL_EVENTS', 'Consumer', 'ConsumerStopped', 'EventListener', 'OptionError', 'Scheduler',
    'Worker', 'check_options',
    'WORKER_GREENLET', 'WORKER_PROCESS', 'WORKER_THREAD', 'EVENT_CANCELED',
    'EVENT_CHECKING_PERIODIC', 'EVENT_ERROR_DEQUEUEING', 'EVENT_ERROR_ENQUEUEING',
    'EVENT_ERROR_INTERNAL', 'EVENT_ERROR_SCHEDULING', 'EVENT_ERROR_STORING_RESULT',
    'EVENT_ERROR_TASK', 'EVENT_EXPIRED', 'EVENT_FINISHED', 'EVENT_INTERRUPTED', 'EVENT_LOCKED',
    'EVENT_RATE_LIMITED', 'EVENT_RETRYING', 'EVENT_REVOKED', 'EVENT_SCHEDULED',
    'EVENT_SCHEDULING_PERIODIC', 'EVENT_STARTED', 'EVENT_TIMEOUT']


class ConsumerStopped(Exception):
    """huey's name, kept for code that imports it; hueyd's consumer does not raise it."""


class OptionError(ConfigurationError, ValueError):
    """A consumer option it cannot run with (a ValueError too, as huey's ConsumerConfig
    raises)."""


def check_options(backoff, scheduler_interval, graceful_signal):
    """Raise OptionError naming the first of these options a Consumer cannot run with."""
    if backoff < 1:
        raise OptionError('backoff=%r: it must be at least 1' % (backoff,))
    if not 1 <= scheduler_interval <= 60 or 60 % scheduler_interval:
        raise OptionError('scheduler_interval=%r: use a number of seconds that divides 60 '
                          '(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)' % (scheduler_interval,))
    if graceful_signal not in ('INT', 'TERM'):
        raise OptionError("graceful_signal=%r: use 'INT' or 'TERM'" % (graceful_signal,))


class Worker:
    """Takes one message at a time, runs it, acknowledges it; backs off while idle."""

    def __init__(self, consumer, number):
        self.consumer = consumer
        self.huey = consumer.huey
        self.stop_flag = consumer.stop_flag
        self.id = '%s-%d' % (consumer.id, number)
        self.delay = consumer.default_delay

    def run(self):
        self.huey.run_startup_hooks()
        try:
            while not self.stop_flag.is_set():
                try:
                    self.loop()
                except Exception:  # the storage gone, or a bug: the thread goes on
                    logger.exception('worker %s: cannot reach the storage; retrying', self.id)
                    self.sleep()
        finally:
            self.huey.run_shutdown_hooks()

    def loop(self, now=None):
        """One step: run the next message, or wait a little longer than last time."""
        try:
            receipt, data = self.take()
        except Exception:
            logger.exception('cannot read the queue; retrying with backoff')
            self.huey.emit_event(EVENT_ERROR_DEQUEUEING)
            self.sleep()
            return
        if data is None:
            self.sleep()
            return
        self.delay = self.consumer.default_delay
        try:
            self.handle(receipt, data, now)
        except self.huey.storage.transient_errors as exc:
            # Perhaps before it ran at all (the revocation check): never acknowledged,
            # so it goes back on the queue rather than waiting for a lease.
            logger.warning('storage unavailable while handling a message (%s); it goes back '
                           'on the queue', exc)
            self.give_back(receipt)
            return
        except Exception:
            logger.exception('internal error while handling a message; it is acknowledged')
        self.acknowledge(receipt)

    def handle(self, receipt, data, now):
        huey = self.huey
        try:
            task = huey.deserialize_task(data)
        except Exception as exc:
            huey.bury(data, 'cannot run this message: %s: %s' % (type(exc).__name__, exc))
            return
        if task.at_most_once:
            self.acknowledge(receipt)  # before it starts: a crash now loses it, never repeats it
        huey.execute(task, now)

    def acknowledge(self, receipt):
        if receipt is not None:
            self.huey.storage.ack(self.id, [receipt])

    def give_back(self, receipt):
        if receipt is not None:
            try:
                self.huey.storage.release(self.id, [receipt])
            except self.huey.storage.transient_errors:
                pass  # still claimed: the scheduler stops renewing it once this worker is gone

    def take(self):
        """``(receipt, data)`` of the next message; ``(None, None)`` when there is none."""
        storage = self.huey.storage
        if self.consumer.claims:
            claimed = storage.claim(self.id, 1, LEASE)
            return claimed[0] if claimed else (None, None)
        return None, storage.dequeue()

    def sleep(self):
        """Wait (waking at once on stop), then back off, up to ``max_delay``."""
        self.stop_flag.wait(self.delay)
        self.delay = min(self.delay * self.consumer.backoff, self.consumer.max_delay)

    def release(self):
        """Hand back whatever this worker still claims (a stop that did not wait)."""
        if self.consumer.claims:
            self.huey.storage.retire_worker(self.id)


class Scheduler:
    """Moves due tasks to the queue, enqueues periodic tasks once a minute, renews leases."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.huey = consumer.huey
        self.stop_flag = consumer.stop_flag
        self.interval = consumer.scheduler_interval
        self.periodic = consumer.periodic
        self.last_minute = None

    def run(self):
        while not self.stop_flag.is_set():
            started = time.monotonic()
            try:
                self.loop()
            except Exception:
                logger.exception('scheduler cannot reach the storage; trying again')
            self.stop_flag.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def loop(self, now_=None):
        """One pass at the moment ``now_`` (default: now)."""
        huey = self.huey
        moment = now_ or now(huey.utc)
        huey.enqueue_due(moment)
        if self.consumer.claims:
            storage = huey.storage
            for worker, thread in self.consumer.worker_threads:
                if thread.is_alive():  # a dead worker's lease runs out, and its claim returns
                    storage.beat(worker.id, LEASE)
            storage.recover()
        minute = moment.replace(second=0, microsecond=0)
        if self.periodic and minute != self.last_minute:
            self.last_minute = minute
            huey.enqueue_periodic(minute)  # once a minute across every scheduler


class Consumer:
    """Worker threads and a scheduler thread running ``huey``'s tasks in this process.

    The options are huey's. ``worker_type`` must be ``'thread'`` here: process
    and greenlet workers are the daemon's (``hueyd app.huey -k process``).
    ``check_worker_health`` and ``health_check_interval`` restart a worker thread
    that died; ``max_tasks`` is the daemon's (``--max-tasks``).
    """

    def __init__(self, huey, workers=1, periodic=True, initial_delay=0.1, backoff=1.15,
                 max_delay=10.0, scheduler_interval=1, worker_type=WORKER_THREAD,
                 check_worker_health=True, health_check_interval=10, flush_locks=False,
                 extra_locks=None, max_tasks=None, shutdown_timeout=None,
                 graceful_signal='INT', **unknown):
        if unknown:
            raise ConfigurationError('Consumer got unknown option(s) %s; it takes huey\'s '
                                     'consumer options' % ', '.join(sorted(unknown)))
        if worker_type not in WORKER_TYPES:
            raise ConfigurationError('worker_type=%r: use one of %s'
                                     % (worker_type, ', '.join(WORKER_TYPES)))
        if worker_type != WORKER_THREAD:
            raise ConfigurationError(
                'the in-process Consumer runs thread workers only; for %s workers run the '
                'daemon: hueyd <module>.huey -k %s -w %d' % (worker_type, worker_type, workers))
        if max_tasks:
            raise ConfigurationError('max_tasks recycles worker processes: run the daemon '
                                     'with --max-tasks %d' % max_tasks)
        check_options(backoff, scheduler_interval, graceful_signal)
        if huey.immediate:
            logger.warning('%r is in immediate mode: tasks run when enqueued, and this consumer '
                           'will find nothing to do; set huey.immediate = False', huey)
        self.huey = huey
        self.workers = workers
        self.periodic = periodic
        self.default_delay = initial_delay
        self.backoff = backoff
        self.max_delay = max_delay
        self.scheduler_interval = scheduler_interval
        self.worker_type = worker_type
        self.check_worker_health = check_worker_health
        self.health_check_interval = float(health_check_interval)
        self.shutdown_timeout = shutdown_timeout
        self.graceful_signal = graceful_signal
        self.stop_flag = threading.Event()
        self.id = 'consumer-%s:%d-%d' % (socket.gethostname(), os.getpid(), id(self))
        self.claims = huey.storage.supports(Claims)
        if flush_locks or extra_locks:
            names = extra_locks.split(',') if isinstance(extra_locks, str) else extra_locks or ()
            huey.flush_locks(*names)
        self.scheduler = self._thread(Scheduler(self), 'Scheduler')
        self.worker_threads = [self._worker(number) for number in range(1, workers + 1)]
        self.stopped = threading.Event()

    def _worker(self, number):
        worker = Worker(self, number)
        return worker, self._thread(worker, 'Worker-%d' % number)

    @staticmethod
    def _thread(runnable, name):
        return threading.Thread(target=runnable.run, name=name, daemon=True)

    def start(self):
        """Start the scheduler and the workers; returns at once."""
        logger.info('consumer started: %d thread worker(s) on %r', self.workers, self.huey)
        self.scheduler.start()
        for _, thread in self.worker_threads:
            thread.start()

    def stop(self, graceful=False):
        """Stop taking tasks. ``graceful``: wait for the running tasks to finish (up to
        ``shutdown_timeout`` when set); otherwise wait no more than a moment. A task still
        running then keeps its claim: it finishes and is acknowledged if this process lives
        on, or runs again, once its lease runs out, if the process exits first."""
        self.stop_flag.set()
        timeout = self.shutdown_timeout if graceful else 0.1
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker, thread in self.worker_threads:
            if thread.is_alive():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                worker.release()
        self.scheduler.join(1.0)
        self.stopped.set()
        logger.info('consumer stopped')

    def run(self):
        """Start, then block until SIGINT/SIGTERM (the graceful one waits for running
        tasks, as ``graceful_signal`` says) or until ``stop()`` from another thread."""
        graceful_signum = signal.SIGTERM if self.graceful_signal == 'TERM' else signal.SIGINT
        received = []

        def on_signal(signum, frame):
            received.append(signum)
            self.stop_flag.set()

        previous = {signum: signal.signal(signum, on_signal)
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not self.stop_flag.wait(self.health_check_interval):
                if self.check_worker_health:
                    self.check_workers()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if not self.stopped.is_set():
            self.stop(graceful=not received or received[0] == graceful_signum)

    def check_workers(self):
        """Replace worker threads that died (a bug in a hook, say)."""
        for index, (worker, thread) in enumerate(self.worker_threads):
            if not thread.is_alive() and not self.stop_flag.is_set():
                logger.error('worker %s died; starting a new one', thread.name)
                worker.release()  # what it held goes back now, not after its lease
                self.worker_threads[index] = self._worker(index + 1)
                self.worker_threads[index][1].start()
