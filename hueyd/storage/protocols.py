"""The storage protocols: one class per job a storage can do (see hueyd.storage.base).

A storage declares a protocol by inheriting it, and then implements every
method of it marked ``@required``; the other methods have a default built on
the required ones, which a storage overrides when it can do better (fewer
round trips, atomically). ``storage.supports(Protocol)`` reads the declaration.
"""
import functools
import time

from hueyd.constants import EmptyData
from hueyd.exceptions import ConfigurationError


def required(method):
    """Marks a method every storage declaring its protocol must implement."""
    @functools.wraps(method)
    def missing(self, *args, **kwargs):
        raise NotImplementedError(
            '%s inherits %s but does not implement it: a storage implements every required '
            'method of the protocols it declares' % (type(self).__name__, method.__qualname__))
    return missing


class Queue:
    """Serialized task messages waiting to run.

    Highest ``priority`` first and first-in first-out within a priority, when
    the storage honours priorities at all (see ``priority``).
    """
    #: True when ``dequeue()`` honours ``priority``; FIFO whatever the priority otherwise.
    priority = False

    @required
    def enqueue(self, data, priority=None):
        """Add one message; ``priority`` None counts as 0, higher runs first."""

    def enqueue_many(self, items):
        """Add several ``(data, priority)`` pairs, in order, in as few round trips as possible."""
        for data, priority in items:
            self.enqueue(data, priority)

    @required
    def dequeue(self):
        """Remove and return the next message, or None when the queue is empty."""

    @required
    def queue_size(self):
        """How many messages wait (claimed ones do not count)."""

    @required
    def enqueued_items(self, limit=None):
        """The waiting messages in the order they would be dequeued, without removing them."""

    @required
    def flush_queue(self):
        """Remove every message, claimed ones included."""


class Schedule:
    """Messages that must not run before a unix timestamp (float seconds).

    ``add_to_schedule`` and ``read_schedule`` also take a datetime, as huey's
    storages do (naive meaning local time): see ``hueyd.times.unix_time``.
    """

    @required
    def add_to_schedule(self, data, ts, priority=None):
        """Keep ``data`` until unix time ``ts``; ``priority`` is the one it will be queued with."""

    @required
    def read_schedule(self, ts):
        """Remove and return, oldest first, every message due at or before ``ts``."""

    def move_due(self, ts):
        """Move every scheduled message due at ``ts`` to the queue in one step; returns them.

        Storages that can do it atomically override this, so a scheduler killed
        half-way loses nothing; this fallback (for a storage that is a Queue
        too) reads, then enqueues.
        """
        due = self.read_schedule(ts)
        self.enqueue_many([(data, None) for data in due])  # priorities are lost here
        return due

    @required
    def next_schedule_time(self):
        """The earliest timestamp in the schedule, or None when it is empty."""

    @required
    def schedule_size(self):
        """How many messages are scheduled."""

    @required
    def scheduled_items(self, limit=None):
        """Scheduled messages, soonest first, without removing them."""

    @required
    def flush_schedule(self):
        """Remove every scheduled message."""


class DataStore:
    """A key/value map of ``bytes``: results, revocations and locks.

    As in huey, ``result_items()`` and ``result_store_size()`` cover every key
    in it, whatever put it there. ``is_result`` marks a task's result, which
    a storage that can wake waiters (see ``wait_result``) announces.
    Revocations go through their own methods, kept in this map by default, so
    a storage may keep them apart and hand them out with a claim (see ``Claimed``).
    """

    @required
    def put_data(self, key, value, is_result=False):
        """Set ``key`` (no ttl)."""

    @required
    def peek_data(self, key):
        """The value for ``key``, or ``EmptyData`` when there is none."""

    def peek_many(self, keys):
        """``{key: value}`` of the keys that hold a value, without removing them (huey's form)."""
        values = ((key, self.peek_data(key)) for key in keys)
        return {key: value for key, value in values if value is not EmptyData}

    @required
    def pop_data(self, key):
        """Remove and return the value for ``key``, or ``EmptyData``; atomic."""

    def delete_data(self, key):
        """Remove ``key``; True when something was removed."""
        return self.pop_data(key) is not EmptyData

    @required
    def has_data_for_key(self, key):
        """True when ``key`` holds a value."""

    @required
    def put_if_empty(self, key, value, ttl=None):
        """Set ``key`` only when it holds nothing; True when set. ``ttl`` in seconds."""

    #: True when ``wait_result`` is woken by the storage when a result lands; False when it
    #: polls (then a coroutine polls by itself rather than tie up a thread to do it).
    waits_for_results = False

    def wait_result(self, key, timeout=None, backoff=1.15, max_delay=1.0):
        """Wait until ``key`` holds a value: True when it does, False after ``timeout`` seconds.

        This default polls, its pauses growing by ``backoff`` up to ``max_delay``
        seconds; a storage that can be told when a result lands overrides it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while not self.has_data_for_key(key):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * backoff, max_delay)
        return True

    @required
    def result_store_size(self):
        """How many keys the data store holds (results, revocations, locks)."""

    @required
    def result_items(self):
        """A dict of every key in the data store, as ``str``, to its value."""

    @required
    def flush_results(self):
        """Remove everything in the data store (results, revocations, locks)."""

    def put_revocation(self, key, value):
        """Store a revocation; ``value`` is what read_revocations() gives back."""
        self.put_data(key, value)

    def read_revocations(self, keys):
        """The value of each revocation key, or ``EmptyData``, in order."""
        stored = self.peek_many(keys)
        return [stored.get(key, EmptyData) for key in keys]

    def delete_revocation(self, key):
        """Remove a revocation; True when it existed (so one caller uses up a revoke-once)."""
        return self.delete_data(key)


def text_key(key):
    """A data store key as ``result_items()`` gives it: a ``str`` (task ids are)."""
    return key.decode('utf-8') if isinstance(key, bytes) else key


class Counters:
    """Integers changed atomically (chords, rate limits)."""

    @required
    def incr(self, key, amount=1):
        """Add ``amount`` to the counter ``key`` (missing counts as 0); return the new value."""

    @required
    def delete_counter(self, key):
        """Forget the counter ``key``."""

    @required
    def flush_counters(self):
        """Forget every counter."""


class Claimed(list):
    """What ``claim()`` returns: a list of ``(receipt, data)``.

    ``revocations`` is ``None``, or, for a storage that reads them in the same
    step as the claim, a dict of *every* revocation key that exists to its
    value: a key missing from it was not revoked when the messages were
    claimed. It spares the worker a round trip per batch.
    """
    revocations = None


class Claims:
    """At-least-once delivery: claims, leases and recovery (a storage that is a Queue too).

    A worker *claims* messages: they move from the queue into that worker's
    claims and stay there until the worker acknowledges them, after their
    result is stored. Every worker holds a lease it renews by claiming and by
    beat(); recover() puts back on the queue the claims of workers whose lease
    ran out (killed, out of memory, machine gone). A receipt is whatever the
    storage needs to find one claim again. Without this protocol a pool
    dequeues, and a task running when its pool dies is lost.
    """

    #: Whether ``claim()`` first sends the pending write batch (every thread's), in the
    #: same round trip: a worker then has no need to flush before it claims.
    claim_sends_writes = False

    @required
    def claim(self, worker, count=1, lease=30.0):
        """Move up to ``count`` messages into ``worker``'s claims; returns a ``Claimed``.

        Its ``revocations`` are None unless the storage reads them with the claim.
        Renews the worker's lease for ``lease`` seconds. A blocking storage waits
        up to its read timeout for a message when the queue is empty. With
        ``claim_sends_writes``, an error may mean the pending writes were not stored
        either (their writers learn it as from ``flush_batch``).
        """

    @required
    def ack(self, worker, receipts):
        """Forget these claims: their messages are done."""

    @required
    def release(self, worker, receipts):
        """Put these claims back at the head of the queue (their worker stopped before them)."""

    @required
    def beat(self, worker, lease):
        """Renew ``worker``'s lease for ``lease`` seconds."""

    @required
    def retire_worker(self, worker):
        """A clean exit: release whatever ``worker`` still claims and drop its lease."""

    @required
    def recover(self):
        """Return to the queue the claims of every worker whose lease ran out; how many messages."""

    @required
    def claimed_items(self):
        """``{worker: [data, ...]}`` for every worker holding claims."""

    @required
    def worker_claims(self, worker):
        """``[(receipt, data), ...]`` that ``worker`` holds, oldest claim first.

        Read when a worker died: its running tasks are counted and the rest go
        back (hueyd.daemon.deaths).
        """


class DeadLetters:
    """Messages that cannot run, kept with why.

    Undecodable, unknown task, bad signature, or an at-most-once task that was
    interrupted.
    """

    @required
    def add_dead_letter(self, key, record):
        """Store ``record`` (bytes) under the unique ``key``."""

    @required
    def dead_letters(self):
        """Every dead letter as ``(key, record)``, oldest first."""

    def dead_letter_count(self):
        """How many dead letters there are (the status and the metrics ask it often)."""
        return len(self.dead_letters())

    @required
    def remove_dead_letters(self, keys):
        """Delete these dead letters; returns how many existed."""


class Events:
    """Consumer events (hueyd.events): JSON documents in bytes, published and listened to.

    Huey publishes them when created with events=True (or, with events=None,
    when ``events_by_default`` is true).
    """
    events_by_default = False
    #: Set by Huey from its ``events`` option; when False, listener() refuses
    #: instead of waiting for events that nobody will publish.
    events_enabled = True

    @required
    def publish_events(self, events):
        """Publish ``events`` (a list of bytes), in order, in one round trip."""

    def listening(self):
        """False only when nobody can be listening to the events of the tasks this storage
        handed out: Huey then builds none for them (an event costs a no-op task about half
        of its CPU time). A storage that knows its listeners answers from the count its
        last claim read after the messages it took were enqueued, so a listener that was
        there before a task was enqueued gets all of its events."""
        return True

    @required
    def listener(self):
        """A ``hueyd.storage.listener.EventListener`` for the events published from now on.

        Starts with ``check_events_enabled()``.
        """

    def __iter__(self):
        """``for event in storage:`` every event published from now on, decoded, forever."""
        return iter(self.listener())

    def check_events_enabled(self):
        """Raise ConfigurationError when this Huey publishes no events (see ``events_enabled``)."""
        if not self.events_enabled:
            raise ConfigurationError(
                'events are off for queue %r, so no event would ever arrive: create the '
                'Huey with events=True, in the application and in the daemon, to have '
                '%s carry them' % (self.name, type(self).__name__))


class NodeState:
    """What every live hueyd process is doing (hueyd.nodes; ``hueyctl status``).

    Each process publishes a small JSON record and renews it with its
    heartbeat; a record not renewed within its ``ttl`` counts as gone, so a
    node that died disappears by itself.
    """

    @required
    def put_state(self, kind, key, value, ttl):
        """Store ``value`` (bytes) as the state of ``key`` among ``kind``, for ``ttl`` seconds."""

    @required
    def states(self, kind):
        """``{key: value}`` of every state of ``kind`` whose ttl has not run out."""

    @required
    def delete_state(self, kind, key):
        """Forget the state of ``key`` among ``kind`` (a clean exit)."""


class Stats:
    """Task statistics (hueyd.taskstats): numbers added up per minute, task and field.

    A minute is a unix time // 60. Every field is a sum, except ``max``, which
    keeps the largest number added. The figures are bounded: a storage forgets
    the minutes older than ``stats_retention`` seconds by itself (by expiry, or
    by deleting them as it adds new ones).
    """
    #: Seconds a minute's figures are kept: a day, and an hour's margin for the 24-hour
    #: window (and for clocks that differ between machines).
    stats_retention = 25 * 3600

    @required
    def add_stats(self, figures):
        """Add ``{(minute, task): {field: number}}``, in one round trip."""

    @required
    def read_stats(self, since):
        """``{(minute, task): {field: number}}`` of every minute from ``since`` on."""

    @required
    def flush_stats(self):
        """Forget every figure."""


def add_figures(into, fields):
    """Add ``fields`` to the dict ``into`` as add_stats() does: a sum, but the larger ``max``."""
    for field, value in fields.items():
        if field == 'max':
            into[field] = max(into.get(field, value), value)
        else:
            into[field] = into.get(field, 0) + value


class WriteBatching:
    """Group commit: the writes of a pool's workers go out together.

    The workers of a pool may ask for their writes (results, events,
    acknowledgements) to be sent together: the writes of every batching thread
    wait in one batch, in order, until one of them flushes it. A storage that
    batches sets ``write_batch`` to a hueyd.storage.batch.SharedBatch and routes
    its deferrable writes through it; without this protocol a storage writes
    at once (see BaseStorage).
    """

    def begin_batch(self):
        """From now on this thread's writes may wait for flush_batch()."""
        self.write_batch.begin()

    def flush_batch(self, wait=False):
        """Send the waiting writes of every batching thread, in order.

        When another thread is sending already, it sends these too once it is
        done; ``wait=True`` returns only after they are sent (or raises).
        """
        self.write_batch.flush(wait)

    def end_batch(self):
        """Flush, and write at once again."""
        self.write_batch.end()

    def unbatched(self):
        """A context in which this thread writes at once (task code runs in one)."""
        return self.write_batch.unbatched()
