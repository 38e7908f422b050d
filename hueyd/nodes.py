"""Node state: what every live hueyd node is doing, kept in the storage it shares.

Each process of a node publishes a small JSON record with ``storage.put_state``
and renews it every ``STATE_INTERVAL`` from its heartbeat thread; a record not
renewed within ``STATE_TTL`` is gone, so a node that died (kill -9, machine
lost) disappears from ``hueyctl status`` by itself, and one that stops cleanly
removes its records at once.

``node`` records (one per node, by its scheduler): host, master PID, when the
master started, application, hueyd version, worker type and counts.

``pool`` records (one per pool process, keyed by its worker id ``host:pid``):
its node, PID, memory, tasks done (in all, and over the last minute), and every
worker's state: ``idle``, or ``busy`` with the task's name, id and start time.

Tasks per second come from the pools' own counters, sampled by the heartbeat
thread: nothing is added to the path a task takes.

This module imports no storage code (the master imports the daemon modules).
"""
import collections
import json
import logging
import os
import socket
import threading
import time

logger = logging.getLogger('hueyd.daemon')

STATE_INTERVAL = 1.0    # seconds between two publications of a record
STATE_TTL = 5.0         # a record not renewed for this long counts as gone
RATE_WINDOW = 60.0      # tasks per second are counted over this many seconds
MAX_WORKER_ROWS = 8     # a pool with more workers shows its busy ones and a count of the rest

NODE, POOL = 'node', 'pool'


def node_id(master_pid, host=None):
    """A node is one hueyd master: ``host:master pid``."""
    return '%s:%d' % (host or socket.gethostname(), master_pid)


def hueyd_version():
    from hueyd import __version__
    return __version__


# -- publishing (in the daemon's children) ---------------------------------------

class Reporter:
    """Publishes one record, at most every STATE_INTERVAL, from ``tick()``.

    ``close()`` removes it.
    """

    kind = None

    def __init__(self, child, key):
        self.child = child
        self.storage = child.huey.storage
        self.key = key
        self.node = node_id(child.master_pid)
        from hueyd.storage.protocols import NodeState  # here: see the module docstring
        self.enabled = self.storage.supports(NodeState)
        self._lock = threading.Lock()
        self._closed = False
        self._next = 0.0
        self._failing = False
        if not self.enabled:
            logger.info('%s keeps no node state: hueyctl status will not show this node',
                        type(self.storage).__name__)

    def record(self):
        raise NotImplementedError

    def tick(self):
        if not self.enabled or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + STATE_INTERVAL
        with self._lock:
            if self._closed:
                return
            try:
                record = dict(self.record(), node=self.node, updated=time.time())
                self.storage.put_state(self.kind, self.key, json.dumps(record).encode(), STATE_TTL)
            except Exception as exc:
                if not self._failing:
                    logger.warning('cannot publish the %s state for hueyctl status (%s: %s); '
                                   'retrying', self.kind, type(exc).__name__, exc)
                    self._failing = True
            else:
                if self._failing:
                    logger.info('%s state published again', self.kind)
                    self._failing = False

    def close(self):
        """A clean exit: stop publishing and remove the record."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.enabled:
                try:
                    self.storage.delete_state(self.kind, self.key)
                except Exception as exc:
                    logger.debug('could not remove the %s state: %s', self.kind, exc)


class PoolReporter(Reporter):
    """A pool's record; ``tick()`` is called from its heartbeat thread."""

    kind = POOL

    def __init__(self, pool):
        super().__init__(pool, pool.worker_id)
        self.started = time.time()
        self._samples = collections.deque()   # (monotonic, tasks done)
        self._process = None

    def record(self):
        pool = self.child
        now, mono = time.time(), time.monotonic()
        done = pool.tasks_done
        samples = self._samples
        samples.append((mono, done))
        # Keep one sample at least RATE_WINDOW old: the base of the count.
        while len(samples) > 2 and mono - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        base_time, base_done = samples[0]
        running = pool.snapshot()
        workers = []
        for number in range(pool.workers):
            entry = running.get(number)
            if entry is None:
                workers.append({'worker': number, 'state': 'idle'})
            else:
                task, started = entry
                workers.append({'worker': number, 'state': 'busy', 'task': task.name,
                                'id': task.id, 'since': now - (mono - started)})
        return {
            'host': socket.gethostname(),
            'pid': os.getpid(),
            'index': pool.index,
            'count': pool.count,
            'worker_type': pool.config.worker_type,
            'started': self.started,
            'state': 'stopping' if pool.stopping else 'running',
            'rss': self._rss(),
            'tasks_done': done,
            'done_in_window': done - base_done,
            'window': mono - base_time,
            'workers': workers,
        }

    def _rss(self):
        try:
            if self._process is None:
                import psutil
                self._process = psutil.Process()
            return self._process.memory_info().rss
        except Exception:
            return None


class NodeReporter(Reporter):
    """The node's record, published by its scheduler."""

    kind = NODE

    def __init__(self, scheduler, pools):
        super().__init__(scheduler, node_id(scheduler.master_pid))
        self.pools = pools
        try:
            import psutil
            self.master_started = psutil.Process(scheduler.master_pid).create_time()
        except Exception:
            self.master_started = None

    def record(self):
        config = self.child.config
        return {
            'host': socket.gethostname(),
            'master_pid': self.child.master_pid,
            'scheduler_pid': os.getpid(),
            'started': self.master_started,
            'app': config.app,
            'version': hueyd_version(),
            'worker_type': config.worker_type,
            'workers': config.workers,
            'pools': self.pools,
            'periodic': not config.no_periodic,
            'metrics_port': getattr(config, 'metrics_port', None),
        }


# -- reading (hueyctl status, metrics) --------------------------------------------------

def decode_records(records):
    """The JSON records of ``storage.states(kind)`` as dicts (each with its ``key``)."""
    found = []
    for key, value in records.items():
        try:
            record = json.loads(value)
        except ValueError:
            continue
        if isinstance(record, dict):
            record.setdefault('key', key)
            found.append(record)
    return found


def read_nodes(storage):
    """The live nodes, each a node record (or a stand-in when only its pools report)
    with ``pools``: its pool records, sorted."""
    from hueyd.storage.protocols import NodeState  # here: see the module docstring
    if not storage.supports(NodeState):
        return None
    nodes = {record.get('node'): dict(record, pools=[])
             for record in decode_records(storage.states(NODE))}
    for pool in decode_records(storage.states(POOL)):
        node = nodes.get(pool.get('node'))
        if node is None:  # its scheduler is not running (restarting, or crashed)
            host, _, pid = str(pool.get('node')).rpartition(':')
            node = nodes[pool.get('node')] = {
                'node': pool.get('node'), 'host': host, 'master_pid': int(pid or 0),
                'scheduler_pid': None, 'started': None, 'worker_type': pool.get('worker_type'),
                'pools': [], 'missing_record': True}
        node['pools'].append(pool)
    for node in nodes.values():
        node['pools'].sort(key=lambda pool: (pool.get('index', 0), pool.get('started', 0)))
    return sorted(nodes.values(), key=lambda node: (node.get('host') or '', node.get('node') or ''))


def pool_rate(pool):
    """Tasks per second of one pool over (up to) the last minute."""
    window = pool.get('window') or 0
    return (pool.get('done_in_window') or 0) / window if window >= 1 else 0.0


def collect_status(huey, app=None):
    """Everything ``hueyctl status`` shows, as a JSON-ready dict."""
    storage = huey.storage
    now = time.time()
    nodes = read_nodes(storage)
    status = {
        'time': now,
        'app': app,
        'queue': huey.name,
        'storage': type(storage).__name__,
        'queued': huey.pending_count(),
        'scheduled': huey.scheduled_count(),
        'dead_letters': storage.dead_letter_count(),
        'results': huey.result_count(),
        'node_state': nodes is not None,
        'nodes': nodes or [],
    }
    rate = busy = workers = 0
    for node in status['nodes']:
        node['uptime'] = now - node['started'] if node.get('started') else None
        for pool in node['pools']:
            pool['tasks_per_second'] = pool_rate(pool)
            rate += pool['tasks_per_second']
            for worker in pool.get('workers', []):
                workers += 1
                if worker.get('state') == 'busy':
                    busy += 1
                    worker['running'] = max(0.0, now - worker.get('since', now))
    status.update(tasks_per_second=rate, workers=workers, workers_busy=busy)
    return status


# -- the table ---------------------------------------------------------------------------

def duration(seconds):
    """12.3s, 4m05s, 2h03m, 3d04h."""
    if seconds is None:
        return '-'
    if seconds < 60:
        return '%.1fs' % seconds
    seconds = int(seconds)
    if seconds < 3600:
        return '%dm%02ds' % divmod(seconds, 60)
    if seconds < 86400:
        return '%dh%02dm' % (seconds // 3600, seconds % 3600 // 60)
    return '%dd%02dh' % (seconds // 86400, seconds % 86400 // 3600)


def size(rss):
    if rss is None:
        return '-'
    return '%.0fM' % (rss / 2 ** 20) if rss < 10 * 2 ** 30 else '%.1fG' % (rss / 2 ** 30)


def _columns(rows, header):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    return ['  '.join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in [header] + rows]


def format_status(status, clock=time.localtime):
    """The readable table of ``collect_status``."""
    out = ['%s  %s %r  %s' % (status['app'] or '-', status['storage'], status['queue'],
                              time.strftime('%Y-%m-%d %H:%M:%S', clock(status['time']))),
           'queued %d  scheduled %d  dead letters %d  results %d  busy %d/%d  '
           '%.2f tasks/s (last minute)' % (
               status['queued'], status['scheduled'], status['dead_letters'],
               status['results'], status['workers_busy'], status['workers'],
               status['tasks_per_second'])]
    if not status['node_state']:
        out += ['', 'this storage keeps no node state: nodes are not shown']
        return '\n'.join(out)
    if not status['nodes']:
        out += ['', 'no hueyd node is running on this storage']
        return '\n'.join(out)
    for node in status['nodes']:
        pools = node['pools']
        out.append('')
        if node.get('missing_record'):
            out.append('node %s  (no node record: its scheduler is starting, or not running)'
                       % node['node'])
        else:
            per_pool = {len(pool.get('workers', [])) for pool in pools} or {0}
            out.append('node %s  up %s  hueyd %s  %s  %d pool(s) x %s %s worker(s)  '
                       'scheduler %s%s' % (
                           node['node'], duration(node.get('uptime')), node.get('version', '?'),
                           node.get('app', ''), len(pools),
                           '/'.join(str(n) for n in sorted(per_pool)), node.get('worker_type'),
                           node.get('scheduler_pid') or '-',
                           '' if node.get('periodic', True) else ' (no periodic tasks)'))
        rows = []
        for pool in pools:
            first = True
            workers = pool.get('workers', []) or [{'worker': '-', 'state': '-'}]
            if len(workers) > MAX_WORKER_ROWS:  # e.g. 100 greenlets: the busy ones, then a count
                idle = [w for w in workers if w.get('state') != 'busy']
                workers = [w for w in workers if w.get('state') == 'busy'] + (
                    [{'worker': '-', 'state': '%d idle' % len(idle)}] if idle else [])
            for worker in workers:
                busy = worker.get('state') == 'busy'
                rows.append([
                    '%d/%d%s' % (pool.get('index', 0) + 1, pool.get('count', 0),
                                 ' stopping' if pool.get('state') == 'stopping' else '')
                    if first else '',
                    pool.get('pid', '') if first else '',
                    size(pool.get('rss')) if first else '',
                    pool.get('tasks_done', 0) if first else '',
                    '%.2f' % pool['tasks_per_second'] if first else '',
                    worker.get('worker'),
                    worker.get('state'),
                    worker.get('task', '') if busy else '',
                    worker.get('id', '') if busy else '',
                    duration(worker.get('running')) if busy else '',
                ])
                first = False
        if rows:
            out += ['  ' + line for line in _columns(
                rows, ['POOL', 'PID', 'MEM', 'DONE', 'TASKS/S', 'WORKER', 'STATE', 'TASK',
                       'TASK ID', 'RUNNING'])]
        else:
            out.append('  no pool is running')
    return '\n'.join(out)
