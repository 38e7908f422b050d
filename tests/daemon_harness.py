"""Harness for the daemon's integration tests: a throw-away app, a supervised
``python -m hueyd`` run, and the helpers to watch it.

The test module imports the fixtures it needs from here (``from daemon_harness
import app, make_app, start_daemon, notify_socket``).  Every daemon started
through a fixture is killed, with every process of its session, at teardown, so
a failing test never leaves workers behind.
"""
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import pytest

from support import wait_until

# Fast polling for SQLite and a short graceful stop; tests add what they need.
BASE_ARGS = ('-d', '0.01', '-m', '0.1', '--graceful-timeout', '5')

START_TIMEOUT = 20      # a start under load (gevent import, redis connect) can be slow
TASK_TIMEOUT = 15

APP_SOURCE = '''\
"""Test application for hueyd's daemon tests (written by tests/daemon_harness.py)."""
import asyncio
import os
import time

from hueyd import Huey
from hueyd.signals import SIGNAL_ERROR, SIGNAL_INTERRUPTED

URL = os.environ['HUEYD_TEST_URL']
NAME = os.environ.get('HUEYD_TEST_NAME', 'hueyd-test')
OUT = os.environ['HUEYD_TEST_OUT']
DIR = os.path.dirname(os.path.abspath(__file__))
VERSION = 1     # tests rewrite this line to check that a reload imports the code anew

huey = Huey(NAME, url=URL)


def write(*words):
    # One O_APPEND write per line: lines of concurrent processes never interleave.
    line = ' '.join(str(w) for w in words) + '\\n'
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@huey.task()
def record(tag):
    write(tag, os.getpid())


@huey.task()
def slow(tag, seconds):
    write('start', tag, os.getpid())
    time.sleep(seconds)
    write('done', tag, os.getpid())


@huey.task()
def slow_once(tag, seconds):
    """Sleeps only on its first run (a marker file remembers), so a re-run is quick."""
    marker = os.path.join(DIR, 'slept-' + tag)
    first = not os.path.exists(marker)
    open(marker, 'w').close()  # before 'start': a kill right after it must not make a slow rerun
    write('start', tag, os.getpid())
    if first:
        time.sleep(seconds)
    write('done', tag, os.getpid())


@huey.task()
def stubborn(tag):
    """Swallows every interruption (SIGTERM) and goes on."""
    write('start', tag, os.getpid())
    while True:
        try:
            time.sleep(60)
        except BaseException:
            write('swallowed', tag, os.getpid())


@huey.task()
def gated(tag):
    write('start', tag, os.getpid())


@huey.pre_execute()
def gate(task):
    """Holds gated(tag) before its code starts, until the test creates the file open-<tag>."""
    if task.name != 'gated':
        return
    tag = task.args[0]
    write('gate', tag, os.getpid())
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(DIR, 'open-' + tag)) and time.monotonic() < deadline:
        time.sleep(0.01)
    write('gate-passed', tag, os.getpid())


@huey.task()
async def arecord(tag):
    await asyncio.sleep(0)
    write(tag, os.getpid())


@huey.task()
async def aticker(tag):
    """Writes 'tick <tag> <n>' every 10 ms until cancelled: the event loop is free."""
    n = 0
    while True:
        write('tick', tag, n)
        n += 1
        await asyncio.sleep(0.01)


@huey.task(at_most_once=True)
async def aonce(tag):
    write(tag, os.getpid())


@huey.task()
async def aadd(a, b):
    await asyncio.sleep(0)
    return a + b


@huey.task()
async def aslow(tag, seconds):
    """An async task; 'cancelled' when its coroutine is cancelled (SIGTERM, its timeout)."""
    write('start', tag, os.getpid())
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        write('cancelled', tag, os.getpid())
        raise
    write('done', tag, os.getpid())


@huey.task()
async def aslow_once(tag, seconds):
    """slow_once, async."""
    marker = os.path.join(DIR, 'slept-' + tag)
    first = not os.path.exists(marker)
    open(marker, 'w').close()
    write('start', tag, os.getpid())
    if first:
        await asyncio.sleep(seconds)
    write('done', tag, os.getpid())


@huey.task()
def version(tag):
    write('version', tag, VERSION, os.getpid())


@huey.task(at_most_once=True)
def slow_at_most_once(tag, seconds):
    write('start', tag, os.getpid())
    time.sleep(seconds)
    write('done', tag, os.getpid())


@huey.task()
def unstorable(tag):
    write('ran', tag, os.getpid())
    return lambda: None  # a result pickle cannot store


@huey.signal(SIGNAL_INTERRUPTED)
def on_interrupted(signal, task, *args, **kwargs):
    write('interrupted', task.id, os.getpid())
    if os.environ.get('HUEYD_TEST_SEED_REQUEUE'):
        huey.enqueue(task)  # what huey's documentation advised: must not make a duplicate


@huey.signal(SIGNAL_ERROR)
def on_error(signal, task, exc=None):
    write('error', task.id, type(exc).__name__)
'''


# -- the application ----------------------------------------------------------

class App:
    """``app.py`` in its own directory, for the daemon and for this process.

    The test process loads the same file as module ``app`` (so task names match
    the daemon's) without putting it in ``sys.modules``: each test gets a fresh
    one.  ``enqueue`` and inspection go through ``self.huey``.
    """

    def __init__(self, directory, url, name=None, source=APP_SOURCE):
        self.dir = str(directory)
        self.url = url
        self.name = name or 'hueyd-test-' + uuid.uuid4().hex[:12]
        self.out = os.path.join(self.dir, 'out.txt')
        self.path = os.path.join(self.dir, 'app.py')
        with open(self.path, 'w') as f:
            f.write(source)
        self.env = {'HUEYD_TEST_URL': url, 'HUEYD_TEST_NAME': self.name,
                    'HUEYD_TEST_OUT': self.out}
        self.module = self._load()
        self.huey = self.module.huey
        if url.startswith(('redis', 'postgres')):
            # Nothing here dequeues, but never block on BRPOP (or LISTEN) if something does.
            self.huey.storage.blocking = False

    def _load(self):
        spec = importlib.util.spec_from_file_location('app', self.path)
        module = importlib.util.module_from_spec(spec)
        saved = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)
        try:
            spec.loader.exec_module(module)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return module

    def __getattr__(self, name):
        # app.record('x'), app.slow('a', 2)... enqueue the module's tasks.
        module = self.__dict__.get('module')
        if module is None or name.startswith('_'):
            raise AttributeError(name)
        return getattr(module, name)

    # -- reading what tasks wrote ----------------------------------------------

    def lines(self):
        """Every line the tasks wrote, split into words."""
        try:
            with open(self.out) as f:
                return [line.split() for line in f.read().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def recorded(self, tag):
        """The pids of every ``record(tag)`` run."""
        return [int(words[1]) for words in self.lines() if len(words) == 2 and words[0] == tag]

    def events(self, kind, tag=None):
        """Lines such as ``start a <pid>``: [(tag, pid)] of that kind."""
        return [(words[1], int(words[2])) for words in self.lines()
                if len(words) == 3 and words[0] == kind and (tag is None or words[1] == tag)]

    def count(self, kind, tag):
        return len(self.events(kind, tag))

    def versions(self, tag):
        """The VERSION values seen by every ``version(tag)`` run."""
        return [int(words[2]) for words in self.lines()
                if len(words) == 4 and words[0] == 'version' and words[1] == tag]

    def set_version(self, number):
        with open(self.path) as f:
            source = f.read()
        with open(self.path, 'w') as f:
            f.write(re.sub(r'^VERSION = \d+', 'VERSION = %d' % number, source, count=1,
                           flags=re.MULTILINE))

    def pending(self):
        return self.huey.pending_count()

    def close(self):
        try:
            self.huey.flush()
        finally:
            self.huey.storage.close()


# -- the daemon ---------------------------------------------------------------

def title_of(proc):
    """The process title (what setproctitle set), or None if it is gone or a zombie."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return ' '.join(proc.cmdline()).strip()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def alive(proc):
    """Running and not a zombie (PID 1 here may never reap orphans)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def _clean_environ():
    """os.environ without hueyd settings or systemd variables that could leak in."""
    return {key: value for key, value in os.environ.items()
            if not (key.startswith('HUEYD_') or key in ('NOTIFY_SOCKET', 'WATCHDOG_USEC',
                                                        'WATCHDOG_PID', 'LISTEN_FDS'))}


class Daemon:
    """One ``python -m hueyd`` run with its own session (so the whole tree can be found)."""

    _runs = 0

    def __init__(self, app, args=(), env=None, app_path='app.huey', base_args=BASE_ARGS,
                 cwd=None):
        Daemon._runs += 1
        self.app = app
        self.cwd = cwd or app.dir
        self.argv = [sys.executable, '-m', 'hueyd', *base_args, *args, app_path]
        # No .pyc: a test that rewrites app.py within the same second must not get stale code.
        self.env = {**_clean_environ(), **app.env, 'PYTHONUNBUFFERED': '1',
                    'PYTHONDONTWRITEBYTECODE': '1', **(env or {})}
        tag = 'daemon%d' % Daemon._runs
        self.stdout_path = os.path.join(app.dir, tag + '.stdout')
        self.stderr_path = os.path.join(app.dir, tag + '.stderr')
        self.logfiles = [a.split('=', 1)[1] for a in args if str(a).startswith('--logfile=')]
        for flag in ('-l', '--logfile'):
            if flag in args:
                self.logfiles.append(args[list(args).index(flag) + 1])
        self.proc = None
        self._seen = {}          # pid -> psutil.Process of every descendant ever seen
        self.started_at = None

    # -- life cycle -------------------------------------------------------------

    def start(self):
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        self.started_at = time.monotonic()
        self.master = psutil.Process(self.proc.pid)
        return self

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=15):
        """Wait for the master to exit; its exit status (negative: killed by that signal)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError('hueyd master %d still running %ss later\n%s'
                                 % (self.pid, timeout, self.describe())) from None

    def stop(self):
        """Kill the master and everything it ever started (teardown; always safe)."""
        if self.proc is None:
            return
        procs = list(self._seen.values()) + self.session_processes()
        try:
            procs += self.master.children(recursive=True)
        except psutil.Error:
            pass
        if self.running:
            self.proc.kill()
        for proc in procs:
            try:
                proc.kill()         # psutil checks the create time: never a recycled pid
            except psutil.Error:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        psutil.wait_procs([p for p in procs if alive(p)], timeout=5)

    # -- the process tree -------------------------------------------------------

    def descendants(self):
        """[(psutil.Process, title)] for every live descendant of the master."""
        try:
            procs = self.master.children(recursive=True)
        except psutil.Error:
            return []
        found = []
        for proc in procs:
            title = title_of(proc)
            if title is not None:
                self._seen.setdefault(proc.pid, proc)
                found.append((proc, title))
        return found

    children = descendants

    def title(self):
        return title_of(self.master)

    def pools(self):
        return [proc for proc, title in self.descendants() if title.startswith('hueyd: pool')]

    def pool_pids(self):
        return sorted(proc.pid for proc in self.pools())

    def schedulers(self):
        return [proc for proc, title in self.descendants()
                if title.startswith('hueyd: scheduler')]

    def scheduler(self):
        found = self.schedulers()
        return found[0] if len(found) == 1 else None

    def session_processes(self):
        """Every live process in the master's session (it is the session leader),
        orphans included, the master itself excluded."""
        found = []
        for pid in psutil.pids():
            if pid == self.pid:
                continue
            try:
                if os.getsid(pid) != self.pid:
                    continue
                proc = psutil.Process(pid)
            except (OSError, psutil.Error):
                continue
            if alive(proc):
                found.append(proc)
        return found

    def leftovers(self):
        """Processes of this daemon still alive: seen descendants and the session."""
        procs = {p.pid: p for p in self.session_processes()}
        procs.update({pid: p for pid, p in self._seen.items() if alive(p)})
        if self.running:
            procs[self.pid] = self.master
        return [p for p in procs.values() if alive(p)]

    # -- waiting ----------------------------------------------------------------

    def check_running(self):
        if self.proc.poll() is not None:
            raise AssertionError('hueyd exited with status %s\n%s'
                                 % (self.proc.returncode, self.describe()))

    def wait_until(self, predicate, timeout=TASK_TIMEOUT, message=None, need_running=True):
        """support.wait_until, failing early if the master died, with the log attached."""
        def check():
            if need_running:
                self.check_running()
            return predicate()
        try:
            return wait_until(check, timeout=timeout)
        except AssertionError as e:
            raise AssertionError('%s\n%s' % (message or e, self.describe())) from None

    def booted(self):
        """True when no child's title says it is still starting ('... booting')."""
        return not any('booting' in title.split() for _, title in self.descendants())

    def wait_ready(self, pools, timeout=START_TIMEOUT, booted=False):
        """Wait for exactly ``pools`` pool processes and one scheduler; returns the pool pids.

        ``booted=True`` also waits until no child's title says 'booting' (the
        child has installed its signal handlers); hueyd updates a pool's title
        on its heartbeat, up to a second after it is done booting.
        """
        self.wait_until(lambda: len(self.pools()) == pools and self.scheduler() is not None
                        and (not booted or self.booted()),
                        timeout, 'expected %d pools + 1 scheduler%s'
                        % (pools, ', booted' if booted else ''))
        return self.pool_pids()

    def wait_exit(self, timeout=15):
        return self.wait(timeout)

    def wait_no_leftovers(self, timeout=10):
        wait_until(lambda: not self.leftovers(), timeout=timeout,
                   message='processes survived the daemon: %s\n%s'
                   % (self._describe_procs(self.leftovers()), self.describe()))

    # -- output -----------------------------------------------------------------

    def stderr_text(self):
        with open(self.stderr_path, errors='replace') as f:
            return f.read()

    def log_text(self):
        """stderr plus every log file the daemon was told to write."""
        parts = [self.stderr_text()]
        for path in self.logfiles:
            path = os.path.join(self.cwd, path)
            for name in (path, path + '.1'):
                if os.path.exists(name):
                    with open(name, errors='replace') as f:
                        parts.append(f.read())
        return ''.join(parts)

    @staticmethod
    def _describe_procs(procs):
        return ', '.join('%d %r' % (p.pid, title_of(p)) for p in procs) or 'none'

    def describe(self):
        """The tree and the log tail, for assertion messages."""
        status = 'running' if self.running else 'exited %s' % self.proc.returncode
        tree = self._describe_procs([p for p, _ in self.descendants()])
        log = self.log_text()
        lines = self.app.lines()
        return ('--- hueyd master %d (%s) %r; children: %s\n--- task output (last 20): %s\n'
                '--- log (last 4000 chars):\n%s' % (
                    self.pid, status, self.title() if self.running else None, tree,
                    [' '.join(words) for words in lines[-20:]], log[-4000:]))


# -- sd_notify receiver -------------------------------------------------------

class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self):
        # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be too long.
        self.dir = tempfile.mkdtemp(prefix='hn-')
        self.path = os.path.join(self.dir, 'n.sock')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.received = []       # each datagram as {key: value}, in arrival order

    def poll(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            fields = {}
            for line in data.decode(errors='replace').splitlines():
                key, _, value = line.partition('=')
                fields[key] = value
            self.received.append(fields)

    def keys(self):
        """Every key sent so far, in order (a datagram's keys in their order)."""
        return [key for fields in self.poll() for key in fields]

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


# -- fixtures -----------------------------------------------------------------

def app_factory(tmp_path, request, build, prefix='app'):
    """The body of an app fixture: ``factory(storage, **options)`` builds an app in a
    directory of its own on SQLite, files, or the session's Redis, PostgreSQL, Redis
    Sentinel or Redis Cluster (conftest's kinds); every app is closed at teardown."""
    apps = []

    def factory(storage='sqlite', **options):
        directory = tmp_path / ('%s%d' % (prefix, len(apps)))
        directory.mkdir()
        if storage == 'sqlite':
            url = 'sqlite:///%s/huey.db' % directory
        elif storage == 'file':
            url = (directory / 'files').as_uri()
        elif storage == 'redis':
            url = request.getfixturevalue('redis_server').url
        elif storage == 'postgres':
            url = request.getfixturevalue('postgres_server').dsn
        elif storage == 'sentinel':
            url = request.getfixturevalue('redis_sentinels').url
        elif storage == 'cluster':
            url = request.getfixturevalue('redis_cluster').url
        else:
            raise ValueError(storage)
        apps.append(build(directory, url, **options))
        return apps[-1]

    yield factory
    for app in apps:
        try:
            app.close()
        except Exception:
            pass


@pytest.fixture
def make_app(tmp_path, request):
    """make_app('sqlite' | 'file' | 'redis' | 'postgres' | 'sentinel' | 'cluster') -> App in
    its own directory under tmp_path."""
    yield from app_factory(tmp_path, request, App)


@pytest.fixture
def app(make_app):
    return make_app('sqlite')


@pytest.fixture
def start_daemon():
    """start_daemon(app, *args, env=None, ...) -> a started Daemon, killed at teardown."""
    daemons = []

    def factory(app, *args, **kwargs):
        daemon = Daemon(app, args, **kwargs)
        daemons.append(daemon)
        return daemon.start()

    yield factory
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def stop_gracefully(daemon, timeout=15):
    """SIGINT, expect exit status 0 and no process left behind."""
    daemon.send(signal.SIGINT)
    status = daemon.wait(timeout)
    assert status == 0, 'SIGINT: exit status %s, expected 0\n%s' % (status, daemon.describe())
    daemon.wait_no_leftovers()


def write_config(path, **settings):
    """An INI file with a [hueyd] section; returns its path as a string."""
    lines = ['[hueyd]'] + ['%s = %s' % (key, value) for key, value in settings.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return str(path)
