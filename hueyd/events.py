"""Consumer events: a JSON record of what happened to each task, published through storage.

Events are derived from signals, never raised on their own: ``EventEmitter``
is a receiver connected to a Huey's signals, so an event exists exactly when
its signal fired (plus the few daemon events that have no signal, sent with
``Huey.emit_event``).

Every event is a dict with ``status``, ``id``, ``task`` (the task's name),
``retries`` (left), ``retry_delay`` and ``execute_time`` (the task's ETA as a
unix timestamp, or None). Failures add ``error`` (True) and ``traceback``;
``started``, ``revoked``, ``expired`` and the periodic events add ``timestamp``
(unix time); ``finished`` and the failures of a task that ran add ``duration``
(seconds).

Cost: the events of one ``Huey.execute()`` call are buffered (per thread, or per
greenlet under gevent) and published in one storage call when it returns;
events sent outside ``execute()`` are published at once. A storage that knows nobody
listens (``listening()``: Redis counts the subscribers with each claim) is sent no task
event, and none is built.
"""
import json
import logging
import threading
import time
import traceback
from json.encoder import c_make_encoder, encode_basestring_ascii

from hueyd import signals as S
from hueyd.times import to_timestamp

logger = logging.getLogger('hueyd.events')

# The events huey's consumer documented (huey 0.4 spelled the errors with "-ing").
EVENT_CHECKING_PERIODIC = 'checking-periodic'
EVENT_ERROR_DEQUEUEING = 'error-dequeueing'
EVENT_ERROR_ENQUEUEING = 'error-enqueueing'
EVENT_ERROR_INTERNAL = 'error-internal'
EVENT_ERROR_SCHEDULING = 'error-scheduling'
EVENT_ERROR_STORING_RESULT = 'error-storing-result'
EVENT_ERROR_TASK = 'error-task'
EVENT_FINISHED = 'finished'
EVENT_RETRYING = 'retrying'
EVENT_REVOKED = 'revoked'
EVENT_SCHEDULED = 'scheduled'
EVENT_SCHEDULING_PERIODIC = 'scheduling-periodic'
EVENT_STARTED = 'started'

# hueyd's own, one for each signal huey added since (named like the signal).
EVENT_CANCELED = 'canceled'
EVENT_EXPIRED = 'expired'
EVENT_INTERRUPTED = 'interrupted'
EVENT_LOCKED = 'locked'
EVENT_RATE_LIMITED = 'rate-limited'
EVENT_TIMEOUT = 'timeout'

# Which signal produces which event. SIGNAL_ENQUEUED produces none: huey's
# consumer never reported enqueueing, and the documented orderings leave it out.
SIGNAL_EVENTS = {
    S.SIGNAL_EXECUTING: EVENT_STARTED,
    S.SIGNAL_COMPLETE: EVENT_FINISHED,
    S.SIGNAL_ERROR: EVENT_ERROR_TASK,
    S.SIGNAL_RETRYING: EVENT_RETRYING,
    S.SIGNAL_SCHEDULED: EVENT_SCHEDULED,
    S.SIGNAL_REVOKED: EVENT_REVOKED,
    S.SIGNAL_EXPIRED: EVENT_EXPIRED,
    S.SIGNAL_CANCELED: EVENT_CANCELED,
    S.SIGNAL_LOCKED: EVENT_LOCKED,
    S.SIGNAL_TIMEOUT: EVENT_TIMEOUT,
    S.SIGNAL_RATE_LIMITED: EVENT_RATE_LIMITED,
    S.SIGNAL_INTERRUPTED: EVENT_INTERRUPTED,
}

# Events that carry the moment they happened, and those that carry how long the task ran.
TIMESTAMPED = frozenset((EVENT_STARTED, EVENT_REVOKED, EVENT_EXPIRED, EVENT_CHECKING_PERIODIC,
                         EVENT_SCHEDULING_PERIODIC))
TIMED = frozenset((EVENT_FINISHED, EVENT_ERROR_TASK, EVENT_ERROR_STORING_RESULT, EVENT_TIMEOUT,
                   EVENT_LOCKED, EVENT_RATE_LIMITED, EVENT_CANCELED, EVENT_INTERRUPTED))
# Failures: they carry error=True and the traceback of the exception, when there is one.
FAILURES = frozenset((EVENT_ERROR_TASK, EVENT_ERROR_STORING_RESULT, EVENT_ERROR_DEQUEUEING,
                      EVENT_ERROR_ENQUEUEING, EVENT_ERROR_INTERNAL, EVENT_ERROR_SCHEDULING,
                      EVENT_TIMEOUT, EVENT_LOCKED, EVENT_RATE_LIMITED))

ALL_EVENTS = tuple(sorted(set(SIGNAL_EVENTS.values()) | {
    EVENT_CHECKING_PERIODIC, EVENT_SCHEDULING_PERIODIC, EVENT_ERROR_DEQUEUEING,
    EVENT_ERROR_ENQUEUEING, EVENT_ERROR_INTERNAL, EVENT_ERROR_SCHEDULING,
    EVENT_ERROR_STORING_RESULT}))

_ENCODER = json.JSONEncoder(default=str, separators=(',', ':'))  # built once: json.dumps
# builds an encoder on every call that passes options
# JSONEncoder.encode() still makes a C encoder per call; this one is made once (None where
# the json module lacks its C speedups), with the options above and no circular check:
# an event is a flat dict.
_C_ENCODER = c_make_encoder and c_make_encoder(
    None, str, encode_basestring_ascii, None, ':', ',', False, False, True)


def encode(event):
    if _C_ENCODER is None:
        return _ENCODER.encode(event).encode()
    return ''.join(_C_ENCODER(event, 0)).encode()


class EventEmitter:
    """Turns a Huey's signals into events and publishes them through its storage."""

    def __init__(self, huey):
        self.huey = huey
        self._local = threading.local()

    def connect(self):
        self.huey.observe(*SIGNAL_EVENTS)(self.on_signal)

    def disconnect(self):
        self.huey.disconnect_signal(self.on_signal)

    # --- building events ------------------------------------------------------
    def build(self, status, task=None, exception=None, duration=None, **extra):
        if task is None:
            event = {'status': status, 'id': None, 'task': None, 'retries': None,
                     'retry_delay': None, 'execute_time': None}
        else:
            eta = task.eta
            event = {'status': status, 'id': task.id, 'task': task.name,
                     'retries': task.retries, 'retry_delay': task.retry_delay,
                     'execute_time': to_timestamp(eta, self.huey.utc) if eta else None}
        if status in TIMESTAMPED:
            event['timestamp'] = time.time()
        if status in FAILURES or exception is not None:
            event['error'] = True
            event['traceback'] = (''.join(traceback.format_exception(exception))
                                  if exception is not None else None)
        if status in TIMED and task is not None:
            event['duration'] = duration
        event.update(extra)
        return event

    def on_signal(self, signal, task, outcome):
        if not self.huey.storage.listening():
            return  # nobody would hear it: not even built
        status = SIGNAL_EVENTS[signal]
        if status == EVENT_ERROR_TASK and outcome.storing_result:
            status = EVENT_ERROR_STORING_RESULT
        exception = outcome.exception if status in FAILURES else None
        self.emit(self.build(status, task, exception, outcome.duration))

    # --- publishing -----------------------------------------------------------
    def emit(self, event):
        data = encode(event)
        buffer = getattr(self._local, 'buffer', None)
        if buffer is not None:
            buffer.append(data)
        else:
            self._publish([data])
        return event

    def begin(self):
        """Buffer this thread's events until the matching ``end()``, which publishes them
        together (``Huey.execute`` calls both; they nest: the outermost end() publishes)."""
        local = self._local
        depth = getattr(local, 'depth', 0)
        if not depth:
            local.buffer = []
        local.depth = depth + 1

    def end(self):
        local = self._local
        local.depth -= 1
        if not local.depth:
            buffer, local.buffer = local.buffer, None
            if buffer:
                self._publish(buffer)

    def _publish(self, batch):
        # Events are a report: failing to publish one must never fail a task.
        try:
            self.huey.storage.publish_events(batch)
        except Exception:
            logger.exception('could not publish %d event(s)', len(batch))
