"""Helpers of bench/run.py: the benchmark's application modules and its consumers.

The same application is written twice to a temporary directory, once importing
``hueyd`` and once ``huey``, on the same Redis server (or on SQLite files, or on a
PostgreSQL database each) under different queue names; hueyd's also on a Redis
Cluster, and with an ``async def`` task (huey refuses them). Dramatiq's and RQ's
versions of the no-op task go on that Redis server too, each in its own keys. Every
task marks its completion in a small memory-mapped file (``done.<pid>``: count,
first and last completion time) of the process that ran it, or for RQ, whose
default worker forks a process per job, of the worker that forked it; this costs a
couple of microseconds and no storage round trip, so every consumer does exactly
the same extra work; the benchmark adds the files up.
"""
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import psutil

DONE = struct.Struct('<qdd')  # completed tasks, first and last completion time (unix)

# What every application module starts with: the completion marks.
MARK = '''\
"""Written by hueyd's bench/run.py: the {lib} side of the benchmark, on {storage}."""
import mmap
import os
import struct
import threading
import time

import redis

_DONE = struct.Struct('<qdd')
_lock = threading.Lock()
_mark = {{'pid': None}}


def _completed(now):
    """Count a completion in done.<owner> (in the directory $BENCH_DONE_DIR names)."""
    with _lock:
        mark = _mark
        if mark['pid'] != os.getpid():  # first task in this process (or after a fork)
            path = os.path.join(os.environ['BENCH_DONE_DIR'], 'done.%d' % {owner})
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.ftruncate(fd, _DONE.size)  # a new file is zeros; an existing one keeps its marks
            map_ = mmap.mmap(fd, _DONE.size)
            os.close(fd)
            count, first, last = _DONE.unpack_from(map_)
            mark.update(pid=os.getpid(), map=map_, count=count,
                        first=first if count else now, last=last if count else now)
        mark['count'] += 1
        mark['last'] = max(mark['last'], now)
        _DONE.pack_into(mark['map'], 0, mark['count'], mark['first'], mark['last'])
'''

APP = MARK + '''\

from {lib} import {cls}

{prelude}huey = {cls}({args})
results = redis.Redis.from_url({redis_url!r})  # latency samples go to lists here


@huey.task()
def noop():
    _completed(time.time())


@huey.task()
def nap():
    time.sleep(0.01)  # gevent's sleep under greenlet workers (the consumers monkey-patch)
    _completed(time.time())


@huey.task()
def stamp(key, since):
    """Push how long after ``since`` (unix time) this task started to the list ``key``."""
    started = time.time()
    results.rpush(key, repr(started - since))
{extra}'''

# hueyd's applications only: huey refuses async def tasks.
ASYNC_TASK = '''
import asyncio  # noqa: E402


@huey.task()
async def anap():
    await asyncio.sleep(0.01)  # -k asyncio: the pool's event loop
    _completed(time.time())
'''

# The peers' no-op task, on the same Redis server. Dramatiq's default broker setup
# (its default middleware: age and time limits, retries, callbacks, pipelines).
DRAMATIQ_APP = MARK + '''\
import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url={redis_url!r}, namespace={namespace!r})
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name={queue!r})
def noop():
    _completed(time.time())
'''

# RQ: a plain function; its default worker forks a work horse per job, so a
# completion is counted in the file of the worker (the horse's parent).
RQ_APP = MARK + '''\
from rq import Queue

queue = Queue({queue!r}, connection=redis.Redis.from_url({redis_url!r}))


def noop():
    _completed(time.time())
'''

PEER_QUEUE = 'bench'
DRAMATIQ_NAMESPACE = 'bench-dramatiq'


# Both on SQLite in WAL mode, with the same durability: hueyd's default is
# synchronous=NORMAL (no fsync per commit), huey's leaves SQLite's FULL (fsync per
# commit) and has no option for NORMAL, so huey's side sets it the way hueyd does.
HUEY_SQLITE_NORMAL = '''from huey.storage import SqliteStorage


class NormalSqliteStorage(SqliteStorage):
    """huey's SQLite storage with hueyd's default durability: synchronous=NORMAL."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute('pragma synchronous=1')
        return conn


'''

# huey_consumer does not monkey-patch for greenlet workers; huey's documentation
# says to start it from a script that does so first. This is that script.
HUEY_GEVENT_CONSUMER = ('from gevent import monkey; monkey.patch_all()\n'
                        'import sys; sys.argv[0] = "huey_consumer"\n'
                        'from huey.bin.huey_consumer import consumer_main; consumer_main()\n')


# The floor under any queue's latency on this machine: a bare redis-py client
# in its own process, blocked in BRPOP, that reports when each pushed timestamp
# arrives. No serialization, no revocation check, no library.
BARE_CONSUMER = '''import sys, time, redis
conn = redis.Redis.from_url(sys.argv[1])
while True:
    item = conn.brpop(sys.argv[2], timeout=1)
    if item is None:
        continue
    if item[1] == b"stop":
        break
    conn.rpush(sys.argv[3], repr(time.time() - float(item[1])))
'''


def write_app(directory, lib, storage, cls, args, redis_url, prelude=''):
    """Write the module of one side, ``huey = cls(args)``; returns its name."""
    module = '%s_%s_app' % (lib, storage)
    with open(os.path.join(directory, module + '.py'), 'w') as f:
        f.write(APP.format(lib=lib, storage=storage.replace('_', ' '), cls=cls, args=args,
                           redis_url=redis_url, prelude=prelude, owner='os.getpid()',
                           extra=ASYNC_TASK if lib == 'hueyd' else ''))
    return module


def write_peer_apps(directory, redis_url):
    """Dramatiq's and RQ's application modules, on ``redis_url``; {peer: module name}."""
    modules = {}
    for peer, template, owner in (('dramatiq', DRAMATIQ_APP, 'os.getpid()'),
                                  ('rq', RQ_APP, 'os.getppid()')):
        module = 'bench_%s_app' % peer
        with open(os.path.join(directory, module + '.py'), 'w') as f:
            f.write(template.format(lib=peer, storage='redis', owner=owner, redis_url=redis_url,
                                    namespace=DRAMATIQ_NAMESPACE, queue=PEER_QUEUE))
        modules[peer] = module
    return modules


def write_apps(directory, redis_url):
    """Write the application modules; returns {(lib, storage): module name}."""
    modules = {}
    sides = [(lib, storage) for lib in ('hueyd', 'huey') for storage in ('redis', 'sqlite')]
    # hueyd publishes consumer events on Redis by default, huey (3.5) publishes none:
    # this one shows what they cost.
    sides.append(('hueyd', 'redis_noevents'))
    for lib, storage in sides:
        queue, prelude = 'bench_' + lib, ''
        if storage == 'redis':
            cls, args = 'RedisHuey', '%r, url=%r' % (queue, redis_url)
        elif storage == 'redis_noevents':
            cls, args = 'RedisHuey', '%r, url=%r, events=False' % (queue + '_noevents', redis_url)
        else:
            filename = os.path.join(directory, '%s.db' % lib)
            cls, args = 'SqliteHuey', '%r, filename=%r' % (queue, filename)
            if lib == 'huey':
                prelude = HUEY_SQLITE_NORMAL
                args += ', storage_class=NormalSqliteStorage'
        modules[lib, storage] = write_app(directory, lib, storage, cls, args, redis_url, prelude)
    return modules


def write_server_apps(directory, redis_url, postgres_dsns, cluster_url):
    """The storages section's other sides: PostgreSQL for both (``postgres_dsns``: a
    database per lib, so neither touches the other's tables) and Redis Cluster for hueyd
    (huey has no cluster storage). Returns {(lib, storage): module name}."""
    modules = {(lib, 'postgres'): write_app(directory, lib, 'postgres', 'PostgresHuey',
                                            '%r, dsn=%r' % ('bench_' + lib, dsn), redis_url)
               for lib, dsn in postgres_dsns.items()}
    modules['hueyd', 'cluster'] = write_app(directory, 'hueyd', 'cluster', 'RedisHuey',
                                            "'bench_hueyd', url=%r" % cluster_url, redis_url)
    return modules


def read_done(directory):
    """(completed, first, last) summed over every done.<pid> file in ``directory``."""
    count, first, last = 0, math.inf, 0.0
    for name in os.listdir(directory):
        if not name.startswith('done.'):
            continue
        with open(os.path.join(directory, name), 'rb') as f:
            data = f.read(DONE.size)
        if len(data) == DONE.size:
            n, f_first, f_last = DONE.unpack(data)
            if n:
                count += n
                first, last = min(first, f_first), max(last, f_last)
    return count, first, last


def script(name):
    """The path of a console script of this environment (or PATH's)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.access(path, os.X_OK) else shutil.which(name)


def consumer_command(lib, module, worker_type, workers, options=()):
    if lib == 'dramatiq':
        # Dramatiq's own worker: -p worker processes (under a main process), -t threads each.
        return [script('dramatiq'), module, '-p', '1', '-t', str(workers), *options]
    if lib == 'rq':
        # RQ's default worker (rq.Worker: a work horse forked per job); options name
        # the server (--url) and the queue. --quiet: RQ logs every job at INFO.
        return [script('rq'), 'worker', '--quiet', *options]
    if lib == 'hueyd':
        command = [sys.executable, '-m', 'hueyd']
    elif worker_type == 'greenlet':
        command = [sys.executable, '-c', HUEY_GEVENT_CONSUMER]
    else:
        command = [script('huey_consumer')]
    # -q for both: huey logs two INFO lines per task and hueyd one; the benchmark
    # measures the queue, not the logging.
    return command + [module + '.huey', '-k', worker_type, '-w', str(workers), '-q', *options]


class Consumer:
    """One consumer (hueyd's daemon, huey_consumer, Dramatiq's or RQ's worker) as a
    subprocess in its own process group."""

    running = []  # every consumer started and not yet stopped, for the emergency exit

    def __init__(self, lib, module, worker_type, workers, directory, options=()):
        self.lib, self.worker_type, self.workers = lib, worker_type, workers
        self.command = consumer_command(lib, module, worker_type, workers, options)
        self.directory = directory  # the apps' directory: the working directory
        self.done_dir = None
        self.process = None
        self.seen = {}  # pid -> psutil.Process of every member ever seen

    def start(self, done_dir):
        self.done_dir = done_dir
        os.makedirs(done_dir, exist_ok=True)
        env = dict(os.environ, BENCH_DONE_DIR=done_dir, PYTHONUNBUFFERED='1')
        self.log_path = os.path.join(done_dir, 'consumer.log')
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(self.command, cwd=self.directory, env=env,
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        Consumer.running.append(self)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def check(self):
        if not self.alive():
            raise RuntimeError('%s exited with status %s; its log ends with:\n%s'
                               % (' '.join(self.command[:2]), self.process.returncode, self.log_tail()))

    def log_tail(self, size=3000):
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode(errors='replace')
        except OSError:
            return ''

    def done(self):
        return read_done(self.done_dir)

    def wait_done(self, count, stall=60, poll=0.05):
        """Wait until ``count`` tasks have completed; returns (completed, first, last).

        Gives up when no task completes for ``stall`` seconds, or the consumer exits.
        """
        deadline, progress = time.monotonic() + stall, -1
        while True:
            done = self.done()
            if done[0] >= count:
                time.sleep(0.02)  # let a write in flight land, then read the final figures
                return self.done()
            self.check()
            if done[0] != progress:
                deadline, progress = time.monotonic() + stall, done[0]
            elif time.monotonic() > deadline:
                raise RuntimeError('%s: %d of %d tasks completed, then none for %ss; its log '
                                   'ends with:\n%s' % (self.lib, done[0], count, stall, self.log_tail()))
            time.sleep(poll)

    def tree(self):
        """[(role, psutil.Process)] for the consumer's leader and its descendants."""
        leader = psutil.Process(self.pid)
        members = [leader] + leader.children(recursive=True)
        self.seen.update((p.pid, p) for p in members)
        return [(self.role(p), p) for p in members]

    def role(self, process):
        if self.lib == 'huey':
            return 'main' if process.pid == self.pid else 'worker'
        try:
            title = ' '.join(process.cmdline())
        except psutil.Error:
            return 'gone'
        for role in ('master', 'pool', 'scheduler'):
            if title.startswith('hueyd: ' + role):
                return role
        return 'other'

    def cpu_seconds(self):
        """{pid: CPU seconds so far} of every process of the consumer: user + system, and
        that of its children that have exited and been waited for (RQ's work horses, a
        process per job; nothing of hueyd's or huey's exits during a drain)."""
        found = {}
        for _, process in self.tree():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            found[process.pid] = (times.user + times.system
                                  + times.children_user + times.children_system)
        return found

    def memory(self):
        """{'role': [(rss, pss), ...]} of every process of the consumer, in bytes."""
        found = {}
        for role, process in self.tree():
            try:
                info = process.memory_full_info()
            except psutil.Error:
                continue
            found.setdefault(role, []).append((info.rss, getattr(info, 'pss', info.rss)))
        return found

    def stop(self, timeout=60):
        """SIGINT the leader (a graceful stop) and make sure no process of it is left.

        Returns the pids that outlived their leader (killed with SIGKILL), normally [].
        """
        if self.process is None:
            return []
        if self in Consumer.running:
            Consumer.running.remove(self)
        if self.alive():
            try:
                self.tree()  # remember every descendant, to check they are gone
            except psutil.Error:
                pass
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.process.wait()
                raise RuntimeError('%s did not stop within %ss of SIGINT; killed. Log:\n%s'
                                   % (self.lib, timeout, self.log_tail()))
        # The leader is gone; its children must follow shortly (at worst after
        # finishing their SIGINT shutdown).
        deadline = time.monotonic() + 10
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.leftovers()
        if left:
            self.kill_group()
        return left

    def leftovers(self):
        """Pids of the consumer's processes still running (its group, and any seen before)."""
        processes = dict(self.seen)
        for pid in self.group_members():
            processes.setdefault(pid, None)
        left = []
        for pid, process in processes.items():
            if pid == self.pid:
                continue
            try:
                process = process or psutil.Process(pid)
                # is_running() compares creation times: a reused pid is not ours.
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.Error:
                pass
        return sorted(left)

    def group_members(self):
        members = []
        for process in psutil.process_iter(['pid']):
            try:
                if os.getpgid(process.pid) == self.pid:
                    members.append(process.pid)
            except OSError:
                pass
        return members

    def kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_all_consumers():
    """The emergency exit: SIGKILL the process group of every consumer still running."""
    for consumer in list(Consumer.running):
        consumer.kill_group()
        if consumer.process is not None:
            try:
                consumer.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        Consumer.running.remove(consumer)
