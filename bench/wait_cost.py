"""What ``wait_replicas`` costs an enqueue: WAIT for a replica after each one, or not.

    python bench/wait_cost.py                  # starts a master and a replica on loopback
    python bench/wait_cost.py --tasks 5000 --rounds 7

Each round times N enqueues of a no-op task (``noop()``, as a caller does it) with
``wait_replicas=0`` and then ``wait_replicas=1``, alternating so drift affects both
alike, and empties the queue between. Prints the median enqueues/s and microseconds
per enqueue of each, over the rounds.
"""
import argparse
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


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def start_server(directory, *args):
    executable = shutil.which('redis-server') or os.path.join(os.path.dirname(sys.executable),
                                                              'redis-server')
    port = free_port()
    process = subprocess.Popen([executable, '--port', str(port), '--bind', '127.0.0.1',
                                '--save', '', '--appendonly', 'no', '--dir', directory, *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis('127.0.0.1', port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return port, process, client
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit('redis-server did not start')
            time.sleep(0.05)


def enqueues_per_second(url, wait_replicas, tasks):
    huey = RedisHuey('bench-wait', url=url, wait_replicas=wait_replicas)

    @huey.task()
    def noop():
        return None

    huey.flush()
    started = time.perf_counter()
    for _ in range(tasks):
        noop()
    seconds = time.perf_counter() - started
    assert huey.pending_count() == tasks
    huey.flush()
    huey.storage.close()
    return tasks / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tasks', type=int, default=3000)
    parser.add_argument('--rounds', type=int, default=5)
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix='hueyd-bench-')
    servers = []
    try:
        port, process, master = start_server(directory)
        servers.append(process)
        _, process, replica = start_server(directory, '--replicaof', '127.0.0.1', str(port))
        servers.append(process)
        while replica.info('replication')['master_link_status'] != 'up':
            time.sleep(0.05)
        url = 'redis://127.0.0.1:%d/0' % port
        rates = {0: [], 1: []}
        for _ in range(options.rounds):
            for wait in rates:
                rates[wait].append(enqueues_per_second(url, wait, options.tasks))
        print('%d enqueues per round, %d rounds, master and replica on loopback'
              % (options.tasks, options.rounds))
        for wait, found in rates.items():
            median = statistics.median(found)
            print('wait_replicas=%d: median %8.0f enqueues/s  %6.1f us each  (rounds: %s)'
                  % (wait, median, 1e6 / median, ', '.join('%.0f' % r for r in found)))
        print('WAIT costs %.1f us per enqueue (%.0f%% fewer enqueues/s)'
              % (1e6 / statistics.median(rates[1]) - 1e6 / statistics.median(rates[0]),
                 100 * (1 - statistics.median(rates[1]) / statistics.median(rates[0]))))
    finally:
        for process in servers:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main()
