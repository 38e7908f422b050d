"""Task statistics in a SQL database: huey's ``huey.contrib.stats``.

``enable_stats(huey, db)`` connects a recorder to ``huey``'s signals. Each signal
becomes a row of ``huey_event``, and ``huey_inflight`` holds the tasks running
now. Rows are buffered in memory and written by a background thread, so a task
never waits on the stats database; the ``HueyStats`` methods read them back for
a dashboard. ``db`` is any peewee database (it need not be the queue's storage);
rows are scoped by ``huey.name``, so several queues can share one database.

Signals fire where a task runs, so enable it in a module the daemon imports:
every pool process records its own tasks (a pool forked from a ``--preload``
master starts its own writer).

``StoredStats(huey)`` (hueyd.taskstats) answers the same summaries (``overview``,
``task_breakdown``, ``throughput``, ``window_counts``) from the statistics hueyd's
pools keep in the queue's storage: nothing to enable, every node, the last 25 hours.
"""
import atexit
import logging
import os
import threading
import time
import weakref

try:
    import peewee
except ImportError as exc:
    raise ImportError("hueyd.contrib.stats stores its statistics with peewee: "
                      "pip install 'hueyd[sql]'") from exc

from hueyd import signals as S
from hueyd.taskstats import StoredStats  # noqa: F401 (a reader of the storage's statistics)

# huey's logger name, so a huey user's logging configuration still applies.
logger = logging.getLogger('huey.stats')

# The signals that end one attempt at a task (a retry is a new attempt).
ATTEMPT_ENDERS = frozenset((
    S.SIGNAL_COMPLETE, S.SIGNAL_ERROR, S.SIGNAL_CANCELED, S.SIGNAL_INTERRUPTED,
    S.SIGNAL_EXPIRED, S.SIGNAL_REVOKED, S.SIGNAL_TIMEOUT, S.SIGNAL_LOCKED,
    S.SIGNAL_RATE_LIMITED, S.SIGNAL_RETRYING))

ERROR_LENGTH = 1000  # characters of an exception's repr kept
ARGS_LENGTH = 400    # characters of a task's arguments kept (capture_args=True)
CHUNK = 100          # rows per INSERT: 8 columns stay under SQLite's 999 variables
PRUNE_EVERY = 60     # seconds between two prunes

# The models' database, for code that queries them directly. A recorder runs its
# own queries on its own database, so recorders with different databases coexist.
database = peewee.DatabaseProxy()


class BaseModel(peewee.Model):
    class Meta:
        database = database


class HueyEvent(BaseModel):
    """One signal: when, which queue, task and signal, and how the attempt went."""
    ts = peewee.DoubleField(index=True)
    queue = peewee.CharField(index=True)
    task_id = peewee.CharField()
    task = peewee.CharField(index=True)       # module.TaskName
    signal = peewee.CharField()
    duration = peewee.DoubleField(null=True)  # seconds, on the signal that ended an attempt
    error = peewee.TextField(null=True)
    args = peewee.TextField(null=True)

    class Meta:
        table_name = 'huey_event'


class HueyInflight(BaseModel):
    """A task running now (its executing signal was seen, not yet the end of the attempt)."""
    task_id = peewee.CharField(primary_key=True)
    queue = peewee.CharField(index=True)
    task = peewee.CharField()
    started = peewee.DoubleField()

    class Meta:
        table_name = 'huey_inflight'


MODELS = (HueyEvent, HueyInflight)


def _resolve_db(db):
    """The peewee Database behind ``db``: a Database, an initialized proxy, or an
    object with a ``database`` attribute holding either (flask-peewee's)."""
    for candidate in (db, getattr(db, 'database', None)):
        if isinstance(candidate, peewee.Proxy):
            candidate = candidate.obj
        if isinstance(candidate, peewee.Database):
            return candidate
    raise TypeError('expected a peewee Database (or an initialized DatabaseProxy, or an '
                    'object with one as its .database), got %r' % (db,))


def _call_if_alive(ref):
    method = ref()
    if method is not None:
        method()


class HueyStats:
    """Records ``huey``'s signals into ``db`` and reads them back."""

    def __init__(self, huey, db, retention_hours=48, max_events=2000, inflight_hours=6,
                 capture_args=False, create_tables=True, flush_interval=0.5, flush_max=200):
        self.huey = huey
        self.name = huey.name
        self.db = _resolve_db(db)
        self.retention = retention_hours * 3600
        self.max_events = max_events
        self.inflight_retention = inflight_hours * 3600
        self.capture_args = capture_args
        self.flush_interval = flush_interval
        self.flush_max = flush_max
        self._connected = False
        self._writer = None
        self._stop = threading.Event()
        self._prune_at = 0
        self._fresh_state()
        if database.obj is None:
            database.initialize(self.db)
        if create_tables:
            was_closed = self.db.is_closed()
            for model in MODELS:
                peewee.SchemaManager(model, self.db).create_all(safe=True)
            if was_closed:
                self.db.close()  # a connection left open here would be inherited by a fork

    def _fresh_state(self):
        self._lock = threading.Lock()        # guards _buf
        self._flush_lock = threading.Lock()  # held for a whole write
        self._wake = threading.Event()
        self._buf = []
        self._started = {}  # task id -> time.monotonic() when its attempt began

    # --- recording ------------------------------------------------------------
    def connect(self):
        """Start recording: the signal receiver, the writer thread, the shutdown flush."""
        if self._connected:
            return
        self._connected = True
        self.huey.signal()(self._on_signal)
        # A daemon worker leaves with os._exit, which runs no atexit: its shutdown
        # hooks are the last chance to write what it buffered.
        self.huey.on_shutdown('huey_stats_flush')(self._flush)
        if hasattr(os, 'register_at_fork'):
            # Weak: a fork handler cannot be removed, and must not keep this alive.
            after_fork = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(after_fork))
        atexit.register(self.close)
        self._start_writer()

    def _start_writer(self):
        self._writer = threading.Thread(target=self._write_loop, name='huey-stats',
                                        daemon=True)
        self._writer.start()

    def _after_fork(self):
        # The parent's writer thread did not come along, and its buffered rows and
        # locks are the parent's to write and release. Its connection is the
        # parent's too: dispose() forgets it without closing the shared socket.
        if self._stop.is_set():
            return
        self._stop = threading.Event()
        self._fresh_state()
        dispose = getattr(self.db, 'dispose', None)  # peewee 4.5 and later
        if dispose is not None:
            dispose()
        self._start_writer()

    def _on_signal(self, signal, task, *args):
        try:
            row = self._row(signal, task, args)
            with self._lock:
                self._buf.append(row)
                full = len(self._buf) >= self.flush_max
            if full:
                self._wake.set()
        except Exception:
            # Statistics never fail a task.
            logger.exception('could not record the %s signal; the event is lost', signal)

    def _row(self, signal, task, args):
        now = time.time()
        duration = None
        if signal == S.SIGNAL_EXECUTING:
            self._started[task.id] = time.monotonic()
        elif signal in ATTEMPT_ENDERS:
            # Popped: an error followed by retrying counts the attempt's time once.
            started = self._started.pop(task.id, None)
            if started is not None:
                duration = time.monotonic() - started
        error = None
        if signal == S.SIGNAL_ERROR and args and args[0] is not None:
            error = repr(args[0])[:ERROR_LENGTH]
        return {'ts': now, 'queue': self.name, 'task_id': str(task.id),
                'task': self.huey.registry.task_to_string(type(task)), 'signal': signal,
                'duration': duration, 'error': error,
                'args': self._format_args(task) if self.capture_args else None}

    @staticmethod
    def _format_args(task):
        try:
            return ('%r %r' % (task.args, task.kwargs))[:ARGS_LENGTH]
        except Exception:
            return '<unrepresentable>'

    def _write_loop(self):
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._flush()
        if not self.db.is_closed():
            self.db.close()  # this thread's connection

    def _flush(self):
        """Write the buffered rows in one transaction (dropped, and logged, if it fails)."""
        with self._flush_lock:
            with self._lock:
                batch, self._buf = self._buf, []
            if not batch:
                return
            running = {}  # task id -> its executing row, or None once the attempt ended
            for row in batch:
                if row['signal'] == S.SIGNAL_EXECUTING:
                    running[row['task_id']] = row
                elif row['signal'] in ATTEMPT_ENDERS:
                    running[row['task_id']] = None
            try:
                with self.db.atomic():
                    for chunk in peewee.chunked(batch, CHUNK):
                        HueyEvent.insert_many(chunk).execute(self.db)
                    # In id order, so two processes writing at once lock rows alike.
                    for task_id in sorted(running):
                        HueyInflight.delete().where(
                            HueyInflight.task_id == task_id).execute(self.db)
                        row = running[task_id]
                        if row is not None:
                            HueyInflight.insert(task_id=task_id, queue=row['queue'],
                                                task=row['task'],
                                                started=row['ts']).execute(self.db)
            except Exception:
                logger.exception('could not write %d stats events; they are lost', len(batch))
                return
            self._maybe_prune()

    def _maybe_prune(self):
        now = time.time()
        if now < self._prune_at:
            return
        self._prune_at = now + PRUNE_EVERY
        mine = HueyEvent.queue == self.name
        try:
            with self.db.atomic():
                HueyEvent.delete().where(mine, HueyEvent.ts < now - self.retention).execute(self.db)
                # The newest max_events of this queue stay (ids grow across queues).
                newest_dropped = (HueyEvent.select(HueyEvent.id).where(mine)
                                  .order_by(HueyEvent.id.desc())
                                  .limit(1).offset(self.max_events).scalar(self.db))
                if newest_dropped is not None:
                    HueyEvent.delete().where(mine, HueyEvent.id <= newest_dropped).execute(self.db)
                # A row this old lost its ending signal (its worker died).
                HueyInflight.delete().where(
                    HueyInflight.queue == self.name,
                    HueyInflight.started < now - self.inflight_retention).execute(self.db)
        except Exception:
            logger.exception('could not prune the stats tables')

    def close(self):
        """Stop recording: the writer writes what is buffered, then stops."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self.huey.disconnect_signal(self._on_signal)
        if self._writer is not None:
            self._writer.join(timeout=2)
        self._flush()  # rows buffered while the writer was finishing
        atexit.unregister(self.close)
        if _recorders.get(self.huey) is self:
            del _recorders[self.huey]

    # --- reading --------------------------------------------------------------
    def _events(self, *fields):
        return HueyEvent.select(*fields).where(HueyEvent.queue == self.name)

    def _rows(self, query):
        return list(query.execute(self.db))

    @staticmethod
    def _format_event(row, time_format='%H:%M:%S'):
        return {'ts': row['ts'], 'time': time.strftime(time_format, time.localtime(row['ts'])),
                'task': row['task'].rsplit('.', 1)[-1], 'task_full': row['task'],
                'task_id': row['task_id'], 'signal': row['signal'],
                'duration': row['duration'], 'error': row['error'], 'args': row['args']}

    def window_counts(self, seconds=86400):
        """``{signal: count}`` over the last ``seconds``."""
        count = peewee.fn.COUNT(HueyEvent.id)
        query = (self._events(HueyEvent.signal, count)
                 .where(HueyEvent.ts > time.time() - seconds)
                 .group_by(HueyEvent.signal).tuples())
        return dict(self._rows(query))

    def recent_events(self, limit=50):
        """The newest events first (by when they happened, not when they were written)."""
        query = (self._events().order_by(HueyEvent.ts.desc(), HueyEvent.id.desc())
                 .limit(limit).dicts())
        return [self._format_event(row) for row in self._rows(query)]

    def search_events(self, signal=None, task=None, q=None, limit=100, offset=0):
        """``(total, page)``: the events matching every filter given, newest first.
        ``q`` matches part of the task id, task name or error, case-insensitively
        and literally (``%`` and ``_`` are not wildcards)."""
        query = self._events()
        if signal:
            query = query.where(HueyEvent.signal == signal)
        if task:
            query = query.where(HueyEvent.task == task)
        if q:
            query = query.where(HueyEvent.task_id.contains(q) | HueyEvent.task.contains(q)
                                | HueyEvent.error.contains(q))
        total = query.count(self.db)
        page = (query.order_by(HueyEvent.ts.desc(), HueyEvent.id.desc())
                .limit(limit).offset(offset).dicts())
        return total, [self._format_event(row, '%Y-%m-%d %H:%M:%S') for row in self._rows(page)]

    def event_signals(self):
        """The signals seen, sorted (a filter's choices)."""
        query = self._events(HueyEvent.signal).distinct().order_by(HueyEvent.signal).tuples()
        return [signal for signal, in self._rows(query)]

    def event_tasks(self):
        """The full names of the tasks seen, sorted (a filter's choices)."""
        query = self._events(HueyEvent.task).distinct().order_by(HueyEvent.task).tuples()
        return [task for task, in self._rows(query)]

    def inflight(self):
        """The tasks running now, the longest running first."""
        now = time.time()
        query = (HueyInflight.select().where(HueyInflight.queue == self.name)
                 .order_by(HueyInflight.started).dicts())
        return [{'task': row['task'].rsplit('.', 1)[-1], 'id': row['task_id'],
                 'started': row['started'], 'elapsed': now - row['started']}
                for row in self._rows(query)]

    def task_breakdown(self):
        """Per task: executed, completed, errors, retries and the average completed duration."""
        query = (self._events(HueyEvent.task, HueyEvent.signal, peewee.fn.COUNT(HueyEvent.id),
                              peewee.fn.SUM(HueyEvent.duration))
                 .group_by(HueyEvent.task, HueyEvent.signal).tuples())
        counts, durations = {}, {}
        for task, signal, count, duration in self._rows(query):
            counts.setdefault(task, {})[signal] = count
            if signal == S.SIGNAL_COMPLETE:
                durations[task] = duration or 0.0
        rows = []
        for task, by_signal in counts.items():
            completed = by_signal.get(S.SIGNAL_COMPLETE, 0)
            rows.append({'task': task.rsplit('.', 1)[-1], 'full': task,
                         'executed': by_signal.get(S.SIGNAL_EXECUTING, 0),
                         'completed': completed,
                         'errors': by_signal.get(S.SIGNAL_ERROR, 0),
                         'retries': by_signal.get(S.SIGNAL_RETRYING, 0),
                         'avg': durations[task] / completed if completed else None})
        rows.sort(key=lambda row: (row['executed'], row['completed']), reverse=True)
        return rows

    def throughput(self, minutes=60):
        """``{'complete': [...], 'error': [...]}``: one count per minute, oldest first."""
        now = time.time()
        query = (self._events(HueyEvent.ts, HueyEvent.signal)
                 .where(HueyEvent.ts > now - minutes * 60,
                        HueyEvent.signal.in_([S.SIGNAL_COMPLETE, S.SIGNAL_ERROR])).tuples())
        series = {'complete': [0] * minutes, 'error': [0] * minutes}
        for ts, signal in self._rows(query):
            age = int((now - ts) // 60)
            if 0 <= age < minutes:
                key = 'error' if signal == S.SIGNAL_ERROR else 'complete'
                series[key][minutes - 1 - age] += 1
        return series

    def overview(self, seconds=86400):
        """Completed, errors, retries and the error rate over ``seconds``; tasks running now."""
        window = self.window_counts(seconds)
        completed = window.get(S.SIGNAL_COMPLETE, 0)
        errors = window.get(S.SIGNAL_ERROR, 0)
        ended = completed + errors
        running = HueyInflight.select().where(HueyInflight.queue == self.name).count(self.db)
        return {'completed': completed, 'errors': errors,
                'retries': window.get(S.SIGNAL_RETRYING, 0),
                'error_rate': errors / ended if ended else 0, 'inflight': running}


# huey -> its recorder: enable_stats() is idempotent per Huey.
_recorders = weakref.WeakKeyDictionary()


def enable_stats(huey, db, **options):
    """Record ``huey``'s signals into ``db`` (see HueyStats for the options); the
    recorder, the same one on every call for a Huey."""
    stats = _recorders.get(huey)
    if stats is None:
        stats = _recorders[huey] = HueyStats(huey, db, **options)
        stats.connect()
    return stats


# --- what a dashboard shows besides the recorded events ------------------------

def _or_none(method, *args):
    try:
        return method(*args)
    except Exception:
        return None  # the storage cannot be read now: show nothing rather than fail


def live_counts(huey):
    """Messages queued and scheduled, results stored (None where the storage does not answer)."""
    return {'pending': _or_none(huey.pending_count),
            'scheduled': _or_none(huey.scheduled_count),
            'results': _or_none(huey.result_count)}


def pending_tasks(huey, limit=50):
    tasks = _or_none(huey.pending, limit) or []
    return [{'task': type(task).__name__, 'id': task.id, 'priority': task.priority,
             'eta': task.eta} for task in tasks]


def scheduled_tasks(huey, limit=50):
    tasks = _or_none(huey.scheduled, limit) or []
    return [{'task': type(task).__name__, 'id': task.id, 'eta': task.eta} for task in tasks]


def known_tasks(huey):
    """The tasks registered in this process, by full name, and whether they are revoked."""
    rows = []
    for full in huey.registry.names:
        task_class = huey.registry.string_to_task(full)
        rows.append({'full': full, 'task': task_class.__name__,
                     'revoked': bool(_or_none(huey.is_revoked, task_class))})
    return rows


def dashboard_context(huey, stats, list_limit=50, event_limit=50, throughput_minutes=60):
    """Everything a dashboard page shows, in one dict."""
    breakdown = {row['full']: row for row in stats.task_breakdown()}
    known = known_tasks(huey)
    for row in known:
        row.update(stats=breakdown.get(row['full']), registered=True)
    # A web process may not import the daemon's task modules: list what ran anyway.
    registered = {row['full'] for row in known}
    for full in sorted(set(breakdown) - registered):
        known.append({'full': full, 'task': full.rsplit('.', 1)[-1], 'revoked': False,
                      'registered': False, 'stats': breakdown[full]})
    return {'live': live_counts(huey), 'overview': stats.overview(), 'known': known,
            'inflight': stats.inflight(), 'events': stats.recent_events(event_limit),
            'pending': pending_tasks(huey, list_limit),
            'scheduled': scheduled_tasks(huey, list_limit),
            'throughput': stats.throughput(throughput_minutes)}
