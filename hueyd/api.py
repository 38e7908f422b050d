"""``Huey``: the object an application creates to declare, enqueue and run tasks.

``Huey`` is the façade huey users know. Its methods are short and hand the work
to parts with one job each: ``Executor`` runs a task, ``Chords`` runs groups
and chords, ``Revocations`` revokes, ``DeadLetters`` keeps what cannot run,
``EventEmitter`` publishes events, and the storage keeps everything.
"""
import asyncio
import functools
import inspect
import logging
import time

from hueyd import signals as S
from hueyd.chords import Chords
from hueyd.constants import EmptyData
from hueyd.consumer import Consumer
from hueyd.cron import crontab
from hueyd.deadletter import DeadLetters
from hueyd.events import EVENT_CHECKING_PERIODIC, EVENT_SCHEDULING_PERIODIC, EventEmitter
from hueyd.exceptions import (CancelExecution, ConfigurationError, RateLimitExceeded,
                              ResultTimeout, RetryTask, TaskException, TaskLockedException,
                              TaskTimeout)
from hueyd.executor import Executor, error_result
from hueyd.hooks import Hooks
from hueyd.locks import RateLimit, TaskLock
from hueyd.registry import Registry
from hueyd.result import SKIPPED, ChordResult, Error, Result, ResultGroup
from hueyd.revocations import Revocations
from hueyd.serializer import Serializer
from hueyd.storage import (BlackHoleStorage, CySqliteStorage, FileStorage, MemoryStorage,
                           PostgresStorage, PriorityRedisExpireStorage,
                           PriorityRedisStorage, RedisExpireStorage, RedisStorage,
                           SqliteStorage, storage_from_url)
from hueyd.task import PeriodicTask, Task, TaskWrapper, chord, group
from hueyd.times import from_timestamp, normalize_time, now, to_timestamp

# huey's ``huey.api`` names that hueyd has, so ``from hueyd.api import X`` works as it did.
__all__ = [
    'BlackHoleHuey', 'BlackHoleStorage', 'CancelExecution', 'ChordResult', 'ConfigurationError', 'Consumer', 'CySqliteHuey',
    'CySqliteStorage', 'EmptyData', 'Error', 'FileHuey', 'FileStorage', 'Huey', 'MemoryHuey', 'MemoryStorage',
    'PeriodicTask', 'PostgresHuey', 'PostgresStorage', 'PriorityRedisExpireHuey', 'PriorityRedisExpireStorage',
    'PriorityRedisHuey', 'PriorityRedisStorage', 'RedisExpireHuey', 'RedisExpireStorage', 'RateLimit', 'RateLimitExceeded', 'RedisHuey', 'RedisStorage',
    'Registry', 'Result', 'ResultGroup', 'ResultTimeout', 'RetryTask', 'SKIPPED', 'Serializer',
    'SqliteHuey', 'SqliteStorage', 'Task', 'TaskException', 'TaskLock', 'TaskLockedException',
    'TaskTimeout', 'TaskWrapper', 'chord', 'crontab', 'group', 'normalize_time']

logger = logging.getLogger('hueyd')

PERIODIC_MARK_TTL = 3600  # seconds a "this minute's periodic tasks are enqueued" mark lives


class Huey:
    """A task queue bound to one storage.

    With no storage class and no ``url`` the storage is the embedded default,
    SQLite in the file ``huey.db`` in the current directory (``filename=`` to
    change it). ``url`` picks a storage by scheme: ``redis://``, ``rediss://``,
    ``unix://``, ``sqlite:///path``, ``file:///folder`` or ``memory://``.
    """

    storage_class = None

    def __init__(self, name='huey', results=True, store_none=False, utc=True,
                 immediate=False, serializer=None, compression=False, use_zlib=False,
                 immediate_use_memory=True, always_eager=None, storage_class=None,
                 url=None, events=None, store_intermediate_errors=True, **storage_kwargs):
        if always_eager is not None:
            immediate = always_eager
        self.name = name
        self.results = results
        self.store_none = store_none
        # False: a failed attempt with retries left stores no error and runs no .error()
        # handler; the caller sees only how the task ended.
        self.store_intermediate_errors = store_intermediate_errors
        self.utc = utc
        self.serializer = serializer or Serializer(compression=compression, use_zlib=use_zlib)
        self.immediate_use_memory = immediate_use_memory
        self.registry = Registry()
        self._signals = S.Signal()
        self._pre_execute = Hooks('pre-execute')
        self._post_execute = Hooks('post-execute')
        self._startup = Hooks('startup')
        self._shutdown = Hooks('shutdown')
        self._locks = set()
        self._releasing = set()  # see handing_back()
        if storage_class is not None:
            self.storage_class = storage_class
        self.url = url
        self.storage = self.get_storage(**storage_kwargs)
        self.executor = Executor(self, self._signals, self._pre_execute, self._post_execute)
        self.chords = Chords(self)
        self.revocations = Revocations(self)
        self.dead_letter_store = DeadLetters(self)
        self._saved_storage = None
        self._immediate = False
        self._emitter = self._events_emitter(events)
        self.immediate = immediate

    def get_storage(self, **storage_kwargs):
        """The storage this Huey keeps everything in; a subclass may return its own (huey's hook)."""
        storage_class, url = self.storage_class, self.url
        if url is not None:
            url_class, url_kwargs = storage_from_url(url)
            if storage_class is not None and not issubclass(storage_class, url_class):
                raise ConfigurationError(
                    '%s stores in %s and cannot use url=%r; use Huey(url=...) to '
                    'pick the storage from the URL' % (
                        type(self).__name__, storage_class.__name__, url))
            storage_class = storage_class or url_class
            storage_kwargs = {**url_kwargs, **storage_kwargs}
        elif storage_class is None:
            storage_class = SqliteStorage
        return storage_class(self.name, **storage_kwargs)

    # --- immediate mode -------------------------------------------------------
    @property
    def immediate(self):
        return self._immediate

    @immediate.setter
    def immediate(self, value):
        """Run tasks inline when enqueued (for tests and development)."""
        value = bool(value)
        if value == self._immediate:
            return
        if self.immediate_use_memory:
            if value:
                self._saved_storage, self.storage = self.storage, MemoryStorage(self.name)
                self.storage.events_enabled = self.events
            else:
                self.storage, self._saved_storage = self._saved_storage, None
        self._immediate = value

    always_eager = immediate

    def create_consumer(self, **options):
        """An in-process ``Consumer`` of this Huey (huey's options; see hueyd.consumer)."""
        return Consumer(self, **options)

    # --- declaring tasks ------------------------------------------------------
    def task(self, retries=0, retry_delay=0, retry_backoff=None, priority=None,
             context=False, name=None, expires=None, timeout=None, **kwargs):
        def decorator(func):
            return TaskWrapper(self, func, retries=retries, retry_delay=retry_delay,
                               retry_backoff=retry_backoff, priority=priority,
                               context=context, name=name, expires=expires,
                               timeout=timeout, **kwargs)
        return decorator

    def context_task(self, obj, as_argument=False, **task_options):
        """Decorator: a task that runs inside ``with obj`` (a database connection, say);
        ``as_argument=True`` passes what ``obj.__enter__()`` returns as its first argument."""
        def decorator(func):
            if inspect.iscoroutinefunction(func):
                @functools.wraps(func)
                async def within(*args, **kwargs):
                    with obj as value:
                        return await (func(value, *args, **kwargs) if as_argument
                                      else func(*args, **kwargs))
            else:
                @functools.wraps(func)
                def within(*args, **kwargs):
                    with obj as value:
                        return func(value, *args, **kwargs) if as_argument else func(*args, **kwargs)
            return self.task(**task_options)(within)
        return decorator

    def periodic_task(self, validate_datetime, retries=0, retry_delay=0,
                      retry_backoff=None, priority=None, context=False, name=None,
                      expires=None, timeout=None, **kwargs):
        def decorator(func):
            def check(task, timestamp):
                return validate_datetime(timestamp)
            return TaskWrapper(self, func, retries=retries, retry_delay=retry_delay,
                               retry_backoff=retry_backoff, priority=priority,
                               context=context, name=name, expires=expires,
                               timeout=timeout, task_base=PeriodicTask,
                               validate_datetime=check, **kwargs)
        return decorator

    @property
    def _registry(self):
        """huey's private name for ``registry``, for code that reached into it."""
        return self.registry

    @property
    def registered_tasks(self):
        return self.registry.names

    @property
    def periodic_tasks(self):
        """The names of the registered periodic tasks, sorted."""
        return sorted(task.name for task in self.registry.periodic_tasks)

    @property
    def lock_names(self):
        """The names of the locks declared with ``lock_task()``, sorted."""
        return sorted(self._locks)

    # --- hooks and signals ----------------------------------------------------
    def pre_execute(self, name=None):
        """Decorator: ``fn(task)`` runs before each task; raising CancelExecution cancels it."""
        return self._pre_execute.register(name)

    def post_execute(self, name=None):
        """Decorator: ``fn(task, task_value, exc)`` runs after each task."""
        return self._post_execute.register(name)

    def on_startup(self, name=None):
        """Decorator: ``fn()`` runs once in each worker before it takes tasks."""
        return self._startup.register(name)

    def on_shutdown(self, name=None):
        """Decorator: ``fn()`` runs once in each worker as it stops."""
        return self._shutdown.register(name)

    def unregister_pre_execute(self, name):
        return self._pre_execute.unregister(name)

    def unregister_post_execute(self, name):
        return self._post_execute.unregister(name)

    def unregister_on_startup(self, name):
        return self._startup.unregister(name)

    def unregister_on_shutdown(self, name):
        return self._shutdown.unregister(name)

    def run_startup_hooks(self):
        self._startup.run()

    def run_shutdown_hooks(self):
        self._shutdown.run()

    def signal(self, *signals):
        """Decorator: register ``fn(signal, task, *args)`` for these signals (all if none)."""
        def decorator(fn):
            self._signals.connect(fn, *signals)
            return fn
        return decorator

    def observe(self, *signals):
        """Decorator: register ``fn(signal, task, outcome)`` for these signals (all if
        none); the ``hueyd.signals.Outcome`` holds the exception behind a failure and
        how long the task ran. For reports (events, metrics) that need them."""
        def decorator(fn):
            self._signals.connect(fn, *signals, observer=True)
            return fn
        return decorator

    def disconnect_signal(self, receiver, *signals):
        self._signals.disconnect(receiver, *signals)

    def _emit(self, signal, task, *args):
        """huey's private name for sending a signal to the receivers, for code that called it."""
        self._signals.send(signal, task, *args)

    # --- messages -------------------------------------------------------------
    def serialize_task(self, task):
        return self.serializer.serialize(self.registry.create_message(task))

    def deserialize_task(self, data):
        """Bytes from the queue -> Task. Raises SignatureError, TaskNotFound or a decode error."""
        return self.registry.create_task(self.serializer.deserialize(data))

    def result_handle(self, task):
        """What enqueueing ``task`` returns: its Result (a ResultGroup for a pipeline),
        or None when results are off."""
        if not self.results:
            return None
        if task.on_complete is None:
            return Result(self, task)
        chain = []
        while task is not None:
            chain.append(Result(self, task))
            task = task.on_complete
        return ResultGroup(chain)

    def enqueue(self, task):
        """Put a task (or the head of a pipeline) on the queue; returns its Result.

        A pipeline returns a ResultGroup of every stage, a ``group`` a
        ResultGroup of its members, a ``chord`` a ChordResult.
        """
        if isinstance(task, (group, chord)):
            return self.chords.enqueue(task)
        task.resolve_expires(self.utc)
        if task.id in self._releasing:
            logger.info('%s is already going back on the queue; not enqueued twice', task)
        elif self._immediate:
            self._signals.send(S.SIGNAL_ENQUEUED, task)
            self.execute(task)
        else:
            self.storage.enqueue(self.serialize_task(task), task.priority)
            self._signals.send(S.SIGNAL_ENQUEUED, task)
        return self.result_handle(task)

    def enqueue_many(self, tasks):
        """Enqueue several tasks in one storage round trip; returns a ResultGroup."""
        tasks = list(tasks)
        if self._immediate:
            handles = [self.enqueue(task) for task in tasks]
        else:
            for task in tasks:
                task.resolve_expires(self.utc)
            self.storage.enqueue_many([(self.serialize_task(t), t.priority) for t in tasks])
            for task in tasks:
                self._signals.send(S.SIGNAL_ENQUEUED, task)
            handles = [self.result_handle(task) for task in tasks]
        return ResultGroup(handles) if self.results else None

    def dequeue(self):
        """The next task from the queue, or None when there is none."""
        data = self.storage.dequeue()
        if data is not None:
            return self.deserialize_task(data)

    # --- the data store -------------------------------------------------------
    def put(self, key, data):
        self.storage.put_data(key, self.serializer.serialize(data))

    def put_result(self, key, data):
        self.storage.put_data(key, self.serializer.serialize(data), is_result=True)

    def put_if_empty(self, key, data, ttl=None):
        return self.storage.put_if_empty(key, self.serializer.serialize(data), ttl)

    def get_raw(self, key, peek=False):
        data = self.storage.peek_data(key) if peek else self.storage.pop_data(key)
        return data if data is EmptyData else self.serializer.deserialize(data)

    def get(self, key, peek=False):
        value = self.get_raw(key, peek)
        return None if value is EmptyData else value

    def delete(self, key):
        return self.storage.delete_data(key)

    def result(self, id, blocking=False, timeout=None, backoff=1.15, max_delay=1.0,
               revoke_on_timeout=False, preserve=False):
        """The value stored for the task ``id`` (see Result.get)."""
        return Result(self, Task(id=id)).get(blocking, timeout, backoff, max_delay,
                                             revoke_on_timeout, preserve)

    # --- running tasks --------------------------------------------------------
    def now(self):
        """The current time as this Huey counts it (naive; UTC when ``utc``)."""
        return now(self.utc)

    def ready_to_run(self, task, timestamp=None):
        return task.eta is None or task.eta <= (timestamp or self.now())

    def execute(self, task, timestamp=None, revocations=None, interrupt=KeyboardInterrupt):
        """Run one dequeued task here: schedule it if early, skip it if revoked or expired.

        ``revocations``: a recent snapshot of every revocation (see
        ``read_revocations``) that spares asking the storage.
        ``interrupt``: the exception that means the consumer is stopping (Ctrl-C
        by default); it sends SIGNAL_INTERRUPTED and propagates. Whatever else the
        task raises, ``SystemExit`` included, is the task's error: stored, and
        retried as its options say.
        Returns the task's return value (None when it did not run or failed).
        With events on, the events of the whole call are published together at its end.
        """
        emitter = self._emitter
        if emitter is None or not self.storage.listening():  # no event to gather
            return self.executor.execute(task, timestamp, revocations, interrupt)
        emitter.begin()  # not a with block: a generator-based one costs a no-op task 2 us
        try:
            return self.executor.execute(task, timestamp, revocations, interrupt)
        finally:
            emitter.end()

    async def aexecute(self, task, timestamp=None, revocations=None, interrupt=None):
        """``execute`` for an ``async def`` task (``task.is_async``), awaited on the running
        loop, its deadline an ``asyncio.timeout``. ``interrupt`` defaults to
        ``asyncio.CancelledError``: cancelling the caller means the worker is stopping.
        Events are published one by one (through the storage's write batch, where there is
        one): a per-thread batch cannot span the awaits of coroutines that share the thread.
        """
        return await self.executor.aexecute(task, timestamp, revocations,
                                            interrupt or asyncio.CancelledError)

    def give_up(self, task, exception):
        """Fail ``task`` for good without running it (again): the end of a task that kept
        killing its worker. Its error result (and its later pipeline stages'), chord,
        SIGNAL_ERROR and ``.error()`` handler are as for a task that raised ``exception``
        with no retry left."""
        task.retries = 0
        self.executor.fail(task, exception, None)

    def build_error_result(self, task, exception):
        """The metadata stored (as an ``Error``) for a failed task; a subclass may add to it."""
        return error_result(task, exception)

    def handing_back(self, tasks):
        """A stopping worker returns ``tasks`` to the queue through their claims: from now
        on an ``enqueue()`` of one of them (huey's old advice for SIGNAL_INTERRUPTED
        handlers) is a no-op, so none is queued twice."""
        self._releasing.update(task.id for task in tasks)

    def task_interrupter(self, error):
        """A function for a signal handler to interrupt the task the main thread runs with
        ``error``, in the task's own code only (see ``Executor.interrupter``)."""
        return self.executor.interrupter(error)

    def notify_interrupted_tasks(self):
        """Emit SIGNAL_INTERRUPTED for every task running now; returns those tasks."""
        return self.executor.notify_interrupted()

    # --- the schedule ---------------------------------------------------------
    def add_schedule(self, task):
        eta = to_timestamp(task.eta, self.utc) if task.eta else 0.0
        self.storage.add_to_schedule(self.serialize_task(task), eta, task.priority)
        logger.info('scheduled %s', task)
        self._signals.send(S.SIGNAL_SCHEDULED, task)

    def read_schedule(self, timestamp=None):
        """Remove and return the scheduled tasks due at ``timestamp`` (default now)."""
        timestamp = timestamp or self.now()
        return self._decode_all(self.storage.read_schedule(to_timestamp(timestamp, self.utc)))

    def enqueue_due(self, timestamp=None):
        """Move the scheduled tasks due at ``timestamp`` to the queue in one storage step.

        What a scheduler does: nothing is lost if it dies half-way. Emits
        SIGNAL_ENQUEUED for each task moved and returns them.
        """
        timestamp = timestamp or self.now()
        tasks = self._decode_all(self.storage.move_due(to_timestamp(timestamp, self.utc)))
        for task in tasks:
            self._signals.send(S.SIGNAL_ENQUEUED, task)
        return tasks

    def next_schedule_time(self):
        """When the earliest scheduled task is due (a datetime), or None."""
        ts = self.storage.next_schedule_time()
        return None if ts is None else from_timestamp(ts, self.utc)

    def read_periodic(self, timestamp=None):
        """The periodic tasks due in the minute of ``timestamp`` (default now)."""
        timestamp = timestamp or self.now()
        return [task for task in self.registry.periodic_tasks
                if task.validate_datetime(timestamp)]

    def enqueue_periodic(self, minute):
        """Enqueue the periodic tasks due in ``minute``, once for every scheduler that shares
        the storage (daemon nodes, in-process consumers): a mark kept for an hour says the
        minute is done. Returns the tasks enqueued, or None when another did it."""
        mark = 'hueyd.periodic.%s' % minute.strftime('%Y%m%d%H%M')
        if not self.storage.put_if_empty(mark, b'1', PERIODIC_MARK_TTL):
            return None
        timestamp = time.time()
        self.emit_event(EVENT_CHECKING_PERIODIC, timestamp=timestamp)
        tasks = self.read_periodic(minute)
        for task in tasks:
            self.enqueue(task)
            self.emit_event(EVENT_SCHEDULING_PERIODIC, task, timestamp=timestamp)
        return tasks

    def _decode_all(self, messages):
        tasks = []
        for data in messages:
            try:
                tasks.append(self.deserialize_task(data))
            except Exception:
                logger.exception('cannot decode a stored message; it was skipped')
        return tasks

    # --- revoking -------------------------------------------------------------
    def revoke_all(self, task_class, revoke_until=None, revoke_once=False):
        self.revocations.revoke(task_class, revoke_until, revoke_once)

    def restore_all(self, task_class):
        return self.revocations.restore(task_class)

    def revoke(self, task, revoke_until=None, revoke_once=False):
        self.revocations.revoke(task, revoke_until, revoke_once)

    def restore(self, task):
        return self.revocations.restore(task)

    def revoke_by_id(self, id, revoke_until=None, revoke_once=False):
        self.revocations.revoke(Task(id=id), revoke_until, revoke_once)

    def restore_by_id(self, id):
        return self.revocations.restore(Task(id=id))

    def is_revoked(self, task, timestamp=None, peek=True, snapshot=None):
        """True when ``task`` (a Task, a Result, a task function or class, or a task id)
        must not run at ``timestamp``.

        With ``peek=False`` a revoke-once entry is used up. ``snapshot``: a dict
        of revocation keys to values, taken just before, in which a missing key
        means "not revoked" (``read_revocations``, or what a claim returned).
        """
        return self.revocations.is_revoked(task, timestamp, peek, snapshot)

    def read_revocations(self, tasks):
        """A snapshot for ``execute(revocations=...)``: the revocations of ``tasks``, in one read."""
        return self.revocations.snapshot(tasks)

    # --- inspection -----------------------------------------------------------
    def pending(self, limit=None):
        return self._decode_all(self.storage.enqueued_items(limit))

    def pending_count(self):
        return self.storage.queue_size()

    def scheduled(self, limit=None):
        return self._decode_all(self.storage.scheduled_items(limit))

    def scheduled_count(self):
        return self.storage.schedule_size()

    def all_results(self):
        return self.storage.result_items()

    def result_count(self):
        return self.storage.result_store_size()

    def __len__(self):
        return self.pending_count()

    def flush(self):
        self.storage.flush_all()

    # --- dead letters ----------------------------------------------------------
    def add_dead_letter(self, payload, reason, task=None, key=None):
        """Keep a message that cannot run, with why; returns its id."""
        return self.dead_letter_store.add(payload, reason, task, key)

    def bury(self, payload, reason):
        """Move a message that cannot run to the dead letters and tell its caller.

        When the message's id can be read (it names an unknown task, say; not when
        its signature is wrong) the caller's ``get()`` raises TaskException with
        the reason instead of waiting forever. Returns the dead letter's id.
        """
        return self.dead_letter_store.bury(payload, reason)

    def dead_letters(self):
        """Every dead letter (id, reason, time, task name and id when known, raw payload)."""
        return self.dead_letter_store.all()

    def requeue_dead_letters(self, ids=None):
        """Put these dead letters' messages (all when ``ids`` is None) back on the queue."""
        return self.dead_letter_store.requeue(ids)

    def purge_dead_letters(self, ids=None):
        """Delete these dead letters (all when ``ids`` is None); returns how many."""
        return self.dead_letter_store.purge(ids)

    # --- locks and rate limits ------------------------------------------------
    def lock_task(self, lock_name, ttl=None):
        """A lock usable as ``@huey.lock_task(name)`` or ``with huey.lock_task(name):``."""
        self._locks.add(lock_name)
        return TaskLock(self, lock_name, ttl)

    def is_locked(self, lock_name):
        return TaskLock(self, lock_name).is_locked()

    def flush_locks(self, *names):
        """Release the named locks and every lock declared with lock_task(); returns those released."""
        flushed = set()
        for name in self._locks.union(names):
            if self.storage.delete_data(TaskLock(self, name).key):
                flushed.add(name)
        return flushed

    def rate_limit(self, name, limit, per, retry=True):
        return RateLimit(self, name, limit, per, retry)

    # --- events ---------------------------------------------------------------------
    def _events_emitter(self, events):
        """Turn events on when asked (or by the storage's default); the emitter, or None."""
        storage = self.storage
        if events is None:
            events = storage.supports_events and storage.events_by_default
        elif events and not storage.supports_events:
            raise storage.events_unsupported_error()
        self.events = bool(events)
        storage.events_enabled = self.events
        if not self.events:
            return None
        emitter = EventEmitter(self)
        emitter.connect()
        return emitter

    def emit_event(self, status, task=None, **extra):
        """Publish one consumer event (see hueyd.events) through the storage.

        The standard fields come from ``task`` (None for events about no task);
        ``exception=exc`` adds ``error`` and ``traceback``; other keywords are
        added as they are (JSON-encodable, else their str()). Inside
        ``execute()`` the event joins that call's batch; elsewhere it is
        published at once. Returns the event, or None when events are off.
        """
        if self._emitter is None:
            return None
        exception = extra.pop('exception', None)
        return self._emitter.emit(self._emitter.build(status, task, exception, **extra))

    def __repr__(self):
        return '<%s %r storage=%s>' % (type(self).__name__, self.name,
                                       type(self.storage).__name__)


class MemoryHuey(Huey):
    storage_class = MemoryStorage


class SqliteHuey(Huey):
    storage_class = SqliteStorage


class RedisHuey(Huey):
    storage_class = RedisStorage


class PriorityRedisHuey(RedisHuey):
    storage_class = PriorityRedisStorage


class RedisExpireHuey(RedisHuey):
    storage_class = RedisExpireStorage


class PriorityRedisExpireHuey(RedisHuey):
    storage_class = PriorityRedisExpireStorage


class CySqliteHuey(Huey):
    storage_class = CySqliteStorage


class FileHuey(Huey):
    storage_class = FileStorage


class PostgresHuey(Huey):
    storage_class = PostgresStorage


class BlackHoleHuey(Huey):
    storage_class = BlackHoleStorage
