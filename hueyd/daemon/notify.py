"""sd_notify(3) protocol, standard library only.

systemd hands a Type=notify service the address of a datagram socket in
``$NOTIFY_SOCKET``; the service reports state changes as ``KEY=value`` lines.
Without that variable (foreground run, supervisord) every method is a no-op.

Environment policy: :meth:`Notifier.from_environ` only *reads* the variables
and never modifies the mapping, so the master keeps them and can re-exec
itself on an upgrade.  Processes that must not talk to systemd (forked
workers, the scheduler, and above all whatever subprocesses tasks spawn) are
stripped with :meth:`Notifier.scrub_child_environ`: the daemon calls
``Notifier.scrub_child_environ(os.environ)`` in every child right after
fork().  (With ``NotifyAccess=main`` systemd would ignore their messages
anyway, but a leaked ``WATCHDOG_USEC`` can make a grandchild believe it is
supervised.)
"""

import logging
import os
import socket
import time

logger = logging.getLogger(__name__)

#: Variables systemd sets for the notify/watchdog protocol.
NOTIFY_ENV_VARS = ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID')

# systemd's receive buffer is large, but if it ever fills up the daemon's main
# loop must not hang on a status update: wait this long, then drop it.
SEND_TIMEOUT = 1.0


class Notifier:
    """Sends sd_notify datagrams.  Every method returns True if a datagram was
    sent and False otherwise; none of them ever raises."""

    def __init__(self, address=None, watchdog_usec=None, watchdog_pid=None):
        self.address = self._parse_address(address)
        self.watchdog_usec = watchdog_usec
        self.watchdog_pid = watchdog_pid
        self._sock = None

    @classmethod
    def from_environ(cls, environ=os.environ):
        return cls(environ.get('NOTIFY_SOCKET'), environ.get('WATCHDOG_USEC'),
                   environ.get('WATCHDOG_PID'))

    @staticmethod
    def scrub_child_environ(environ):
        """Remove the notify/watchdog variables from *environ* in place (works
        on ``os.environ`` too, so later subprocesses don't inherit them) and
        return it."""
        for name in NOTIFY_ENV_VARS:
            environ.pop(name, None)
        return environ

    @staticmethod
    def _parse_address(address):
        if not address:
            return None
        if address.startswith('@'):  # Linux abstract namespace.
            return '\0' + address[1:]
        if address.startswith('/'):
            return address
        # e.g. systemd >= 254 "vsock:..." addresses, unused for a local daemon.
        logger.debug('unsupported NOTIFY_SOCKET %r, notifications disabled', address)
        return None

    @property
    def enabled(self):
        return self.address is not None

    # -- transport ---------------------------------------------------------

    def send_raw(self, message):
        if self.address is None:
            return False
        try:
            if self._sock is None:
                # Python sockets are close-on-exec, so exec'd children never
                # inherit this descriptor.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.settimeout(SEND_TIMEOUT)
                self._sock = sock
            self._sock.sendto(message.encode('utf-8'), self.address)
            return True
        except OSError as exc:
            # systemd gone, socket removed, buffer full...: never our problem.
            logger.debug('sd_notify %r failed: %s', message, exc)
            return False

    def send(self, **fields):
        """Send ``KEY=value`` lines in one datagram, e.g. ``send(EXTEND_TIMEOUT_USEC=10**7)``."""
        if not fields or self.address is None:
            return False
        # A newline inside a value would start a bogus new assignment.
        return self.send_raw('\n'.join(
            f'{key}={str(value).replace(chr(10), " ")}' for key, value in fields.items()))

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- protocol ----------------------------------------------------------

    def ready(self, status=None):
        """Startup (or a reload) finished."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=status)

    def reloading(self):
        """A reload started; send :meth:`ready` when done.  MONOTONIC_USEC is
        required by Type=notify-reload (systemd >= 253) and ignored otherwise."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self):
        return self.send(STOPPING=1)

    def status(self, text):
        return self.send(STATUS=text)

    def watchdog(self):
        return self.send(WATCHDOG=1)

    def mainpid(self, pid):
        return self.send(MAINPID=int(pid))

    def watchdog_interval(self):
        """Seconds between :meth:`watchdog` pings (half of WatchdogSec), or
        None when the watchdog is off or meant for another process."""
        try:
            usec = int(self.watchdog_usec)
        except (TypeError, ValueError):
            return None
        if usec <= 0:
            return None
        if self.watchdog_pid:
            try:
                if int(self.watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 2 / 1_000_000
