"""huey's ``huey.contrib.sql_huey``: ``SqlHuey``, a queue kept in any database peewee speaks.

    huey = SqlHuey('app', database='postgresql://user@host/db')  # or 'sqlite:///path'
    huey = SqlHuey('app', database=peewee_database)               # a peewee Database

Seven tables (``hueyd_sql_queue``, ``_schedule``, ``_kv``, ``_counters``,
``_leases``, ``_dead``, ``_state``) are created with the storage unless
``create_tables=False`` (then ``initialize_schema()`` creates them). Every row
carries the queue's name, so queues may share tables.

Taking a message (dequeue, claim, read_schedule, move_due, pop_data) is a select
and a write in one transaction: ``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE SKIP
LOCKED`` where the database has row locks (PostgreSQL; MySQL 8.0.1+ and
MariaDB 10.6+), so no two consumers ever take the same row.

Besides the four base protocols it has Claims (at-least-once delivery under the
daemon), DeadLetters and NodeState. Needs peewee: ``pip install 'hueyd[sql]'``.
"""
import functools
import os
import time
import weakref

try:
    import peewee
    from playhouse.db_url import connect as connect_url
except ImportError as exc:
    raise ImportError("hueyd.contrib.sql_huey needs peewee: pip install 'hueyd[sql]'") from exc

from hueyd.api import Huey
from hueyd.constants import EmptyData
from hueyd.exceptions import ConfigurationError
from hueyd.storage.base import BaseStorage
from hueyd.storage.protocols import Claimed, Claims, DeadLetters, NodeState
from hueyd.times import unix_time

CHUNK = 500  # ids or keys per IN (...): below every database's limit on parameters


class BytesField(peewee.BlobField):
    """A blob read back as ``bytes`` (PostgreSQL's drivers may hand back a memoryview)."""

    def python_value(self, value):
        return value if value is None or isinstance(value, bytes) else bytes(value)


def create_models(db):
    """The tables, as peewee models bound to the peewee Database ``db``."""
    class Base(peewee.Model):
        name = peewee.CharField()  # the queue's

        class Meta:
            database = db

    class Queue(Base):
        data = BytesField()
        priority = peewee.FloatField(default=0)
        # The worker whose claim it is (see SqlStorage.claim); NULL: waiting to be taken.
        claimed_by = peewee.CharField(null=True)

        class Meta:
            table_name = 'hueyd_sql_queue'

    # Unclaimed, highest priority first, then first in, first out: the order dequeue() reads.
    Queue.add_index(Queue.name, Queue.claimed_by, Queue.priority.desc(), Queue.id)

    class Schedule(Base):
        data = BytesField()
        ts = peewee.DoubleField()  # unix seconds
        priority = peewee.FloatField(default=0)  # the one it is queued with

        class Meta:
            table_name = 'hueyd_sql_schedule'
            indexes = ((('name', 'ts'), False),)

    class KV(Base):
        key = peewee.CharField()
        value = BytesField()
        expires_at = peewee.DoubleField(null=True)  # put_if_empty's ttl; NULL: never

        class Meta:
            table_name = 'hueyd_sql_kv'
            primary_key = peewee.CompositeKey('name', 'key')

    class Counter(Base):
        key = peewee.CharField()
        value = peewee.BigIntegerField()

        class Meta:
            table_name = 'hueyd_sql_counters'
            primary_key = peewee.CompositeKey('name', 'key')

    class Lease(Base):
        worker = peewee.CharField()
        expires_at = peewee.DoubleField()  # unix seconds, on SqlStorage.now()'s clock

        class Meta:
            table_name = 'hueyd_sql_leases'
            primary_key = peewee.CompositeKey('name', 'worker')

    class Dead(Base):
        key = peewee.CharField()
        record = BytesField()

        class Meta:
            table_name = 'hueyd_sql_dead'
            indexes = ((('name', 'key'), True),)

    class State(Base):
        kind = peewee.CharField()
        key = peewee.CharField()
        value = BytesField()
        expires_at = peewee.DoubleField()  # as Lease's

        class Meta:
            table_name = 'hueyd_sql_state'
            primary_key = peewee.CompositeKey('name', 'kind', 'key')

    return [Queue, Schedule, KV, Counter, Lease, Dead, State]


def connected(method):
    """Reconnects first when the server dropped this thread's connection (restart, idle timeout)."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        database = self.database
        if not (database.is_closed() or database.in_transaction()
                or database.is_connection_usable()):
            database.close()  # peewee opens a fresh one on the next query
        return method(self, *args, **kwargs)
    return call


# Connections open when this process forked, kept referenced in the child: closing
# one there (even by garbage collection) would end the parent's session too.
INHERITED = []


def forget_connection(ref):
    """After a fork, in the child: leave the parent's connection alone and open a new one."""
    database = ref()
    dispose = getattr(database, 'dispose', None)  # recent peewee; with older, the child shares
    if dispose is not None and not database.is_closed():
        INHERITED.append(database.connection())
        dispose()


class SqlStorage(Claims, DeadLetters, NodeState, BaseStorage):
    priority = True
    # What a lost or refused connection raises through peewee, whatever the driver
    # (OperationalError also covers a missing table: the first call shows that one).
    transient_errors = BaseStorage.transient_errors + (peewee.OperationalError,
                                                       peewee.InterfaceError)

    def __init__(self, name='huey', database=None, create_tables=True, **storage_kwargs):
        super().__init__(name)
        if database is None:
            raise ConfigurationError(
                "SqlStorage needs database=: a peewee Database or a URL such as "
                "'sqlite:///huey.db' or 'postgresql://user@host/db'")
        if not isinstance(database, peewee.Database):
            database = connect_url(database)
        self.database = database
        self.models = create_models(database)
        (self.Queue, self.Schedule, self.KV, self.Counter,
         self.Lease, self.Dead, self.State) = self.models
        os.register_at_fork(after_in_child=functools.partial(forget_connection,
                                                             weakref.ref(database)))
        if create_tables:
            self.create_tables()

    # --- the tables and the connection ------------------------------------
    @connected
    def create_tables(self):
        self.database.create_tables(self.models, safe=True)

    def initialize_schema(self):
        """Create the tables (huey's name: for ``create_tables=False``)."""
        self.create_tables()

    @connected
    def drop_tables(self):
        self.database.drop_tables(self.models, safe=True)

    def close(self):
        closed = self.database.close()  # this thread's connection
        if hasattr(self.database, 'close_idle'):  # a pool's: idle connections too
            self.database.close_idle()
        return closed

    def location(self):
        return self.database.database

    def atomic(self):
        """A transaction; SQLite's takes the write lock first, so two readers never race."""
        if isinstance(self.database, peewee.SqliteDatabase):
            return self.database.atomic('IMMEDIATE')
        return self.database.atomic()

    def locking(self, query):
        """``query`` locking the rows it reads, skipping those another transaction holds."""
        return query.for_update('FOR UPDATE SKIP LOCKED') if self.database.for_update else query

    def mine(self, model, *columns):
        return model.select(*columns).where(model.name == self.name)

    def upsert(self, model, row, key, **on_conflict):
        """Insert ``row`` or, when a row of this queue has its ``key`` (fields), apply
        ``on_conflict`` (peewee's arguments)."""
        if not isinstance(self.database, peewee.MySQLDatabase):  # MySQL names no target
            on_conflict['conflict_target'] = [model.name, *key]
        model.insert(name=self.name, **row).on_conflict(**on_conflict).execute()

    @staticmethod
    def chunked(query, values):
        """Run ``query(chunk)`` for each CHUNK of ``values``; how many rows they changed."""
        values = list(values)
        return sum(query(values[start:start + CHUNK]).execute()
                   for start in range(0, len(values), CHUNK))

    def take(self, model, query):
        """The ``(id, data, ...)`` rows of ``query``, deleted in the caller's transaction."""
        rows = list(self.locking(query).tuples())
        self.chunked(lambda ids: model.delete().where(model.id.in_(ids)), [row[0] for row in rows])
        return rows

    # --- queue -------------------------------------------------------------
    def queued(self, *columns):
        """The messages no worker has claimed, in the order they are taken."""
        Queue = self.Queue
        return self.mine(Queue, *columns).where(Queue.claimed_by.is_null()).order_by(
            Queue.priority.desc(), Queue.id)

    @connected
    def enqueue(self, data, priority=None):
        self.Queue.insert(name=self.name, data=data, priority=priority or 0).execute()

    @connected
    def enqueue_many(self, items):
        rows = [{'name': self.name, 'data': data, 'priority': priority or 0}
                for data, priority in items]
        with self.atomic():
            for start in range(0, len(rows), CHUNK):
                self.Queue.insert_many(rows[start:start + CHUNK]).execute()

    @connected
    def dequeue(self):
        with self.atomic():
            rows = self.take(self.Queue, self.queued(self.Queue.id, self.Queue.data).limit(1))
        return rows[0][1] if rows else None

    @connected
    def queue_size(self):
        return self.queued().count()

    @connected
    def enqueued_items(self, limit=None):
        query = self.queued(self.Queue.data)
        if limit is not None:
            query = query.limit(limit)
        return [data for data, in query.tuples()]

    @connected
    def flush_queue(self):
        self.Queue.delete().where(self.Queue.name == self.name).execute()

    # --- schedule ----------------------------------------------------------
    def scheduled(self, *columns):
        Schedule = self.Schedule
        return self.mine(Schedule, *columns).order_by(Schedule.ts, Schedule.id)

    @connected
    def add_to_schedule(self, data, ts, priority=None):
        self.Schedule.insert(name=self.name, data=data, ts=unix_time(ts),
                             priority=priority or 0).execute()

    def due(self, ts, *columns):
        return self.scheduled(self.Schedule.id, *columns).where(self.Schedule.ts <= unix_time(ts))

    @connected
    def read_schedule(self, ts):
        with self.atomic():
            return [data for _, data in self.take(self.Schedule, self.due(ts, self.Schedule.data))]

    @connected
    def move_due(self, ts):
        # One transaction: a scheduler killed half-way loses nothing, and priorities stay.
        with self.atomic():
            rows = self.take(self.Schedule, self.due(ts, self.Schedule.data, self.Schedule.priority))
            queued = [{'name': self.name, 'data': data, 'priority': priority}
                      for _, data, priority in rows]
            for start in range(0, len(queued), CHUNK):
                self.Queue.insert_many(queued[start:start + CHUNK]).execute()
        return [data for _, data, _ in rows]

    @connected
    def next_schedule_time(self):
        return self.mine(self.Schedule, peewee.fn.MIN(self.Schedule.ts)).scalar()

    @connected
    def schedule_size(self):
        return self.mine(self.Schedule).count()

    @connected
    def scheduled_items(self, limit=None):
        query = self.scheduled(self.Schedule.data)
        if limit is not None:
            query = query.limit(limit)
        return [data for data, in query.tuples()]

    @connected
    def flush_schedule(self):
        self.Schedule.delete().where(self.Schedule.name == self.name).execute()

    # --- data store: results, revocations, locks ----------------------------
    def live(self, *columns):
        """The keys of this queue whose ttl (if any) has not run out."""
        KV = self.KV
        return self.mine(KV, *columns).where(KV.expires_at.is_null() | (KV.expires_at > time.time()))

    @connected
    def put_data(self, key, value, is_result=False):
        self.upsert(self.KV, {'key': key, 'value': value, 'expires_at': None}, [self.KV.key],
                    preserve=[self.KV.value, self.KV.expires_at])

    @connected
    def peek_data(self, key):
        value = self.live(self.KV.value).where(self.KV.key == key).scalar()
        return EmptyData if value is None else value

    @connected
    def peek_many(self, keys):
        keys, found = list(keys), {}
        for start in range(0, len(keys), CHUNK):
            query = self.live(self.KV.key, self.KV.value).where(
                self.KV.key.in_(keys[start:start + CHUNK]))
            found.update(query.tuples())
        return found

    @connected
    def pop_data(self, key):
        KV = self.KV
        with self.atomic():
            query = self.locking(self.mine(KV, KV.value, KV.expires_at).where(KV.key == key))
            row = query.tuples().first()
            if row is None:
                return EmptyData
            KV.delete().where((KV.name == self.name) & (KV.key == key)).execute()
        value, expires_at = row
        return EmptyData if expires_at is not None and expires_at <= time.time() else value

    @connected
    def has_data_for_key(self, key):
        return self.live().where(self.KV.key == key).exists()

    @connected
    def put_if_empty(self, key, value, ttl=None):
        KV, now = self.KV, time.time()
        try:
            with self.atomic():
                # A key whose ttl ran out counts as empty: its row makes way.
                KV.delete().where((KV.name == self.name) & (KV.key == key)
                                  & (KV.expires_at <= now)).execute()
                KV.insert(name=self.name, key=key, value=value,
                          expires_at=now + ttl if ttl else None).execute()
        except peewee.IntegrityError:
            return False
        return True

    @connected
    def result_store_size(self):
        return self.live().count()

    @connected
    def result_items(self):
        return dict(self.live(self.KV.key, self.KV.value).tuples())

    @connected
    def flush_results(self):
        self.KV.delete().where(self.KV.name == self.name).execute()

    # --- counters ------------------------------------------------------------
    @connected
    def incr(self, key, amount=1):
        Counter = self.Counter
        with self.atomic():
            self.upsert(Counter, {'key': key, 'value': amount}, [Counter.key],
                        update={Counter.value: Counter.value + amount})
            return self.mine(Counter, Counter.value).where(Counter.key == key).scalar()

    @connected
    def delete_counter(self, key):
        Counter = self.Counter
        Counter.delete().where((Counter.name == self.name) & (Counter.key == key)).execute()

    @connected
    def flush_counters(self):
        self.Counter.delete().where(self.Counter.name == self.name).execute()

    # --- delivery: a claim is the row's claimed_by; the receipt is the row's id -------
    def now(self):
        """Unix time for leases and node states: the database's clock where it has one
        that every machine shares, this machine's on SQLite (one machine's file)."""
        if isinstance(self.database, peewee.PostgresqlDatabase):
            # The transaction's start: one instant for every statement of recover().
            return peewee.SQL('extract(epoch FROM now())::float8')
        if isinstance(self.database, peewee.MySQLDatabase):
            return peewee.fn.UNIX_TIMESTAMP(peewee.SQL('NOW(6)'))
        return time.time()

    def renew(self, worker, lease):
        Lease = self.Lease
        self.upsert(Lease, {'worker': worker, 'expires_at': self.now() + lease}, [Lease.worker],
                    preserve=[Lease.expires_at])

    def held_by(self, worker):
        return (self.Queue.name == self.name) & (self.Queue.claimed_by == worker)

    @connected
    def claim(self, worker, count=1, lease=30.0):
        Queue = self.Queue
        with self.atomic():
            self.renew(worker, lease)
            rows = list(self.locking(self.queued(Queue.id, Queue.data).limit(count)).tuples())
            self.chunked(lambda ids: Queue.update(claimed_by=worker).where(Queue.id.in_(ids)),
                         [receipt for receipt, _ in rows])
        return Claimed(rows)

    @connected
    def ack(self, worker, receipts):
        Queue = self.Queue
        self.chunked(lambda ids: Queue.delete().where(self.held_by(worker) & Queue.id.in_(ids)),
                     receipts)

    @connected
    def release(self, worker, receipts):
        # The row keeps its id, so the message goes back to its old place in line.
        Queue = self.Queue
        self.chunked(lambda ids: Queue.update(claimed_by=None).where(
            self.held_by(worker) & Queue.id.in_(ids)), receipts)

    @connected
    def beat(self, worker, lease):
        self.renew(worker, lease)

    @connected
    def retire_worker(self, worker):
        Lease = self.Lease
        with self.atomic():
            self.Queue.update(claimed_by=None).where(self.held_by(worker)).execute()
            Lease.delete().where((Lease.name == self.name) & (Lease.worker == worker)).execute()

    @connected
    def recover(self):
        Queue, Lease, now = self.Queue, self.Lease, self.now()
        with self.atomic():
            live = self.mine(Lease, Lease.worker).where(Lease.expires_at > now)
            moved = Queue.update(claimed_by=None).where(
                (Queue.name == self.name) & Queue.claimed_by.is_null(False)
                & Queue.claimed_by.not_in(live)).execute()
            Lease.delete().where((Lease.name == self.name) & (Lease.expires_at <= now)).execute()
        return moved

    def claims(self, *columns):
        Queue = self.Queue
        return self.mine(Queue, *columns).where(Queue.claimed_by.is_null(False)).order_by(Queue.id)

    @connected
    def claimed_items(self):
        claimed = {}
        for worker, data in self.claims(self.Queue.claimed_by, self.Queue.data).tuples():
            claimed.setdefault(worker, []).append(data)
        return claimed

    @connected
    def worker_claims(self, worker):
        Queue = self.Queue
        return list(self.claims(Queue.id, Queue.data).where(Queue.claimed_by == worker).tuples())

    # --- dead letters ------------------------------------------------------------
    @connected
    def add_dead_letter(self, key, record):
        self.upsert(self.Dead, {'key': key, 'record': record}, [self.Dead.key],
                    preserve=[self.Dead.record])

    @connected
    def dead_letters(self):
        Dead = self.Dead
        return list(self.mine(Dead, Dead.key, Dead.record).order_by(Dead.id).tuples())

    @connected
    def remove_dead_letters(self, keys):
        Dead = self.Dead
        return self.chunked(lambda chunk: Dead.delete().where(
            (Dead.name == self.name) & Dead.key.in_(chunk)), keys)

    # --- node state: rows expire by their expires_at ---------------------------------
    @connected
    def put_state(self, kind, key, value, ttl):
        State, now = self.State, self.now()
        with self.atomic():
            # The records of nodes that died: nothing else would ever delete them.
            State.delete().where((State.name == self.name) & (State.kind == kind)
                                 & (State.expires_at <= now)).execute()
            self.upsert(State, {'kind': kind, 'key': key, 'value': value,
                                'expires_at': now + ttl}, [State.kind, State.key],
                        preserve=[State.value, State.expires_at])

    @connected
    def states(self, kind):
        State = self.State
        return dict(self.mine(State, State.key, State.value).where(
            (State.kind == kind) & (State.expires_at > self.now())).order_by(State.key).tuples())

    @connected
    def delete_state(self, kind, key):
        State = self.State
        State.delete().where((State.name == self.name) & (State.kind == kind)
                             & (State.key == key)).execute()


class SqlHuey(Huey):
    """A Huey whose storage is SqlStorage: ``SqlHuey('app', database=...)``."""
    storage_class = SqlStorage
