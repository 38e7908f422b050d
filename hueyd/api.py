"""``Huey``: the object an application creates to declare, enqueue and run tasks."""
import dataclasses
import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict

from hueyd import signals as S
from hueyd.constants import EmptyData
from hueyd.deadletter import DeadLetter
from hueyd.events import (EVENT_ERROR_ENQUEUEING, EVENT_ERROR_SCHEDULING, FAILURE_ATTR,
                          STORING_RESULT_ATTR, EventEmitter)
from hueyd.exceptions import (CancelExecution, ConfigurationError, HueyException,
                              RateLimitExceeded, RetryTask, TaskLockedException, TaskTimeout)
from hueyd.locks import RateLimit, TaskLock
from hueyd.registry import Registry
from hueyd.result import ChordResult, Error, Result, ResultGroup, Skipped
from hueyd.serializer import Serializer
from hueyd.storage import (MemoryStorage, PriorityRedisStorage, RedisStorage,
                           SqliteStorage, storage_from_url)
from hueyd.task import PeriodicTask, Task, TaskWrapper, chord, group
from hueyd.timeouts import timeout_context
from hueyd.times import from_timestamp, normalize_time, now, to_naive, to_timestamp

logger = logging.getLogger('hueyd')

# Failures that ask for another attempt rather than report an error.
_RETRY_REQUESTS = (RetryTask, RateLimitExceeded, CancelExecution)
# Which signal reports which failure; anything else is SIGNAL_ERROR.
_FAILURE_SIGNALS = (
    (TaskTimeout, S.SIGNAL_TIMEOUT),
    (RateLimitExceeded, S.SIGNAL_RATE_LIMITED),
    (TaskLockedException, S.SIGNAL_LOCKED),
    (CancelExecution, S.SIGNAL_CANCELED),
)


class _Hooks(OrderedDict):
    """Named callbacks run in registration order; a decorator registers one."""

    def register(self, name=None):
        def decorator(fn):
            self[name or fn.__name__] = fn
            return fn
        return decorator

    def unregister(self, name):
        """Remove the hook registered as ``name`` (or the function itself); True if there was one."""
        return self.pop(getattr(name, '__name__', name), None) is not None


class Huey:
    """A task queue bound to one storage.

    With no storage class and no ``url`` the storage is the embedded default,
    SQLite in the file ``huey.db`` in the current directory (``filename=`` to
    change it). ``url`` picks a storage by scheme: ``redis://``, ``rediss://``,
    ``unix://``, ``sqlite:///path`` or ``memory://``.
    """

    storage_class = None

    def __init__(self, name='huey', results=True, store_none=False, utc=True,
                 immediate=False, serializer=None, compression=False, use_zlib=False,
                 immediate_use_memory=True, always_eager=None, storage_class=None,
                 url=None, events=None, **storage_kwargs):
        if always_eager is not None:
            immediate = always_eager
        self.name = name
        self.results = results
        self.store_none = store_none
        self.utc = utc
        self.serializer = serializer or Serializer(compression=compression, use_zlib=use_zlib)
        self.immediate_use_memory = immediate_use_memory
        self._registry = Registry()
        self._signal = S.Signal()
        self._pre_execute = _Hooks()
        self._post_execute = _Hooks()
        self._startup = _Hooks()
        self._shutdown = _Hooks()
        self._locks = set()
        self._tasks_in_flight = set()
        self._in_flight_lock = threading.Lock()
        self._releasing = set()  # see handing_back()
        self.storage = self.create_storage(storage_class or self.storage_class, url, storage_kwargs)
        self._saved_storage = None
        self._immediate = False
        self._setup_events(events)
        self.immediate = immediate

    def create_storage(self, storage_class, url, storage_kwargs):
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

    # --- declaring tasks ------------------------------------------------------
    def task(self, retries=0, retry_delay=0, retry_backoff=None, priority=None,
             context=False, name=None, expires=None, timeout=None, **kwargs):
        def decorator(func):
            return TaskWrapper(self, func, retries=retries, retry_delay=retry_delay,
                               retry_backoff=retry_backoff, priority=priority,
                               context=context, name=name, expires=expires,
                               timeout=timeout, **kwargs)
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
    def registered_tasks(self):
        return self._registry.names

    @property
    def periodic_tasks(self):
        """The names of the registered periodic tasks, sorted."""
        return sorted(task.name for task in self._registry.periodic_tasks)

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
        self._run_hooks(self._startup, 'startup')

    def run_shutdown_hooks(self):
        self._run_hooks(self._shutdown, 'shutdown')

    def _run_hooks(self, hooks, kind, *args):
        for name, fn in list(hooks.items()):
            try:
                fn(*args)
            except Exception:
                logger.exception('%s hook %r failed', kind, name)

    def signal(self, *signals):
        """Decorator: register ``fn(signal, task, *args)`` for these signals (all if none)."""
        def decorator(fn):
            self._signal.connect(fn, *signals)
            return fn
        return decorator

    def disconnect_signal(self, receiver, *signals):
        self._signal.disconnect(receiver, *signals)

    def _emit(self, signal, task, *args, **kwargs):
        self._signal.send(signal, task, *args, **kwargs)

    # --- messages -------------------------------------------------------------
    def serialize_task(self, task):
        return self.serializer.serialize(self._registry.create_message(task))

    def deserialize_task(self, data):
        """Bytes from the queue -> Task. Raises SignatureError, TaskNotFound or a decode error."""
        return self._registry.create_task(self.serializer.deserialize(data))

    def _result_handle(self, task):
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
            return self._enqueue_workflow(task)
        task.resolve_expires(self.utc)
        if task.id in self._releasing:
            logger.info('%s is already going back on the queue; not enqueued twice', task)
        elif self._immediate:
            self._emit(S.SIGNAL_ENQUEUED, task)
            self.execute(task)
        else:
            self.storage.enqueue(self.serialize_task(task), task.priority)
            self._emit(S.SIGNAL_ENQUEUED, task)
        return self._result_handle(task)

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
                self._emit(S.SIGNAL_ENQUEUED, task)
            handles = [self._result_handle(task) for task in tasks]
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
    def _now(self):
        return now(self.utc)

    def ready_to_run(self, task, timestamp=None):
        return task.eta is None or task.eta <= (timestamp or self._now())

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
        if self._emitter is None:
            return self._execute(task, timestamp, revocations, interrupt)
        self._emitter.begin()
        try:
            return self._execute(task, timestamp, revocations, interrupt)
        finally:
            self._emitter.end()

    def _execute(self, task, timestamp, revocations, interrupt):
        timestamp = timestamp or self._now()
        if not self.ready_to_run(task, timestamp):
            self.add_schedule(task)
        elif self.is_revoked(task, timestamp, peek=False, snapshot=revocations):
            logger.warning('%s was revoked, not running it', task)
            self._emit(S.SIGNAL_REVOKED, task)
            self._abort_chord_member(task, Skipped('revoked', task.id))
        elif task.expires_resolved is not None and task.expires_resolved < timestamp:
            logger.info('%s expired at %s, not running it', task, task.expires_resolved)
            self._emit(S.SIGNAL_EXPIRED, task)
            self._abort_chord_member(task, Skipped('expired', task.id))
        else:
            return self._run(task, interrupt)

    def _run(self, task, interrupt):
        logger.info('executing %s', task)
        self._emit(S.SIGNAL_EXECUTING, task)
        try:
            self._run_pre_execute(task)
        except CancelExecution:
            self._emit(S.SIGNAL_CANCELED, task)
            self._abort_chord_member(task, Skipped('canceled', task.id))
            return None

        value = exception = retry_eta = None
        with self._in_flight_lock:
            self._tasks_in_flight.add(task)
        try:
            # The task's own writes (a subtask it enqueues and waits for) go out at once.
            with timeout_context(task), self.storage.unbatched():
                value = task.execute()
        except RetryTask as exc:
            logger.info('%s asked to be retried', task)
            task.retries += 1
            if exc.eta is not None or exc.delay is not None:
                retry_eta = normalize_time(exc.eta, exc.delay, self.utc)
            exception = exc
        except RateLimitExceeded as exc:
            logger.info('%s rate-limited by %r for %.3fs', task, exc.key, exc.delay)
            # As huey: with retry=True, or with retries of its own left, the task
            # goes to the schedule, after its retry_delay if it has one, else at
            # the start of the next window; only retry=True spares its retries.
            if exc.retry or task.retries:
                retry_eta = normalize_time(delay=task.retry_delay or exc.delay, utc=self.utc)
                if exc.retry:
                    task.retries += 1
            exception = exc
        except interrupt:
            # The worker is being stopped mid-task (SIGTERM in a daemon, Ctrl-C here).
            logger.warning('%s was interrupted before it finished', task)
            self._emit(S.SIGNAL_INTERRUPTED, task)
            raise
        except CancelExecution as exc:
            if exc.retry or (exc.retry is None and task.retries):
                task.retries = max(task.retries, 1)
            else:
                task.retries = 0
            logger.warning('%s canceled itself', task)
            exception = exc
        except BaseException as exc:  # sys.exit() in a task must not stop the consumer
            if isinstance(exc, (TaskTimeout, TaskLockedException)):
                logger.warning('%s failed: %s', task, exc)
            else:
                logger.exception('%s raised an exception', task)
            exception = exc
        finally:
            with self._in_flight_lock:
                self._tasks_in_flight.discard(task)

        if exception is None:
            self._complete(task, value)
        else:
            self._fail(task, exception, retry_eta)
        return value

    def _complete(self, task, value):
        if self.results and not isinstance(task, PeriodicTask) and (
                value is not None or self.store_none):
            self._store_result(task, value)
        self._run_hooks(self._post_execute, 'post-execute', task, value, None)
        self._emit(S.SIGNAL_COMPLETE, task)
        if task.on_complete is not None:
            task.on_complete.extend_data(value)
            self.enqueue(task.on_complete)
        if task.chord_config is not None:
            self._chord_member_done(task.chord_config, value)

    def _fail(self, task, exception, retry_eta):
        final = not task.retries
        error = None
        if self.results and not isinstance(task, PeriodicTask) and (
                final or not isinstance(exception, _RETRY_REQUESTS)):
            error = Error(self.build_error_result(task, exception))
            self.put_result(task.id, error)
            if final:
                # The rest of the pipeline will never run: its results are this error,
                # so a get() on a later stage raises instead of waiting forever.
                stage = task.on_complete
                while stage is not None:
                    self.put_result(stage.id, error)
                    stage = stage.on_complete
        setattr(task, FAILURE_ATTR, exception)  # for the event of the failure signal
        signal = next((name for kind, name in _FAILURE_SIGNALS
                       if isinstance(exception, kind)), None)
        if signal is not None:
            self._emit(signal, task)
        elif not isinstance(exception, RetryTask):
            self._emit(S.SIGNAL_ERROR, task, exception)
        self._run_hooks(self._post_execute, 'post-execute', task, None, exception)
        if not final:
            self._emit(S.SIGNAL_RETRYING, task)
            self._requeue(task, retry_eta)
            return
        if task.on_error is not None:
            task.on_error.extend_data(exception)
            self.enqueue(task.on_error)
        if isinstance(exception, CancelExecution):
            self._abort_chord_member(task, Skipped('canceled', task.id))
        else:
            self._abort_chord_member(
                task, error or Error(self.build_error_result(task, exception)))

    def give_up(self, task, exception):
        """Fail ``task`` for good without running it (again): the end of a task that kept
        killing its worker. Its error result (and its later pipeline stages'), chord,
        SIGNAL_ERROR and ``.error()`` handler are as for a task that raised ``exception``
        with no retry left."""
        task.retries = 0
        self._fail(task, exception, None)

    def _requeue(self, task, retry_eta):
        task.retries -= 1
        if retry_eta is None and task.retry_delay:
            retry_eta = normalize_time(delay=task.retry_delay, utc=self.utc)
            if task.retry_backoff:
                task.retry_delay *= task.retry_backoff
        logger.info('retrying %s (%d retries left) %s', task, task.retries,
                    'at %s' % retry_eta if retry_eta else 'now')
        try:
            if retry_eta is None:
                self.enqueue(task)
            else:
                task.eta = retry_eta
                self.add_schedule(task)
        except Exception as exc:
            self.emit_event(EVENT_ERROR_ENQUEUEING if retry_eta is None else EVENT_ERROR_SCHEDULING,
                            task, exception=exc)
            raise

    def _run_pre_execute(self, task):
        for name, fn in list(self._pre_execute.items()):
            try:
                fn(task)
            except CancelExecution:
                logger.warning('%s canceled by pre-execute hook %r', task, name)
                raise
            except Exception:
                logger.exception('pre-execute hook %r failed for %s', name, task)

    def _store_result(self, task, value, patience=60.0):
        """Store a result, riding out a storage outage for ``patience`` seconds.

        A result that cannot be stored at all (too large, not serializable) is
        reported with SIGNAL_ERROR and given up: the task ran, and running it
        again would not help.
        """
        deadline = time.monotonic() + patience
        delay = 0.1
        while True:
            try:
                self.put_result(task.id, value)
                return True
            except Exception as exc:
                transient = isinstance(exc, self.storage.transient_errors)
                if not transient or time.monotonic() > deadline:
                    logger.exception('could not store the result of %s; it ran, but its '
                                     'result is lost', task)
                    setattr(task, STORING_RESULT_ATTR, True)  # its event: error-storing-result
                    self._emit(S.SIGNAL_ERROR, task, exc)
                    if not transient:  # the caller gets this error rather than waiting for ever
                        self._store_unstorable_result_error(task, exc)
                    return False
                logger.warning('storage unavailable while storing the result of %s (%s); '
                               'retrying', task, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _store_unstorable_result_error(self, task, exc):
        error = HueyException('%s ran, but its return value could not be stored (%s: %s); '
                              'return a value the serializer can store' % (task, type(exc).__name__, exc))
        try:
            self.put_result(task.id, Error(self.build_error_result(task, error)))
        except Exception:
            logger.exception('could not store an error result for %s either', task)

    def build_error_result(self, task, exception):
        return {
            'error': repr(exception),
            'task': task.name,
            'task_id': task.id,
            'retries': task.retries,
            'retry_delay': task.retry_delay,
            'traceback': ''.join(traceback.format_exception(exception)),
        }

    def handing_back(self, tasks):
        """A stopping worker returns ``tasks`` to the queue through their claims: from now
        on an ``enqueue()`` of one of them (huey's old advice for SIGNAL_INTERRUPTED
        handlers) is a no-op, so none is queued twice."""
        self._releasing.update(task.id for task in tasks)

    def notify_interrupted_tasks(self):
        """Emit SIGNAL_INTERRUPTED for every task running now; returns those tasks."""
        with self._in_flight_lock:
            interrupted, self._tasks_in_flight = list(self._tasks_in_flight), set()
        for task in interrupted:
            self._emit(S.SIGNAL_INTERRUPTED, task)
        return interrupted

    # --- the schedule ---------------------------------------------------------
    def add_schedule(self, task):
        eta = to_timestamp(task.eta, self.utc) if task.eta else 0.0
        self.storage.add_to_schedule(self.serialize_task(task), eta, task.priority)
        logger.info('scheduled %s', task)
        self._emit(S.SIGNAL_SCHEDULED, task)

    def read_schedule(self, timestamp=None):
        """Remove and return the scheduled tasks due at ``timestamp`` (default now)."""
        timestamp = timestamp or self._now()
        return self._decode_all(self.storage.read_schedule(to_timestamp(timestamp, self.utc)))

    def enqueue_due(self, timestamp=None):
        """Move the scheduled tasks due at ``timestamp`` to the queue in one storage step.

        What a scheduler does: nothing is lost if it dies half-way. Emits
        SIGNAL_ENQUEUED for each task moved and returns them.
        """
        timestamp = timestamp or self._now()
        tasks = self._decode_all(self.storage.move_due(to_timestamp(timestamp, self.utc)))
        for task in tasks:
            self._emit(S.SIGNAL_ENQUEUED, task)
        return tasks

    def next_schedule_time(self):
        """When the earliest scheduled task is due (a datetime), or None."""
        ts = self.storage.next_schedule_time()
        return None if ts is None else from_timestamp(ts, self.utc)

    def read_periodic(self, timestamp=None):
        """The periodic tasks due in the minute of ``timestamp`` (default now)."""
        timestamp = timestamp or self._now()
        return [task for task in self._registry.periodic_tasks
                if task.validate_datetime(timestamp)]

    def _decode_all(self, messages):
        tasks = []
        for data in messages:
            try:
                tasks.append(self.deserialize_task(data))
            except Exception:
                logger.exception('cannot decode a stored message; it was skipped')
        return tasks

    # --- revoking -------------------------------------------------------------
    def _revoke_key(self, task_class):
        return 'rt:%s' % self._registry.task_to_string(task_class)

    def _put_revocation(self, key, revoke_until, revoke_once):
        if revoke_until is not None:
            revoke_until = to_naive(revoke_until, self.utc)
        self.storage.put_revocation(key, self.serializer.serialize((revoke_until, revoke_once)))

    def revoke_all(self, task_class, revoke_until=None, revoke_once=False):
        self._put_revocation(self._revoke_key(task_class), revoke_until, revoke_once)

    def restore_all(self, task_class):
        return self.storage.delete_revocation(self._revoke_key(task_class))

    def revoke(self, task, revoke_until=None, revoke_once=False):
        self._put_revocation(task.revoke_id, revoke_until, revoke_once)

    def restore(self, task):
        return self.storage.delete_revocation(task.revoke_id)

    def revoke_by_id(self, id, revoke_until=None, revoke_once=False):
        return self.revoke(Task(id=id), revoke_until, revoke_once)

    def restore_by_id(self, id):
        return self.restore(Task(id=id))

    def _revocation_keys(self, task):
        if isinstance(task, type):
            return [self._revoke_key(task)]
        return [task.revoke_id, self._revoke_key(type(task))]

    def is_revoked(self, task, timestamp=None, peek=True, snapshot=None):
        """True when ``task`` (an instance, or a task class) must not run at ``timestamp``.

        With ``peek=False`` a revoke-once entry is used up. ``snapshot``: a dict
        of revocation keys to values, taken just before, in which a missing key
        means "not revoked" (``read_revocations``, or what a claim returned).
        """
        keys = self._revocation_keys(task)
        if snapshot is None:
            values = self.storage.read_revocations(keys)
        else:
            values = [snapshot.get(key, EmptyData) for key in keys]
        timestamp = timestamp or self._now()
        for key, data in zip(keys, values):
            if data is EmptyData:
                continue
            revoke_until, revoke_once = self.serializer.deserialize(data)
            if revoke_until is not None and revoke_until <= timestamp:
                self.storage.delete_revocation(key)  # the revocation has run out
                continue
            if revoke_once and not peek and not self.storage.delete_revocation(key):
                continue  # another worker used it up (or it was restored) meanwhile
            return True
        return False

    def read_revocations(self, tasks):
        """A snapshot for ``execute(revocations=...)``: the revocations of ``tasks``, in one read."""
        keys = list(dict.fromkeys(key for task in tasks for key in self._revocation_keys(task)))
        return {key: value for key, value in zip(keys, self.storage.read_revocations(keys))
                if value is not EmptyData}

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
        return self._keep_dead_letter(DeadLetter.create(payload, reason, task, key))

    def bury(self, payload, reason):
        """Move a message that cannot run to the dead letters and tell its caller.

        When the message's id can be read (it names an unknown task, say; not when
        its signature is wrong) the caller's ``get()`` raises TaskException with
        the reason instead of waiting forever. Returns the dead letter's id.
        """
        try:
            message = self.serializer.deserialize(payload)
            task_id, name = message.id, message.name
        except Exception:
            task_id = name = None
        letter_id = self._keep_dead_letter(
            dataclasses.replace(DeadLetter.create(payload, reason), task=name, task_id=task_id))
        if task_id is not None and self.results:
            self.put_result(task_id, Error({
                'error': '%s (dead letter %s)' % (reason, letter_id), 'task': name,
                'task_id': task_id, 'retries': 0, 'retry_delay': 0, 'traceback': None}))
        return letter_id

    def _keep_dead_letter(self, letter):
        self.storage.add_dead_letter(letter.id, letter.encode())
        logger.error('dead letter %s: %s', letter.id, letter.reason)
        return letter.id

    def dead_letters(self):
        """Every dead letter (id, reason, time, task name and id when known, raw payload)."""
        return [DeadLetter.decode(record) for _, record in self.storage.dead_letters()]

    def _chosen_letters(self, ids):
        letters = self.dead_letters()
        return letters if ids is None else [letter for letter in letters if letter.id in set(ids)]

    def requeue_dead_letters(self, ids=None):
        """Put these dead letters' messages (all when ``ids`` is None) back on the queue."""
        letters = self._chosen_letters(ids)
        self.storage.enqueue_many([(letter.payload, None) for letter in letters])
        self.storage.remove_dead_letters([letter.id for letter in letters])
        return len(letters)

    def purge_dead_letters(self, ids=None):
        """Delete these dead letters (all when ``ids`` is None); returns how many."""
        return self.storage.remove_dead_letters(
            [letter.id for letter in self._chosen_letters(ids)])

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

    # --- workflows: groups and chords -------------------------------------------
    def _enqueue_workflow(self, workflow):
        if isinstance(workflow, chord):
            return self._enqueue_chord(workflow)
        handles = [self.enqueue(task) for task in workflow.tasks]
        return ResultGroup(handles) if self.results else None

    def _enqueue_chord(self, workflow):
        """Enqueue the members; the last one to finish enqueues the callback.

        Each member's last stage carries ``(chord id, size, index, callback)``.
        When a member ends, for good, its value (or an Error, or a Skipped) is
        stored under ``chord:<id>:<index>`` with put_if_empty (so a member that
        runs twice, e.g. redelivered after a crash, counts once) and the counter
        ``chord:<id>`` is incremented atomically; whoever brings it to ``size``
        reads the values in member order and enqueues the callback.
        """
        cid, size = str(uuid.uuid4()), len(workflow.tasks)
        callback = workflow.callback
        members, heads = [], []
        for index, member in enumerate(workflow.tasks):
            if isinstance(member, group):
                raise ValueError('a group cannot be a chord member; make it a chord '
                                 'with .then() first')
            head = member.callback if isinstance(member, chord) else member
            tail = head
            while tail.on_complete is not None:
                tail = tail.on_complete
            tail.chord_config = (cid, size, index, callback)
            members.append(Result(self, tail))
            if isinstance(member, chord):
                self._enqueue_chord(member)  # its callback reports to this chord
            else:
                heads.append(head)
        if heads:
            self.enqueue_many(heads)
        if not size:
            callback.extend_data(([],))
            self.enqueue(callback)
        stages = []
        stage = callback
        while stage is not None:
            stages.append(Result(self, stage))
            stage = stage.on_complete
        return ChordResult(members, stages[0], ResultGroup(stages) if len(stages) > 1 else None)

    def _chord_member_done(self, config, value):
        cid, size, index, callback = config
        if not self.put_if_empty('chord:%s:%d' % (cid, index), value):
            logger.warning('member %d of chord %s ended a second time (a redelivered '
                           'task?); it was counted once', index, cid)
            return
        if self.storage.incr('chord:%s' % cid) != size:
            return
        keys = ['chord:%s:%d' % (cid, i) for i in range(size)]
        results = [None if data is EmptyData else self.serializer.deserialize(data)
                   for data in self.storage.peek_many(keys)]
        for key in keys:
            self.storage.delete_data(key)
        self.storage.delete_counter('chord:%s' % cid)
        callback.extend_data((results,))
        self.enqueue(callback)

    def _abort_chord_member(self, task, value):
        """A pipeline stage ended it for good: its chord (if any) gets ``value`` for it."""
        while task is not None:
            if task.chord_config is not None:
                return self._chord_member_done(task.chord_config, value)
            task = task.on_complete

    # --- events ---------------------------------------------------------------------
    def _setup_events(self, events):
        storage = self.storage
        if events is None:
            events = storage.supports_events and storage.events_by_default
        elif events and not storage.supports_events:
            raise storage.events_unsupported_error()
        self.events = bool(events)
        storage.events_enabled = self.events
        self._emitter = None
        if self.events:
            self._emitter = EventEmitter(self)
            self._emitter.connect()

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
