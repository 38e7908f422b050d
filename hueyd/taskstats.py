"""Task statistics kept in the storage: each task's runs, failures, retries and durations,
per minute, for the storage's ``stats_retention`` (25 hours).

Every daemon pool records its tasks with a ``Recorder``, an observer: a run that ends
is appended to a queue in the pool's memory, and the pool's heartbeat counts them and
sends the counts once a second (``storage.add_stats``: one round trip however many tasks
ran, none when none did), in the minute of that write: up to a second late. So a worker
pays an append per task, and a pool killed with -9 loses at most its last second. The
dashboard, ``hueyctl stats`` and ``StoredStats`` (also in hueyd.contrib.stats) read them
back from the storage: they survive restarts and cover every node.

The fields of a (minute, task), counted as hueyd.metrics counts its Prometheus counters:

``runs``      runs that ended: returned, or failed
``failures``  runs that raised, timed out, found their lock taken or hit a rate limit
``retries``   failed runs that will be retried (and RetryTask, which is no failure)
``sum``, ``max``  of the runs' durations, in seconds
``le=B``      the runs that took more than the bound before B, and at most B seconds:
              the Prometheus histogram's buckets (hueyd.metrics.DURATION_BUCKETS; ``le=inf``
              past the last one). p50 and p95 are estimated from them.
"""
import bisect
import collections
import logging
import math
import threading
import time

from hueyd import signals as S
from hueyd.metrics import DURATION_BUCKETS
from hueyd.nodes import duration, read_nodes
from hueyd.storage.protocols import Stats, add_figures

logger = logging.getLogger('hueyd.daemon')

FAILURES = (S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_LOCKED, S.SIGNAL_RATE_LIMITED)
BUCKETS = tuple('le=%g' % bound for bound in DURATION_BUCKETS) + ('le=inf',)
FLUSH_EVERY = 1.0      # seconds between two writes of a pool's figures
HOUR, DAY = 60, 1440   # the windows shown, in minutes


# -- recording (in each daemon pool) ---------------------------------------------------

class Counts:
    """One task's figures since a pool's last write."""
    __slots__ = ('runs', 'failures', 'retries', 'sum', 'max', 'buckets')

    def __init__(self):
        self.runs = self.failures = self.retries = 0
        self.sum = self.max = 0.0
        self.buckets = [0] * len(BUCKETS)

    def add(self, signal, duration):
        if signal == S.SIGNAL_RETRYING:
            self.retries += 1
            return
        self.runs += 1
        if signal != S.SIGNAL_COMPLETE:
            self.failures += 1
        if duration is not None:
            self.sum += duration
            if duration > self.max:
                self.max = duration
            self.buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1

    def fields(self):
        """As the storage keeps them, without the zeros."""
        fields = {'runs': self.runs, 'failures': self.failures, 'retries': self.retries,
                  'sum': self.sum, 'max': self.max}
        fields.update(zip(BUCKETS, self.buckets))
        return {field: value for field, value in fields.items() if value}


class Recorder:
    """Counts a pool's task runs; ``tick()`` (from the heartbeat) writes them every
    FLUSH_EVERY seconds, ``flush()`` at once. Does nothing on a storage without Stats."""

    def __init__(self, huey):
        self.storage = huey.storage
        # A worker only appends (atomic, no lock on its path); the writer counts them.
        self._ended = collections.deque()  # (signal, task name, duration) of each run
        self._flushing = threading.Lock()
        self._unsent = {}                  # (minute, task name) -> fields not written yet
        self._next = 0.0
        self._failing = False
        if self.storage.supports(Stats):
            huey.observe(S.SIGNAL_COMPLETE, S.SIGNAL_RETRYING, *FAILURES)(self.observe)

    def observe(self, signal, task, outcome):
        if not outcome.storing_result:  # else SIGNAL_COMPLETE follows: the task ran to its end
            self._ended.append((signal, task.name, outcome.duration))

    def tick(self):
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + FLUSH_EVERY
            self.flush()

    def flush(self):
        with self._flushing:
            pending = {}  # task name -> Counts
            for _ in range(len(self._ended)):  # runs ending meanwhile wait for the next write
                signal, task, duration = self._ended.popleft()
                counts = pending.get(task)
                if counts is None:
                    counts = pending[task] = Counts()
                counts.add(signal, duration)
            minute = minute_of()  # the clock is read here, not on every run
            for task, counts in pending.items():
                add_figures(self._unsent.setdefault((minute, task), {}), counts.fields())
            if not self._unsent:
                return
            try:
                self.storage.add_stats(self._unsent)
            except Exception as exc:
                # Kept for the next write: a storage away for a while loses no figure.
                if not self._failing:
                    logger.warning('cannot write the task statistics (%s: %s); retrying',
                                   type(exc).__name__, exc)
                    self._failing = True
                return
            self._unsent = {}
            if self._failing:
                logger.info('task statistics written again')
                self._failing = False


# -- reading ------------------------------------------------------------------------------

def quantile(q, buckets, largest):
    """The ``q``-quantile of the durations counted in ``buckets`` (``[(bound, count)]``,
    sorted), as Prometheus' histogram_quantile estimates it: by linear interpolation in
    the bucket that holds it. Never above ``largest``, the longest duration, which is known."""
    total = sum(count for _, count in buckets)
    if not total:
        return None
    rank, seen, lower = q * total, 0, 0.0
    for bound, count in buckets:
        if count and seen + count >= rank:
            if math.isinf(bound):
                return largest
            return min(largest, lower + (bound - lower) * (rank - seen) / count)
        seen += count
        lower = bound
    return largest


def describe(fields):
    """A window's figures (summed over its minutes) as shown: counts, mean, p50, p95, max."""
    # Empty buckets are not stored, but their bounds are where the next bucket starts.
    counts = dict.fromkeys(BUCKETS, 0)
    counts.update((field, count) for field, count in fields.items() if field.startswith('le='))
    buckets = sorted((float(field[3:]), count) for field, count in counts.items())
    timed = sum(count for _, count in buckets)
    largest = fields.get('max')
    return {'runs': int(fields.get('runs', 0)), 'failures': int(fields.get('failures', 0)),
            'retries': int(fields.get('retries', 0)),
            'mean': fields.get('sum', 0.0) / timed if timed else None,
            'p50': quantile(0.5, buckets, largest), 'p95': quantile(0.95, buckets, largest),
            'max': largest if timed else None}


def minute_of(now=None):
    return int(time.time() if now is None else now) // 60


def windows(storage, now=None):
    """``{task: {'hour': fields, 'day': fields}}``: the figures summed over the last 60
    and 1440 minutes (the current one included)."""
    current = minute_of(now)
    found = {}
    for (minute, task), fields in storage.read_stats(current - DAY + 1).items():
        totals = found.setdefault(task, {'hour': {}, 'day': {}})
        add_figures(totals['day'], fields)
        if minute > current - HOUR:
            add_figures(totals['hour'], fields)
    return found


def collect(storage, now=None):
    """What ``hueyctl stats`` and the dashboard's statistics page show, JSON-ready: per
    task, its figures over the last hour and the last 24 hours, busiest first."""
    now = time.time() if now is None else now
    report = {'time': now, 'storage': type(storage).__name__, 'stats': storage.supports(Stats),
              'retention': getattr(storage, 'stats_retention', None), 'tasks': []}
    if report['stats']:
        report['tasks'] = sorted(
            ({'task': task, 'hour': describe(totals['hour']), 'day': describe(totals['day'])}
             for task, totals in windows(storage, now).items()),
            key=lambda row: (-row['day']['runs'], row['task']))
    return report


def chart(storage, now=None):
    """The last hour, a point per minute, oldest first: its start (unix time), the tasks
    per second that ended in it and its failures, from every node (the current minute's
    rate over the part of it gone by)."""
    now = time.time() if now is None else now
    current = minute_of(now)
    runs, failures = {}, {}
    for (minute, _), fields in storage.read_stats(current - HOUR + 1).items():
        runs[minute] = runs.get(minute, 0) + fields.get('runs', 0)
        failures[minute] = failures.get(minute, 0) + fields.get('failures', 0)
    return [{'t': minute * 60,
             'rate': runs.get(minute, 0) / (60 if minute < current else max(1.0, now - minute * 60)),
             'failures': int(failures.get(minute, 0))}
            for minute in range(current - HOUR + 1, current + 1)]


def format_seconds(value):
    """A duration in a table: <1ms, 4ms, 1.25s, 4m05s."""
    if value is None:
        return '-'
    if value < 0.001:
        return '<1ms'
    if value < 1:
        return '%dms' % round(value * 1000)
    if value < 60:
        return '%.2fs' % value
    return duration(value)


def format_stats(report):
    """The readable table of ``collect``."""
    if not report['stats']:
        return '%s keeps no task statistics' % report['storage']
    if not report['tasks']:
        return 'no task has run in the last 24 hours'
    header = ['TASK', 'WINDOW', 'RUNS', 'FAILURES', 'RETRIES', 'P50', 'P95', 'MAX']
    rows = []
    for row in report['tasks']:
        for window, label in (('hour', '1h'), ('day', '24h')):
            figures = row[window]
            rows.append([row['task'] if window == 'hour' else '', label, figures['runs'],
                         figures['failures'], figures['retries'], format_seconds(figures['p50']),
                         format_seconds(figures['p95']), format_seconds(figures['max'])])
    widths = [max(len(str(line[i])) for line in [header] + rows) for i in range(len(header))]
    return '\n'.join('  '.join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header] + rows)


class StoredStats:
    """HueyStats' summaries (hueyd.contrib.stats) over the storage's statistics instead of
    a database of events: every pool of every node, the last 25 hours, nothing to enable.

    ``error`` counts every failure (errors, timeouts, locks taken, rate limits), and
    ``avg`` is the mean duration of every run, failed ones included.
    """

    def __init__(self, huey):
        self.huey = huey
        self.storage = huey.storage

    def _totals(self, seconds):
        """The fields summed per task over the last ``seconds`` (whole minutes)."""
        current = minute_of()
        totals = {}
        for (_, task), fields in self.storage.read_stats(
                current - math.ceil(seconds / 60) + 1).items():
            add_figures(totals.setdefault(task, {}), fields)
        return totals

    def window_counts(self, seconds=86400):
        """``{signal: count}`` over the last ``seconds``."""
        runs = failures = retries = 0
        for fields in self._totals(seconds).values():
            runs += fields.get('runs', 0)
            failures += fields.get('failures', 0)
            retries += fields.get('retries', 0)
        return {S.SIGNAL_EXECUTING: int(runs), S.SIGNAL_COMPLETE: int(runs - failures),
                S.SIGNAL_ERROR: int(failures), S.SIGNAL_RETRYING: int(retries)}

    def task_breakdown(self, seconds=86400):
        """Per task: executed, completed, errors, retries and the average duration."""
        rows = []
        for task, fields in self._totals(seconds).items():
            figures = describe(fields)
            rows.append({'task': task, 'full': task, 'executed': figures['runs'],
                         'completed': figures['runs'] - figures['failures'],
                         'errors': figures['failures'], 'retries': figures['retries'],
                         'avg': figures['mean']})
        rows.sort(key=lambda row: (row['executed'], row['completed']), reverse=True)
        return rows

    def throughput(self, minutes=60):
        """``{'complete': [...], 'error': [...]}``: one count per minute, oldest first."""
        current = minute_of()
        series = {'complete': [0] * minutes, 'error': [0] * minutes}
        for (minute, _), fields in self.storage.read_stats(current - minutes + 1).items():
            index = minutes - 1 - (current - minute)
            if 0 <= index < minutes:
                failed = int(fields.get('failures', 0))
                series['complete'][index] += int(fields.get('runs', 0)) - failed
                series['error'][index] += failed
        return series

    def overview(self, seconds=86400):
        """Completed, errors, retries and the error rate over ``seconds``; tasks running
        now (busy workers, from the nodes' state)."""
        window = self.window_counts(seconds)
        completed, errors = window[S.SIGNAL_COMPLETE], window[S.SIGNAL_ERROR]
        ended = completed + errors
        busy = sum(worker.get('state') == 'busy' for node in read_nodes(self.storage) or []
                   for pool in node['pools'] for worker in pool.get('workers', []))
        return {'completed': completed, 'errors': errors, 'retries': window[S.SIGNAL_RETRYING],
                'error_rate': errors / ended if ended else 0, 'inflight': busy}
