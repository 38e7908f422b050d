"""Signal names and the dispatcher that calls their handlers.

Handlers run synchronously in the process that emits the signal. A handler that
raises is logged and skipped: it never stops the other handlers, the task, or
the storing of its result.

Two kinds of handler: *receivers* (``Huey.signal()``) get huey's arguments,
``fn(signal, task, *args)``; *observers* (``Huey.observe()``: events, metrics)
get ``fn(signal, task, outcome)``, where the ``Outcome`` says what huey's
arguments leave out (the exception behind a timeout, how long the task ran).
"""
import logging
from typing import NamedTuple

logger = logging.getLogger('hueyd.signals')

SIGNAL_CANCELED = 'canceled'
SIGNAL_COMPLETE = 'complete'
SIGNAL_ERROR = 'error'
SIGNAL_EXECUTING = 'executing'
SIGNAL_EXPIRED = 'expired'
SIGNAL_LOCKED = 'locked'
SIGNAL_RETRYING = 'retrying'
SIGNAL_REVOKED = 'revoked'
SIGNAL_SCHEDULED = 'scheduled'
SIGNAL_INTERRUPTED = 'interrupted'
SIGNAL_ENQUEUED = 'enqueued'
SIGNAL_TIMEOUT = 'timeout'
SIGNAL_RATE_LIMITED = 'rate-limited'

ALL_SIGNALS = (
    SIGNAL_CANCELED, SIGNAL_COMPLETE, SIGNAL_ERROR, SIGNAL_EXECUTING,
    SIGNAL_EXPIRED, SIGNAL_LOCKED, SIGNAL_RETRYING, SIGNAL_REVOKED,
    SIGNAL_SCHEDULED, SIGNAL_INTERRUPTED, SIGNAL_ENQUEUED, SIGNAL_TIMEOUT,
    SIGNAL_RATE_LIMITED)

# Handlers registered without names listen here and receive every signal.
ANY = 'any'


class Outcome(NamedTuple):
    """What an observer learns with a signal, besides the signal and the task."""
    exception: BaseException = None  # the failure a failure signal (or SIGNAL_RETRYING) reports
    duration: float = None           # seconds since the task started, once it has
    storing_result: bool = False     # SIGNAL_ERROR about storing the result, not the task


NO_OUTCOME = Outcome()


class Signal:
    def __init__(self):
        self._receivers = {}  # signal name or ANY -> list of callables
        self._observers = {}  # the same, for observers
        # signal name (or ANY, for names nobody connected to) -> ((handler, is observer), ...)
        # in calling order: worked out on every change rather than on every send.
        self._dispatch = {ANY: ()}

    def connect(self, receiver, *signals, observer=False):
        registry = self._observers if observer else self._receivers
        for name in signals or (ANY,):
            if name != ANY and name not in ALL_SIGNALS:
                raise ValueError('unknown signal %r; valid signals: %s'
                                 % (name, ', '.join(ALL_SIGNALS)))
            handlers = registry.setdefault(name, [])
            if receiver not in handlers:
                handlers.append(receiver)
        self._plan()

    def disconnect(self, receiver, *signals):
        for registry in (self._receivers, self._observers):
            for name in signals or list(registry):
                handlers = registry.get(name, [])
                if receiver in handlers:
                    handlers.remove(receiver)
        self._plan()

    def _plan(self):
        """Each signal's receivers, then its observers, then those of ANY (the order of send)."""
        def handlers(names):
            return tuple((handler, observer) for name in names
                         for observer, registry in ((False, self._receivers),
                                                    (True, self._observers))
                         for handler in registry.get(name, ()))
        named = (set(ALL_SIGNALS) | set(self._receivers) | set(self._observers)) - {ANY}
        dispatch = {signal: handlers((signal, ANY)) for signal in named}
        dispatch[ANY] = handlers((ANY,))
        # A new dict, swapped in whole: a send() in another thread sees the old plan or this one.
        self._dispatch = dispatch

    def __bool__(self):
        return any(self._receivers.values()) or any(self._observers.values())

    def send(self, signal, task, *args, outcome=NO_OUTCOME):
        """Call the receivers with ``(signal, task, *args)``, then the observers with
        ``(signal, task, outcome)``."""
        dispatch = self._dispatch
        for handler, observer in dispatch.get(signal, dispatch[ANY]):
            try:
                if observer:
                    handler(signal, task, outcome)
                else:
                    handler(signal, task, *args)
            except Exception:
                logger.exception('signal handler %r failed for %s on %s', handler, signal, task)
