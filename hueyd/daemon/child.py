"""What every process the master forks has in common: its setup after fork and its heartbeat."""
import ctypes
import logging
import os
import signal
import threading
import time

from hueyd.daemon import logs
from hueyd.daemon.app import AppImportError, load_app
from hueyd.daemon.notify import Notifier
from hueyd.daemon.proctitle import set_title

logger = logging.getLogger('hueyd.daemon')

# Exit status of a child whose application could not be imported: the master
# counts these to tell a broken deployment from a crash.
EXIT_BOOT_FAILED = 3
_PR_SET_PDEATHSIG = 1
# Signals the master handles itself; a child starts from the defaults.
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
        self.stop_event = threading.Event()

    def run(self):
        code = 1
        try:
            for signum in MASTER_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
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

    def load(self):
        """Import the application; None (after logging why) when it cannot be imported."""
        if self.app is not None:
            self.huey = self.app
            return self.huey
        try:
            self.huey = load_app(self.config.app)
        except AppImportError as exc:
            logger.error('%s', exc)
            return None
        return self.huey

    def title(self, text):
        set_title('%s %s %s' % (self.kind, self.config.app, text))

    def start_heartbeat(self, on_beat=None):
        """Beat from a thread of its own, so a long task never looks like a hang."""
        interval = max(0.05, min(1.0, self.config.worker_timeout / 4))

        def beat():
            # Beats until the process exits: a graceful stop may take a while.
            while True:
                time.sleep(interval)
                if os.getppid() != self.master_pid:
                    logger.error('master %d is gone; stopping now', self.master_pid)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                self.heartbeat.beat()
                if on_beat is not None:
                    on_beat()

        self.heartbeat.beat()
        thread = threading.Thread(target=beat, name='heartbeat', daemon=True)
        thread.start()
        return thread

    def reopen_logs(self, signum=None, frame=None):
        logs.reopen()


def exit_code_description(status):
    """'exit 3' or 'signal SIGKILL' for a waitpid status."""
    if os.WIFSIGNALED(status):
        try:
            return 'signal %s' % signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            return 'signal %d' % os.WTERMSIG(status)
    return 'exit %d' % os.WEXITSTATUS(status)

