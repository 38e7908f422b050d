"""A pool process: imports the application, then runs its tasks.

``-k thread`` and ``-k greenlet`` run ``workers`` threads or greenlets beside a
main thread that watches them; ``-k process`` runs its single worker in the
main thread, so SIGTERM and SIGALRM (task timeouts) can interrupt the task.

Signals from the master: SIGINT finishes the running tasks and exits (graceful),
SIGTERM interrupts them, puts them back on the queue and exits (fast).
"""
import logging
import signal
import threading
import time

from hueyd.daemon.child import EXIT_BOOT_FAILED, Child

logger = logging.getLogger('hueyd.daemon')

MEMORY_CHECK_EVERY = 5.0  # seconds


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM: the running task must stop now.

    A KeyboardInterrupt, so ``Huey.execute`` reports it as SIGNAL_INTERRUPTED.
    """


class Pool(Child):
    kind = 'pool'

    def __init__(self, config, heartbeat, master_pid, index, count, app=None):
        super().__init__(config, heartbeat, master_pid, app)
        self.index = index
        self.count = count
        self.in_main_thread = config.worker_type == 'process'
        self.workers = 1 if self.in_main_thread else config.workers
        self.current = {}  # worker number -> (task, monotonic start)
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
        self.title('booting')
        self.start_heartbeat(on_beat=self.on_beat)
        if self.load() is None:
            return EXIT_BOOT_FAILED
        self.size_connection_pool()
        signal.signal(signal.SIGINT, lambda *_: self.stop('graceful stop requested'))
        signal.signal(signal.SIGTERM, self.on_sigterm)
        self.heartbeat.mark_booted()
        logger.info('pool %d/%d ready: %d %s worker(s)', self.index + 1, self.count,
                    self.workers, self.config.worker_type)
        if self.in_main_thread:
            self.run_in_main_thread()
        else:
            self.run_threads()
        return 0

    def stop(self, reason):
        if not self.stopping:
            logger.info('pool %d/%d stopping: %s', self.index + 1, self.count, reason)
        self.request_stop()

    def on_sigterm(self, signum, frame):
        self.fast = True
        self.stop('fast stop requested')
        if self.in_main_thread and self.current:
            raise Interrupted()

    def run_in_main_thread(self):
        try:
            self.work(0)
        except Interrupted:
            pass
        if self.fast:
            self.requeue_running()

    def run_threads(self):
        threads = {number: self.start_worker(number) for number in range(self.workers)}
        while not self.stopping:
            self.sleep(0.5)
            for number, thread in threads.items():
                if not thread.is_alive() and not self.stopping:
                    logger.error('worker %d died; starting a new one', number)
                    threads[number] = self.start_worker(number)
        self.workers_stop.set()
        # Graceful: let the workers finish their tasks, unless SIGTERM arrives meanwhile.
        while not self.fast and any(thread.is_alive() for thread in threads.values()):
            for thread in threads.values():
                thread.join(0.1)
        if self.fast:
            self.huey.notify_interrupted_tasks()
            self.requeue_running()

    def start_worker(self, number):
        thread = threading.Thread(target=self.work, args=(number,),
                                  name='worker-%d' % number, daemon=True)
        thread.start()
        return thread

    # --- the worker loop ------------------------------------------------------
    def work(self, number):
        huey, config = self.huey, self.config
        huey.run_startup_hooks()
        delay, outage = config.delay, False
        while not self.stopping:
            try:
                data = huey.storage.dequeue()
            except Exception:
                if not outage:
                    logger.exception('cannot read the queue; retrying with backoff '
                                     'until the storage answers')
                    outage = True
                delay = self.pause(delay)
                continue
            if outage:
                logger.info('the queue can be read again')
                outage = False
            if data is None:
                if not huey.storage.blocking:
                    delay = self.pause(delay)
                continue
            delay = config.delay
            if self.fast:  # dequeued while stopping fast: hand it back untouched
                huey.storage.enqueue(data)
                break
            self.run_message(number, data)
        if not self.fast:
            huey.run_shutdown_hooks()

    def run_message(self, number, data):
        huey = self.huey
        try:
            task = huey.deserialize_task(data)
        except Exception as exc:
            logger.error('cannot run a message from the queue (%s: %s); raw payload: %r',
                         type(exc).__name__, exc, data[:300])
            return
        self.current[number] = (task, time.monotonic())
        try:
            huey.execute(task)
        except Interrupted:
            raise
        except Exception:
            logger.exception('internal error while running %s', task)
        del self.current[number]
        with self._lock:
            self.tasks_done += 1
            if self.config.max_tasks and self.tasks_done >= self.config.max_tasks:
                self.stop('recycling after %d tasks (--max-tasks)' % self.tasks_done)

    def pause(self, delay):
        if self.in_main_thread:
            self.sleep(delay)
        else:
            self.workers_stop.wait(delay)
        return min(delay * self.config.backoff, self.config.max_delay)

    def requeue_running(self):
        for number, (task, started) in list(self.current.items()):
            try:
                self.huey.enqueue(task)
                logger.warning('%s was interrupted after %.1fs and is back on the queue',
                               task, time.monotonic() - started)
            except Exception:
                logger.exception('could not put the interrupted %s back on the queue', task)
        self.current.clear()

    # --- upkeep, from the heartbeat thread ------------------------------------
    def on_beat(self):
        self.title(self.describe())
        max_memory = self.config.max_memory
        if max_memory and not self.stopping and time.monotonic() >= self._next_memory_check:
            self._next_memory_check = time.monotonic() + MEMORY_CHECK_EVERY
            import psutil
            rss = psutil.Process().memory_info().rss
            if rss > max_memory:
                self.stop('using %d MiB, over --max-memory %d MiB; recycling'
                          % (rss >> 20, max_memory >> 20))

    def describe(self):
        prefix = '%d/%d' % (self.index + 1, self.count)
        if self.stopping:
            return prefix + ' stopping'
        running = list(self.current.values())
        if self.in_main_thread:
            if not running:
                return prefix + ' idle'
            task, started = running[0]
            return '%s busy %s %.1fs' % (prefix, task.name, time.monotonic() - started)
        return '%s [%d/%d busy]' % (prefix, len(running), self.workers)

    def size_connection_pool(self):
        """A connection per worker (plus spares) so greenlets never wait for one."""
        pool = getattr(self.huey.storage, 'pool', None)
        wanted = self.workers + 2
        if pool is not None and getattr(pool, 'max_connections', wanted) < wanted:
            pool.max_connections = wanted
