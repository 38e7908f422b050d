"""The daemon's CPU time per no-op task: what its hot path costs, steadier than tasks/s.

    python bench/cpu_per_task.py                        # thread w=1, events on and off, 5 runs
    python bench/cpu_per_task.py --tasks 20000 --runs 7 -k process -w 2
    python bench/cpu_per_task.py --info                 # at the daemon's default log level
    python bench/cpu_per_task.py --profile DIR --runs 1 # where a pool's worker spends it
    python bench/cpu_per_task.py --baseline /tmp/base   # against another copy of hueyd

Starts a throw-away redis-server (the test suite's, tests/support.py), writes
bench/run.py's application (bench/harness.py), and for each run and each side
(events on, hueyd's default on Redis, and events=False; alternating which goes
first) enqueues N no-op tasks in one call, starts ``python -m hueyd <app>.huey
-k K -w W -q`` and takes the user + system CPU time of all its processes (master,
pool, scheduler) from the first completion to the last, per task completed; the
same for redis-server. On a machine shared with other work this moves far less
than tasks/s, though contention still inflates it (caches, hyperthreads): compare
figures taken in the same runs (``--baseline``). Prints the median of the runs
with their min and max.

``--baseline DIR`` also runs, in the same runs and alternating with this
checkout, the daemon of the hueyd package in DIR (``DIR/hueyd``; for instance a
``git worktree`` of the commit before a change), so both see the same load.

``--info`` runs the daemon without ``-q``, at its default level (INFO), which logs
a line for each task it runs. ``--profile DIR`` runs each worker of the pool
under cProfile (a wrapper around ``Pool.work`` installed by this script, not by
hueyd), writes one .prof file per worker to DIR and prints the top entries. Its
clock is the wall clock (a CPU clock costs a system call per function call, which
drowns the profile): socket reads there are waits on Redis. CPU figures of a
profiled run are inflated by the profiler.
"""
import argparse
import os
import pstats
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))

import psutil  # noqa: E402

from harness import Consumer, kill_all_consumers, write_apps  # noqa: E402
from support import RedisServer  # noqa: E402  (the test suite's server harness)

SIDES = (('events on', 'redis'), ('events off', 'redis_noevents'))

# ``python -m hueyd`` with every worker of every pool run under cProfile, each dumping
# its profile to $BENCH_PROFILE_DIR when it stops (the pool's SIGINT lets it return).
PROFILED_DAEMON = '''\
import cProfile, os, sys
from hueyd.daemon import pool

work = pool.Pool.work

def profiled(self, number):
    profile = cProfile.Profile()
    profile.enable()
    try:
        return work(self, number)
    finally:
        profile.disable()
        profile.dump_stats(os.path.join(os.environ['BENCH_PROFILE_DIR'],
                                        'pool-%d-worker-%d.prof' % (os.getpid(), number)))

pool.Pool.work = profiled
sys.argv[0] = 'hueyd'
from hueyd.cli.hueyd import main
main()
'''


def drain(app, module, directory, args, run_dir, path=None):
    """One drain of ``args.tasks`` no-op tasks: (consumer us/task, redis-server us/task).
    ``path``: a directory to import the daemon's hueyd from (None: this checkout's)."""
    app.huey.flush()
    app.noop.map([()] * args.tasks)  # one pipelined storage call
    consumer = Consumer('hueyd', module, args.worker_type, args.workers, directory)
    if args.info:
        consumer.command.remove('-q')
    if args.profile:
        consumer.command[1:3] = ['-c', PROFILED_DAEMON]
        os.environ['BENCH_PROFILE_DIR'] = args.profile
    redis_server = psutil.Process(args.server.process.pid)
    saved = dict(os.environ)  # the consumer's environment is a copy of this one
    if path is not None:
        os.environ['PYTHONPATH'] = path
    try:
        consumer.start(run_dir)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        started = consumer.wait_done(1, poll=0.01)[0]
        cpu_before, redis_before = consumer.cpu_seconds(), cpu_seconds(redis_server)
        count = consumer.wait_done(args.tasks)[0]
        cpu_after, redis_after = consumer.cpu_seconds(), cpu_seconds(redis_server)
    finally:
        left = consumer.stop()
        if left:
            print('  note: processes left after SIGINT (killed): %s' % left, file=sys.stderr)
    if app.huey.pending_count() or count != args.tasks:
        raise RuntimeError('%d tasks ran of %d; %d left on the queue'
                           % (count, args.tasks, app.huey.pending_count()))
    measured = count - started
    consumer_cpu = sum(after - cpu_before.get(pid, 0.0) for pid, after in cpu_after.items())
    return 1e6 * consumer_cpu / measured, 1e6 * (redis_after - redis_before) / measured


def cpu_seconds(process):
    times = process.cpu_times()
    return times.user + times.system


def summary(values):
    return '%6.1f us (min %.1f, max %.1f)' % (statistics.median(values), min(values), max(values))


def print_profile(directory, limit):
    files = sorted(os.path.join(directory, name) for name in os.listdir(directory)
                   if name.endswith('.prof'))
    if not files:
        print('no profile was written to %s' % directory)
        return
    stats = pstats.Stats(*files)
    stats.sort_stats('tottime').print_stats(limit)
    stats.sort_stats('cumulative').print_stats(limit)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tasks', type=int, default=20000)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('-k', dest='worker_type', default='thread')
    parser.add_argument('-w', dest='workers', type=int, default=1)
    parser.add_argument('--info', action='store_true',
                        help='run the daemon at its default log level (INFO), not -q')
    parser.add_argument('--only', choices=[label for label, _ in SIDES],
                        help='one side only (events on or events off)')
    parser.add_argument('--profile', metavar='DIR',
                        help='cProfile each pool worker into DIR and print the top entries')
    parser.add_argument('--top', type=int, default=30, help='profile entries to print')
    parser.add_argument('--baseline', metavar='DIR',
                        help='also run the hueyd package in DIR/hueyd, alternating with this one')
    args = parser.parse_args()
    versions = [('', None)]
    if args.baseline and args.profile:
        parser.error('--profile profiles one hueyd: run it without --baseline')
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        if not os.path.isfile(os.path.join(args.baseline, 'hueyd', '__init__.py')):
            parser.error('no hueyd package in %s' % args.baseline)
        versions.append(('baseline ', args.baseline))
    if args.profile:
        args.profile = os.path.abspath(args.profile)
        os.makedirs(args.profile, exist_ok=True)
    sides = [side for side in SIDES if args.only in (None, side[0])]

    server = args.server = RedisServer().start()
    directory = tempfile.mkdtemp(prefix='hueyd-cpu-')
    modules = write_apps(directory, server.url)
    sys.path.insert(0, directory)
    apps = {storage: __import__(modules['hueyd', storage]) for _, storage in sides}
    drains = [(version + label, storage, path) for label, storage in sides
              for version, path in versions]
    results = {label: ([], []) for label, _, _ in drains}
    try:
        for run in range(args.runs):
            order = drains if run % 2 == 0 else drains[::-1]
            for i, (label, storage, path) in enumerate(order):
                run_dir = os.path.join(directory, 'run-%d-%d' % (run, i))
                consumer_us, redis_us = drain(apps[storage], modules['hueyd', storage],
                                              directory, args, run_dir, path)
                results[label][0].append(consumer_us)
                results[label][1].append(redis_us)
                print('run %d/%d %-19s consumer %6.1f us/task, redis-server %5.1f us/task'
                      % (run + 1, args.runs, label, consumer_us, redis_us), file=sys.stderr)
    finally:
        kill_all_consumers()
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
    print('-k %s -w %d, %d no-op tasks, %d runs%s; CPU per task (user+sys), median:'
          % (args.worker_type, args.workers, args.tasks, args.runs,
             ', log level INFO' if args.info else ', -q'))
    for label, (consumer, redis_server) in results.items():
        print('  %-19s consumer %s   redis-server %s' % (label, summary(consumer),
                                                         summary(redis_server)))
    if args.profile:
        print_profile(args.profile, args.top)


if __name__ == '__main__':
    main()
