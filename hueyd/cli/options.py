"""The one schema of hueyd's daemon options.

Every option is an :class:`Option` in :data:`OPTIONS`.  From its ``name`` come
the ``Config`` attribute, the long flag (``worker_type`` -> ``--worker-type``),
the config-file key (``worker_type`` or ``worker-type``) and the environment
variable (``HUEYD_WORKER_TYPE``).  The argument parser, the config file, the
environment and ``hueyd.conf.example`` are all built from this list.

A ``kind`` turns the text of a value (from the command line, the file or the
environment) into a Python value, or raises ``ValueError`` whose message says
what would be valid.
"""

import importlib.util
import math
import re
from dataclasses import dataclass


# -- kinds: text -> value, ValueError(what is valid) otherwise ----------------

class Int:
    def __init__(self, low, high=None, divides=None):
        self.low, self.high, self.divides = low, high, divides
        if divides:
            allowed = [n for n in range(low, high + 1) if divides % n == 0]
            self.valid = 'must be one of: ' + ', '.join(map(str, allowed))
        elif high is None:
            self.valid = f'must be a whole number >= {low}'
        else:
            self.valid = f'must be a whole number from {low} to {high}'

    def __call__(self, text):
        try:
            n = int(text)
        except ValueError:
            raise ValueError(self.valid) from None
        if n < self.low or (self.high is not None and n > self.high) or (
                self.divides and self.divides % n):
            raise ValueError(self.valid)
        return n


class Port(Int):
    """A TCP port; ``needs`` names a module the option cannot work without."""

    def __init__(self, needs=None, hint=None):
        super().__init__(1, 65535)
        self.needs, self.hint = needs, hint

    def __call__(self, text):
        port = super().__call__(text)
        if self.needs and importlib.util.find_spec(self.needs) is None:
            raise ValueError(f'it needs the {self.needs} package, which is not installed: '
                             f'{self.hint}, or leave this option unset')
        return port


class Float:
    def __init__(self, above):
        self.above = above
        self.valid = f'must be a number greater than {above}'

    def __call__(self, text):
        try:
            x = float(text)
        except ValueError:
            raise ValueError(self.valid) from None
        if not math.isfinite(x) or x <= self.above:
            raise ValueError(self.valid)
        return x


class Bool:
    """An on/off flag: on the command line it takes no value."""
    WORDS = {'true': True, 'yes': True, 'on': True, '1': True,
             'false': False, 'no': False, 'off': False, '0': False}
    valid = 'use true/false, yes/no, on/off or 1/0'

    def __call__(self, text):
        try:
            return self.WORDS[text.strip().lower()]
        except KeyError:
            raise ValueError(self.valid) from None


class Choice:
    def __init__(self, *choices):
        self.choices = choices
        self.valid = 'choose one of: ' + ', '.join(choices)

    def __call__(self, text):
        if text.strip().lower() not in self.choices:
            raise ValueError(self.valid)
        return text.strip().lower()


class Text:
    """A free string such as a file path; blank means not set (None)."""
    valid = ''

    def __call__(self, text):
        return text.strip() or None


class ImportPath:
    valid = 'must be a dotted import path such as blog.main.huey'

    def __call__(self, text):
        if not re.fullmatch(r'[A-Za-z_]\w*(\.[A-Za-z_]\w*)+', text.strip()):
            raise ValueError(self.valid)
        return text.strip()


class Names:
    """Comma-separated names, kept as a tuple."""
    valid = ''

    def __call__(self, text):
        return tuple(part.strip() for part in text.split(',') if part.strip())


class Size:
    """A memory size in bytes.  A bare number means MiB; units are binary."""
    UNITS = {'': 1024 ** 2, 'b': 1}
    UNITS.update({p + s: 1024 ** i for i, p in enumerate('kmgt', 1) for s in ('', 'b', 'ib')})
    valid = 'must be a size such as 512 (MiB), 512M, 200MB, 1G or 1.5GB'

    def __call__(self, text):
        m = re.fullmatch(r'(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)', text.strip().lower())
        if not m or m[2] not in self.UNITS or float(m[1]) * self.UNITS[m[2]] < 1:
            raise ValueError(self.valid)
        return int(float(m[1]) * self.UNITS[m[2]])


# -- the schema ---------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    name: str               # Config attribute and file key; long flag and env var derive from it
    short: str | None       # e.g. '-w'; None for long-only options
    kind: object            # one of the kinds above
    default: object
    section: str            # heading in --help and in hueyd.conf.example
    help: str               # one line, shown by --help and in hueyd.conf.example
    metavar: str | None = None
    off: tuple = ()         # flags that set a Bool option to false, e.g. -o/--localtime
    excludes: str | None = None   # a Bool option that cannot be true at the same time
    positional: bool = False      # given as a bare argument instead of a flag
    aliases: tuple = ()           # more flags for it: huey_consumer's spellings

    @property
    def long(self):
        return '--' + self.name.replace('_', '-')

    @property
    def flags(self):
        if self.positional:
            return ()
        return tuple(f for f in (self.short, self.long) if f) + self.aliases

    @property
    def env(self):
        return 'HUEYD_' + self.name.upper()

    @property
    def is_flag(self):
        return isinstance(self.kind, Bool)


APP, LOG, WORK, POLL, SCHED, HEALTH, LOCKS, DAEMON = (
    'Application', 'Logging', 'Workers and pool processes', 'Polling the queue',
    'Scheduler and periodic tasks', 'Health checks', 'Locks', 'Daemon')
METRICS = 'Metrics'

OPTIONS = [
    Option('app', None, ImportPath(), None, APP, metavar='IMPORT_PATH', positional=True,
           help='dotted import path of the Huey instance to run, e.g. blog.main.huey'),
    Option('preload', None, Bool(), False, APP,
           help='import the application once in the master before forking the pool: saves memory '
                'and start-up time, but a SIGHUP reload can then not pick up new code'),

    Option('logfile', '-l', Text(), None, LOG, metavar='PATH',
           help='append log output to this file instead of writing it to stderr'),
    Option('verbose', '-v', Bool(), False, LOG, excludes='quiet',
           help='log everything, down to DEBUG messages'),
    Option('quiet', '-q', Bool(), False, LOG, excludes='verbose',
           help='log errors only'),
    Option('log_format', None, Choice('text', 'json'), 'text', LOG,
           help='write log records as readable text lines or as one JSON object per line'),

    Option('workers', '-w', Int(1), 1, WORK, metavar='N',
           help='number of workers: threads or greenlets in each pool process, tasks each '
                'asyncio pool runs at once, or pool processes for worker type process'),
    Option('worker_type', '-k', Choice('thread', 'process', 'greenlet', 'asyncio'), 'thread',
           WORK, help='what a worker is: a thread, a process, a greenlet (greenlets need '
                      'gevent) or a coroutine on an event loop (asyncio)'),
    Option('processes', None, Int(1), 1, WORK, metavar='N',
           help='number of pool processes for the thread, greenlet and asyncio worker types; '
                'not used for process, where each worker is a pool process'),
    Option('max_tasks', None, Int(1), None, WORK, metavar='N',
           help='replace a pool process after it has run this many tasks (default: never)'),
    Option('max_memory', None, Size(), None, WORK, metavar='SIZE',
           help='replace a pool process once it uses more memory than this; '
                'a bare number means MiB (default: no limit)'),
    Option('worker_timeout', None, Float(0), 60.0, WORK, metavar='SECONDS',
           help='kill and replace a pool process that has sent no heartbeat for this many seconds'),
    Option('graceful_timeout', None, Float(0), 30.0, WORK, metavar='SECONDS',
           aliases=('-t', '--shutdown-timeout'),
           help='on shutdown, give running tasks this many seconds to finish before they are killed'),
    Option('graceful_signal', None, Choice('int', 'term'), 'int', WORK,
           help='the signal that stops gracefully (running tasks finish); the other of '
                'SIGINT and SIGTERM stops fast'),
    Option('lease_timeout', None, Float(0), 30.0, WORK, metavar='SECONDS',
           help='a pool process that dies (kill -9, out of memory, machine gone) keeps its tasks '
                'at most this long before any hueyd node on the same storage puts them back on '
                'the queue'),
    Option('max_deliveries', None, Int(1), 3, WORK, metavar='N',
           help='a task that was running each time its pool process died (a segfault, '
                'os._exit, the OOM killer, a hang) is run at most this many times, then moved '
                'to the dead letters with an error result for its caller'),

    Option('delay', '-d', Float(0), 0.1, POLL, metavar='SECONDS',
           help='seconds to wait before polling an empty queue again; the wait then grows'),
    Option('max_delay', '-m', Float(0), 10.0, POLL, metavar='SECONDS',
           help='the longest the wait between polls of an empty queue may grow to, in seconds'),
    Option('backoff', '-b', Float(1), 1.15, POLL, metavar='FACTOR',
           help='factor by which the wait grows after each poll that finds no task'),

    Option('no_periodic', '-n', Bool(), False, SCHED,
           help='do not enqueue periodic tasks'),
    Option('scheduler_interval', '-s', Int(1, 60, divides=60), 1, SCHED, metavar='SECONDS',
           help='seconds between two runs of the scheduler, which enqueues tasks that have come due'),
    Option('utc', '-u', Bool(), True, SCHED, off=('-o', '--localtime'),
           help='interpret schedules and periodic tasks in UTC; false (-o/--localtime) means local time'),

    Option('health_check_interval', '-c', Float(0), 10.0, HEALTH, metavar='SECONDS',
           help="seconds between checks of the children's heartbeats"),
    Option('disable_health_check', '-C', Bool(), False, HEALTH,
           help='never kill a child for a missing heartbeat (children that die are still replaced)'),

    Option('flush_locks', '-f', Bool(), False, LOCKS,
           help='release all task locks at start-up, e.g. locks left behind by a crash'),
    Option('extra_locks', '-L', Names(), (), LOCKS, metavar='NAMES',
           help='further lock names, comma-separated, to release at start-up (implies flush_locks)'),

    Option('pidfile', None, Text(), None, DAEMON, metavar='PATH',
           help="write the master's process id to this file"),

    Option('metrics_port', None,
           Port('prometheus_client', "pip install 'hueyd[metrics]'"), None, METRICS,
           metavar='PORT',
           help='serve Prometheus metrics over HTTP on this port, at /metrics '
                '(needs the prometheus_client package; default: no metrics)'),
    Option('metrics_address', None, Text(), '0.0.0.0', METRICS, metavar='ADDRESS',
           help='the address the metrics port listens on; 0.0.0.0 is every IPv4 interface, '
                '127.0.0.1 this machine only'),
]

BY_NAME = {opt.name: opt for opt in OPTIONS}
