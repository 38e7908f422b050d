"""huey's ``huey.consumer`` names, so ``from hueyd.consumer import EVENT_FINISHED`` works.

The consumer itself is the ``hueyd`` daemon (``hueyd.daemon``); this module only
re-exports the event names (``hueyd.events``) and the listener.
"""
from hueyd.events import (ALL_EVENTS, EVENT_CANCELED, EVENT_CHECKING_PERIODIC,  # noqa: F401
                          EVENT_ERROR_DEQUEUEING, EVENT_ERROR_ENQUEUEING, EVENT_ERROR_INTERNAL,
                          EVENT_ERROR_SCHEDULING, EVENT_ERROR_STORING_RESULT, EVENT_ERROR_TASK,
                          EVENT_EXPIRED, EVENT_FINISHED, EVENT_INTERRUPTED, EVENT_LOCKED,
                          EVENT_RATE_LIMITED, EVENT_RETRYING, EVENT_REVOKED, EVENT_SCHEDULED,
                          EVENT_SCHEDULING_PERIODIC, EVENT_STARTED, EVENT_TIMEOUT)
from hueyd.storage.listener import EventListener  # noqa: F401

__all__ = [name for name in dir() if name.startswith('EVENT_')] + ['ALL_EVENTS', 'EventListener']
