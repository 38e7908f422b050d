"""The scheduler process: moves due tasks from the schedule to the queue, enqueues periodic tasks.

It looks at the earliest scheduled time every ``TICK`` seconds and sleeps until
exactly that moment when it is near, so a task due at T starts close to T
rather than up to a whole ``--scheduler-interval`` late; a full read of the
schedule still happens every interval; due tasks move to the queue in one
storage step, so a scheduler killed half-way loses none. It also returns the
claims of dead pools to the queue. Periodic tasks are checked once per minute; a marker in storage makes each minute's periodic tasks enqueue once,
whatever restarts, reloads or other nodes do.
"""
import logging
import signal
import time

from hueyd.daemon.child import EXIT_BOOT_FAILED, Child
from hueyd.daemon.pool import pool_count
from hueyd.daemon.probes import ProbeServer
from hueyd.nodes import NodeReporter
from hueyd.storage.protocols import Claims
from hueyd.times import now

logger = logging.getLogger('hueyd.daemon')

TICK = 0.05  # seconds between looks at the schedule's head


class Scheduler(Child):
    kind = 'scheduler'
    reporter = None  # publishes the node's state for hueyctl status, once the app is loaded

    def __init__(self, config, heartbeat, master_pid, app=None, master_state=None):
        super().__init__(config, heartbeat, master_pid, app)
        self.master_state = master_state  # the master's, for /healthz and /readyz

    def main(self):
        self.title('booting')
        self.start_heartbeat(on_beat=lambda: self.reporter and self.reporter.tick())
        if self.load() is None:
            return EXIT_BOOT_FAILED
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.request_stop())
        self.heartbeat.mark_booted()
        self.title('running')
        logger.info('scheduler ready (interval %ss, periodic tasks %s)',
                    self.config.scheduler_interval,
                    'off' if self.config.no_periodic else 'on')
        self.reporter = NodeReporter(self, pool_count(self.config))
        self.reporter.tick()  # now, not at the next beat: hueyctl status shows the node at once
        probes = self.config.metrics_port and ProbeServer(
            self.huey, self.config, self.master_pid, self.master_state).start()
        self.loop()
        if probes:
            probes.close()
        self.reporter.close()
        return 0

    def loop(self):
        config = self.config
        next_full_read = next_recovery = 0.0
        recovery_interval = min(5.0, config.lease_timeout / 3)
        can_recover = self.huey.storage.supports(Claims)
        last_minute = None
        outage_delay = None
        while not self.stopping:
            try:
                if can_recover and time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + recovery_interval
                    self.recover()
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
        self.huey.enqueue_due(now(self.huey.utc))

    def recover(self):
        """Return the claims of dead pools (on this node or any other) to the queue."""
        recovered = self.huey.storage.recover()
        if recovered:
            logger.warning('returned %d task(s) claimed by pools that died to the queue', recovered)

    def enqueue_periodic(self, minute):
        # None: another scheduler (an older generation, another node) did this minute.
        tasks = self.huey.enqueue_periodic(minute)
        if tasks:
            logger.info('enqueued %d periodic task(s) for %s', len(tasks), minute)
