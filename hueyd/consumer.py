"""huey's in-process consumer: ``Consumer(huey, **options)`` or ``huey.create_consumer()``.

For tests, scripts and single-process applications: workers (threads, greenlets
or forked processes, as ``worker_type`` says) and a scheduler, started by the
calling process. The ``hueyd`` daemon stays the way to run tasks in production
(health checks of the whole node, reloads, dead letters for tasks that kill
their worker).

Delivery is at least once where the storage has claims (SQLite, Redis,
memory): a worker claims a message, runs it, and acknowledges it after its
result is stored; a worker that stops hands back what it still claims, and the
scheduler returns to the queue what a consumer that died had claimed once its
lease runs out. On storages without claims a worker dequeues, and a task
running when the process dies is lost.

This module keeps huey's ``huey.consumer`` names (the environments, the event
names, ``EventListener``) and logs as ``huey.consumer``, so logging set up for
huey's consumer keeps working.
"""
import itertools
import logging
import multiprocessing
import os
import select
import signal
import socket
import sys
import threading
import time

from hueyd.events import (ALL_EVENTS, EVENT_CANCELED, EVENT_CHECKING_PERIODIC,
                          EVENT_ERROR_DEQUEUEING, EVENT_ERROR_ENQUEUEING, EVENT_ERROR_INTERNAL,
                          EVENT_ERROR_SCHEDULING, EVENT_ERROR_STORING_RESULT, EVENT_ERROR_TASK,
                          EVENT_EXPIRED, EVENT_FINISHED, EVENT_INTERRUPTED, EVENT_LOCKED,
                          EVENT_RATE_LIMITED, EVENT_RETRYING, EVENT_REVOKED, EVENT_SCHEDULED,
                          EVENT_SCHEDULING_PERIODIC, EVENT_STARTED, EVENT_TIMEOUT)
from hueyd.exceptions import ConfigurationError, Interrupted
from hueyd.storage.listener import EventListener
from hueyd.storage.memory import MemoryStorage
from hueyd.storage.protocols import Claims
from hueyd.timeouts import time_limit

logger = logging.getLogger('huey.consumer')

WORKER_THREAD = 'thread'
WORKER_GREENLET = 'greenlet'
WORKER_PROCESS = 'process'
WORKER_TYPES = (WORKER_THREAD, WORKER_GREENLET, WORKER_PROCESS)
LEASE = 30.0  # seconds a claim outlives a worker that stopped renewing it

__all__ = [
    'ALL_EVENTS', 'Consumer', 'ConsumerStopped', 'EventListener', 'ForkSafeFlag',
    'GreenletEnvironment', 'OptionError', 'ProcessEnvironment', 'Scheduler',
    'ThreadEnvironment', 'WORKER_TO_ENVIRONMENT', 'Worker', 'check_options',
    'WORKER_GREENLET', 'WORKER_PROCESS', 'WORKER_THREAD', 'EVENT_CANCELED',
    'EVENT_CHECKING_PERIODIC', 'EVENT_ERROR_DEQUEUEING', 'EVENT_ERROR_ENQUEUEING',
    'EVENT_ERROR_INTERNAL', 'EVENT_ERROR_SCHEDULING', 'EVENT_ERROR_STORING_RESULT',
    'EVENT_ERROR_TASK', 'EVENT_EXPIRED', 'EVENT_FINISHED', 'EVENT_INTERRUPTED', 'EVENT_LOCKED',
    'EVENT_RATE_LIMITED', 'EVENT_RETRYING', 'EVENT_REVOKED', 'EVENT_SCHEDULED',
    'EVENT_SCHEDULING_PERIODIC', 'EVENT_STARTED', 'EVENT_TIMEOUT']


class ConsumerStopped(Exception):
    """Raised by ``Consumer.loop()`` once the consumer has stopped: ``run()`` returns."""


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


# --- where workers run --------------------------------------------------------------

class ForkSafeFlag:
    """A stop flag that forked processes share: a pipe that holds a byte once set.

    Waiting polls the pipe and holds no lock, so a process killed while it waits
    cannot leave ``set()`` blocked, as it would a ``multiprocessing.Event``."""

    def __init__(self):
        self.read_end, self.write_end = os.pipe()

    def set(self):
        if not self.is_set():
            os.write(self.write_end, b'!')

    def is_set(self):
        return self.wait(0)

    def wait(self, timeout=None):
        poller = select.poll()
        poller.register(self.read_end, select.POLLIN)
        return bool(poller.poll(None if timeout is None else timeout * 1000))


class Environment:
    """How a consumer runs its workers and scheduler (huey's name): each kind says how
    to start one, tell whether it lives, and interrupt it on a fast stop."""
    forks = False

    def __init__(self, graceful=signal.SIGINT, interrupt=signal.SIGTERM):
        self.graceful = graceful    # the signal that stops the consumer once tasks finish
        self.interrupt = interrupt  # the one that stops it now

    def timeout(self, seconds):
        """A context that raises TaskTimeout after ``seconds`` where this thread can be
        interrupted (hueyd.timeouts; the executor applies a task's ``timeout`` itself)."""
        return time_limit(seconds, 'timeout (%ss)' % seconds)

    def init_child(self, runner):
        """Called first inside the thread, greenlet or process that runs ``runner``."""

    def interrupt_workers(self, workers):
        """A fast stop: interrupt the running tasks of ``[(worker, proc)]`` where possible."""


class ThreadEnvironment(Environment):
    """Threads cannot be interrupted: on a fast stop a running task goes on in the
    background, keeping its claim (acknowledged when it ends, or run again once its
    lease runs out if the process exits first)."""

    def get_stop_flag(self):
        return threading.Event()

    def create_process(self, target, name):
        return threading.Thread(target=target, name=name, daemon=True)

    def is_alive(self, proc):
        return proc.is_alive()


class GreenletEnvironment(Environment):
    """Greenlets (gevent, which the application must monkey-patch first)."""

    def __init__(self, *args):
        import gevent
        import gevent.event
        import gevent.monkey
        if not gevent.monkey.is_module_patched('socket'):
            logger.warning('greenlet workers without gevent.monkey.patch_all(): a task that '
                           'blocks on I/O blocks every worker')
        super().__init__(*args)
        self.gevent = gevent

    def get_stop_flag(self):
        return self.gevent.event.Event()

    def create_process(self, target, name):
        return self.gevent.Greenlet(target)

    def is_alive(self, proc):
        return bool(proc)  # started and not finished

    def interrupt_workers(self, workers):
        for worker, _ in workers:
            worker.interrupted()
        self.gevent.killall([proc for _, proc in workers], Interrupted)


class ProcessEnvironment(Environment):
    """Forked processes. The workers ignore the graceful signal (a Ctrl-C reaches the
    whole process group; the consumer stops them through the stop flag) and the
    interrupt signal interrupts their task, whose claim goes back to the queue."""
    forks = True

    def __init__(self, *args):
        super().__init__(*args)
        try:
            # fork whatever the platform's default: a runner holds live objects
            # (the Huey, its storage) that spawn would have to pickle.
            self.mp = multiprocessing.get_context('fork')
        except ValueError:
            raise ConfigurationError('process workers need fork(), which this platform '
                                     'does not have; use thread workers') from None

    def get_stop_flag(self):
        return ForkSafeFlag()

    def create_process(self, target, name):
        return self.mp.Process(target=target, name=name, daemon=True)

    def is_alive(self, proc):
        return proc.is_alive()

    def init_child(self, runner):
        # In the task's own code only (handing the task back): the worker's storage calls
        # finish, and its loop stops on the stop flag the consumer set before this signal.
        interrupt_task = runner.huey.task_interrupter(Interrupted)

        signal.signal(self.graceful, signal.SIG_IGN)
        signal.signal(self.interrupt, lambda *_: interrupt_task())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a restart is the consumer's

    def interrupt_workers(self, workers):
        for _, proc in workers:
            if proc.is_alive():
                try:
                    os.kill(proc.pid, self.interrupt)
                except ProcessLookupError:
                    pass  # it exited meanwhile
        # A moment to hand back their claims, before multiprocessing's exit handler
        # terminates what is left.
        deadline = time.monotonic() + 1.0
        for _, proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))


WORKER_TO_ENVIRONMENT = {
    WORKER_THREAD: ThreadEnvironment,
    WORKER_GREENLET: GreenletEnvironment,
    'gevent': GreenletEnvironment,
    WORKER_PROCESS: ProcessEnvironment,
}


# --- what runs there ------------------------------------------------------------------

class Runner:
    """What a worker and the scheduler share: a loop in a thread, greenlet or process,
    until the stop flag is set."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.huey = consumer.huey
        self.stop_flag = consumer.stop_flag

    def sleep_for_interval(self, start, seconds):
        """Wait until ``seconds`` after the monotonic ``start``, waking at once on stop."""
        remaining = seconds - (time.monotonic() - start)
        if remaining > 0:
            self.stop_flag.wait(remaining)


class Worker(Runner):
    """Takes one message at a time, runs it, acknowledges it; backs off while idle."""

    def __init__(self, consumer, number):
        super().__init__(consumer)
        self.name = 'Worker-%d' % number
        self.id = '%s-%d' % (consumer.id, number)  # what it claims under
        self.delay = consumer.default_delay
        self.current = None  # the task running now
        self.tasks_run = 0

    def run(self):
        environment = self.consumer.environment
        environment.init_child(self)
        lease_kept = self.keep_lease() if environment.forks and self.consumer.claims else None
        self.huey.run_startup_hooks()
        try:
            while not self.stop_flag.is_set():
                try:
                    self.loop()
                except Exception:  # the storage gone, or a bug: the worker goes on
                    logger.exception('worker %s: cannot reach the storage; retrying', self.id)
                    self.sleep()
                if self.consumer.max_tasks and self.tasks_run >= self.consumer.max_tasks:
                    logger.info('worker %s ran %d tasks; a new one takes over', self.id,
                                self.tasks_run)
                    break
        except Interrupted:
            pass  # a fast stop: what it claimed goes back below
        finally:
            self.huey.run_shutdown_hooks()
            if lease_kept is not None:
                lease_kept.set()
            self.release()

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
            if not self.huey.storage.blocking:
                self.sleep()
            return
        self.delay = self.consumer.default_delay
        if self.stop_flag.is_set():  # stopping: a message taken meanwhile goes back unrun
            self.give_back(receipt)
            return
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
        self.current = task
        try:
            huey.execute(task, now, interrupt=Interrupted)
        finally:
            self.current = None
        self.tasks_run += 1

    def interrupted(self):
        """Called just before a fast stop kills this worker's greenlet."""
        if self.current is not None:
            # It goes back through its claim: an enqueue() of it by a SIGNAL_INTERRUPTED
            # handler (huey's advice) must not queue it twice.
            self.huey.handing_back([self.current])

    def acknowledge(self, receipt):
        if receipt is not None:
            self.huey.storage.ack(self.id, [receipt])

    def give_back(self, receipt):
        if receipt is not None:
            try:
                self.huey.storage.release(self.id, [receipt])
            except self.huey.storage.transient_errors:
                pass  # still claimed: it goes back once this worker's lease runs out

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
        """Hand back whatever this worker still claims (it stopped, or it died)."""
        if self.consumer.claims:
            try:
                self.huey.storage.retire_worker(self.id)
            except Exception:
                logger.warning('worker %s could not hand back its claims; they go back '
                               'when its lease runs out', self.id, exc_info=True)

    def keep_lease(self):
        """In a worker process: renew this worker's lease from a thread until the returned
        event is set. A task may run for longer than the lease; a process that is killed
        takes the thread with it, and its claims go back once the lease runs out."""
        done = threading.Event()

        def renew():
            while not done.wait(LEASE / 3):
                try:
                    self.huey.storage.beat(self.id, LEASE)
                except Exception:
                    logger.warning('worker %s could not renew its lease', self.id,
                                   exc_info=True)

        threading.Thread(target=renew, name='%s-lease' % self.id, daemon=True).start()
        return done


class Scheduler(Runner):
    """Moves due tasks to the queue, enqueues periodic tasks at the start of each minute,
    renews the leases of the workers beside it and recovers expired claims."""

    def __init__(self, consumer):
        super().__init__(consumer)
        self.interval = consumer.scheduler_interval
        self.periodic = consumer.periodic
        self._next_periodic = time.monotonic()  # when periodic tasks are next enqueued

    def run(self):
        self.consumer.environment.init_child(self)
        try:
            while not self.stop_flag.is_set():
                self.loop()
        except Interrupted:
            pass

    def loop(self, now=None):
        """One pass at the moment ``now`` (default: now), then a wait for the next."""
        started = time.monotonic()
        moment = now or self.huey.now()
        try:
            self.huey.enqueue_due(moment)
            if self.consumer.claims:
                self.renew_leases()
                self.huey.storage.recover()
        except Exception:
            logger.exception('scheduler cannot reach the storage; trying again')
        if self.periodic and self._next_periodic <= time.monotonic():
            self.enqueue_periodic(moment)
        self.sleep_for_interval(started, self.interval)

    def renew_leases(self):
        # A worker process renews its own: its liveness is known to the consumer only.
        consumer = self.consumer
        if not consumer.environment.forks:
            for worker, proc in consumer.worker_threads:
                if consumer.environment.is_alive(proc):  # a dead one's claims return
                    self.huey.storage.beat(worker.id, LEASE)

    def enqueue_periodic(self, moment):
        # Next at the start of the next minute: minutes missed in a stall are not caught up.
        self._next_periodic = time.monotonic() + 60 - moment.second - moment.microsecond / 1e6
        minute = moment.replace(second=0, microsecond=0)
        try:
            tasks = self.huey.enqueue_periodic(minute)  # None: another scheduler did it
        except Exception:
            logger.exception('could not enqueue the periodic tasks of %s', minute)
        else:
            if tasks:
                logger.info('enqueued %d periodic task(s) for %s', len(tasks), minute)


# --- the consumer ---------------------------------------------------------------------

class Consumer:
    """Workers and a scheduler running ``huey``'s tasks, started by this process.

    The options are huey's. ``check_worker_health`` and ``health_check_interval``
    replace workers that died while ``run()`` runs; ``max_tasks`` ends a worker
    after that many tasks, and the health check starts a new one.
    """
    worker_class = Worker
    scheduler_class = Scheduler

    def __init__(self, huey, workers=1, periodic=True, initial_delay=0.1, backoff=1.15,
                 max_delay=10.0, scheduler_interval=1, worker_type=WORKER_THREAD,
                 check_worker_health=True, health_check_interval=10, flush_locks=False,
                 extra_locks=None, max_tasks=None, shutdown_timeout=None,
                 graceful_signal='INT', **unknown):
        if unknown:
            raise ConfigurationError('Consumer got unknown option(s) %s; it takes huey\'s '
                                     'consumer options' % ', '.join(sorted(unknown)))
        if worker_type not in WORKER_TO_ENVIRONMENT:
            raise ConfigurationError('worker_type=%r: use one of %s'
                                     % (worker_type, ', '.join(WORKER_TYPES)))
        if max_tasks and not check_worker_health:
            raise ConfigurationError('max_tasks=%d needs check_worker_health: the health '
                                     'check replaces a worker that ran its tasks' % max_tasks)
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
        self.max_tasks = max_tasks
        self.shutdown_timeout = shutdown_timeout
        self.graceful_signal = graceful_signal
        self._health_check = check_worker_health
        self._health_check_interval = float(health_check_interval)
        self._stop_flag_timeout = 0.1  # how often run() looks at signals and health
        graceful, interrupt = signal.SIGINT, signal.SIGTERM
        if graceful_signal == 'TERM':
            graceful, interrupt = interrupt, graceful
        # signal -> (restart, graceful)
        self._signal_actions = {interrupt: (False, False), graceful: (False, True),
                                signal.SIGHUP: (True, True)}
        self._signum = None
        self._restart = False
        self._graceful = True
        self.environment = WORKER_TO_ENVIRONMENT[worker_type](graceful, interrupt)
        self.stop_flag = self.environment.get_stop_flag()
        self.id = 'consumer-%s:%d-%d' % (socket.gethostname(), os.getpid(), id(self))
        self._worker_numbers = itertools.count(1)
        self.claims = huey.storage.supports(Claims)
        if flush_locks or extra_locks:
            names = extra_locks.split(',') if isinstance(extra_locks, str) else extra_locks or ()
            huey.flush_locks(*names)
        self.scheduler = self._create_process(self._create_scheduler(), 'Scheduler')
        self.worker_threads = [self._new_worker() for _ in range(workers)]

    def _create_worker(self):
        # Numbered on: a replacement claims under a name of its own.
        return self.worker_class(self, next(self._worker_numbers))

    def _create_scheduler(self):
        return self.scheduler_class(self)

    def _create_process(self, runner, name):
        return self.environment.create_process(runner.run, name)

    def _new_worker(self):
        worker = self._create_worker()
        return worker, self._create_process(worker, worker.name)

    def _start(self, proc):
        if self.environment.forks:
            self.huey.storage.close()  # a connection must not cross a fork
        proc.start()

    def start(self):
        """Start the scheduler and the workers; returns at once."""
        if self.environment.forks and isinstance(self.huey.storage, MemoryStorage):
            raise ConfigurationError('process workers cannot share a memory storage; '
                                     'use SQLite or Redis, or thread workers')
        logger.info('consumer started: %d %s worker(s) on %r', self.workers, self.worker_type,
                    self.huey)
        self._start(self.scheduler)
        for _, proc in self.worker_threads:
            self._start(proc)

    def stop(self, graceful=False):
        """Stop taking tasks. ``graceful``: wait for the running tasks to finish (up to
        ``shutdown_timeout`` when set), then interrupt those still running; otherwise
        interrupt them at once. An interrupted task goes back to the queue (process and
        greenlet workers); a thread cannot be interrupted: its task goes on and keeps its
        claim, acknowledged when it ends, or run again if the process exits first."""
        self.stop_flag.set()
        finished = False
        if graceful:
            logger.info('stopping once the running tasks finish')
            try:
                finished = self._join_workers()
                if not finished:
                    logger.warning('Shutdown timeout of %ss passed with tasks still running; '
                                   'interrupting them', self.shutdown_timeout)
            except KeyboardInterrupt:  # a second graceful signal
                logger.info('stopping now')
        if not finished:
            self._interrupt_workers()
        for worker, proc in self.worker_threads:
            if not self.environment.is_alive(proc):
                worker.release()  # a worker process that was killed could not hand back its own
        logger.info('consumer stopped')

    def _interrupt_workers(self):
        self.environment.interrupt_workers(self.worker_threads)

    def _join_workers(self):
        """Wait for the workers and the scheduler to end; True when all did in time."""
        timeout = self.shutdown_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        procs = [proc for _, proc in self.worker_threads] + [self.scheduler]
        for proc in procs:
            if self.environment.is_alive(proc):
                proc.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(self.environment.is_alive(proc) for proc in procs)

    def run(self):
        """Start, then block until a signal or ``stop()`` from another thread.

        The graceful signal (SIGINT, or SIGTERM with ``graceful_signal='TERM'``) waits
        for the running tasks, a second one stops at once; the other signal stops at
        once; SIGHUP stops gracefully and starts the program again.
        """
        previous = {signum: signal.getsignal(signum) for signum in self._signal_actions}
        self._set_signal_handlers()  # first: a signal during start() is acted on too
        try:
            self.start()
            health_check_ts = time.monotonic()
            while True:
                health_check_ts = self.loop(health_check_ts)
        except ConsumerStopped:
            pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self._restart:
            logger.info('restarting')
            os.execl(sys.executable, sys.executable, *sys.argv)

    def loop(self, health_check_ts=None):
        """One turn of ``run()``: act on a signal, check the workers' health when due.
        Raises ConsumerStopped once the consumer has stopped."""
        try:
            stopped = self.stop_flag.wait(self._stop_flag_timeout)
        except KeyboardInterrupt:  # a second graceful signal came before the first was seen
            self.stop(graceful=False)
            raise ConsumerStopped() from None
        if self._signum is not None:
            logger.info('received %s', signal.Signals(self._signum).name)
            self.stop(graceful=self._graceful)
            raise ConsumerStopped()
        if stopped:
            raise ConsumerStopped()
        if self._health_check and health_check_ts is not None:
            if time.monotonic() >= health_check_ts + self._health_check_interval:
                health_check_ts = time.monotonic()
                self.check_worker_health()
        return health_check_ts

    def check_worker_health(self):
        """Replace the workers that ended (a bug in a hook, a killed process, max_tasks)
        and a dead scheduler. What a dead worker claimed goes back to the queue now,
        rather than when its lease runs out. True when all were alive."""
        healthy = True
        for index, (worker, proc) in enumerate(self.worker_threads):
            if not self.environment.is_alive(proc):
                logger.warning('worker %s ended; starting a new one', worker.id)
                worker.release()
                self.worker_threads[index] = self._new_worker()
                self._start(self.worker_threads[index][1])
                healthy = False
        if not self.environment.is_alive(self.scheduler):
            logger.warning('the scheduler died; starting a new one')
            self.scheduler = self._create_process(self._create_scheduler(), 'Scheduler')
            self._start(self.scheduler)
            healthy = False
        return healthy

    def _set_signal_handlers(self):
        for signum in self._signal_actions:
            signal.signal(signum, self._handle_signal)

    def _handle_signal(self, signum, frame):
        self._signum = signum
        self._restart, self._graceful = self._signal_actions[signum]
        if self._graceful and not self._restart:
            # A second graceful signal raises KeyboardInterrupt: stop without waiting.
            signal.signal(signum, signal.default_int_handler)
