"""What the dashboard remembers while it runs: the newest events and the last hour's figures.

One background thread follows the event stream (when the Huey's events are on)
into a ring of the newest ``KEEP`` events, counting failures per minute, and
every ``SAMPLE_EVERY`` seconds adds the nodes' tasks per second (from their
node-state records, so it works with events off) to the minute's average. Both
are kept in this process only: they start empty when the dashboard starts. A
storage that keeps task statistics (hueyd.taskstats) has the chart's figures
itself: the nodes are not sampled then.
"""
import collections
import logging
import math
import threading
import time

from hueyd.exceptions import ConfigurationError
from hueyd.nodes import pool_rate, read_nodes
from hueyd.storage.protocols import Stats

logger = logging.getLogger('hueyd.dashboard')

KEEP = 1000            # events kept for the event log and the task pages
SAMPLE_EVERY = 10.0    # seconds between two samples of the nodes' tasks per second
MINUTES = 60           # the chart's span
POLL = 1.0             # longest wait for an event, so stop() is noticed


class Monitor:
    def __init__(self, huey):
        self.huey = huey
        self.events_on = None          # unknown until the thread has asked the storage
        self.events_off_reason = None
        self._events = collections.deque(maxlen=KEEP)
        self._seq = 0
        self._minutes = {}             # minute number -> {'rate_sum', 'samples', 'failures'}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._started = None           # the minute the thread started: nothing is known before
        self._sampling = not huey.storage.supports(Stats)  # else the chart comes from the storage

    def start(self):
        """Start the thread (once). Called at ASGI startup and on every request too: the
        host of a mounted dashboard may never send it lifespan events."""
        with self._lock:
            if self._thread is None:
                self._started = int(time.time() // 60)
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name='hueyd-dashboard-monitor')
                self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(POLL * 3)

    # -- reading -----------------------------------------------------------------------

    def events_after(self, seq=0, task=None, statuses=(), task_id=None):
        """``(events with a number above seq that match, the newest number)``.

        ``task`` matches any part of the task's name, case aside."""
        task = (task or '').lower()
        with self._lock:
            events = list(self._events)
            newest = self._seq
        return [event for event in events
                if event['seq'] > seq
                and (not task or task in (event.get('task') or '').lower())
                and (not statuses or event.get('status') in statuses)
                and (task_id is None or event.get('id') == task_id)], newest

    def chart(self):
        """One point per minute of the last hour, oldest first: its start (unix time),
        the average tasks per second sampled in it, and the failures counted in it
        (None where nothing was sampled or counted: before the dashboard started, or
        events off)."""
        now = int(time.time() // 60)
        points = []
        with self._lock:
            for minute in range(now - MINUTES + 1, now + 1):
                entry = self._minutes.get(minute)
                rate = entry['rate_sum'] / entry['samples'] if entry and entry['samples'] else None
                counted = self.events_on and self._started is not None and minute >= self._started
                failures = (entry['failures'] if entry else 0) if counted else None
                points.append({'t': minute * 60, 'rate': rate, 'failures': failures})
        return points

    # -- the thread ----------------------------------------------------------------------

    def _run(self):
        listener = None
        next_sample = 0.0 if self._sampling else math.inf
        failing = False
        while not self._stop.is_set():
            try:
                if listener is None and self.events_on is not False:
                    listener = self._listen()
                if time.monotonic() >= next_sample:
                    next_sample = time.monotonic() + SAMPLE_EVERY
                    self._sample()
                wait = min(POLL, max(0.0, next_sample - time.monotonic()))
                if listener is None:
                    self._stop.wait(wait)
                else:
                    event = listener.get_event(timeout=wait)
                    if event is not None:
                        self._record(event)
                failing = False
            except Exception as exc:
                # A report: the storage being away must not end it, nor flood the log.
                if not failing:
                    logger.warning('dashboard: cannot read the storage (%s: %s); retrying',
                                   type(exc).__name__, exc)
                    failing = True
                self._close(listener)
                listener = None
                self._stop.wait(POLL)
        self._close(listener)

    def _listen(self):
        try:
            listener = self.huey.storage.listener()
        except ConfigurationError as exc:
            self.events_on, self.events_off_reason = False, str(exc)
            return None
        self.events_on = True
        return listener

    @staticmethod
    def _close(listener):
        if listener is not None:
            try:
                listener.close()
            except Exception:
                pass

    def _record(self, event):
        now = time.time()
        with self._lock:
            self._seq += 1
            self._events.append(dict(event, seq=self._seq, received=now))
            if event.get('error'):
                self._minute(now)['failures'] += 1

    def _sample(self):
        nodes = read_nodes(self.huey.storage)
        if nodes is None:  # this storage keeps no node state
            return
        rate = sum(pool_rate(pool) for node in nodes for pool in node['pools'])
        with self._lock:
            minute = self._minute(time.time())
            minute['rate_sum'] += rate
            minute['samples'] += 1

    def _minute(self, now):
        """The entry of the minute ``now`` falls in; forgets those older than the chart."""
        number = int(now // 60)
        entry = self._minutes.get(number)
        if entry is None:
            for old in [m for m in self._minutes if m <= number - MINUTES]:
                del self._minutes[old]
            entry = self._minutes[number] = {'rate_sum': 0.0, 'samples': 0, 'failures': 0}
        return entry
