"""SQLite storage: one database file shared by every process on one machine.

Tables are prefixed ``hueyd_`` so a file written by huey is never mistaken for
ours, and every row carries the queue ``name`` so several queues can share a file.

Concurrency: each thread gets its own connection, and a process created by
``fork()`` opens fresh ones (a connection must never cross a fork). Every write
is either a single statement (SQLite takes the write lock before the statement
reads anything) or runs inside ``BEGIN IMMEDIATE``; so two processes can never
dequeue the same message or read the same scheduled item.

The writes of batching threads (enqueue, schedule, put_data, ack) wait as
statements and commit together in one transaction: a commit costs far more
than a statement.

CySqliteStorage is the same storage through the ``cysqlite`` driver.
"""
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager

from hueyd.constants import EmptyData
from hueyd.exceptions import ConfigurationError
from hueyd.storage.base import BaseStorage
from hueyd.storage.batch import SharedBatch
from hueyd.storage.listener import EventListener
from hueyd.storage.protocols import (Claimed, Claims, DeadLetters, Events, NodeState, Stats,
                                     WriteBatching, text_key)
from hueyd.times import unix_time

try:
    import cysqlite
except ImportError:  # optional: only CySqliteStorage needs it
    cysqlite = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS hueyd_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT);
CREATE INDEX IF NOT EXISTS hueyd_queue_order ON hueyd_queue (name, claimed_by, priority DESC, id);
CREATE TABLE IF NOT EXISTS hueyd_schedule (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    ts REAL NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS hueyd_schedule_ts ON hueyd_schedule (name, ts);
CREATE TABLE IF NOT EXISTS hueyd_kv (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    expires_at REAL,
    PRIMARY KEY (name, key));
CREATE TABLE IF NOT EXISTS hueyd_counters (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (name, key));
CREATE TABLE IF NOT EXISTS hueyd_leases (
    name TEXT NOT NULL,
    worker TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (name, worker));
CREATE TABLE IF NOT EXISTS hueyd_dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    record BLOB NOT NULL,
    UNIQUE (name, key));
"""
# The tables of events, node state and statistics are created on first use only (see
# SqliteStorage._conn_with).
EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS hueyd_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS hueyd_events_name ON hueyd_events (name, id);
"""
STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS hueyd_state (
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (name, kind, key));
"""
STATS_SCHEMA = """
CREATE TABLE IF NOT EXISTS hueyd_stats (
    name TEXT NOT NULL,
    minute INTEGER NOT NULL,
    task TEXT NOT NULL,
    field TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (name, minute, task, field)) WITHOUT ROWID;
"""
ADD_STATS = ('INSERT INTO hueyd_stats (name, minute, task, field, value) VALUES (?, ?, ?, ?, ?) '
             'ON CONFLICT (name, minute, task, field) DO UPDATE SET value = CASE '
             "WHEN field = 'max' THEN max(value, excluded.value) ELSE value + excluded.value END")
# Messages in the queue that no worker has claimed yet.
UNCLAIMED = 'name = ? AND claimed_by IS NULL'


JOURNAL_MODES = ('wal', 'delete', 'truncate', 'persist', 'memory', 'off')
# Rows whose expires_at has passed (only put_if_empty sets one) count as absent.
LIVE = '(expires_at IS NULL OR expires_at > ?)'

# SQLite's primary result codes that mean "not now" rather than "never": another
# process holds the lock past the busy timeout, an I/O error, a full disk, a file
# that cannot be opened for the moment. "readonly database", "no such table" and
# the like are not among them: retrying those would never end.
TRANSIENT_CODES = {5: 'SQLITE_BUSY', 6: 'SQLITE_LOCKED', 10: 'SQLITE_IOERR',
                   13: 'SQLITE_FULL', 14: 'SQLITE_CANTOPEN', 15: 'SQLITE_PROTOCOL'}


class SqliteUnavailable(sqlite3.OperationalError):
    """An OperationalError worth retrying (see TRANSIENT_CODES); the storage's transient error."""


def _guarded(method):
    def call(self, *args):
        try:
            return method(self, *args)
        except sqlite3.OperationalError as exc:
            if getattr(exc, 'sqlite_errorcode', 0) & 0xff in TRANSIENT_CODES \
                    and not isinstance(exc, SqliteUnavailable):
                raise SqliteUnavailable(*exc.args) from exc
            raise
    call.__name__ = method.__name__
    return call


class _Cursor(sqlite3.Cursor):
    """Raises SqliteUnavailable for the OperationalErrors worth retrying, as they happen."""
    execute = _guarded(sqlite3.Cursor.execute)
    executemany = _guarded(sqlite3.Cursor.executemany)
    executescript = _guarded(sqlite3.Cursor.executescript)
    fetchone = _guarded(sqlite3.Cursor.fetchone)
    fetchall = _guarded(sqlite3.Cursor.fetchall)


class _Connection(sqlite3.Connection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.schemas = set()  # the optional schemas created on it (SqliteStorage._conn_with)

    # sqlite3.Connection.execute() would bypass the cursor class's methods.
    def cursor(self, factory=_Cursor):
        return super().cursor(factory)

    def execute(self, sql, parameters=()):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, parameters):
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script):
        return self.cursor().executescript(script)


class SqliteStorage(Claims, DeadLetters, Events, NodeState, Stats,
                    WriteBatching, BaseStorage):
    blocking = False
    priority = True
    # "database is locked" outlasting the busy timeout is worth another try.
    transient_errors = BaseStorage.transient_errors + (SqliteUnavailable,)

    def __init__(self, name='huey', filename='huey.db', cache_mb=8, fsync=False,
                 journal_mode='wal', timeout=5, pragmas=None, create_tables=True, **kwargs):
        super().__init__(name)
        if filename == ':memory:' or not filename:
            raise ConfigurationError(
                'SqliteStorage needs a file that every thread and process can open; '
                'use MemoryStorage for an in-memory queue')
        self.filename = os.path.abspath(os.fspath(filename))
        directory = os.path.dirname(self.filename)
        if not os.path.isdir(directory):
            raise ConfigurationError(
                'cannot create SQLite database %s: directory %s does not exist; '
                'create the directory or pass another filename' % (self.filename, directory))
        if str(journal_mode).lower() not in JOURNAL_MODES:
            raise ConfigurationError('journal_mode %r is not one of %s'
                                     % (journal_mode, ', '.join(JOURNAL_MODES)))
        self.journal_mode = str(journal_mode).lower()
        self.cache_mb = int(cache_mb)
        self.fsync = bool(fsync)
        self.timeout = float(timeout)
        # Set on every connection after hueyd's own; a dict or (name, value) pairs.
        self.pragmas = list(dict(pragmas or {}).items())
        self.create_tables = create_tables
        self._local = threading.local()
        # Connections opened before a fork stay referenced here so the child
        # never closes (and possibly checkpoints) a handle the parent still uses.
        self._inherited = []
        self.write_batch = SharedBatch(list, self._send_batch)

    @property
    def conn(self):
        """This thread's connection, opened on first use and again after a fork."""
        local = self._local
        conn = getattr(local, 'conn', None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if conn is not None:
            self._inherited.append(conn)
        local.conn, local.pid = self._connect(), os.getpid()
        return local.conn

    def _connect(self):
        conn = self._open()
        self._set_journal_mode(conn)
        conn.execute('PRAGMA synchronous = %s' % ('FULL' if self.fsync else 'NORMAL'))
        conn.execute('PRAGMA cache_size = %d' % (-1000 * self.cache_mb))  # KiB; huey's megabyte is 1000
        for pragma, value in self.pragmas:
            conn.execute('PRAGMA %s = %s' % (pragma, value))
        if self.create_tables:
            conn.executescript(SCHEMA)
        return conn

    def initialize_schema(self):
        """Create the tables (for a storage made with ``create_tables=False``)."""
        self.conn.executescript(SCHEMA)

    def _open(self):
        # isolation_level=None: no implicit transactions, we issue BEGIN ourselves.
        return sqlite3.connect(self.filename, timeout=self.timeout, isolation_level=None,
                               factory=_Connection)

    def _conn_with(self, schema):
        """This thread's connection, once ``schema`` is created (on first use, per connection)."""
        conn = self.conn
        if schema not in conn.schemas:
            conn.executescript(schema)
            conn.schemas.add(schema)
        return conn

    def _set_journal_mode(self, conn):
        # WAL is a property of the file: only the first connection changes it,
        # and that change takes a lock SQLite's busy timeout does not wait for,
        # so two processes opening a new file at once must retry.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                mode = conn.execute('PRAGMA journal_mode').fetchone()[0]
                if mode.lower() != self.journal_mode.lower():
                    conn.execute('PRAGMA journal_mode = %s' % self.journal_mode)
                return
            except sqlite3.OperationalError as exc:
                if 'locked' not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def location(self):
        return self.filename

    def close(self):
        conn = getattr(self._local, 'conn', None)
        if conn is not None:
            if self._local.pid == os.getpid():
                conn.close()
            else:
                self._inherited.append(conn)
            self._local.conn = None

    def _rows(self, sql, *params):
        # fetchall() also matters for writes with RETURNING: the statement (and
        # its implicit transaction) only finishes once every row is read.
        return self.conn.execute(sql, params).fetchall()

    def _write(self, sql, *params):
        """A write nobody waits to read back: batched in a batching thread."""
        if self.write_batch.active:
            with self.write_batch.adding() as statements:
                statements.append((sql, params))
        else:
            self._rows(sql, *params)

    def _send_batch(self, statements):
        with self._immediate() as conn:
            for sql, params in statements:
                conn.execute(sql, params)

    def _value(self, sql, *params):
        rows = self._rows(sql, *params)
        return rows[0][0] if rows else None

    @contextmanager
    def _immediate(self):
        conn = self.conn
        conn.execute('BEGIN IMMEDIATE')
        try:
            yield conn
        except BaseException:
            conn.execute('ROLLBACK')
            raise
        conn.execute('COMMIT')

    # --- queue -------------------------------------------------------------
    def enqueue(self, data, priority=None):
        self._write('INSERT INTO hueyd_queue (name, data, priority) VALUES (?, ?, ?)',
                   self.name, data, priority or 0)

    def enqueue_many(self, items):
        rows = [(self.name, data, priority or 0) for data, priority in items]
        with self._immediate() as conn:
            conn.executemany('INSERT INTO hueyd_queue (name, data, priority) VALUES (?, ?, ?)', rows)

    def dequeue(self):
        return self._value(
            'DELETE FROM hueyd_queue WHERE id = (SELECT id FROM hueyd_queue WHERE ' + UNCLAIMED +
            ' ORDER BY priority DESC, id LIMIT 1) RETURNING data', self.name)

    def queue_size(self):
        return self._value('SELECT COUNT(*) FROM hueyd_queue WHERE ' + UNCLAIMED, self.name)

    def enqueued_items(self, limit=None):
        rows = self._rows('SELECT data FROM hueyd_queue WHERE ' + UNCLAIMED +
                          ' ORDER BY priority DESC, id LIMIT ?', self.name, -1 if limit is None else limit)
        return [data for data, in rows]

    def flush_queue(self):
        self._rows('DELETE FROM hueyd_queue WHERE name = ?', self.name)

    # --- schedule ----------------------------------------------------------
    def add_to_schedule(self, data, ts, priority=None):
        self._write('INSERT INTO hueyd_schedule (name, data, ts, priority) VALUES (?, ?, ?, ?)',
                   self.name, data, unix_time(ts), priority or 0)

    def read_schedule(self, ts):
        rows = self._rows('DELETE FROM hueyd_schedule WHERE name = ? AND ts <= ? '
                          'RETURNING ts, id, data', self.name, unix_time(ts))
        return [data for _, _, data in sorted(rows)]  # RETURNING order is unspecified

    def next_schedule_time(self):
        return self._value('SELECT MIN(ts) FROM hueyd_schedule WHERE name = ?', self.name)

    def schedule_size(self):
        return self._value('SELECT COUNT(*) FROM hueyd_schedule WHERE name = ?', self.name)

    def scheduled_items(self, limit=None):
        rows = self._rows('SELECT data FROM hueyd_schedule WHERE name = ? ORDER BY ts, id LIMIT ?',
                          self.name, -1 if limit is None else limit)
        return [data for data, in rows]

    def flush_schedule(self):
        self._rows('DELETE FROM hueyd_schedule WHERE name = ?', self.name)

    # --- data store --------------------------------------------------------
    def put_data(self, key, value, is_result=False):
        self._write('INSERT OR REPLACE INTO hueyd_kv (name, key, value, expires_at) '
                   'VALUES (?, ?, ?, NULL)', self.name, key, value)

    def peek_data(self, key):
        rows = self._rows('SELECT value FROM hueyd_kv WHERE name = ? AND key = ? AND ' + LIVE,
                          self.name, key, time.time())
        return rows[0][0] if rows else EmptyData

    def pop_data(self, key):
        rows = self._rows('DELETE FROM hueyd_kv WHERE name = ? AND key = ? '
                          'RETURNING value, expires_at', self.name, key)
        if not rows or (rows[0][1] is not None and rows[0][1] <= time.time()):
            return EmptyData
        return rows[0][0]

    def has_data_for_key(self, key):
        return bool(self._rows('SELECT 1 FROM hueyd_kv WHERE name = ? AND key = ? AND ' + LIVE,
                               self.name, key, time.time()))

    def put_if_empty(self, key, value, ttl=None):
        now = time.time()
        # Inserts, or takes over a row whose ttl has run out; otherwise changes nothing.
        cursor = self.conn.execute(
            'INSERT INTO hueyd_kv (name, key, value, expires_at) VALUES (?, ?, ?, ?) '
            'ON CONFLICT (name, key) DO UPDATE SET value = excluded.value, '
            'expires_at = excluded.expires_at '
            'WHERE hueyd_kv.expires_at IS NOT NULL AND hueyd_kv.expires_at <= ?',
            (self.name, key, value, now + ttl if ttl else None, now))
        return cursor.rowcount == 1

    def result_store_size(self):
        return self._value('SELECT COUNT(*) FROM hueyd_kv WHERE name = ? AND ' + LIVE,
                           self.name, time.time())

    def result_items(self):
        rows = self._rows('SELECT key, value FROM hueyd_kv WHERE name = ? AND ' + LIVE,
                          self.name, time.time())
        return {text_key(key): value for key, value in rows}

    def flush_results(self):
        self._rows('DELETE FROM hueyd_kv WHERE name = ?', self.name)

    # --- counters ----------------------------------------------------------
    def incr(self, key, amount=1):
        return self._value(
            'INSERT INTO hueyd_counters (name, key, value) VALUES (?, ?, ?) '
            'ON CONFLICT (name, key) DO UPDATE SET value = value + excluded.value RETURNING value',
            self.name, key, amount)

    def delete_counter(self, key):
        self._rows('DELETE FROM hueyd_counters WHERE name = ? AND key = ?', self.name, key)

    def flush_counters(self):
        self._rows('DELETE FROM hueyd_counters WHERE name = ?', self.name)

    # --- events: a bounded table, polled by listeners --------------------------
    # SQLite has no publish/subscribe: events are rows that listeners poll for.
    # About the newest ``events_keep`` rows per queue are kept (older ones are
    # deleted every few hundred inserts); a listener slower than that misses some.
    # events_by_default stays False: huey's SqliteHuey had no events.
    events_keep = 10000
    events_poll = 0.05  # seconds between a listener's looks at the table
    EVENTS_TRIM_EVERY = 500

    def publish_events(self, events):
        conn = self._conn_with(EVENTS_SCHEMA)
        rows = [(self.name, data) for data in events]
        with self._immediate():
            conn.executemany('INSERT INTO hueyd_events (name, data) VALUES (?, ?)', rows)
            last = conn.execute('SELECT last_insert_rowid()').fetchone()[0]
            if last // self.EVENTS_TRIM_EVERY != (last - len(rows)) // self.EVENTS_TRIM_EVERY:
                conn.execute('DELETE FROM hueyd_events WHERE name = ? AND id <= (SELECT id FROM '
                             'hueyd_events WHERE name = ? ORDER BY id DESC LIMIT 1 OFFSET ?)',
                             (self.name, self.name, self.events_keep))

    def read_events(self, after=0, limit=1000):
        """``[(id, data)]`` of the events after the id ``after``, oldest first."""
        return self._conn_with(EVENTS_SCHEMA).execute(
            'SELECT id, data FROM hueyd_events WHERE name = ? AND id > ? ORDER BY id LIMIT ?',
            (self.name, after, limit)).fetchall()

    def listener(self):
        self.check_events_enabled()
        position = [self._conn_with(EVENTS_SCHEMA).execute(
            'SELECT COALESCE(MAX(id), 0) FROM hueyd_events').fetchone()[0]]

        def fetch(timeout):
            deadline = time.monotonic() + timeout
            while True:
                rows = self.read_events(position[0])
                if rows:
                    position[0] = rows[-1][0]
                    return [data for _, data in rows]
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                time.sleep(min(self.events_poll, left))

        return EventListener('hueyd.%s.events' % self.name, fetch)

    # --- delivery ----------------------------------------------------------
    # A claim is the row's claimed_by column; the receipt is the row id. Leases
    # use wall-clock time, since every process on the machine shares the file.
    def _renew(self, conn, worker, lease):
        conn.execute('INSERT INTO hueyd_leases (name, worker, expires_at) VALUES (?, ?, ?) '
                     'ON CONFLICT (name, worker) DO UPDATE SET expires_at = excluded.expires_at',
                     (self.name, worker, time.time() + lease))

    def claim(self, worker, count=1, lease=30.0):
        with self._immediate() as conn:
            self._renew(conn, worker, lease)
            rows = conn.execute(
                'UPDATE hueyd_queue SET claimed_by = ? WHERE id IN (SELECT id FROM hueyd_queue '
                'WHERE ' + UNCLAIMED + ' ORDER BY priority DESC, id LIMIT ?) '
                'RETURNING id, priority, data', (worker, self.name, count)).fetchall()
        rows.sort(key=lambda row: (-row[1], row[0]))  # RETURNING order is unspecified
        return Claimed((row_id, data) for row_id, _, data in rows)

    def _by_receipts(self, write, sql, worker, receipts):
        receipts = list(receipts)
        for start in range(0, len(receipts), 500):  # SQLite bounds the number of parameters
            chunk = receipts[start:start + 500]
            write(sql % ','.join('?' * len(chunk)), worker, *chunk)

    def ack(self, worker, receipts):
        self._by_receipts(self._write, 'DELETE FROM hueyd_queue WHERE claimed_by = ? AND id IN (%s)',
                          worker, receipts)

    def release(self, worker, receipts):
        # The row keeps its id, so the message goes back to its old place in line.
        self._by_receipts(self._rows, 'UPDATE hueyd_queue SET claimed_by = NULL WHERE '
                          'claimed_by = ? AND id IN (%s)', worker, receipts)

    def beat(self, worker, lease):
        with self._immediate() as conn:
            self._renew(conn, worker, lease)

    def retire_worker(self, worker):
        with self._immediate() as conn:
            conn.execute('UPDATE hueyd_queue SET claimed_by = NULL WHERE name = ? AND claimed_by = ?',
                         (self.name, worker))
            conn.execute('DELETE FROM hueyd_leases WHERE name = ? AND worker = ?', (self.name, worker))

    def recover(self):
        now = time.time()
        with self._immediate() as conn:
            moved = conn.execute(
                'UPDATE hueyd_queue SET claimed_by = NULL WHERE name = ? AND claimed_by IS NOT NULL '
                'AND claimed_by NOT IN (SELECT worker FROM hueyd_leases WHERE name = ? '
                'AND expires_at > ?)', (self.name, self.name, now)).rowcount
            conn.execute('DELETE FROM hueyd_leases WHERE name = ? AND expires_at <= ?', (self.name, now))
        return moved

    def claimed_items(self):
        claimed = {}
        for worker, data in self._rows('SELECT claimed_by, data FROM hueyd_queue WHERE name = ? '
                                       'AND claimed_by IS NOT NULL ORDER BY id', self.name):
            claimed.setdefault(worker, []).append(data)
        return claimed

    def worker_claims(self, worker):
        return [tuple(row) for row in self._rows(
            'SELECT id, data FROM hueyd_queue WHERE name = ? AND claimed_by = ? ORDER BY id',
            self.name, worker)]

    def move_due(self, ts):
        with self._immediate() as conn:
            rows = sorted(conn.execute('DELETE FROM hueyd_schedule WHERE name = ? AND ts <= ? '
                                       'RETURNING ts, id, data, priority', (self.name, ts)).fetchall())
            conn.executemany('INSERT INTO hueyd_queue (name, data, priority) VALUES (?, ?, ?)',
                             [(self.name, data, priority) for _, _, data, priority in rows])
        return [data for _, _, data, _ in rows]

    # --- dead letters ------------------------------------------------------
    def add_dead_letter(self, key, record):
        self._rows('INSERT OR REPLACE INTO hueyd_dead (name, key, record) VALUES (?, ?, ?)',
                   self.name, key, record)

    def dead_letters(self):
        return self._rows('SELECT key, record FROM hueyd_dead WHERE name = ? ORDER BY id', self.name)

    def dead_letter_count(self):
        return self._value('SELECT COUNT(*) FROM hueyd_dead WHERE name = ?', self.name)

    def remove_dead_letters(self, keys):
        removed = 0
        for key in keys:
            removed += len(self._rows('DELETE FROM hueyd_dead WHERE name = ? AND key = ? RETURNING 1',
                                      self.name, key))
        return removed

    # --- node state: a small table, rows expire by their expires_at ----------------
    def put_state(self, kind, key, value, ttl):
        now = time.time()
        conn = self._conn_with(STATE_SCHEMA)
        with self._immediate():
            conn.execute('INSERT OR REPLACE INTO hueyd_state (name, kind, key, value, expires_at) '
                         'VALUES (?, ?, ?, ?, ?)', (self.name, kind, key, value, now + ttl))
            conn.execute('DELETE FROM hueyd_state WHERE name = ? AND kind = ? AND expires_at <= ?',
                         (self.name, kind, now))

    def states(self, kind):
        return dict(self._conn_with(STATE_SCHEMA).execute(
            'SELECT key, value FROM hueyd_state WHERE name = ? AND kind = ? AND expires_at > ? '
            'ORDER BY key', (self.name, kind, time.time())).fetchall())

    def delete_state(self, kind, key):
        self._conn_with(STATE_SCHEMA).execute(
            'DELETE FROM hueyd_state WHERE name = ? AND kind = ? AND key = ?', (self.name, kind, key))

    # --- statistics: a row per minute, task and field, deleted past the retention ----
    def add_stats(self, figures):
        rows = [(self.name, minute, task, field, value)
                for (minute, task), fields in figures.items() for field, value in fields.items()]
        conn = self._conn_with(STATS_SCHEMA)
        with self._immediate():
            conn.executemany(ADD_STATS, rows)
            conn.execute('DELETE FROM hueyd_stats WHERE name = ? AND minute < ?',
                         (self.name, int(time.time() - self.stats_retention) // 60))

    def read_stats(self, since):
        figures = {}
        for minute, task, field, value in self._conn_with(STATS_SCHEMA).execute(
                'SELECT minute, task, field, value FROM hueyd_stats WHERE name = ? AND minute >= ?',
                (self.name, since)).fetchall():
            figures.setdefault((minute, task), {})[field] = value
        return figures

    def flush_stats(self):
        self._conn_with(STATS_SCHEMA).execute('DELETE FROM hueyd_stats WHERE name = ?', (self.name,))


class CySqliteStorage(SqliteStorage):
    """SqliteStorage through the ``cysqlite`` driver instead of sqlite3 (huey's CySqliteStorage).

    Same file layout, claims and batching. cysqlite brings its own SQLite
    library, which does not see the locks of the one behind sqlite3 (SQLite's
    file locks are per process): never open one file through both drivers in
    one process.
    """

    def __init__(self, *args, **kwargs):
        if cysqlite is None:
            raise ConfigurationError(
                'CySqliteStorage needs the "cysqlite" package: pip install cysqlite; '
                'or use SqliteStorage, the same storage on the standard library\'s sqlite3')
        super().__init__(*args, **kwargs)

    def _open(self):
        return _CyConnection(self.filename, self.timeout)


class _CyConnection:
    """A cysqlite connection, with the part of sqlite3's interface SqliteStorage uses.

    cysqlite's classes cannot be subclassed, and it raises errors of its own;
    they become sqlite3's as well here (see CyOperationalError), so SqliteStorage's
    handling of errors holds for both drivers. cysqlite never opens a transaction by itself,
    as sqlite3 with isolation_level=None.
    """

    def __init__(self, filename, timeout):
        self.schemas = set()  # as _Connection.schemas
        self.conn = _translated(cysqlite.connect, filename, timeout=timeout)

    def execute(self, sql, parameters=()):
        return _CyCursor(_translated(self.conn.execute, sql, parameters))

    def executemany(self, sql, parameters):
        return _CyCursor(_translated(self.conn.executemany, sql, parameters))

    def executescript(self, script):
        return _CyCursor(_translated(self.conn.executescript, script))

    def pragma(self, name):
        """A pragma's value, as cysqlite's own connection reads it (huey's storage.conn has it)."""
        return _translated(self.conn.pragma, name)

    def close(self):
        self.conn.close()


class _CyCursor:
    def __init__(self, cursor):
        self.cursor = cursor

    @property
    def rowcount(self):
        return self.cursor.rowcount

    def fetchone(self):
        return _translated(self.cursor.fetchone)

    def fetchall(self):
        return _translated(self.cursor.fetchall)


# cysqlite's errors are raised as sqlite3's, so SqliteStorage handles both drivers alike,
# and as cysqlite's too, so code written for huey's CySqliteStorage still catches them.
_CYSQLITE_ERROR = (cysqlite.OperationalError,) if cysqlite is not None else ()


class CyOperationalError(sqlite3.OperationalError, *_CYSQLITE_ERROR):
    """cysqlite's OperationalError, as sqlite3's as well."""


class CyUnavailable(SqliteUnavailable, *_CYSQLITE_ERROR):
    """cysqlite's OperationalError worth retrying, as SqliteUnavailable as well."""


def _translated(call, *args, **kwargs):
    """``call(...)``, raising a cysqlite OperationalError as CyOperationalError (or CyUnavailable)."""
    try:
        return call(*args, **kwargs)
    except cysqlite.OperationalError as exc:
        # cysqlite names SQLite's result code only in its message: "... (code=5, ext=5)".
        code = re.search(r'\(code=(\d+)', str(exc))
        transient = code is not None and int(code.group(1)) in TRANSIENT_CODES
        raise (CyUnavailable if transient else CyOperationalError)(str(exc)) from exc
