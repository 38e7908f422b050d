"""Reading consumer events from a storage: what ``storage.listener()`` returns.

Events are JSON (see hueyd.events for their fields); a published message holds
one event or a JSON array of them.
"""
import collections
import json
import time


def decode_all(data):
    """The events in one published message: a single event, or a JSON array of them."""
    value = json.loads(data)
    return value if isinstance(value, list) else [value]


class EventListener:
    """Events from a storage, as a subscriber sees them.

    ``listen()`` yields ``{'type': 'message', 'channel': ..., 'data': event}``
    (subscription confirmations are never yielded), iterating the listener
    yields the event dicts themselves, and ``get_event(timeout)`` returns the
    next one or None. Only events published after the listener was created are
    seen. Close it (or use it as a context manager) to release its connection.

    ``fetch(timeout)`` is the storage's: it returns a list of raw events,
    waiting up to ``timeout`` seconds (None: as long as it takes) for one.
    """

    def __init__(self, channel, fetch, close=None):
        self.channel = channel
        self._fetch = fetch
        self._close = close
        self._pending = collections.deque()  # decoded events
        self.closed = False

    def get_event(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            if self.closed:
                return None
            # Wake up at least every second, so a close() from another thread is noticed.
            wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            for data in self._fetch(wait):
                self._pending.extend(decode_all(data))
            if not self._pending and deadline is not None and time.monotonic() >= deadline:
                return None
        return self._pending.popleft()

    def listen(self):
        while not self.closed:
            event = self.get_event(timeout=1.0)
            if event is not None:
                yield {'type': 'message', 'pattern': None, 'channel': self.channel,
                       'data': event}

    def __iter__(self):
        for message in self.listen():
            yield message['data']

    def close(self):
        if not self.closed:
            self.closed = True
            if self._close is not None:
                self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
