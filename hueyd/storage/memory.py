"""In-process storage: for tests and for running tasks immediately.

Nothing is shared between processes (``shared = False``); every method takes
one lock, so threads of the same process can use one instance safely.
"""
import collections
import heapq
import itertools
import threading
import time

from hueyd.constants import EmptyData
from hueyd.times import unix_time
from hueyd.storage.base import BaseStorage
from hueyd.storage.listener import EventListener
from hueyd.storage.protocols import (Claimed, Claims, DeadLetters, Events, NodeState, Stats,
                                     add_figures, text_key)


class MemoryStorage(Claims, DeadLetters, Events, NodeState, Stats, BaseStorage):
    blocking = False
    shared = False
    #: Honours ``priority`` (see RedisStorage, which does not).
    priority = True

    def __init__(self, name='huey', **storage_kwargs):
        super().__init__(name)
        self._lock = threading.Lock()
        # One sequence for queue and schedule: it only breaks ties in insertion order.
        self._seq = itertools.count()
        self._queue = []      # heap of (-priority, seq, data)
        self._schedule = []   # heap of (ts, seq, data)
        self._data = {}       # key -> (value, monotonic expiry or None)
        self._counters = {}
        self._claims = {}     # worker -> {receipt (the seq): queue entry}
        self._leases = {}     # worker -> monotonic expiry
        self._dead = {}       # key -> record, in insertion order
        self._states = {}     # kind -> {key: (value, monotonic expiry)}
        self._events = _EventLog()
        self._stats = {}      # (minute, task) -> {field: number}

    # --- queue -------------------------------------------------------------
    def enqueue(self, data, priority=None):
        with self._lock:
            heapq.heappush(self._queue, (-(priority or 0), next(self._seq), data))

    def enqueue_many(self, items):
        with self._lock:
            for data, priority in items:
                heapq.heappush(self._queue, (-(priority or 0), next(self._seq), data))

    def dequeue(self):
        with self._lock:
            return heapq.heappop(self._queue)[2] if self._queue else None

    def queue_size(self):
        with self._lock:
            return len(self._queue)

    def enqueued_items(self, limit=None):
        with self._lock:
            return [data for _, _, data in heapq.nsmallest(_count(limit, self._queue), self._queue)]

    def flush_queue(self):
        with self._lock:
            self._queue = []
            self._claims = {}

    # --- schedule ----------------------------------------------------------
    def add_to_schedule(self, data, ts, priority=None):
        with self._lock:
            heapq.heappush(self._schedule, (unix_time(ts), next(self._seq), data, priority or 0))

    def read_schedule(self, ts):
        ts, due = unix_time(ts), []
        with self._lock:
            while self._schedule and self._schedule[0][0] <= ts:
                due.append(heapq.heappop(self._schedule)[2])
        return due

    def next_schedule_time(self):
        with self._lock:
            return self._schedule[0][0] if self._schedule else None

    def schedule_size(self):
        with self._lock:
            return len(self._schedule)

    def scheduled_items(self, limit=None):
        with self._lock:
            return [entry[2] for entry in heapq.nsmallest(_count(limit, self._schedule), self._schedule)]

    def flush_schedule(self):
        with self._lock:
            self._schedule = []

    # --- data store --------------------------------------------------------
    def _entry(self, key):
        """The live entry for ``key``; expired ones are dropped on the way (lock held)."""
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= time.monotonic():
            del self._data[key]
            return None
        return entry

    def put_data(self, key, value, is_result=False):
        with self._lock:
            self._data[key] = (value, None)

    def peek_data(self, key):
        with self._lock:
            entry = self._entry(key)
            return EmptyData if entry is None else entry[0]

    def pop_data(self, key):
        with self._lock:
            entry = self._entry(key)
            if entry is None:
                return EmptyData
            del self._data[key]
            return entry[0]

    def has_data_for_key(self, key):
        with self._lock:
            return self._entry(key) is not None

    def put_if_empty(self, key, value, ttl=None):
        with self._lock:
            if self._entry(key) is not None:
                return False
            self._data[key] = (value, time.monotonic() + ttl if ttl else None)
            return True

    def result_store_size(self):
        return len(self.result_items())

    def result_items(self):
        with self._lock:
            live = [(key, self._entry(key)) for key in list(self._data)]
            return {text_key(key): entry[0] for key, entry in live if entry is not None}

    def flush_results(self):
        with self._lock:
            self._data = {}

    # --- counters ----------------------------------------------------------
    def incr(self, key, amount=1):
        with self._lock:
            value = self._counters[key] = self._counters.get(key, 0) + amount
            return value

    def delete_counter(self, key):
        with self._lock:
            self._counters.pop(key, None)

    def flush_counters(self):
        with self._lock:
            self._counters = {}

    # --- events: an in-process log (this process's listeners only) -------------
    events_keep = 10000

    def publish_events(self, events):
        self._events.append(events, self.events_keep)

    def listener(self):
        self.check_events_enabled()
        log = self._events
        position = [log.last]

        def fetch(timeout):
            position[0], found = log.read(position[0], timeout)
            return found

        return EventListener('hueyd.%s.events' % self.name, fetch)

    # --- delivery ----------------------------------------------------------
    def claim(self, worker, count=1, lease=30.0):
        with self._lock:
            self._leases[worker] = time.monotonic() + lease
            claims = self._claims.setdefault(worker, {})
            taken = []
            while self._queue and len(taken) < count:
                entry = heapq.heappop(self._queue)
                claims[entry[1]] = entry
                taken.append((entry[1], entry[2]))
            return Claimed(taken)

    def ack(self, worker, receipts):
        with self._lock:
            claims = self._claims.get(worker, {})
            for receipt in receipts:
                claims.pop(receipt, None)

    def release(self, worker, receipts):
        with self._lock:
            claims = self._claims.get(worker, {})
            for receipt in receipts:
                entry = claims.pop(receipt, None)
                if entry is not None:  # its seq puts it back in its old place in line
                    heapq.heappush(self._queue, entry)

    def beat(self, worker, lease):
        with self._lock:
            self._leases[worker] = time.monotonic() + lease

    def retire_worker(self, worker):
        with self._lock:
            self._requeue_claims(worker)

    def recover(self):
        now = time.monotonic()
        with self._lock:
            dead = [worker for worker, expiry in self._leases.items() if expiry <= now]
            return sum(self._requeue_claims(worker) for worker in dead)

    def _requeue_claims(self, worker):
        entries = self._claims.pop(worker, {}).values()
        for entry in entries:
            heapq.heappush(self._queue, entry)
        self._leases.pop(worker, None)
        return len(entries)

    def claimed_items(self):
        with self._lock:
            return {worker: [entry[2] for entry in sorted(claims.values())]
                    for worker, claims in self._claims.items() if claims}

    def worker_claims(self, worker):
        with self._lock:
            return [(entry[1], entry[2]) for entry in sorted(self._claims.get(worker, {}).values())]

    def move_due(self, ts):
        with self._lock:
            due = []
            while self._schedule and self._schedule[0][0] <= ts:
                _, _, data, priority = heapq.heappop(self._schedule)
                heapq.heappush(self._queue, (-priority, next(self._seq), data))
                due.append(data)
            return due

    # --- dead letters ------------------------------------------------------
    def add_dead_letter(self, key, record):
        with self._lock:
            self._dead[key] = record

    def dead_letters(self):
        with self._lock:
            return list(self._dead.items())

    def dead_letter_count(self):
        return len(self._dead)

    def remove_dead_letters(self, keys):
        with self._lock:
            return sum(self._dead.pop(key, None) is not None for key in keys)

    # --- node state ----------------------------------------------------------
    def _state_of(self, kind):
        """``{key: (value, monotonic expiry)}`` of ``kind`` (lock held)."""
        return self._states.setdefault(kind, {})

    def put_state(self, kind, key, value, ttl):
        with self._lock:
            self._state_of(kind)[key] = (value, time.monotonic() + ttl)

    def states(self, kind):
        now = time.monotonic()
        with self._lock:
            entries = self._state_of(kind)
            for key in [key for key, (_, expiry) in entries.items() if expiry <= now]:
                del entries[key]
            return {key: value for key, (value, _) in entries.items()}

    def delete_state(self, kind, key):
        with self._lock:
            self._state_of(kind).pop(key, None)

    # --- statistics ------------------------------------------------------------
    def add_stats(self, figures):
        oldest = int(time.time() - self.stats_retention) // 60
        with self._lock:
            for key, fields in figures.items():
                add_figures(self._stats.setdefault(key, {}), fields)
            for key in [key for key in self._stats if key[0] < oldest]:
                del self._stats[key]

    def read_stats(self, since):
        with self._lock:
            return {key: dict(fields) for key, fields in self._stats.items() if key[0] >= since}

    def flush_stats(self):
        with self._lock:
            self._stats.clear()


def _count(limit, items):
    return len(items) if limit is None else max(0, min(limit, len(items)))


class _EventLog:
    """The newest events, numbered; readers wait on a condition for new ones."""

    def __init__(self):
        self._entries = collections.deque()  # (number, data)
        self._cond = threading.Condition()
        self.last = 0

    def append(self, events, keep):
        """Add ``events``, then forget all but the newest ``keep``."""
        with self._cond:
            for data in events:
                self.last += 1
                self._entries.append((self.last, data))
            while len(self._entries) > keep:
                self._entries.popleft()
            self._cond.notify_all()

    def read(self, after, timeout):
        """``(last number read, [data, ...])`` of the events after ``after``."""
        with self._cond:
            self._cond.wait_for(lambda: self.last > after, timeout)
            found = []
            for n, data in reversed(self._entries):
                if n <= after:
                    break
                found.append((n, data))
            found.reverse()
        return (found[-1][0] if found else after), [data for _, data in found]
