"""Running one task: from a dequeued Task to its result, its retry or its failure.

``Executor.execute()`` decides whether the task runs now (it may be early,
revoked or expired), runs it under its timeout, and settles the outcome:
stores the result, runs the next pipeline stage, reports to the chord,
schedules a retry, or stores the error. Every step is announced with a
signal; observers (events, metrics) get the exception and the duration with
it, receivers get huey's arguments.
"""
import contextlib
import copy
import logging
import threading
import time
import traceback

from hueyd import signals as S
from hueyd.coroutines import unbatched, within_deadline
from hueyd.events import EVENT_ERROR_ENQUEUEING, EVENT_ERROR_SCHEDULING
from hueyd.exceptions import (CancelExecution, HueyException, RateLimitExceeded, RetryTask,
                              TaskException, TaskLockedException, TaskTimeout)
from hueyd.result import Error, Skipped
from hueyd.signals import Outcome
from hueyd.storage.patience import patiently
from hueyd.task import PeriodicTask
from hueyd.timeouts import timeout_context
from hueyd.times import normalize_time

logger = logging.getLogger('hueyd')

# Failures that mean "not yet" rather than "this attempt failed": while the task has
# retries left, they store no error and run no error handler (as in huey).
RETRYING_EXCEPTIONS = (RetryTask, RateLimitExceeded, TaskLockedException)
# Which signal reports which failure; anything else is SIGNAL_ERROR.
FAILURE_SIGNALS = (
    (TaskTimeout, S.SIGNAL_TIMEOUT),
    (RateLimitExceeded, S.SIGNAL_RATE_LIMITED),
    (TaskLockedException, S.SIGNAL_LOCKED),
    (CancelExecution, S.SIGNAL_CANCELED),
)
# How long a finished task waits for an unavailable storage to take its result.
RESULT_PATIENCE = 60.0


def error_result(task, exception):
    """The dict huey stores (wrapped in ``Error``) for a task that failed with ``exception``.

    A TaskException (the task waited for another task that failed) reports that
    task's error, not itself.
    """
    error = repr(exception)
    if isinstance(exception, TaskException):
        error = exception.metadata.get('error') or error
    return {
        'error': error,
        'task': task.name,
        'task_id': task.id,
        'retries': task.retries,
        'retry_delay': task.retry_delay,
        'traceback': ''.join(traceback.format_exception(exception)),
    }


class TaskCode(threading.local):
    """Per thread: the task whose own code runs in it now (None between tasks' code), and the
    interruption waiting for the next one (``Executor.interrupter``)."""
    task = None
    pending = None  # the exception class to raise as a task's code starts


class Executor:
    """Runs tasks for one Huey; safe to use from many threads at once."""

    def __init__(self, huey, signals, pre_execute, post_execute):
        self.huey = huey
        self.signals = signals
        self.pre_execute = pre_execute
        self.post_execute = post_execute
        # id(task) -> (task, monotonic start), for notify_interrupted(): by identity, which
        # costs no Task.__hash__ call, and two equal tasks (one message delivered twice)
        # running at once do not share an entry.
        self.running = {}
        self.running_lock = threading.Lock()
        self.task_code = None  # a TaskCode once a worker asked for an interrupter()
        # fn(task) -> a context manager entered around each run, and all that follows it
        # in this thread (the result, a retry, the next stage): hueyd.tracing's span.
        self.around = []

    def execute(self, task, timestamp, revocations, interrupt):
        """See ``Huey.execute``."""
        if self.runs_now(task, timestamp, revocations):
            return self.run(task, interrupt)

    async def aexecute(self, task, timestamp, revocations, interrupt):
        """See ``Huey.aexecute``: ``execute`` for an async task, awaited on the running loop."""
        if not self.runs_now(task, timestamp, revocations):
            return None
        if not self.around:
            return await self.arun_now(task, interrupt)
        with self.wrapped(task):
            return await self.arun_now(task, interrupt)

    def runs_now(self, task, timestamp, revocations):
        """True when the task is due; else it is scheduled (early) or skipped (revoked, expired)."""
        huey = self.huey
        # Only an eta or an expiry needs the time now (is_revoked reads it when it must).
        if task.eta is not None or task.expires_resolved is not None:
            timestamp = timestamp or huey.now()
        if not huey.ready_to_run(task, timestamp):
            huey.add_schedule(task)
        elif huey.is_revoked(task, timestamp, peek=False, snapshot=revocations):
            logger.warning('%s was revoked, not running it', task)
            self.signals.send(S.SIGNAL_REVOKED, task)
            huey.chords.abort_member(task, Skipped('revoked', task.id))
        elif task.expires_resolved is not None and task.expires_resolved < timestamp:
            logger.info('%s expired at %s, not running it', task, task.expires_resolved)
            self.signals.send(S.SIGNAL_EXPIRED, task)
            huey.chords.abort_member(task, Skipped('expired', task.id))
        else:
            return True
        return False

    def run(self, task, interrupt):
        if not self.around:  # the usual case: no ExitStack on the hot path
            return self.run_now(task, interrupt)
        with self.wrapped(task):
            return self.run_now(task, interrupt)

    @contextlib.contextmanager
    def wrapped(self, task):
        """The ``around`` contexts of ``task``, entered in order."""
        with contextlib.ExitStack() as stack:
            for wrap in self.around:
                stack.enter_context(wrap(task))
            yield

    def run_now(self, task, interrupt):
        started = self.begin(task)
        if started is None:
            return None
        value, exception, retry_eta = self.call(task, interrupt, started)
        return self.settle(task, started, value, exception, retry_eta)

    async def arun_now(self, task, interrupt):
        started = self.begin(task)
        if started is None:
            return None
        value, exception, retry_eta = await self.acall(task, interrupt, started)
        return self.settle(task, started, value, exception, retry_eta)

    def begin(self, task):
        """Announce the task and run the pre-execute hooks: its monotonic start, or None
        when a hook canceled it."""
        logger.info('executing %s', task)
        started = time.monotonic()
        self.signals.send(S.SIGNAL_EXECUTING, task)
        try:
            self.run_pre_execute(task)
        except CancelExecution:
            self.signals.send(S.SIGNAL_CANCELED, task,
                              outcome=Outcome(duration=time.monotonic() - started))
            self.huey.chords.abort_member(task, Skipped('canceled', task.id))
            return None
        return started

    def settle(self, task, started, value, exception, retry_eta):
        duration = time.monotonic() - started
        if exception is None:
            self.complete(task, value, duration)
        else:
            self.fail(task, exception, retry_eta, duration)
        return value

    def call(self, task, interrupt, started):
        """Call the task's function: ``(value, exception, retry_eta)``."""
        with self.running_lock:
            self.running[id(task)] = task, started
        code = self.task_code
        try:
            # The task's own writes (a subtask it enqueues and waits for) go out at once.
            with timeout_context(task), self.huey.storage.unbatched():
                if code is None:  # nothing interrupts this worker's tasks: nothing to mark
                    return task.execute(), None, None
                outer, code.task = code.task, task  # outer: a task running this one inline
                try:
                    if code.pending is not None:
                        self.huey.handing_back([task])
                        raise code.pending()
                    return task.execute(), None, None
                finally:
                    code.task = outer
        except BaseException as exc:  # sys.exit() in a task must not stop the consumer
            return self.caught(task, exc, interrupt, started)
        finally:
            with self.running_lock:
                self.running.pop(id(task), None)

    async def acall(self, task, interrupt, started):
        """``call`` for an async task: awaits its coroutine, under its deadline."""
        with self.running_lock:
            self.running[id(task)] = task, started
        try:
            with timeout_context(task):
                coroutine = task.coroutine()
                if task.deadline is not None:
                    coroutine = within_deadline(task, coroutine)
                # Other coroutines run between the task's steps: unbatched for its own only.
                return await unbatched(coroutine), None, None
        except BaseException as exc:
            return self.caught(task, exc, interrupt, started)
        finally:
            with self.running_lock:
                self.running.pop(id(task), None)

    def caught(self, task, exc, interrupt, started):
        """What the task's exception means: ``(None, exception, retry_eta)``.
        Raises ``exc`` again when it is ``interrupt`` (the worker is stopping)."""
        retry_eta = None
        if isinstance(exc, RetryTask):
            logger.info('%s asked to be retried', task)
            task.retries += 1
            if exc.eta is not None or exc.delay is not None:
                retry_eta = normalize_time(exc.eta, exc.delay, self.huey.utc)
        elif isinstance(exc, RateLimitExceeded):
            logger.info('%s rate-limited by %r for %.3fs', task, exc.key, exc.delay)
            # As huey: with retry=True, or with retries of its own left, the task
            # goes to the schedule, after its retry_delay if it has one, else at
            # the start of the next window; only retry=True spares its retries.
            if exc.retry or task.retries:
                retry_eta = normalize_time(delay=task.retry_delay or exc.delay, utc=self.huey.utc)
                if exc.retry:
                    task.retries += 1
        elif isinstance(exc, interrupt):
            # The worker is being stopped mid-task (SIGTERM in a daemon, Ctrl-C here).
            logger.warning('%s was interrupted before it finished', task)
            self.signals.send(S.SIGNAL_INTERRUPTED, task,
                              outcome=Outcome(duration=time.monotonic() - started))
            raise exc
        elif isinstance(exc, CancelExecution):
            if exc.retry or (exc.retry is None and task.retries):
                task.retries = max(task.retries, 1)
            else:
                task.retries = 0
            logger.warning('%s canceled itself', task)
        elif isinstance(exc, (TaskTimeout, TaskLockedException)):
            logger.warning('%s failed: %s', task, exc)
        else:
            logger.exception('%s raised an exception', task, exc_info=exc)
        return None, exc, retry_eta

    def run_pre_execute(self, task):
        for name, fn in self.pre_execute:
            try:
                fn(task)
            except CancelExecution:
                logger.warning('%s canceled by pre-execute hook %r', task, name)
                raise
            except Exception:
                logger.exception('pre-execute hook %r failed for %s', name, task)

    # --- settling the outcome -------------------------------------------------
    def stores_result(self, task):
        return self.huey.results and not isinstance(task, PeriodicTask)

    def complete(self, task, value, duration):
        huey = self.huey
        if self.stores_result(task) and (value is not None or huey.store_none):
            self.store_result(task, value, duration)
        self.post_execute.run(task, value, None)
        self.signals.send(S.SIGNAL_COMPLETE, task, outcome=Outcome(duration=duration))
        if task.on_complete is not None:
            task.on_complete.extend_data(value)
            huey.enqueue(task.on_complete)
        if task.chord_config is not None:
            huey.chords.member_done(task.chord_config, value)

    def fail(self, task, exception, retry_eta, duration=None):
        """Report ``exception``; retry the task if it has retries left, else end it for good.

        The error is *surfaced* (stored as the result, handed to the ``.error()``
        handler) when the task ends, and on each failed attempt before that unless the
        Huey has ``store_intermediate_errors=False`` or the failure only means "not yet".
        """
        huey = self.huey
        final = not task.retries
        surfaced = final or (huey.store_intermediate_errors
                             and not isinstance(exception, RETRYING_EXCEPTIONS))
        error = Error(huey.build_error_result(task, exception)) if surfaced else None
        if surfaced and self.stores_result(task):
            huey.put_result(task.id, error)
            if final:
                # The rest of the pipeline will never run: its results are this error,
                # so a get() on a later stage raises instead of waiting forever.
                stage = task.on_complete
                while stage is not None:
                    huey.put_result(stage.id, error)
                    stage = stage.on_complete
        outcome = Outcome(exception=exception, duration=duration)
        signal = next((name for kind, name in FAILURE_SIGNALS
                       if isinstance(exception, kind)), None)
        if signal is not None:
            self.signals.send(signal, task, outcome=outcome)
        elif not isinstance(exception, RetryTask):
            self.signals.send(S.SIGNAL_ERROR, task, exception, outcome=outcome)
        self.post_execute.run(task, None, exception)
        if surfaced and task.on_error is not None:
            handler = copy.copy(task.on_error)  # the task keeps its handler for the next attempt
            handler.extend_data(exception)
            huey.enqueue(handler)
        if not final:
            self.signals.send(S.SIGNAL_RETRYING, task, outcome=outcome)
            self.retry(task, retry_eta)
            return
        huey.chords.abort_member(task, error)

    def retry(self, task, retry_eta):
        huey = self.huey
        task.retries -= 1
        if retry_eta is None and task.retry_delay:
            retry_eta = normalize_time(delay=task.retry_delay, utc=huey.utc)
            if task.retry_backoff:
                task.retry_delay *= task.retry_backoff
        logger.info('retrying %s (%d retries left) %s', task, task.retries,
                    'at %s' % retry_eta if retry_eta else 'now')
        try:
            if retry_eta is None:
                huey.enqueue(task)
            else:
                task.eta = retry_eta
                huey.add_schedule(task)
        except Exception as exc:
            huey.emit_event(EVENT_ERROR_ENQUEUEING if retry_eta is None else EVENT_ERROR_SCHEDULING,
                            task, exception=exc)
            raise

    def store_result(self, task, value, duration):
        """Store a result, riding out a storage outage for RESULT_PATIENCE seconds.

        A result that cannot be stored at all (too large, not serializable) is
        reported with SIGNAL_ERROR and given up: the task ran, and running it
        again would not help; its caller gets an error result instead.
        """
        huey = self.huey
        try:
            patiently(huey.storage, 'store the result of %s' % task, huey.put_result,
                      task.id, value, patience=RESULT_PATIENCE)
            return
        except Exception as exc:
            logger.exception('could not store the result of %s; it ran, but its result is lost',
                             task)
            self.signals.send(S.SIGNAL_ERROR, task, exc, outcome=Outcome(
                exception=exc, duration=duration, storing_result=True))
            if not isinstance(exc, huey.storage.transient_errors):
                self.store_unstorable_result_error(task, exc)

    def store_unstorable_result_error(self, task, exc):
        error = HueyException('%s ran, but its return value could not be stored (%s: %s); '
                              'return a value the serializer can store' % (task, type(exc).__name__, exc))
        try:
            self.huey.put_result(task.id, Error(self.huey.build_error_result(task, error)))
        except Exception:
            logger.exception('could not store an error result for %s either', task)

    # --- stopping -------------------------------------------------------------
    def interrupter(self, error):
        """For a worker whose signal handler interrupts the task its main thread runs: from
        now on each task's own code is marked, and the function returned, called by the
        handler, raises ``error`` (an exception class; the ``interrupt`` given to
        ``execute``) at once if that code runs now, else as soon as a task's code starts.
        The task it interrupts is handed back first (``Huey.handing_back``): the worker
        returns it through its claim, so a SIGNAL_INTERRUPTED handler's enqueue() of it
        must not queue it twice.

        A handler's exception surfaces wherever the thread happens to be. Only the task's
        own code may take it: anywhere else (a storage write, the executor's or a worker's
        bookkeeping) it could leave a lock held or a write batch half sent, and the process
        would hang on its way out. (Only such workers pay for the marks: about 0.3 us a task.)
        """
        if self.task_code is None:
            self.task_code = TaskCode()
        code = self.task_code  # handlers run in the main thread: they see that thread's state

        def interrupt():
            code.pending = error
            if code.task is not None:
                self.huey.handing_back([code.task])
                raise error()
        return interrupt

    def notify_interrupted(self):
        """Send SIGNAL_INTERRUPTED for every task running now; returns those tasks."""
        with self.running_lock:
            interrupted, self.running = self.running, {}
        now = time.monotonic()
        for task, started in interrupted.values():
            self.signals.send(S.SIGNAL_INTERRUPTED, task, outcome=Outcome(duration=now - started))
        return [task for task, _ in interrupted.values()]
