"""PostgreSQL storage: one database shared by every process on every machine.

Tables (``{p}`` is ``table_prefix``, ``huey`` by default; every row carries the
queue ``name``, so queues share tables)::

    {p}_task      id bigserial, queue, data bytea, priority float8     the queue
    {p}_schedule  id bigserial, queue, data, timestamp float8, priority
    {p}_kv        queue, key text, value bytea, expires_at float8      results, locks
    {p}_counter   queue, key, value bigint
    -- created on the first use of claims, dead letters, node state or events:
    {p}_claim     id (the task's), queue, worker, data, priority       claimed messages
    {p}_lease     queue, worker, expires_at                            worker leases
    {p}_dead      id bigserial, queue, key, record bytea               dead letters
    {p}_state     queue, kind, key, value, expires_at                  node state
    {p}_event     id bigserial, queue, data, created                   events too big to notify
    -- created on the first use of statistics:
    {p}_stat      queue, minute, task, field, value float8             task statistics

The first four are huey's PostgresStorage tables (hueyd adds the columns
``priority`` and ``expires_at`` to tables huey made), so a huey database can be
taken over as it is. ``create_tables=False`` issues no DDL at all: create them
with ``initialize_schema(delivery=True)`` once.

Statistics (the Stats protocol): a row per queue, minute, task and field, added to
with ``INSERT ... ON CONFLICT DO UPDATE``; each write deletes the minutes older than
``stats_retention``.

Concurrency: each thread has its own connection (in autocommit), and a forked
process opens new ones. Dequeue and claim lock their rows with ``FOR UPDATE
SKIP LOCKED``, so concurrent workers never take the same message and never wait
for each other. Every write that makes messages runnable NOTIFYs the queue's
channel; an idle worker LISTENs on it (its own connection, per thread) instead
of polling. Leases and ttls use the database's clock, shared by every machine.

psycopg 3 is imported on first use: ``pip install 'hueyd[postgres]'``.
"""
import hashlib
import os
import re
import threading
import time

from hueyd.constants import EmptyData
from hueyd.exceptions import ConfigurationError
from hueyd.times import unix_time
from hueyd.storage.base import BaseStorage
from hueyd.storage.batch import SharedBatch
from hueyd.storage.listener import EventListener
from hueyd.storage.protocols import (Claimed, Claims, DeadLetters, Events, NodeState, Stats,
                                     WriteBatching, text_key)

BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}_kv (
    queue text NOT NULL, key text NOT NULL, value bytea NOT NULL, expires_at float8,
    PRIMARY KEY (queue, key));
CREATE TABLE IF NOT EXISTS {p}_schedule (
    id bigserial PRIMARY KEY, queue text NOT NULL, data bytea NOT NULL,
    timestamp float8 NOT NULL, priority float8 NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS {p}_schedule_queue_timestamp ON {p}_schedule (queue, timestamp);
CREATE TABLE IF NOT EXISTS {p}_task (
    id bigserial PRIMARY KEY, queue text NOT NULL, data bytea NOT NULL,
    priority float8 NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS {p}_task_queue_priority_id ON {p}_task (queue, priority DESC, id);
CREATE TABLE IF NOT EXISTS {p}_counter (
    queue text NOT NULL, key text NOT NULL, value bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, key));
"""
# The scheduled messages due at a timestamp, removed (concurrent takers skip each other's).
TAKE_DUE = ('DELETE FROM {p}_schedule WHERE id IN (SELECT id FROM {p}_schedule '
            'WHERE queue = %s AND timestamp <= %s FOR UPDATE SKIP LOCKED) ')
# Columns hueyd needs that huey's own tables lack: added only when missing, since
# an ALTER TABLE takes the table's strongest lock even when it changes nothing.
ADDED_COLUMNS = (('{p}_kv', 'expires_at', 'float8'),
                 ('{p}_schedule', 'priority', 'float8 NOT NULL DEFAULT 0'))
DELIVERY_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}_claim (
    id bigint PRIMARY KEY, queue text NOT NULL, worker text NOT NULL, data bytea NOT NULL,
    priority float8 NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS {p}_claim_queue_worker ON {p}_claim (queue, worker);
CREATE TABLE IF NOT EXISTS {p}_lease (
    queue text NOT NULL, worker text NOT NULL, expires_at float8 NOT NULL,
    PRIMARY KEY (queue, worker));
CREATE TABLE IF NOT EXISTS {p}_dead (
    id bigserial PRIMARY KEY, queue text NOT NULL, key text NOT NULL, record bytea NOT NULL,
    UNIQUE (queue, key));
CREATE TABLE IF NOT EXISTS {p}_state (
    queue text NOT NULL, kind text NOT NULL, key text NOT NULL, value bytea NOT NULL,
    expires_at float8 NOT NULL, PRIMARY KEY (queue, kind, key));
CREATE TABLE IF NOT EXISTS {p}_event (
    id bigserial PRIMARY KEY, queue text NOT NULL, data bytea NOT NULL,
    created float8 NOT NULL);
"""
STATS_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}_stat (
    queue text NOT NULL, minute bigint NOT NULL, task text NOT NULL, field text NOT NULL,
    value float8 NOT NULL, PRIMARY KEY (queue, minute, task, field));
"""
SCHEMAS = {'base': BASE_SCHEMA, 'delivery': DELIVERY_SCHEMA, 'stats': STATS_SCHEMA}
# The table whose existence tells that a schema was created (see _exists).
FIRST_TABLES = {'delivery': '{p}_claim', 'stats': '{p}_stat'}
# The database's clock, in unix seconds: one clock for every machine.
NOW = 'extract(epoch FROM clock_timestamp())::float8'
LIVE = '(expires_at IS NULL OR expires_at > %s)' % NOW
# NOTIFY payloads must stay under 8000 bytes; a bigger event goes through {p}_event.
MAX_PAYLOAD = 7900
BIG_EVENT_KEEP = 3600  # seconds a big event's row is kept for slow listeners


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise ConfigurationError("PostgresStorage needs psycopg 3: pip install 'hueyd[postgres]'") \
            from None
    return psycopg


def _channel(prefix, kind, name):
    """A NOTIFY channel name; PostgreSQL refuses names over 63 bytes."""
    channel = '%s.%s.%s' % (prefix, kind, name)
    if len(channel.encode('utf-8')) > 63:
        channel = '%s.%s.%s' % (prefix[:20], kind, hashlib.md5(name.encode('utf-8')).hexdigest())
    return channel


class PostgresStorage(Claims, DeadLetters, Events, NodeState, Stats, WriteBatching, BaseStorage):
    priority = True

    def __init__(self, name='huey', dsn=None, connection=None, blocking=True, read_timeout=1,
                 table_prefix='huey', create_tables=True, **connection_params):
        """``dsn``: a libpq connection string or URL; ``connection``: a function returning a
        new psycopg connection instead; ``connection_params`` go to psycopg.connect()."""
        super().__init__(name)
        self.psycopg = _psycopg()
        if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]{0,40}', table_prefix or ''):
            raise ConfigurationError('table_prefix %r is not a plain SQL name (letters, digits, '
                                     'underscores)' % (table_prefix,))
        self.dsn, self.connection, self.connection_params = dsn, connection, connection_params
        self.blocking = bool(blocking)
        self.read_timeout = float(read_timeout)
        self.table_prefix = table_prefix
        self.create_tables = create_tables
        self.channel = _channel(table_prefix, 'q', name)          # messages to run
        self.result_channel = _channel(table_prefix, 'r', name)   # results stored
        self.events_channel = _channel(table_prefix, 'e', name)
        self.transient_errors = BaseStorage.transient_errors + (self.psycopg.OperationalError,)
        self._local = threading.local()
        # Per thread, for LISTEN; a dead thread's connection goes with its thread.
        self._listen_local = threading.local()
        self._inherited = []  # connections of the parent process, never closed here
        self._ready = set()   # the schemas this instance created (or found)
        self.write_batch = SharedBatch(list, self._send_batch)

    def _sql(self, sql):
        return sql.replace('{p}', self.table_prefix)

    def location(self):
        if self.dsn:  # without the password
            return re.sub(r'(://[^:/@]*):[^@]*@', r'\1@', self.dsn)
        return None

    # --- connections -------------------------------------------------------------
    def _connect(self):
        if self.connection is not None:
            conn = self.connection()
        else:
            conn = self.psycopg.connect(self.dsn or '', **self.connection_params)
        conn.autocommit = True
        return conn

    @property
    def conn(self):
        """This thread's connection: opened on first use, after a fork, and when broken."""
        local = self._local
        conn = getattr(local, 'conn', None)
        if conn is not None and local.pid != os.getpid():
            self._inherited.append(conn)  # psycopg never closes it from this process
            conn = None
        elif conn is not None and (conn.closed or conn.broken):
            conn = None
        if conn is None:
            conn = local.conn = self._connect()
            local.pid = os.getpid()
            try:
                self._ensure('base')
            except BaseException:  # the next call tries again, on a new connection
                local.conn = None
                conn.close()
                raise
        return conn

    def _listen_conn(self, channel):
        """This thread's LISTEN connection, listening on ``channel`` (from now on)."""
        local = self._listen_local
        conn = getattr(local, 'conn', None)
        if conn is not None and (getattr(local, 'pid', None) != os.getpid()
                                 or conn.closed or conn.broken):
            conn = None
        if conn is None:
            local.conn, local.pid, local.channels = self._connect(), os.getpid(), set()
            conn = local.conn
        if channel not in local.channels:
            conn.execute('LISTEN %s' % _quoted(channel))
            local.channels.add(channel)
        return conn

    def _wait(self, channel, timeout, payload=None):
        """Wait up to ``timeout`` seconds for a notification (with ``payload``, if given)."""
        conn = self._listen_conn(channel)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for note in conn.notifies(timeout=left, stop_after=1):
                if note.channel == channel and (payload is None or note.payload in (payload, '')):
                    return True

    def close(self):
        for local in (self._local, self._listen_local):
            conn = getattr(local, 'conn', None)
            if conn is not None and local.pid == os.getpid():
                try:
                    conn.close()
                except Exception:
                    pass  # closing a broken connection may fail; it is gone either way
            local.conn = None

    # --- schema ------------------------------------------------------------------
    def initialize_schema(self, delivery=False):
        """Create the tables (the base four; and the others with ``delivery=True``)."""
        self._create('base')
        if delivery:
            self._create('delivery')
            self._create('stats')

    def _ensure(self, schema):
        if schema not in self._ready and self.create_tables:
            self._create(schema)
        self._ready.add(schema)

    def _create(self, schema):
        conn = self.conn  # opened (and its pid noted) before it asks for the base schema
        with conn.transaction():
            # Two processes creating one table at once would clash on its catalog row.
            conn.execute('SELECT pg_advisory_xact_lock(%s)', (_lock_id(self.table_prefix),))
            for statement in self._sql(SCHEMAS[schema]).split(';'):
                # Even as a no-op, CREATE INDEX locks its table against writes until the
                # transaction ends: each new process would stall every worker behind the
                # writes in flight. So an index that exists is left out.
                index = re.match(r'\s*CREATE INDEX IF NOT EXISTS (\w+)', statement)
                if index and conn.execute('SELECT to_regclass(%s) IS NOT NULL',
                                          (index.group(1),)).fetchone()[0]:
                    continue
                if statement.strip():
                    conn.execute(statement)
            if schema == 'base':
                for table, column, kind in ADDED_COLUMNS:
                    table = self._sql(table)
                    exists = conn.execute(
                        'SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) '
                        'AND attname = %s AND NOT attisdropped', (table, column)).fetchone()
                    if not exists:
                        conn.execute('ALTER TABLE %s ADD COLUMN %s %s' % (table, column, kind))
        self._ready.add(schema)

    def _delivery_exists(self):
        """Whether the delivery tables exist, without creating them (for flushes and reads)."""
        return self._exists('delivery')

    def _exists(self, schema):
        """Whether the tables of ``schema`` exist, without creating them."""
        if schema not in self._ready:
            if not self._value('SELECT to_regclass(%s) IS NOT NULL',
                               self._sql(FIRST_TABLES[schema])):
                return False
            self._ready.add(schema)
        return True

    # --- statements --------------------------------------------------------------
    def _rows(self, sql, *params):
        return self.conn.execute(self._sql(sql), params).fetchall()

    def _value(self, sql, *params):
        rows = self._rows(sql, *params)
        return rows[0][0] if rows else None

    def _run(self, sql, *params):
        return self.conn.execute(self._sql(sql), params).rowcount

    def _write(self, sql, *params):
        """A write nobody waits to read back: batched in a batching thread."""
        if self.write_batch.active:
            with self.write_batch.adding() as statements:
                statements.append((self._sql(sql), params))
        else:
            self._run(sql, *params)

    def _send_batch(self, statements):
        conn = self.conn
        with conn.transaction():
            for sql, params in statements:
                conn.execute(sql, params)

    # --- queue -------------------------------------------------------------------
    def enqueue(self, data, priority=None):
        self._write('WITH i AS (INSERT INTO {p}_task (queue, data, priority) VALUES (%s, %s, %s)) '
                    'SELECT pg_notify(%s, %s)', self.name, data, priority or 0, self.channel, '')

    def enqueue_many(self, items):
        items = list(items)
        if items:
            self._write('WITH i AS (INSERT INTO {p}_task (queue, data, priority) '
                        'SELECT %s, d, p FROM unnest(%s::bytea[], %s::float8[]) '
                        'WITH ORDINALITY AS t(d, p, n) ORDER BY n) SELECT pg_notify(%s, %s)',
                        self.name, [data for data, _ in items],
                        [priority or 0 for _, priority in items], self.channel, '')

    def _take(self):
        return self._value('DELETE FROM {p}_task WHERE id = (SELECT id FROM {p}_task WHERE '
                           'queue = %s ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) '
                           'RETURNING data', self.name)

    def _blocking(self, take, empty):
        """``take()``, and when it finds nothing, again at each NOTIFY for up to read_timeout."""
        found = take()
        if found != empty or not self.blocking:
            return found
        deadline = time.monotonic() + self.read_timeout
        while True:
            self._listen_conn(self.channel)
            found = take()  # again, now that a message enqueued from here on wakes us
            left = deadline - time.monotonic()
            if found != empty or left <= 0 or not self._wait(self.channel, left):
                return found

    def dequeue(self):
        return self._blocking(self._take, None)

    def queue_size(self):
        return self._value('SELECT count(*) FROM {p}_task WHERE queue = %s', self.name)

    def enqueued_items(self, limit=None):
        return [data for data, in self._rows(
            'SELECT data FROM {p}_task WHERE queue = %s ORDER BY priority DESC, id LIMIT %s',
            self.name, limit)]

    def flush_queue(self):
        self._run('DELETE FROM {p}_task WHERE queue = %s', self.name)
        if self._delivery_exists():
            self._run('DELETE FROM {p}_claim WHERE queue = %s', self.name)

    # --- schedule ----------------------------------------------------------------
    def add_to_schedule(self, data, ts, priority=None):
        self._write('INSERT INTO {p}_schedule (queue, data, timestamp, priority) '
                    'VALUES (%s, %s, %s, %s)', self.name, data, unix_time(ts), priority or 0)

    def read_schedule(self, ts):
        rows = self._rows(TAKE_DUE + 'RETURNING timestamp, id, data', self.name, unix_time(ts))
        return [data for _, _, data in sorted(rows)]  # RETURNING order is unspecified

    def move_due(self, ts):
        # One statement: the messages leave the schedule and join the queue together.
        rows = self._rows(
            'WITH due AS (' + TAKE_DUE + 'RETURNING id, timestamp, data, priority), '
            'i AS (INSERT INTO {p}_task (queue, data, priority) '
            'SELECT %s, data, priority FROM due ORDER BY timestamp, id) '
            'SELECT timestamp, id, data, pg_notify(%s, %s) FROM due',
            self.name, unix_time(ts), self.name, self.channel, '')
        return [data for _, _, data, _ in sorted(rows)]

    def next_schedule_time(self):
        return self._value('SELECT min(timestamp) FROM {p}_schedule WHERE queue = %s', self.name)

    def schedule_size(self):
        return self._value('SELECT count(*) FROM {p}_schedule WHERE queue = %s', self.name)

    def scheduled_items(self, limit=None):
        return [data for data, in self._rows(
            'SELECT data FROM {p}_schedule WHERE queue = %s ORDER BY timestamp, id LIMIT %s',
            self.name, limit)]

    def flush_schedule(self):
        self._run('DELETE FROM {p}_schedule WHERE queue = %s', self.name)

    # --- data store --------------------------------------------------------------
    def put_data(self, key, value, is_result=False):
        key = text_key(key)
        sql = ('INSERT INTO {p}_kv (queue, key, value, expires_at) VALUES (%s, %s, %s, NULL) '
               'ON CONFLICT (queue, key) DO UPDATE SET value = excluded.value, expires_at = NULL')
        if not is_result:
            return self._write(sql, self.name, key, value)
        # A stored result wakes its waiters (wait_result), whatever connection they use.
        self._write('WITH u AS (' + sql + ') SELECT pg_notify(%s, %s)', self.name, key, value,
                    self.result_channel, key if len(key.encode('utf-8')) < MAX_PAYLOAD else '')

    def peek_data(self, key):
        rows = self._rows('SELECT value FROM {p}_kv WHERE queue = %s AND key = %s AND ' + LIVE,
                          self.name, text_key(key))
        return rows[0][0] if rows else EmptyData

    def peek_many(self, keys):
        return dict(self._rows('SELECT key, value FROM {p}_kv WHERE queue = %s AND '
                               'key = ANY(%s) AND ' + LIVE, self.name, [text_key(k) for k in keys]))

    def pop_data(self, key):
        rows = self._rows('DELETE FROM {p}_kv WHERE queue = %s AND key = %s '
                          'RETURNING value, ' + LIVE, self.name, text_key(key))
        return rows[0][0] if rows and rows[0][1] else EmptyData

    def has_data_for_key(self, key):
        return bool(self._rows('SELECT 1 FROM {p}_kv WHERE queue = %s AND key = %s AND ' + LIVE,
                               self.name, text_key(key)))

    def put_if_empty(self, key, value, ttl=None):
        # Inserts, or takes over a row whose ttl ran out; otherwise changes nothing.
        return self._run(
            'INSERT INTO {p}_kv AS kv (queue, key, value, expires_at) '
            'VALUES (%s, %s, %s, ' + NOW + ' + %s::float8) '
            'ON CONFLICT (queue, key) DO UPDATE SET value = excluded.value, '
            'expires_at = excluded.expires_at '
            'WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ' + NOW,
            self.name, text_key(key), value, ttl) == 1

    waits_for_results = True  # LISTEN on the results' channel

    def wait_result(self, key, timeout=None, backoff=1.15, max_delay=1.0):
        """Wait for ``key`` to hold a value, woken by the NOTIFY of put_data(is_result=True);
        it also looks every ``max_delay`` seconds (a plain put_data notifies nobody)."""
        key = text_key(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._listen_conn(self.result_channel)
            if self.has_data_for_key(key):
                return True
            left = max_delay if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            self._wait(self.result_channel, min(left, max_delay), key)

    def result_store_size(self):
        return self._value('SELECT count(*) FROM {p}_kv WHERE queue = %s AND ' + LIVE, self.name)

    def result_items(self):
        return dict(self._rows('SELECT key, value FROM {p}_kv WHERE queue = %s AND ' + LIVE,
                               self.name))

    def flush_results(self):
        self._run('DELETE FROM {p}_kv WHERE queue = %s', self.name)

    # --- counters ----------------------------------------------------------------
    def incr(self, key, amount=1):
        return self._value('INSERT INTO {p}_counter AS c (queue, key, value) VALUES (%s, %s, %s) '
                           'ON CONFLICT (queue, key) DO UPDATE SET value = c.value + excluded.value '
                           'RETURNING value', self.name, text_key(key), amount)

    def delete_counter(self, key):
        self._run('DELETE FROM {p}_counter WHERE queue = %s AND key = %s', self.name, text_key(key))

    def flush_counters(self):
        self._run('DELETE FROM {p}_counter WHERE queue = %s', self.name)

    # --- delivery: claims move from {p}_task to {p}_claim; the receipt is the id ------
    def _delivery(self):
        """Create the delivery tables on first use (after the base ones, with the connection)."""
        if 'delivery' not in self._ready:
            self.conn  # noqa: B018 (opening it creates the base tables)
            self._ensure('delivery')

    def _claim_now(self, worker, count, lease):
        self._delivery()
        rows = self._rows(
            # The rows are picked once, in a CTE of their own: as the subquery of an
            # IN (...), the planner may run the LIMIT again and take more than count.
            'WITH picked AS MATERIALIZED (SELECT id FROM {p}_task WHERE queue = %s '
            'ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED), '
            'taken AS (DELETE FROM {p}_task t USING picked WHERE t.id = picked.id '
            'RETURNING t.id, t.data, t.priority), '
            'lease AS (INSERT INTO {p}_lease (queue, worker, expires_at) '
            'VALUES (%s, %s, ' + NOW + ' + %s) '
            'ON CONFLICT (queue, worker) DO UPDATE SET expires_at = excluded.expires_at) '
            'INSERT INTO {p}_claim (id, queue, worker, data, priority) '
            'SELECT id, %s, %s, data, priority FROM taken RETURNING id, data, priority',
            self.name, count, self.name, worker, float(lease), self.name, worker)
        rows.sort(key=lambda row: (-row[2], row[0]))  # RETURNING order is unspecified
        return Claimed((receipt, data) for receipt, data, _ in rows)

    def claim(self, worker, count=1, lease=30.0):
        return self._blocking(lambda: self._claim_now(worker, count, lease), [])

    def _requeue(self, where, *params):
        """Move the claims ``where`` selects back to the queue, in their old places; how many."""
        self._delivery()
        return self._value(
            'WITH back AS (DELETE FROM {p}_claim c WHERE ' + where +
            ' RETURNING id, queue, data, priority), '
            'i AS (INSERT INTO {p}_task (id, queue, data, priority) '
            'SELECT id, queue, data, priority FROM back) '
            'SELECT n, CASE WHEN n > 0 THEN pg_notify(%s, %s) END '
            'FROM (SELECT count(*) AS n FROM back) s', *params, self.channel, '')

    def ack(self, worker, receipts):
        self._delivery()
        self._write('DELETE FROM {p}_claim WHERE queue = %s AND worker = %s AND id = ANY(%s)',
                    self.name, worker, list(receipts))

    def release(self, worker, receipts):
        self._requeue('queue = %s AND worker = %s AND id = ANY(%s)',
                      self.name, worker, list(receipts))

    def beat(self, worker, lease):
        self._delivery()
        self._run('INSERT INTO {p}_lease (queue, worker, expires_at) '
                  'VALUES (%s, %s, ' + NOW + ' + %s) ON CONFLICT (queue, worker) '
                  'DO UPDATE SET expires_at = excluded.expires_at', self.name, worker, float(lease))

    def retire_worker(self, worker):
        self._requeue('queue = %s AND worker = %s', self.name, worker)
        self._run('DELETE FROM {p}_lease WHERE queue = %s AND worker = %s', self.name, worker)

    def recover(self):
        if not self._delivery_exists():
            return 0
        moved = self._requeue('queue = %s AND NOT EXISTS (SELECT 1 FROM {p}_lease l WHERE '
                              'l.queue = c.queue AND l.worker = c.worker AND l.expires_at > '
                              + NOW + ')', self.name)
        self._run('DELETE FROM {p}_lease WHERE queue = %s AND expires_at <= ' + NOW, self.name)
        return moved

    def claimed_items(self):
        claimed = {}
        if self._delivery_exists():
            for worker, data in self._rows('SELECT worker, data FROM {p}_claim WHERE queue = %s '
                                           'ORDER BY id', self.name):
                claimed.setdefault(worker, []).append(data)
        return claimed

    def worker_claims(self, worker):
        if not self._delivery_exists():
            return []
        return [tuple(row) for row in self._rows(
            'SELECT id, data FROM {p}_claim WHERE queue = %s AND worker = %s ORDER BY id',
            self.name, worker)]

    # --- dead letters --------------------------------------------------------------
    def add_dead_letter(self, key, record):
        self._delivery()
        self._run('INSERT INTO {p}_dead (queue, key, record) VALUES (%s, %s, %s) '
                  'ON CONFLICT (queue, key) DO UPDATE SET record = excluded.record',
                  self.name, key, record)

    def dead_letters(self):
        if not self._delivery_exists():
            return []
        return [tuple(row) for row in self._rows(
            'SELECT key, record FROM {p}_dead WHERE queue = %s ORDER BY id', self.name)]

    def dead_letter_count(self):
        if not self._delivery_exists():
            return 0
        return self._value('SELECT count(*) FROM {p}_dead WHERE queue = %s', self.name)

    def remove_dead_letters(self, keys):
        keys = list(keys)
        if not keys or not self._delivery_exists():
            return 0
        return self._run('DELETE FROM {p}_dead WHERE queue = %s AND key = ANY(%s)', self.name, keys)

    # --- node state ------------------------------------------------------------------
    def put_state(self, kind, key, value, ttl):
        self._delivery()
        self._run(
            'WITH gone AS (DELETE FROM {p}_state WHERE queue = %s AND kind = %s AND key <> %s '
            'AND expires_at <= ' + NOW + ') '
            'INSERT INTO {p}_state (queue, kind, key, value, expires_at) '
            'VALUES (%s, %s, %s, %s, ' + NOW + ' + %s) ON CONFLICT (queue, kind, key) '
            'DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at',
            self.name, kind, key, self.name, kind, key, value, float(ttl))

    def states(self, kind):
        if not self._delivery_exists():
            return {}
        return dict(self._rows('SELECT key, value FROM {p}_state WHERE queue = %s AND kind = %s '
                               'AND expires_at > ' + NOW + ' ORDER BY key', self.name, kind))

    def delete_state(self, kind, key):
        if self._delivery_exists():
            self._run('DELETE FROM {p}_state WHERE queue = %s AND kind = %s AND key = %s',
                      self.name, kind, key)

    # --- events: NOTIFY on the events channel ------------------------------------------
    # An event travels as the NOTIFY payload itself, so listeners get events in commit
    # order; one over the payload limit (a long traceback) is stored in {p}_event and
    # its NOTIFY carries '@' and the row's id.
    events_by_default = False  # huey's PostgresHuey had no events

    def publish_events(self, events):
        texts = [data.decode('utf-8') if isinstance(data, bytes) else data for data in events]
        payloads = [text if len(text.encode('utf-8')) < MAX_PAYLOAD
                    else '@%d' % self._store_event(text) for text in texts]
        self._write('SELECT pg_notify(%s, p) FROM unnest(%s::text[]) WITH ORDINALITY '
                    'AS t(p, n) ORDER BY n', self.events_channel, payloads)

    def _store_event(self, text):
        """Keep a big event in {p}_event (dropping those older than BIG_EVENT_KEEP); its id."""
        self._delivery()
        return self._value(
            'WITH gone AS (DELETE FROM {p}_event WHERE queue = %s AND created < ' + NOW + ' - %s) '
            'INSERT INTO {p}_event (queue, data, created) VALUES (%s, %s, ' + NOW + ') RETURNING id',
            self.name, BIG_EVENT_KEEP, self.name, text.encode('utf-8'))

    def listener(self):
        self.check_events_enabled()
        conn = self._connect()  # its own: a listener lives apart from its thread's work
        conn.execute('LISTEN %s' % _quoted(self.events_channel))

        def fetch(timeout):
            found = [note.payload for note in conn.notifies(timeout=timeout, stop_after=1)]
            if found:  # and whatever else has arrived already
                found += [note.payload for note in conn.notifies(timeout=0)]
            return [self._event(payload) for payload in found]

        return EventListener('hueyd.%s.events' % self.name, fetch, conn.close)

    def _event(self, payload):
        if not payload.startswith('@'):
            return payload.encode('utf-8')
        data = self._value('SELECT data FROM {p}_event WHERE id = %s', int(payload[1:]))
        return data if data is not None else b'[]'  # trimmed before it was read

    # --- statistics: a row per minute, task and field, deleted past the retention ----
    def add_stats(self, figures):
        self._ensure('stats')
        rows = [(self.name, minute, task, field, float(value))
                for (minute, task), fields in figures.items() for field, value in fields.items()]
        with self.conn.transaction():
            with self.conn.cursor() as cursor:
                cursor.executemany(self._sql(
                    'INSERT INTO {p}_stat (queue, minute, task, field, value) '
                    'VALUES (%s, %s, %s, %s, %s) ON CONFLICT (queue, minute, task, field) '
                    "DO UPDATE SET value = CASE WHEN {p}_stat.field = 'max' THEN "
                    'GREATEST({p}_stat.value, excluded.value) '
                    'ELSE {p}_stat.value + excluded.value END'), rows)
            self._run('DELETE FROM {p}_stat WHERE queue = %s AND minute < '
                      'floor((' + NOW + ' - %s) / 60)', self.name, self.stats_retention)

    def read_stats(self, since):
        if not self._exists('stats'):
            return {}
        figures = {}
        for minute, task, field, value in self._rows(
                'SELECT minute, task, field, value FROM {p}_stat WHERE queue = %s AND minute >= %s',
                self.name, since):
            figures.setdefault((minute, task), {})[field] = value
        return figures

    def flush_stats(self):
        if self._exists('stats'):
            self._run('DELETE FROM {p}_stat WHERE queue = %s', self.name)

    def flush_all(self):
        super().flush_all()
        if self._delivery_exists():
            self._run('DELETE FROM {p}_event WHERE queue = %s', self.name)


def _quoted(identifier):
    return '"%s"' % identifier.replace('"', '""')


def _lock_id(prefix):
    """The advisory lock taken while creating the tables of ``prefix`` (a signed 64-bit int)."""
    return int.from_bytes(hashlib.md5(('hueyd.schema.' + prefix).encode()).digest()[:8], 'big',
                          signed=True)
