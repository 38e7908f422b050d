"""A pool process: imports the application, then runs its tasks.

``-k thread`` and ``-k greenlet`` run ``workers`` threads or greenlets beside a
main thread that watches them; ``-k process`` runs its single worker in the
main thread, so SIGTERM and SIGALRM (task timeouts) can interrupt the task.

Delivery is at least once: the pool *claims* messages (they stay in storage,
recorded under this pool; hueyd.daemon.inbox shares them among the workers) and
acknowledges each only once its result or error is stored. The workers' writes
go out together (a storage write batch): after a slow task, and whenever a
worker finds nothing more claimed. The pool renews its lease from the heartbeat
thread; if the process dies, any hueyd scheduler on the same storage returns its
claims to the queue when the lease runs out. Messages that cannot run go to the
dead letters.

Signals from the master: SIGINT finishes the running tasks and exits (graceful),
SIGTERM interrupts them, hands their claims back to the queue and exits (fast).

Each worker writes the id of the task it runs into the heartbeat, so that if the
process dies the master knows which tasks killed it (hueyd.daemon.deaths); a
new pool settles the deaths it is handed before it takes work.
"""
import logging
import os
import signal
import socket
import threading
import time

from hueyd.daemon import logs
from hueyd.daemon.child import EXIT_BOOT_FAILED, Child
from hueyd.daemon.deaths import settle
from hueyd.daemon.inbox import FAST_TASK, Batch, Inbox, Message
from hueyd.events import EVENT_ERROR_DEQUEUEING, EVENT_ERROR_INTERNAL
from hueyd.exceptions import HueyException, Interrupted
from hueyd.metrics import count_tasks
from hueyd.nodes import PoolReporter
from hueyd.storage.patience import patiently
from hueyd.storage.protocols import Claimed, Claims
from hueyd.taskstats import Recorder

logger = logging.getLogger('hueyd.daemon')

MEMORY_CHECK_EVERY = 5.0  # seconds
SETTLE_PATIENCE = 10.0    # seconds a new pool retries settling deaths while the storage is away


def worker_id(pid):
    """The name under which the pool process ``pid`` claims messages in storage."""
    return '%s:%d' % (socket.gethostname(), pid)


def pool_count(config):
    """Pool processes the master runs: -k process runs one per worker, the others --processes."""
    return config.workers if config.worker_type == 'process' else config.processes


def workers_per_pool(config):
    """Workers in one pool process: -k process runs one, in the main thread."""
    return 1 if config.worker_type == 'process' else config.workers


class Pool(Child):
    kind = 'pool'
    reporter = None  # publishes this pool's state for hueyctl status, once the app is loaded
    interrupt_task = None  # -k process: SIGTERM's way into the running task (Executor.interrupter)
    stats = None     # counts its tasks into the storage's statistics, once the app is loaded

    def __init__(self, config, heartbeat, master_pid, index, count, app=None, deaths=()):
        super().__init__(config, heartbeat, master_pid, app)
        self.index = index
        self.count = count
        self.deaths = deaths  # of the pools before this one in its slot: settled at boot
        self.in_main_thread = config.worker_type == 'process'
        self.workers = workers_per_pool(config)
        self.current = {}  # worker number -> (task, monotonic start, receipt, raw message)
        self.worker_id = None  # set after fork: this process's own id
        self.claims = None  # whether the storage supports claims, known once the app loads
        self.claim_sends_writes = False  # whether its claims carry the pending writes too
        self.inbox = Inbox(self.fetch, lambda: self.stopping)
        self._delay = config.delay  # the fetcher's polling delay, with backoff
        self._outage = False
        self._next_lease_beat = 0.0
        self._lease_outage = False
        self.tasks_done = 0
        self.fast = False  # stopping, and abandoning the running tasks
        # Set by the main thread (never by a signal handler) to wake sleeping workers.
        self.workers_stop = threading.Event()
        self._lock = threading.Lock()
        self._next_memory_check = 0.0

    # --- lifecycle ------------------------------------------------------------
    def main(self):
        if self.config.worker_type == 'greenlet':
            # Before the application is imported, so its libraries cooperate too.
            from gevent import monkey
            monkey.patch_all()
        self.worker_id = worker_id(os.getpid())
        self.title('booting')
        self.start_heartbeat(on_beat=self.on_beat)
        if self.load() is None:
            return EXIT_BOOT_FAILED
        self.claims = self.huey.storage.supports(Claims)
        self.claim_sends_writes = self.claims and self.huey.storage.claim_sends_writes
        if not self.claims:
            logger.warning('%s cannot claim messages: a task running when this pool dies is '
                           'lost (at-most-once delivery)', type(self.huey.storage).__name__)
        self.huey.storage.reserve_connections(self.connections())
        self.settle_deaths()
        self.reporter = PoolReporter(self)
        logs.log_finished_tasks(self.huey)
        self.stats = Recorder(self.huey)  # hueyd.taskstats
        if self.config.metrics_port:
            count_tasks(self.huey, self.master_pid)  # Prometheus counters (hueyd.metrics)
        if self.in_main_thread:
            self.interrupt_task = self.huey.task_interrupter(Interrupted)
        signal.signal(signal.SIGINT, lambda *_: self.stop('graceful stop requested'))
        signal.signal(signal.SIGTERM, self.on_sigterm)
        self.heartbeat.mark_booted()
        logger.info('pool %d/%d ready: %d %s worker(s)', self.index + 1, self.count,
                    self.workers, self.config.worker_type)
        self.run_workers()
        self.stats.flush()
        self.reporter.close()
        return 0

    def connections(self):
        """Storage connections this pool may use at once: a worker's, the fetcher's, the heartbeat's."""
        return self.workers + 2

    def run_workers(self):
        if self.in_main_thread:
            self.run_in_main_thread()
        else:
            self.run_threads()

    def settle_deaths(self):
        """Count the crashes of the tasks that killed the pools before this one (hueyd.daemon.deaths)."""
        if not self.claims or not self.deaths:
            return
        for death in self.deaths:
            what = ('count the crash of %s (else its tasks come back after --lease-timeout, '
                    'uncounted)' % death.worker)
            try:
                self.patiently(what, settle, self.huey, death, self.config.max_deliveries,
                               patience=SETTLE_PATIENCE)
            except Exception:
                logger.exception('could not %s', what)

    def stop(self, reason):
        if not self.stopping:
            logger.info('pool %d/%d stopping: %s', self.index + 1, self.count, reason)
        self.request_stop()

    def on_sigterm(self, signum, frame):
        self.fast = True
        self.stop('fast stop requested')
        if self.in_main_thread:
            # Raises Interrupted in the task's own code only (handing the task back): the
            # pool's own steps (a write batch, a lock) finish, and the loop stops after them.
            self.interrupt_task()

    def run_in_main_thread(self):
        try:
            self.work(0)
        except Interrupted:
            pass
        self.hand_back()

    def run_threads(self):
        threads = {number: self.start_worker(number) for number in range(self.workers)}
        while not self.stopping:
            self.sleep(0.5)
            for number, thread in threads.items():
                if not thread.is_alive() and not self.stopping:
                    logger.error('worker %d died; starting a new one', number)
                    threads[number] = self.start_worker(number)
        self.workers_stop.set()
        self.inbox.wake_all()
        # Graceful: let the workers finish their tasks, unless SIGTERM arrives meanwhile.
        while not self.fast and any(thread.is_alive() for thread in threads.values()):
            for thread in threads.values():
                thread.join(0.1)
        if self.fast:
            self.huey.handing_back([task for task, *_ in list(self.current.values())])
            self.huey.notify_interrupted_tasks()
        self.hand_back()

    def start_worker(self, number):
        thread = threading.Thread(target=self.work, args=(number,),
                                  name='worker-%d' % number, daemon=True)
        thread.start()
        return thread

    def hand_back(self):
        """On the way out: return every claim this pool still holds to the queue, at once."""
        for task, started, receipt, _ in list(self.current.values()):
            if receipt is None:  # at_most_once: it stays in the dead letters
                logger.warning('%s (at_most_once) was interrupted after %.1fs; it will not run '
                               'again and is in the dead letters', task, time.monotonic() - started)
                self.tell_caller(task, HueyException(
                    '%s was interrupted by a fast stop; it is at_most_once, so it will not run '
                    'again: see the dead letters' % task))
            else:
                logger.warning('%s was interrupted after %.1fs and is back on the queue',
                               task, time.monotonic() - started)
        for number in self.current:
            self.heartbeat.running(number, None)  # handed back: not a crash
        self.current.clear()
        self.flush_writes(wait=True)  # finished tasks are acknowledged, not run again
        if self.claims:
            self.patiently('hand back claims', self.huey.storage.retire_worker, self.worker_id)

    # --- the worker loop ------------------------------------------------------
    def work(self, number):
        huey = self.huey
        huey.run_startup_hooks()
        huey.storage.begin_batch()
        try:
            self.work_loop(number)
        finally:
            self.flush_writes(wait=True)
            huey.storage.end_batch()
        if not self.fast:
            huey.run_shutdown_hooks()

    def work_loop(self, number):
        while not self.stopping:
            message = self.inbox.take()
            if message is None or self.stopping:  # a claim not started goes back with the rest
                continue
            started = time.monotonic()
            self.run_message(number, message)
            seconds = time.monotonic() - started
            self.inbox.finished(seconds)
            if seconds > FAST_TASK or self.waits_with_writes():
                self.flush_writes()

    def waits_with_writes(self):
        """Whether this worker's writes would wait unsent: its next message has to be
        claimed, and the claim will not carry them (the storage's claim does not send
        writes, or another worker's claim is already on its way)."""
        if len(self.inbox):
            return False
        return not self.claim_sends_writes or self.inbox.fetching

    def fetch(self, count):
        """Claim up to ``count`` messages for the inbox (the fetching worker calls it)."""
        huey, config = self.huey, self.config
        if not self.claim_sends_writes:
            self.flush_writes()  # the results so far go out before a wait on the queue
        try:
            claimed = self.claim(count)
        except Exception as exc:
            if not self._outage:
                logger.error('cannot read the queue (%s: %s); retrying with backoff '
                             'until the storage answers%s', type(exc).__name__, exc,
                             ' (the last results, sent with the claim, may be lost: those '
                             'tasks will run again)' if self.claim_sends_writes else '')
                self.event(EVENT_ERROR_DEQUEUEING, exception=exc)
                self._outage = True
            self._delay = self.pause(self._delay)
            return []
        if self._outage:
            logger.info('the queue can be read again')
            self._outage = False
        if not claimed:
            if not huey.storage.blocking:
                self._delay = self.pause(self._delay)
            return []
        self._delay = config.delay
        tasks = [self.decode(data) for _, data in claimed]
        revocations = claimed.revocations
        if revocations is None:
            try:
                revocations = huey.read_revocations(
                    [task for task in tasks if not isinstance(task, Exception)])
            except huey.storage.transient_errors:
                pass  # each task asks for itself, and goes back if the storage is still away
        batch = Batch(revocations)
        return [Message(receipt, data, task, batch)
                for (receipt, data), task in zip(claimed, tasks)]

    def flush_writes(self, wait=False):
        """Send the results, events and acknowledgements of the tasks run so far.

        ``wait``: until they are sent, even when another worker is sending already.
        Returns whether they were stored. When not, those tasks stay claimed and
        come back after this pool's lease: they run twice, and none is lost.
        """
        try:
            self.huey.storage.flush_batch(wait)
            return True
        except self.huey.storage.transient_errors as exc:
            logger.error('could not write the results and acknowledgements of the last tasks '
                         '(%s: %s); they will run again', type(exc).__name__, exc)
        except Exception:
            logger.exception('a bug: writing the results and acknowledgements of the last '
                             'tasks failed; they will run again')
        return False

    def claim(self, count=1):
        storage = self.huey.storage
        if self.claims:
            return storage.claim(self.worker_id, count, self.config.lease_timeout)
        data = storage.dequeue()  # a storage without claims: at-most-once delivery
        return Claimed([] if data is None else [(None, data)])

    def decode(self, data):
        """The task in a message, or the exception that says why there is none."""
        try:
            return self.huey.deserialize_task(data)
        except Exception as exc:
            return exc

    def run_message(self, number, message):
        admitted = self.admit(number, message)
        if admitted is None:
            return
        task, receipt = admitted
        try:
            self.huey.execute(task, revocations=message.batch.fresh_revocations(),
                              interrupt=Interrupted)
        except Interrupted:
            raise
        except BaseException as exc:  # a hook's sys.exit() too: the worker must go on
            if not self.execute_failed(number, task, receipt, exc):
                return
        self.finish(number, task, receipt)

    def admit(self, number, message):
        """Make ``message`` the task of worker ``number``: ``(task, receipt)``, or None when
        it is not to run (it cannot be decoded, or an at_most_once start failed)."""
        receipt, data, task = message.receipt, message.data, message.task
        if isinstance(task, Exception):
            self.bury(receipt, data, 'cannot run this message: %s: %s' % (type(task).__name__, task))
            return None
        if task.at_most_once:
            if not self.begin_at_most_once(task, receipt, data):
                return None
            receipt = None
        self.current[number] = (task, time.monotonic(), receipt, data)
        self.heartbeat.running(number, task.id)
        return task, receipt

    def execute_failed(self, number, task, receipt, exc):
        """``Huey.execute`` raised ``exc`` (the task's own errors it keeps): True when the
        task is done with all the same, False when it went back to the queue."""
        if isinstance(exc, self.huey.storage.transient_errors):
            # The storage went away while the task was being handled, perhaps before it
            # ran at all (the revocation check): never acknowledge it, hand it back.
            logger.warning('storage unavailable while handling %s (%s); it goes back on '
                           'the queue', task, exc)
            del self.current[number]
            self.heartbeat.running(number, None)
            self.release(receipt)
            return False
        logger.error('internal error while running %s', task, exc_info=exc)
        self.event(EVENT_ERROR_INTERNAL, task, exception=exc)
        return True

    def finish(self, number, task, receipt):
        """Worker ``number`` is done with ``task``: acknowledge it (in the write batch)."""
        del self.current[number]
        self.heartbeat.running(number, None)
        if receipt is None:
            self.patiently('clear the at-most-once record', self.huey.storage.remove_dead_letters,
                           ['running.' + task.id])
        self.ack(receipt)
        with self._lock:
            self.tasks_done += 1
            if self.config.max_tasks and self.tasks_done >= self.config.max_tasks:
                self.stop('recycling after %d tasks (--max-tasks)' % self.tasks_done)

    def begin_at_most_once(self, task, receipt, data):
        """Record an at_most_once task as running and acknowledge it, both stored before it
        starts: if this process dies meanwhile, the task is not run again but stays visible
        in the dead letters. False when that cannot be stored: it is handed back, not run."""
        try:
            self.huey.add_dead_letter(data, 'interrupted before it finished; not run again '
                                      'because the task is at_most_once', task,
                                      key='running.' + task.id)
        except self.huey.storage.transient_errors as exc:
            logger.error('%s (at_most_once) not started: the storage is away (%s); it goes back '
                         'on the queue', task, exc)
            self.release(receipt)
            return False
        self.ack(receipt)
        if not self.flush_writes(wait=True):
            # Perhaps acknowledged, perhaps not: it must not start, and its dead-letter
            # record stays, so it is visible whichever it was.
            logger.error('%s (at_most_once) not started: its acknowledgement could not be '
                         'stored first', task)
            self.release(receipt)
            return False
        return True

    def tell_caller(self, task, exception):
        """The task failed for good (see Huey.give_up), unless the storage is away now."""
        try:
            self.huey.give_up(task, exception)
        except Exception as exc:
            logger.error('could not store the error of %s for its caller (%s: %s)',
                         task, type(exc).__name__, exc)

    def bury(self, receipt, data, reason):
        """A message that cannot run goes to the dead letters; the worker goes on."""
        try:
            letter = self.huey.bury(data, reason)
        except self.huey.storage.transient_errors as exc:
            logger.warning('%s; the storage is unavailable to keep it as a dead letter (%s), '
                           'so it goes back on the queue', reason, exc)
            self.release(receipt)
            return
        except Exception:
            logger.exception('%s, and it could not be kept as a dead letter; its raw payload '
                             'was: %r', reason, data)
            letter = None
        self.event(EVENT_ERROR_DEQUEUEING, error=True, traceback=reason, dead_letter=letter)
        self.ack(receipt)

    def release(self, receipt):
        """Give one claim back to the queue after the writes before it."""
        self.flush_writes()
        if receipt is not None:
            self.patiently('hand a task back', self.huey.storage.release, self.worker_id,
                           [receipt])

    def ack(self, receipt):
        if receipt is None:
            return
        storage = self.huey.storage
        try:  # the usual case, a write batch that sends it later, needs no retry loop
            storage.ack(self.worker_id, (receipt,))
        except storage.transient_errors:
            self.patiently('acknowledge a task', storage.ack, self.worker_id, (receipt,))

    def patiently(self, what, operation, *args, patience=None):
        """Run a storage operation that must not be lost, retrying while the storage is away.

        Gives up (returning None) only when the pool is stopping fast, or after
        ``patience`` seconds if given: its lease then runs out and recovery takes
        over (at worst a task runs twice, never zero times).
        """
        storage = self.huey.storage
        try:
            return patiently(storage, what, operation, *args, patience=patience,
                             stopping=lambda: self.fast)
        except storage.transient_errors as exc:
            logger.error('could not %s (%s); giving up', what, exc)
            return None

    def pause(self, delay):
        if self.in_main_thread:
            self.sleep(delay)
        else:
            self.workers_stop.wait(delay)
        return min(delay * self.config.backoff, self.config.max_delay)

    def snapshot(self):
        """``{worker number: (task, monotonic start)}`` of the tasks running now: a copy,
        since the workers change ``current`` meanwhile."""
        return {number: entry[:2] for number, entry in list(self.current.items())}

    # --- upkeep, from the heartbeat thread ------------------------------------
    def on_beat(self):
        self.title(self.describe())
        if self.claims and time.monotonic() >= self._next_lease_beat:
            self._next_lease_beat = time.monotonic() + self.config.lease_timeout / 3
            try:
                self.huey.storage.beat(self.worker_id, self.config.lease_timeout)
                if self._lease_outage:
                    logger.info('lease renewed again')
                    self._lease_outage = False
            except Exception as exc:
                if not self._lease_outage:
                    logger.error('cannot renew this pool\'s lease (%s); retrying', exc)
                    self._lease_outage = True
        max_memory = self.config.max_memory
        if max_memory and not self.stopping and time.monotonic() >= self._next_memory_check:
            self._next_memory_check = time.monotonic() + MEMORY_CHECK_EVERY
            import psutil
            rss = psutil.Process().memory_info().rss
            if rss > max_memory:
                self.stop('using %d MiB, over --max-memory %d MiB; recycling'
                          % (rss >> 20, max_memory >> 20))
        if self.reporter is not None:
            self.reporter.tick()
        if self.stats is not None:
            self.stats.tick()

    def describe(self):
        prefix = '%d/%d' % (self.index + 1, self.count)
        if self.stopping:
            return prefix + ' stopping'
        running = list(self.current.values())
        if self.in_main_thread:
            if not running:
                return prefix + ' idle'
            task, started = running[0][:2]
            return '%s busy %s %.1fs' % (prefix, task.name, time.monotonic() - started)
        return '%s [%d/%d busy]' % (prefix, len(running), self.workers)

