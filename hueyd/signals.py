"""Signal names and the dispatcher that calls their handlers.

Handlers run synchronously in the process that emits the signal. A handler that
raises is logged and skipped: it never stops the other handlers, the task, or
the storing of its result.
"""
import logging

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


class Signal:
    def __init__(self):
        self._receivers = {}  # signal name or ANY -> list of callables

    def connect(self, receiver, *signals):
        for name in signals or (ANY,):
            if name != ANY and name not in ALL_SIGNALS:
                raise ValueError('unknown signal %r; valid signals: %s'
                                 % (name, ', '.join(ALL_SIGNALS)))
            handlers = self._receivers.setdefault(name, [])
            if receiver not in handlers:
                handlers.append(receiver)

    def disconnect(self, receiver, *signals):
        for name in signals or list(self._receivers):
            handlers = self._receivers.get(name, [])
            if receiver in handlers:
                handlers.remove(receiver)

    def __bool__(self):
        return any(self._receivers.values())

    def send(self, signal, task, *args, **kwargs):
        for name in (signal, ANY):
            for receiver in tuple(self._receivers.get(name, ())):
                try:
                    receiver(signal, task, *args, **kwargs)
                except Exception:
                    logger.exception('signal handler %r failed for %s on %s',
                                     receiver, signal, task)
