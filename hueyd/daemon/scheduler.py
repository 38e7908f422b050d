"""The scheduler process: moves due tasks from the schedule to the queue, enqueues periodic tasks.

It looks at the earliest scheduled time every ``TICK`` seconds and sleeps until
exactly that moment when it is near, so a task due at T starts close to T
rather than up to a whole ``--scheduler-interval`` late; a full read of the
schedule still happens every interval. Periodic tasks are checked once per
minute; a marker in storage makes each minute's periodic tasks enqueue once,
whatever restarts, reloads or other nodes do.
"""
import logging
import signal
import time

from hueyd.daemon.child import EXIT_BOOT_FAILED, Child
from hueyd.times import now

logger = logging.getLogger('hueyd.daemon')

TICK = 0.05  # seconds between looks at the schedule's head
PERIODIC_MARK_TTL = 3600


class Scheduler(Child):
    kind = 'scheduler'

    def main(self):
        self.title('booting')
        self.start_heartbeat()
        if self.load() is None:
            return EXIT_BOOT_FAILED
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.request_stop())
        self.heartbeat.mark_booted()
        self.title('running')
        logger.info('scheduler ready (interval %ss, periodic tasks %s)',
                    self.config.scheduler_interval,
                    'off' if self.config.no_periodic else 'on')
        self.loop()
        return 0

    def loop(self):
        config = self.config
        next_full_read = 0.0
        last_minute = None
        outage_delay = None
        while not self.stopping:
            try:
                if time.monotonic() >= next_full_read:
                    next_full_read = time.monotonic() + config.scheduler_interval
                    self.enqueue_due()
                wait = self.wait_for_next_due()
                if wait <= 0:
                    self.enqueue_due()
                    wait = 0
                minute = now(config.utc).replace(second=0, microsecond=0)
                if not config.no_periodic and minute != last_minute:
                    self.enqueue_periodic(minute)
                    last_minute = minute
            except Exception:
                if outage_delay is None:
                    logger.exception('scheduler cannot reach the storage; retrying with backoff')
                    outage_delay = config.delay
                wait = outage_delay
                outage_delay = min(outage_delay * config.backoff * 2, config.max_delay)
            else:
                if outage_delay is not None:
                    logger.info('scheduler reaches the storage again')
                    outage_delay = None
            if wait:
                self.sleep(wait)

    def wait_for_next_due(self):
        """Seconds until the schedule's head is due, at most TICK."""
        due = self.huey.storage.next_schedule_time()
        if due is None:
            return TICK
        return min(TICK, due - time.time())

    def enqueue_due(self):
        for task in self.huey.read_schedule(now(self.huey.utc)):
            self.huey.enqueue(task)

    def enqueue_periodic(self, minute):
        mark = 'hueyd.periodic.%s' % minute.strftime('%Y%m%d%H%M')
        if not self.huey.storage.put_if_empty(mark, b'1', PERIODIC_MARK_TTL):
            return  # another scheduler (older generation, or another node) did this minute
        tasks = self.huey.read_periodic(minute)
        for task in tasks:
            self.huey.enqueue(task)
        if tasks:
            logger.info('enqueued %d periodic task(s) for %s', len(tasks), minute)
