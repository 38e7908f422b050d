"""What consumer events cost a worker on Redis: tasks/s with events on and off.

    python bench/events_cost.py                 # starts a throw-away redis-server
    python bench/events_cost.py --url redis://localhost:6379/15 --tasks 5000 --rounds 5

Each round enqueues N no-op tasks (not timed), then times the consumer's loop
``huey.execute(huey.dequeue())`` until the queue is empty, once with
``events=False`` and once with ``events=True`` (one subscriber listening in another
process, as in production), alternating so drift affects both alike. Prints the
median tasks/s of each and the difference.
"""
import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

from hueyd import RedisHuey


def start_redis():
    executable = shutil.which('redis-server') or os.path.join(os.path.dirname(sys.executable),
                                                              'redis-server')
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix='hueyd-bench-')
    process = subprocess.Popen([executable, '--port', str(port), '--bind', '127.0.0.1',
                                '--save', '', '--appendonly', 'no', '--dir', directory],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = 'redis://127.0.0.1:%d/0' % port
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit('redis-server did not start')
            time.sleep(0.05)
    return url, process, directory


def make_huey(url, events):
    huey = RedisHuey('bench-events', url=url, blocking=False, events=events)

    @huey.task()
    def noop():
        return None

    return huey, noop


def run_round(url, events, count):
    huey, noop = make_huey(url, events)
    huey.flush()
    huey.enqueue_many(noop.s() for _ in range(count))
    reader = None
    if events:
        ready, received = multiprocessing.Event(), multiprocessing.Value('i', 0)
        reader = multiprocessing.Process(target=_read_all, args=(url, 2 * count, ready, received))
        reader.start()
        ready.wait(10)
    start = time.perf_counter()
    while True:
        task = huey.dequeue()
        if task is None:
            break
        huey.execute(task)
    elapsed = time.perf_counter() - start
    if reader is not None:
        reader.join(30)
        if received.value != 2 * count:  # started + finished for every task
            raise SystemExit('the subscriber got %d events of %d' % (received.value, 2 * count))
    huey.flush()
    huey.storage.close()
    return count / elapsed


def _read_all(url, expected, ready, received):
    huey, _ = make_huey(url, True)
    listener = huey.storage.listener()  # subscribed once this returns
    ready.set()
    while received.value < expected and listener.get_event(timeout=5) is not None:
        received.value += 1
    listener.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--url', help='Redis URL (default: start a throw-away redis-server)')
    parser.add_argument('--tasks', type=int, default=5000)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    process = directory = None
    url = args.url
    if url is None:
        url, process, directory = start_redis()
    try:
        run_round(url, False, min(args.tasks, 500))  # warm up connections and caches
        off, on = [], []
        for _ in range(args.rounds):
            off.append(run_round(url, False, args.tasks))
            on.append(run_round(url, True, args.tasks))
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
            shutil.rmtree(directory, ignore_errors=True)
    off_median, on_median = statistics.median(off), statistics.median(on)
    print('tasks per round: %d, rounds: %d, Python %s, redis-py %s' % (
        args.tasks, args.rounds, sys.version.split()[0], redis.__version__))
    print('events off: %8.0f tasks/s  (rounds: %s)' % (
        off_median, ', '.join('%.0f' % r for r in off)))
    print('events on:  %8.0f tasks/s  (rounds: %s)' % (
        on_median, ', '.join('%.0f' % r for r in on)))
    print('cost: %.1f%% fewer tasks/s, %.1f us more per task' % (
        100 * (1 - on_median / off_median), 1e6 * (1 / on_median - 1 / off_median)))


if __name__ == '__main__':
    main()
