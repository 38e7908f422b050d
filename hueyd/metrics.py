"""Prometheus metrics: ``hueyd --metrics-port 9100`` (needs ``pip install 'hueyd[metrics]'``).

Served over HTTP by a thread of the scheduler process (never by the master,
which holds no storage connection), at ``/metrics`` (hueyd.daemon.probes, which
also answers ``/healthz`` and ``/readyz`` there):

==================================  =======  ================================================
``hueyd_tasks_started_total``       counter  runs that started, by ``task`` (its name)
``hueyd_tasks_finished_total``      counter  runs that returned
``hueyd_tasks_failed_total``        counter  runs that raised, timed out, found their lock
                                             taken or hit a rate limit
``hueyd_tasks_retried_total``       counter  failed runs that will be retried
``hueyd_task_duration_seconds``     histo.   how long runs took (finished or failed)
``hueyd_queue_length``              gauge    messages waiting in the queue
``hueyd_schedule_size``             gauge    messages waiting for their time
``hueyd_dead_letters``              gauge    dead letters kept
``hueyd_workers``                   gauge    this node's workers, by ``state`` (busy, idle)
``hueyd_workers_busy``              gauge    this node's workers running a task
``hueyd_pool_restarts_total``       counter  pool processes replaced, by ``reason``: ``died``
                                             (crashed, killed, hung) or ``recycled``
                                             (``--max-tasks``, ``--max-memory``)
``hueyd_storage_up``                gauge    1 when the scrape could read the storage
==================================  =======  ================================================

Counting across processes uses prometheus_client's multiprocess mode, the way
gunicorn deployments do: each pool increments its counters in memory-mapped
files of a directory private to this master, and a scrape sums the files. It
is the simplest way that stays correct: a count is on disk the moment it
happens, so a pool killed with -9 loses none, and counters never go down when
pools are replaced or reloaded. (Counting from the event stream would depend on
events being on, which SQLite's are not by default, and would also count the
other nodes' tasks; summing counters kept in the node-state records would lose
what a killed pool had not yet published.) The gauges are read at scrape time:
queue figures from the storage, busy workers from this node's state records
(hueyd.nodes), pool restarts from a counter the master keeps in shared memory.

The queue figures describe the whole queue, which every node shares; the task
counters and worker gauges describe this node only, so sum them over nodes.

This module imports nothing but the standard library until metrics are used:
the master imports it for ``pool_restarts``.
"""
import logging
import mmap
import os
import shutil
import struct
import tempfile

logger = logging.getLogger('hueyd.daemon')

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                    600, 1800, 3600)
INSTALL_HINT = "pip install 'hueyd[metrics]' (or pip install prometheus_client)"


class SharedCounters:
    """Named counters in anonymous shared memory: the master adds, its children read."""

    def __init__(self, names):
        self.names = tuple(names)
        self._layout = struct.Struct('%dQ' % len(self.names))
        self._memory = mmap.mmap(-1, self._layout.size)

    def add(self, name, amount=1):
        index = self.names.index(name)
        values = list(self._layout.unpack_from(self._memory))
        values[index] += amount
        self._layout.pack_into(self._memory, 0, *values)

    def get(self, name):
        return self._layout.unpack_from(self._memory)[self.names.index(name)]


# Created when the master imports this module, before it forks anything.
pool_restarts = SharedCounters(('died', 'recycled'))


# -- the multiprocess directory -----------------------------------------------------

def multiprocess_dir(master_pid):
    return os.path.join(tempfile.gettempdir(), 'hueyd-metrics-%d-%d' % (os.getuid(), master_pid))


def remove_multiprocess_dir(master_pid):
    """The master clears it when it starts (a dead master may have had its pid) and exits."""
    shutil.rmtree(multiprocess_dir(master_pid), ignore_errors=True)


def use_multiprocess_dir(master_pid):
    """Make prometheus_client keep values in this master's directory; returns it."""
    path = multiprocess_dir(master_pid)
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.environ['PROMETHEUS_MULTIPROC_DIR'] = path
    from prometheus_client import values
    if values.ValueClass is values.MutexValue:
        # prometheus_client was imported before the variable was set (--preload
        # with an application that uses it): switch to shared values now.
        values.ValueClass = values.MultiProcessValue()
    return path


# -- in each pool: counting tasks -----------------------------------------------------

def count_tasks(huey, master_pid):
    """Count this pool's tasks in the shared directory (called in the pool, after fork)."""
    from hueyd import signals as S
    use_multiprocess_dir(master_pid)
    from prometheus_client import Counter, Histogram

    labels = ['task']
    started = Counter('hueyd_tasks_started', 'Task runs that started', labels, registry=None)
    finished = Counter('hueyd_tasks_finished', 'Task runs that returned', labels, registry=None)
    failed = Counter('hueyd_tasks_failed', 'Task runs that raised, timed out, found their lock '
                     'taken or hit a rate limit', labels, registry=None)
    retried = Counter('hueyd_tasks_retried', 'Failed task runs that will be retried', labels,
                      registry=None)
    durations = Histogram('hueyd_task_duration_seconds', 'How long task runs took, finished or '
                          'failed', labels, buckets=DURATION_BUCKETS, registry=None)
    failures = {S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_LOCKED, S.SIGNAL_RATE_LIMITED}

    def on_signal(signal, task, outcome):
        if signal == S.SIGNAL_EXECUTING:
            started.labels(task.name).inc()
        elif signal == S.SIGNAL_RETRYING:
            retried.labels(task.name).inc()
        else:
            (finished if signal == S.SIGNAL_COMPLETE else failed).labels(task.name).inc()
            if outcome.duration is not None:
                durations.labels(task.name).observe(outcome.duration)

    huey.observe(S.SIGNAL_EXECUTING, S.SIGNAL_COMPLETE, S.SIGNAL_RETRYING, *failures)(on_signal)
    return on_signal


# -- in the scheduler: serving them ---------------------------------------------------

class NodeCollector:
    """The gauges, read at scrape time."""

    def __init__(self, huey, node):
        self.huey = huey
        self.node = node

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from hueyd.nodes import POOL, decode_records
        storage = self.huey.storage
        try:
            figures = [('hueyd_queue_length', 'Messages waiting in the queue',
                        storage.queue_size()),
                       ('hueyd_schedule_size', 'Messages waiting in the schedule for their time',
                        storage.schedule_size()),
                       ('hueyd_dead_letters', 'Dead letters kept', storage.dead_letter_count())]
            pools = [pool for pool in decode_records(storage.states(POOL))
                     if pool.get('node') == self.node]
        except Exception as exc:
            logger.warning('metrics: cannot read the storage (%s: %s)', type(exc).__name__, exc)
            figures = None
        yield GaugeMetricFamily('hueyd_storage_up', '1 when this scrape could read the storage',
                                value=0 if figures is None else 1)
        if figures is not None:
            for name, text, value in figures:
                yield GaugeMetricFamily(name, text, value=value)
            states = [worker.get('state') for pool in pools for worker in pool.get('workers', [])]
            busy = states.count('busy')
            workers = GaugeMetricFamily('hueyd_workers', "This node's workers by state",
                                        labels=['state'])
            workers.add_metric(['busy'], busy)
            workers.add_metric(['idle'], len(states) - busy)
            yield workers
            yield GaugeMetricFamily('hueyd_workers_busy', "This node's workers running a task",
                                    value=busy)
        restarts = CounterMetricFamily('hueyd_pool_restarts', 'Pool processes the master '
                                       'replaced: died (crashed, killed, hung) or recycled '
                                       '(--max-tasks, --max-memory)', labels=['reason'])
        for reason in pool_restarts.names:
            restarts.add_metric([reason], pool_restarts.get(reason))
        yield restarts


def metrics_app(huey, master_pid):
    """The WSGI application of ``/metrics`` (hueyd.daemon.probes serves it): the pools'
    counters summed from the shared directory, and this node's gauges. None, after
    saying why, when prometheus_client is not installed."""
    try:
        from prometheus_client import CollectorRegistry, make_wsgi_app
        from prometheus_client.multiprocess import MultiProcessCollector
    except ImportError:
        logger.error('--metrics-port is set but prometheus_client is not installed: %s',
                     INSTALL_HINT)
        return None
    from hueyd.nodes import node_id
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=use_multiprocess_dir(master_pid))
    registry.register(NodeCollector(huey, node_id(master_pid)))
    return make_wsgi_app(registry)
