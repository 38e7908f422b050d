"""What one refresh of each dashboard page costs Redis, with 10 nodes and 10,000 queued tasks.

    python bench/dashboard_cost.py
    python bench/dashboard_cost.py --nodes 20 --queued 100000 --dead-letters 1000 --runs 20

Starts a throw-away redis-server (tests/support.py) and fills it through hueyd's own
code: ``--queued`` tasks enqueued, 100 scheduled, ``--results`` results stored,
``--dead-letters`` dead letters, 24 hours of task statistics for ``--stat-tasks`` task
names (one write per minute, as a pool's heartbeat writes them), and the records of
``--nodes`` nodes of ``--pools`` pools each, published by hueyd.nodes' NodeReporter and
PoolReporter for stand-in pools of 8 workers, half of them busy. Then it serves the
dashboard (``create_app``) with uvicorn from this process, and requests the JSON each
page's script polls, as the script does. Per page:

- round trips: requests the dashboard's Redis connections write and then wait for
  (redis-py's ``send_packed_command``): a command is one, a pipeline is one, however
  many commands it holds;
- commands: as Redis counts them (INFO commandstats before and after): a script is its
  EVALSHA and every command it calls;
- bytes read: what Redis sent (INFO's total_net_output_bytes before and after, less the
  first INFO's own reply);
- ms: the median time of the HTTP request, over ``--runs`` requests.

Nothing else talks to this redis-server meanwhile, so the counts are exact. The first
request of each page (which opens connections, loads scripts and subscribes the
dashboard to the events) is not counted.
"""
import argparse
import logging
import os
import socket
import statistics
import sys
import threading
import time
import types

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))

from dashboard_support import ThreadServer, request  # noqa: E402
from support import RedisServer  # noqa: E402

from hueyd import RedisHuey, nodes, taskstats  # noqa: E402
from hueyd.dashboard import create_app  # noqa: E402
from hueyd.signals import SIGNAL_COMPLETE  # noqa: E402

WORKERS = 8   # per stand-in pool
PAGES = [     # page, its refresh interval (page's script), the JSON it polls
    ('overview', '2 s', 'api/status'),
    ('statistics', '10 s', 'api/stats'),
    ('queue and schedule', '2 s', 'api/messages'),
    ('dead letters', '2 s', 'api/dead-letters'),
    ('task', '2 s', 'api/task/{task_id}'),
    ('events', '1 s', 'api/events'),
]


class CountingConnection(redis.Connection):
    """Counts the requests written to Redis: one per command, one per pipeline."""
    lock = threading.Lock()
    writes = 0

    def send_packed_command(self, command, check_health=True):
        with self.lock:
            CountingConnection.writes += 1
        return super().send_packed_command(command, check_health)


class RawInfo:
    """INFO over a plain socket, so the bytes of its own reply are known exactly."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.file = self.sock.makefile('rb')

    def read(self, section):
        self.sock.sendall(b'*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n' % (len(section), section.encode()))
        header = self.file.readline()
        body = self.file.read(int(header[1:]) + 2)
        fields = dict(line.split(':', 1) for line in body.decode().splitlines() if ':' in line)
        return fields, len(header) + len(body)


def commands(fields):
    """``{command: calls}`` of INFO commandstats, INFO itself left out."""
    return {name[len('cmdstat_'):]: int(value.split(',')[0].split('=')[1])
            for name, value in fields.items() if name != 'cmdstat_info'}


class StandInPool:
    """The attributes of hueyd.daemon.pool.Pool that PoolReporter reads."""

    def __init__(self, huey, master_pid, index, count, task):
        self.huey, self.master_pid, self.index, self.count = huey, master_pid, index, count
        self.worker_id = 'bench-node-%d:%d' % (master_pid, index)
        self.workers = WORKERS
        self.config = types.SimpleNamespace(worker_type='thread')
        self.stopping = False
        self.tasks_done = 1000 * index
        started = time.monotonic() - 3
        self.running = {number: (task, started) for number in range(0, WORKERS, 2)}

    def snapshot(self):
        return dict(self.running)


def publish_nodes(huey, count, pools, task):
    config = types.SimpleNamespace(app='bench.huey', worker_type='thread', workers=WORKERS,
                                   no_periodic=False, metrics_port=None)
    for number in range(count):
        master_pid = 100000 + number
        scheduler = types.SimpleNamespace(huey=huey, master_pid=master_pid, config=config)
        reporters = [nodes.NodeReporter(scheduler, pools)]
        reporters += [nodes.PoolReporter(StandInPool(huey, master_pid, index, pools, task))
                      for index in range(1, pools + 1)]
        for reporter in reporters:
            reporter.tick()


def write_statistics(huey, tasks):
    now = taskstats.minute_of()
    for task in range(tasks):
        figures = {}
        for minute in range(now - taskstats.DAY + 1, now + 1):
            counts = taskstats.Counts()
            for duration in (0.004, 0.02, 0.3):
                counts.add(SIGNAL_COMPLETE, duration)
            figures[(minute, 'task_%d' % task)] = counts.fields()
        huey.storage.add_stats(figures)


def fill(huey, args):
    @huey.task()
    def work(n):
        return n

    first = work(0)
    for n in range(1, args.queued):
        work(n)
    for n in range(100):
        work.schedule((n,), delay=3600)
    for n in range(args.results):
        huey.put_result('result-%d' % n, n)
    for n in range(args.dead_letters):
        huey.add_dead_letter(huey.serialize_task(work.s(n)), 'bench %d' % n)
    write_statistics(huey, args.stat_tasks)
    publish_nodes(huey, args.nodes, args.pools, work.s(0))
    return first.id


def measure(server, info, path, runs):
    request(server.url + '/' + path)  # connections, scripts, the event subscription
    sent_before, own = info.read('stats')
    counted_before, reply = info.read('commandstats')
    own += reply
    writes = CountingConnection.writes
    status, _, body = request(server.url + '/' + path)
    assert status == 200, (path, status, body[:200])
    round_trips = CountingConnection.writes - writes
    counted, reply = info.read('commandstats')
    own += reply
    sent_after = info.read('stats')[0]
    before = commands(counted_before)
    sent_commands = {name: calls - before.get(name, 0) for name, calls in commands(counted).items()
                     if calls > before.get(name, 0)}
    # Less the replies of the INFOs sent between the two readings of the byte counter.
    read = (int(sent_after['total_net_output_bytes'])
            - int(sent_before['total_net_output_bytes']) - own)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        request(server.url + '/' + path)
        times.append((time.perf_counter() - start) * 1000)
    return round_trips, sent_commands, read, len(body), statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--nodes', type=int, default=10)
    parser.add_argument('--pools', type=int, default=4, help='pools per node')
    parser.add_argument('--queued', type=int, default=10000)
    parser.add_argument('--results', type=int, default=1000)
    parser.add_argument('--dead-letters', type=int, default=100)
    parser.add_argument('--stat-tasks', type=int, default=10,
                        help='task names with statistics in every minute of the last 24 h')
    parser.add_argument('--runs', type=int, default=10, help='requests timed per page')
    parser.add_argument('--commands', action='store_true', help='list the commands of each page')
    args = parser.parse_args()

    logging.getLogger('hueyd').setLevel(logging.CRITICAL)  # not an error per dead letter added
    # Kept an hour, not STATE_TTL's 5 s: nothing renews the stand-ins' records.
    nodes.STATE_TTL = 3600
    with RedisServer() as server:
        pool = redis.ConnectionPool(connection_class=CountingConnection, host='127.0.0.1',
                                    port=server.port)
        huey = RedisHuey('bench-dashboard', connection_pool=pool)
        task_id = fill(huey, args)
        info = RawInfo(server.socket_path)
        print('%d nodes of %d pools (%d workers each), %d queued, 100 scheduled, %d results, '
              '%d dead letters, 24 h of statistics for %d tasks'
              % (args.nodes, args.pools, WORKERS, args.queued, args.results,
                 args.dead_letters, args.stat_tasks))
        rows = [('page', 'refresh', 'round trips', 'commands', 'bytes read', 'JSON bytes', 'ms')]
        with ThreadServer(create_app(huey, 'bench.huey')) as web:
            for page, refresh, path in PAGES:
                trips, sent, read, size, ms = measure(web, info, path.format(task_id=task_id),
                                                      args.runs)
                rows.append((page, refresh, trips, sum(sent.values()), read, size, '%.1f' % ms))
                if args.commands:
                    print('%s: %s' % (page, ', '.join('%s %d' % item
                                                      for item in sorted(sent.items()))))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print('  '.join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == '__main__':
    main()
