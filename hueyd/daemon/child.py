"""What every process the master forks has in common: its setup after fork and its heartbeat."""
import ctypes
import errno
import logging
import os
import select
import signal
import threading
import time

from hueyd.daemon import logs
from hueyd.daemon.app import AppImportError, load_app
from hueyd.daemon.notify import Notifier
from hueyd.daemon.proctitle import set_title

logger = logging.getLogger('hueyd.daemon')

# Exit status of a child whose application could not be imported, for people
# reading logs; the master itself goes by Heartbeat.boot_failed, which task code
# cannot set by exiting with this status.
EXIT_BOOT_FAILED = 3
# Exit status of a child that outlived its master by FAST_STOP_TIMEOUT (see start_heartbeat).
EXIT_ORPHANED = 4
FAST_STOP_TIMEOUT = 10.0  # after SIGTERM, a child gets this long to exit before SIGKILL
_PR_SET_PDEATHSIG = 1
# Signals that concern the master only: a child ignores them from its first moment.
MASTER_ONLY_SIGNALS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
# Every signal the master handles. The master blocks them across fork(), so none
# reaches a new child before it has replaced the master's handlers with its own.
MASTER_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)


def die_with_parent(parent_pid, signum=signal.SIGTERM):
    """Ask the kernel to send ``signum`` when the master dies, even by kill -9."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum))
    except (OSError, AttributeError):
        pass  # not Linux: the heartbeat thread's parent check covers it
    if os.getppid() != parent_pid:  # the master died before prctl took effect
        os.kill(os.getpid(), signum)


class Child:
    """Base of pools and the scheduler. ``run()`` is called in the forked process and never returns."""

    kind = 'child'

    def __init__(self, config, heartbeat, master_pid, app=None):
        self.config = config
        self.heartbeat = heartbeat
        self.master_pid = master_pid
        self.app = app  # already imported with --preload
        self.huey = None
        self.stopping = False
        # Wakes the main thread from sleep(); written by signal handlers, which must
        # not take locks (an Event's lock may be held by the very thread they interrupt).
        self._wake_r = self._wake_w = None
        # Wakes the heartbeat thread to reopen the log files (SIGUSR1).
        self._reopen_r = self._reopen_w = None

    def run(self):
        code = 1
        try:
            self.open_wakeups()
            for signum in MASTER_ONLY_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Log reopening needs no application: handle it before the app is imported.
            signal.signal(signal.SIGUSR1, self.on_sigusr1)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)  # until main() installs its own
            signal.pthread_sigmask(signal.SIG_UNBLOCK, MASTER_SIGNALS)
            # The master alone talks to systemd.
            Notifier.scrub_child_environ(os.environ)
            die_with_parent(self.master_pid)
            code = self.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            logger.exception('%s %d crashed', self.kind, os.getpid())
        finally:
            logs.flush()
            os._exit(code or 0)

    def main(self):
        raise NotImplementedError

    def open_wakeups(self):
        """The pipes that wake the main thread (stop) and the heartbeat thread (SIGUSR1).

        Opened in the child, not in __init__, which runs in the master: it would keep
        a copy of every child's pipes."""
        self._wake_r, self._wake_w = os.pipe()
        self._reopen_r, self._reopen_w = os.pipe()
        for fd in (self._wake_w, self._reopen_w, self._reopen_r):
            os.set_blocking(fd, False)

    def on_sigusr1(self, signum, frame):
        # Reopening here could close the log file under a write the signal
        # interrupted (the handler's lock is reentrant): the heartbeat thread does it.
        _write_wakeup(self._reopen_w)

    def request_stop(self):
        """Ask the main thread to stop; safe to call from a signal handler or any thread."""
        self.stopping = True
        _write_wakeup(self._wake_w)

    def sleep(self, timeout):
        """Sleep in the main thread until ``timeout`` passes or request_stop() is called."""
        if self.stopping:
            return
        try:
            ready, _, _ = select.select([self._wake_r], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            os.read(self._wake_r, 4096)

    def load(self):
        """Import the application; None (after logging why) when it cannot be imported."""
        if self.app is not None:
            self.huey = self.app
            return self.huey
        try:
            self.huey = load_app(self.config.app)
        except AppImportError as exc:
            logger.error('%s', exc)
            self.boot_failed()
            return None
        return self.huey

    def boot_failed(self):
        """This child cannot serve with this application: tell the master (see Heartbeat)."""
        self.heartbeat.mark_boot_failed()
        return EXIT_BOOT_FAILED

    def event(self, status, task=None, **extra):
        """Publish a consumer event; never lets a storage problem stop the caller."""
        try:
            self.huey.emit_event(status, task, **extra)
        except Exception as exc:
            logger.debug('could not publish the %s event: %s', status, exc)

    def title(self, text):
        set_title('%s %s %s' % (self.kind, self.config.app, text))

    def start_heartbeat(self, on_beat=None):
        """Beat from a thread of its own, so a long task never looks like a hang."""
        interval = max(0.05, min(1.0, self.config.worker_timeout / 4))

        def beat():
            # Beats until the process exits: a graceful stop may take a while.
            while True:
                if select.select([self._reopen_r], [], [], interval)[0]:
                    while _read_wakeups(self._reopen_r):
                        pass
                    logs.reopen()
                    logger.info('%s %d: log files reopened', self.kind, os.getpid())
                if os.getppid() != self.master_pid:
                    logger.error('master %d is gone; stopping now (or by force in %.0fs)',
                                 self.master_pid, FAST_STOP_TIMEOUT)
                    os.kill(os.getpid(), signal.SIGTERM)
                    # What the master does to a child that ignores SIGTERM (a task that
                    # swallows the interruption): nobody else would, and the orphan would
                    # live on unwatched. Nothing is logged then: a lock left held by the
                    # stuck thread could block this one.
                    time.sleep(FAST_STOP_TIMEOUT)
                    os._exit(EXIT_ORPHANED)
                self.heartbeat.beat()
                if on_beat is not None:
                    on_beat()

        self.heartbeat.beat()
        thread = threading.Thread(target=beat, name='heartbeat', daemon=True)
        thread.start()
        return thread


def _write_wakeup(fd):
    try:
        os.write(fd, b'.')
    except OSError as exc:
        if exc.errno != errno.EAGAIN:  # a full pipe wakes the reader all the same
            raise


def _read_wakeups(fd):
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b''


def exit_code_description(status):
    """'exit 3' or 'signal SIGKILL' for a waitpid status."""
    if os.WIFSIGNALED(status):
        try:
            return 'signal %s' % signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            return 'signal %d' % os.WTERMSIG(status)
    return 'exit %d' % os.WEXITSTATUS(status)

