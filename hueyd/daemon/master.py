"""The master process: a single-threaded supervisor of pool processes and one scheduler.

Its loop, like gunicorn's arbiter: sleep until a signal or a timeout, handle
the queued signal, reap dead children, kill hung ones, start missing ones,
repeat. Signal handlers only queue the signal and wake the loop.

It imports no application code (unless --preload) and opens no storage
connection: a one-shot "preflight" child imports the app first, logs its tasks
and flushes locks, so a broken app is found before pools start, and on SIGHUP
before the running children are retired. The preflight is a child like the
others: the loop goes on handling signals, reaping and pinging the watchdog
while it runs, and one killed before it finished is started again with backoff.

A child tells a broken application from a crash through its heartbeat (a flag
no exit status can forge); a pool that dies on its own while running tasks
leaves a hueyd.daemon.deaths.Death for its replacement to settle. A hung child
first gets SIGABRT, which makes it write every thread's stack to the log, then
SIGKILL.
"""
import dataclasses
import enum
import errno
import fcntl
import logging
import os
import select
import signal
import sys
import time

from hueyd.daemon import logs
from hueyd.daemon.aio import AsyncioPool
from hueyd.daemon.app import AppImportError, load_app
from hueyd.daemon.child import FAST_STOP_TIMEOUT, MASTER_SIGNALS, Child, exit_code_description
from hueyd.daemon.deaths import Death
from hueyd.daemon.heartbeat import Heartbeat, MasterState
from hueyd.daemon.notify import Notifier
from hueyd.daemon.pool import Pool, pool_count, worker_id, workers_per_pool
from hueyd.daemon.proctitle import set_title
from hueyd.daemon.scheduler import Scheduler
from hueyd.exceptions import ConfigError
from hueyd.metrics import pool_restarts, remove_multiprocess_dir

logger = logging.getLogger('hueyd.master')

TRACE_GRACE = 5.0           # after SIGABRT, a hung child gets this long to log its stacks
BOOT_FAILURE_LIMIT = 3      # consecutive children that cannot import the app
MAX_RESPAWN_DELAY = 10.0
PREFLIGHT_TIMEOUT = 120.0


class Stop(enum.Enum):
    GRACEFUL = 'graceful'   # SIGINT: running tasks finish (within --graceful-timeout)
    FAST = 'fast'           # SIGTERM: running tasks are interrupted and handed back


@dataclasses.dataclass(frozen=True)
class Slot:
    """A place the master keeps one child in: a pool, the scheduler or the preflight."""
    role: str
    index: int = 0          # a pool's, from 0

    def name(self):
        return 'pool %d' % (self.index + 1) if self.role == 'pool' else self.role


SCHEDULER = Slot('scheduler')
PREFLIGHT = Slot('preflight')


def pool_slot(index):
    return Slot('pool', index)


@dataclasses.dataclass
class ChildRecord:
    pid: int
    slot: Slot
    generation: int
    heartbeat: Heartbeat
    started: float
    retiring: float = None  # monotonic deadline of a graceful retirement
    killed: float = None    # monotonic moment SIGTERM or SIGABRT was sent, SIGKILL follows
    deaths: tuple = ()      # the Deaths handed to this pool to settle

    def name(self):
        return self.slot.name()


@dataclasses.dataclass
class PendingPreflight:
    """A configuration waiting for its preflight to pass before the master adopts it."""
    config: object
    announce: bool
    pid: int = None         # of the preflight running now
    deaths: int = 0         # preflights killed before they could tell (OOM killer, kill -9)
    start_at: float = 0.0   # monotonic moment the next one may start (backoff)
    timed_out: bool = False


class Preflight(Child):
    """Imports the app once, logs what it found, flushes locks, and exits."""

    kind = 'preflight'

    def __init__(self, config, heartbeat, master_pid, app, announce):
        super().__init__(config, heartbeat, master_pid, app)
        self.announce = announce

    def main(self):
        set_title('preflight %s' % self.config.app)
        huey = self.load()
        if huey is None:
            return self.boot_failed()
        if not huey.storage.shared:
            logger.error('%s keeps tasks in %s, which the daemon\'s processes cannot share (it '
                         'lives in one process, keeps nothing, or locks for one process only); '
                         'the daemon needs storage its processes share: use SqliteHuey, '
                         'RedisHuey, FileHuey or Huey(url="sqlite:///...", "redis://..." or '
                         '"file:///...")',
                         self.config.app, type(huey.storage).__name__)
            return self.boot_failed()
        if self.announce:
            logger.info('%r uses %s; registered tasks: %s', self.config.app,
                        type(huey.storage).__name__, ', '.join(huey.registered_tasks) or 'none')
            if huey.periodic_tasks:
                logger.info('periodic tasks: %s', ', '.join(huey.periodic_tasks))
        if self.config.flush_locks or self.config.extra_locks:
            flushed = huey.flush_locks(*self.config.extra_locks)
            logger.info('flushed locks: %s', ', '.join(sorted(flushed)) or 'none held')
        return 0


class Master:
    def __init__(self, config, load_config, environ=os.environ):
        """``load_config()`` reads the configuration again for SIGHUP (or raises ConfigError)."""
        self.config = config
        self.load_config = load_config
        self.pid = os.getpid()
        self.app = None
        self.children = {}          # pid -> ChildRecord
        self.generation = 0
        self.signals = []           # queued by handlers, handled by the loop
        self.stopping = None        # a Stop, once stopping
        self.stop_deadline = None
        self.boot_failures = 0
        self.exit_code = 0
        self.respawn_at = {}        # slot -> monotonic time before which it is not respawned
        self.boot_deaths = {}       # slot -> consecutive deaths before finishing boot
        self.deaths = {}            # slot -> Deaths its next pool must settle
        self.started = False        # the first preflight passed and children were started
        self.preflight = None       # a PendingPreflight, while a configuration awaits one
        self.notifier = Notifier.from_environ(environ)
        self.state = MasterState()  # for the scheduler's /healthz and /readyz
        self.next_health_check = 0.0
        self.next_watchdog = 0.0
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    # --- start and stop -------------------------------------------------------
    def run(self):
        """Run until stopped; returns the process exit status."""
        self.write_pidfile()
        remove_multiprocess_dir(self.pid)  # --metrics-port: left by an earlier master with this pid
        try:
            self.install_signal_handlers()
            set_title('master %s' % self.config.app)
            logger.info('hueyd master %d starting: %s', self.pid, logs.describe(self.config))
            if self.config.preload:
                try:
                    self.app = load_app(self.config.app)
                except AppImportError as exc:
                    logger.error('%s', exc)
                    self.exit_code = 1
                    return self.exit_code
            self.notifier.mainpid(self.pid)
            self.preflight = PendingPreflight(self.config, announce=True)
            self.loop()
            return self.exit_code
        finally:
            self.notifier.stopping()
            self.remove_pidfile()
            if os.getpid() == self.pid:
                remove_multiprocess_dir(self.pid)
            logger.info('hueyd master %d exiting with status %d', self.pid, self.exit_code)
            logs.flush()

    def start(self):
        """The first preflight passed: start the children and tell systemd."""
        self.started = True
        self.spawn_missing()
        self.notifier.ready(self.status_text())
        logger.info('hueyd master %d ready: %s', self.pid, self.status_text())

    def install_signal_handlers(self):
        for signum in MASTER_SIGNALS:
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum, frame):
        if signum != signal.SIGCHLD:  # SIGCHLD only needs to wake the loop
            self.signals.append(signum)
        try:
            os.write(self._wake_w, b'.')
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise

    # --- the loop -------------------------------------------------------------
    def loop(self):
        while True:
            self.sleep()
            self.publish_state()
            while self.signals:
                signum = self.signals.pop(0)
                if signum == signal.SIGHUP and signal.SIGHUP in self.signals:
                    continue  # one reload answers every SIGHUP queued meanwhile
                self.handle_signal(signum)
            self.reap()
            if self.stopping:
                if not self.children:
                    return
                self.advance_stop()
            else:
                self.retire_overdue()
                self.check_health()
                self.run_preflight()
                self.spawn_missing()
            self.kill_unresponsive()
            self.ping_watchdog()

    def sleep(self):
        timeout = 1.0 if self.stopping is None else 0.2
        try:
            ready, _, _ = select.select([self._wake_r], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except (BlockingIOError, InterruptedError):
                pass

    def publish_state(self):
        """The loop turned: tell the children, and how many pools are at work."""
        booted = sum(1 for record in self.children.values()
                     if record.slot.role == 'pool' and record.retiring is None
                     and record.generation == self.generation and record.heartbeat.booted)
        self.state.update(booted, pool_count(self.config) if self.started else 0)

    def handle_signal(self, signum):
        name = signal.Signals(signum).name
        graceful, fast = ((signal.SIGTERM, signal.SIGINT) if self.config.graceful_signal == 'term'
                          else (signal.SIGINT, signal.SIGTERM))
        if signum == graceful:
            if self.stopping:
                logger.warning('%s again: stopping fast', name)
                self.begin_stop(Stop.FAST)
            else:
                logger.info('%s: graceful stop, running tasks may take %ss to finish',
                            name, self.config.graceful_timeout)
                self.begin_stop(Stop.GRACEFUL)
        elif signum == fast:
            logger.info('%s: fast stop, running tasks go back on the queue', name)
            self.begin_stop(Stop.FAST)
        elif self.stopping:
            logger.info('%s ignored while stopping', name)
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGUSR1:
            logs.reopen()
            logger.info('%s: log files reopened', name)
            self.kill_all(signal.SIGUSR1)
        elif signum in (signal.SIGTTIN, signal.SIGTTOU):
            self.resize(+1 if signum == signal.SIGTTIN else -1)

    # --- children -------------------------------------------------------------
    def desired_slots(self):
        return [pool_slot(index) for index in range(pool_count(self.config))] + [SCHEDULER]

    def spawn_missing(self):
        if not self.started:
            return
        active = {record.slot for record in self.children.values() if record.retiring is None}
        now = time.monotonic()
        for slot in self.desired_slots():
            if slot not in active and now >= self.respawn_at.get(slot, 0):
                self.spawn(slot)

    def spawn(self, slot):
        deaths = ()
        if slot == SCHEDULER:
            heartbeat = Heartbeat()
            child = Scheduler(self.config, heartbeat, self.pid, self.app, self.state)
        else:
            heartbeat = Heartbeat(workers_per_pool(self.config))
            deaths = tuple(self.deaths.get(slot, ()))
            pool = AsyncioPool if self.config.worker_type == 'asyncio' else Pool
            child = pool(self.config, heartbeat, self.pid, slot.index, pool_count(self.config),
                         self.app, deaths)
        pid = self.fork(child)
        record = ChildRecord(pid, slot, self.generation, heartbeat, time.monotonic(), deaths=deaths)
        self.children[pid] = record
        logger.debug('started %s %d', record.name(), pid)
        return pid

    def fork(self, child):
        """Start ``child`` in a new process; returns its pid."""
        logs.flush()  # or the child would write the master's buffered lines again
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(self._wake_r)
                os.close(self._wake_w)
                child.run()  # unblocks them once its own handlers are in place; never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            record = self.children.pop(pid, None)
            if record is None:
                continue
            heartbeat = record.heartbeat
            booted, boot_failed, running = (heartbeat.booted, heartbeat.boot_failed,
                                            heartbeat.running_tasks())
            heartbeat.close()
            if record.slot == PREFLIGHT:
                self.preflight_exited(record, status, boot_failed)
            else:
                self.child_exited(record, status, booted, boot_failed, running)

    def child_exited(self, record, status, booted, boot_failed, running):
        what = record.name()
        how = exit_code_description(status)
        expected = self.stopping or record.retiring is not None or record.generation != self.generation
        # A pool that exits 0 while a task runs was ended by that task (os._exit(0)).
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and not running
        if booted:
            self.forget_settled(record)
        if expected or clean:
            logger.info('%s %d exited (%s)', what, record.pid, how)
            if clean and not expected:
                self.respawn_at.pop(record.slot, None)  # recycled itself (--max-tasks/--max-memory)
                if record.slot != SCHEDULER:
                    pool_restarts.add('recycled')
            return
        if record.slot != SCHEDULER:
            pool_restarts.add('died')
        if running:
            how += ' while running a task' if os.WIFEXITED(status) else ''
            logger.error('%s %d died (%s) while running task(s) %s; its replacement counts '
                         'their crashes (--max-deliveries %d)', what, record.pid, how,
                         ', '.join(running), self.config.max_deliveries)
            self.deaths.setdefault(record.slot, []).append(
                Death(worker_id(record.pid), tuple(running), how))
        if boot_failed:
            self.boot_failures += 1
            logger.error('%s %d could not load the application (%d in a row)',
                         what, record.pid, self.boot_failures)
            if self.boot_failures >= BOOT_FAILURE_LIMIT:
                logger.critical('children cannot load %r %d times in a row; giving up so '
                                'the service manager sees the failure', self.config.app,
                                self.boot_failures)
                self.exit_code = 1
                self.begin_stop(Stop.FAST)
                return
        elif not running:
            logger.error('%s %d died (%s); starting a new one', what, record.pid, how)
        # Dying before it finished booting, again and again, is a crash loop: back off.
        # A child killed at work (OOM killer, kill -9) is simply replaced at once.
        failures = 0 if booted else self.boot_deaths.get(record.slot, 0) + 1
        self.boot_deaths[record.slot] = failures
        if failures > 1:
            delay = min(0.1 * 2 ** (failures - 1), MAX_RESPAWN_DELAY)
            logger.warning('%s keeps dying while it starts; waiting %.1fs before the next '
                           'start', what, delay)
            self.respawn_at[record.slot] = time.monotonic() + delay

    def forget_settled(self, record):
        """A pool that booted has settled the deaths it was handed: hand them to no other."""
        if record.deaths:
            pending = self.deaths.get(record.slot, ())
            self.deaths[record.slot] = [death for death in pending if death not in record.deaths]
            record.deaths = ()

    def check_health(self):
        now = time.monotonic()
        if now < self.next_health_check:
            return
        self.next_health_check = now + self.config.health_check_interval
        for record in list(self.children.values()):
            if record.heartbeat.booted:
                self.boot_failures = 0
                self.forget_settled(record)
            if self.config.disable_health_check or record.killed is not None:
                continue
            if record.slot == PREFLIGHT:
                continue  # it beats no heartbeat: run_preflight() bounds it
            silence = record.heartbeat.silence(record.started)
            if silence > self.config.worker_timeout:
                logger.error('%s %d sent no heartbeat for %.1fs (--worker-timeout %ss); '
                             'asking it for its stacks (SIGABRT), then killing it',
                             record.name(), record.pid, silence, self.config.worker_timeout)
                self.trace_and_kill(record)

    def trace_and_kill(self, record):
        """SIGABRT: faulthandler writes every thread's stack to the log and the child dies;
        SIGKILL follows from kill_unresponsive() if it does not."""
        self.kill(record, signal.SIGABRT)
        record.killed = time.monotonic()

    def kill_unresponsive(self):
        now = time.monotonic()
        for record in list(self.children.values()):
            if record.killed is not None and now - record.killed > TRACE_GRACE \
                    and record.retiring is None and not self.stopping:
                self.kill(record, signal.SIGKILL)

    def kill(self, record, signum):
        try:
            os.kill(record.pid, signum)
        except ProcessLookupError:
            pass

    def kill_all(self, signum):
        for record in list(self.children.values()):
            self.kill(record, signum)

    def retire(self, record):
        """Ask a child to finish its work and exit; it is stopped fast if it overstays."""
        if record.retiring is None:
            record.retiring = time.monotonic() + self.config.graceful_timeout
            self.kill(record, signal.SIGINT)

    def retire_overdue(self):
        now = time.monotonic()
        for record in list(self.children.values()):
            if record.retiring is not None and record.retiring < now:
                if record.killed is None:
                    logger.warning('retiring child %d overstayed --graceful-timeout; stopping it fast',
                                   record.pid)
                    self.kill(record, signal.SIGTERM)
                    record.killed = now
                elif now - record.killed > FAST_STOP_TIMEOUT:
                    self.kill(record, signal.SIGKILL)

    # --- stopping -------------------------------------------------------------
    def begin_stop(self, how):
        self.notifier.stopping()
        self.stopping = how
        if how is Stop.GRACEFUL:
            self.stop_deadline = time.monotonic() + self.config.graceful_timeout
            self.kill_all(signal.SIGINT)
        else:
            self.stop_deadline = time.monotonic() + FAST_STOP_TIMEOUT
            self.kill_all(signal.SIGTERM)
        set_title('master %s stopping' % self.config.app)

    def advance_stop(self):
        if time.monotonic() < self.stop_deadline:
            return
        if self.stopping is Stop.GRACEFUL:
            logger.warning('tasks still running after --graceful-timeout %ss; stopping fast',
                           self.config.graceful_timeout)
            self.begin_stop(Stop.FAST)
        else:
            logger.error('children did not stop within %ss; killing them', FAST_STOP_TIMEOUT)
            self.kill_all(signal.SIGKILL)
            self.stop_deadline = time.monotonic() + FAST_STOP_TIMEOUT

    # --- reload and resize ----------------------------------------------------
    def reload(self):
        self.notifier.reloading()
        logger.info('SIGHUP: reloading the configuration')
        try:
            config = self.load_config()
        except ConfigError as exc:
            logger.error('configuration not reloaded, keeping the running one: %s', exc)
            self.notifier.ready(self.status_text())
            return
        if self.preflight is not None and self.preflight.pid is not None:
            logger.info('a newer SIGHUP: the preflight %d of the previous one is no longer '
                        'needed', self.preflight.pid)
            self.kill(self.children[self.preflight.pid], signal.SIGKILL)
        announce = not self.started  # still starting: the new configuration starts it
        self.preflight = PendingPreflight(config, announce)

    def adopt(self, config):
        """``config`` passed its preflight: run it."""
        self.config = config
        logs.configure(config)
        if not self.started:
            self.start()
            return
        self.roll(lambda record: True)
        self.notifier.ready(self.status_text())
        logger.info('reloaded: %s', self.status_text())

    def roll(self, which):
        """Start a new generation: retire the chosen children, start replacements."""
        self.generation += 1
        for record in list(self.children.values()):
            if record.retiring is None and record.slot != PREFLIGHT and which(record):
                self.retire(record)
        self.respawn_at.clear()
        self.spawn_missing()

    def resize(self, step):
        workers = max(1, self.config.workers + step)
        if workers == self.config.workers:
            logger.info('already at one worker; SIGTTOU ignored')
            return
        self.config = dataclasses.replace(self.config, workers=workers)
        logger.info('%s: now %d worker(s)', 'SIGTTIN' if step > 0 else 'SIGTTOU', workers)
        if self.config.worker_type == 'process':
            wanted = self.desired_slots()
            for record in list(self.children.values()):
                if record.retiring is None and record.slot not in wanted + [PREFLIGHT]:
                    self.retire(record)
            self.spawn_missing()
        else:
            self.roll(lambda record: record.slot != SCHEDULER)
        self.notifier.status(self.status_text())

    # --- preflight ------------------------------------------------------------
    def run_preflight(self):
        """Start the pending configuration's preflight when due; end one that takes too long."""
        pending = self.preflight
        if pending is None:
            return
        now = time.monotonic()
        if pending.pid is None:
            if now >= pending.start_at:
                heartbeat = Heartbeat()
                pending.pid = self.fork(Preflight(pending.config, heartbeat, self.pid, self.app,
                                                  pending.announce))
                self.children[pending.pid] = ChildRecord(pending.pid, PREFLIGHT, self.generation,
                                                         heartbeat, now)
            return
        record = self.children.get(pending.pid)
        if record is not None and record.killed is None and now - record.started > PREFLIGHT_TIMEOUT:
            logger.error('loading the application took over %ss; asking the preflight for '
                         'its stacks (SIGABRT), then giving up', PREFLIGHT_TIMEOUT)
            pending.timed_out = True
            self.trace_and_kill(record)

    def preflight_exited(self, record, status, boot_failed):
        pending = self.preflight
        if pending is None or pending.pid != record.pid:
            return  # superseded by a newer SIGHUP, or the daemon is stopping
        pending.pid = None
        if self.stopping:
            self.preflight = None
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            self.preflight = None
            self.adopt(pending.config)
        elif boot_failed or pending.timed_out:
            self.preflight = None
            self.preflight_failed()
        else:
            # Killed before it could tell (the OOM killer, kill -9): not the application's fault.
            pending.deaths += 1
            delay = min(0.1 * 2 ** (pending.deaths - 1), MAX_RESPAWN_DELAY)
            logger.warning('the preflight %d died (%s) before it finished loading the '
                           'application; trying again in %.1fs', record.pid,
                           exit_code_description(status), delay)
            pending.start_at = time.monotonic() + delay

    def preflight_failed(self):
        if not self.started:
            logger.error('the application could not be loaded; see the error above')
            self.exit_code = 1
            self.begin_stop(Stop.FAST)
        else:
            logger.error('the application could not be loaded with the new configuration; '
                         'keeping the running children')
            self.notifier.ready(self.status_text())

    # --- systemd and pidfile --------------------------------------------------
    def status_text(self):
        return '%d pool(s) x %d %s worker(s), scheduler%s' % (
            pool_count(self.config), workers_per_pool(self.config), self.config.worker_type,
            '' if not self.config.no_periodic else ' (no periodic tasks)')

    def ping_watchdog(self):
        interval = self.notifier.watchdog_interval()
        if interval and time.monotonic() >= self.next_watchdog:
            self.notifier.watchdog()
            self.next_watchdog = time.monotonic() + interval

    def write_pidfile(self):
        path = self.config.pidfile
        if not path:
            return
        try:
            with open(path) as f:
                other = int(f.read().strip() or 0)
        except (OSError, ValueError):
            other = 0
        if other and other != self.pid and _alive(other):
            logger.error('pidfile %s names process %d, which is running: another hueyd? '
                         'Stop it or choose another --pidfile', path, other)
            sys.exit(1)
        temporary = '%s.%d' % (path, self.pid)
        with open(temporary, 'w') as f:
            f.write('%d\n' % self.pid)
        os.replace(temporary, path)

    def remove_pidfile(self):
        path = self.config.pidfile
        if not path or os.getpid() != self.pid:
            return
        try:
            with open(path) as f:
                if int(f.read().strip()) == self.pid:
                    os.unlink(path)
        except (OSError, ValueError):
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
