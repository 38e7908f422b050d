"""The storage interface: the one extension point between hueyd and a backend.

A storage keeps four things for one queue ``name``:

* the **queue**: serialized task messages (``bytes``) waiting to run, highest
  ``priority`` first and first-in first-out within a priority;
* the **schedule**: messages that must not run before a unix timestamp;
* the **data store**: a key/value map of ``bytes`` used for results, revocations
  and locks (``is_result`` tells results apart for ``result_items()``);
  revocations go through their own methods so a storage may keep them apart
  and hand them out with a claim (see ``Claimed``);
* **counters**: integers changed atomically with ``incr`` (chords, rate limits).

Every method takes and returns ``bytes`` (or ints and floats); serialization is
the caller's job. Subclass :class:`BaseStorage`, implement every method that
raises ``NotImplementedError``, and pass the class as ``storage_class`` to
``Huey``. Timestamps are float seconds since the epoch.
"""
import contextlib

from hueyd.constants import EmptyData


class Claimed(list):
    """What ``claim()`` returns: a list of ``(receipt, data)``.

    ``revocations`` is ``None``, or, for a storage that reads them in the same
    step as the claim, a dict of *every* revocation key that exists to its
    value: a key missing from it was not revoked when the messages were
    claimed. It spares the worker a round trip per batch.
    """
    revocations = None


class BaseStorage:
    #: True when ``dequeue()`` waits (briefly) for a message instead of
    #: returning ``None`` at once; consumers poll with backoff otherwise.
    blocking = False
    #: True when several processes on this machine (or others) see the same data.
    shared = True
    #: Errors that mean "the storage is unreachable for now": worth retrying.
    transient_errors = (ConnectionError, TimeoutError)

    def __init__(self, name='huey', **storage_kwargs):
        self.name = name

    def close(self):
        """Release connections; the storage may be used again afterwards."""

    def supports(self, method):
        """True when this storage implements the optional ``method`` (claim, recover, put_state…)."""
        return getattr(type(self), method) is not getattr(BaseStorage, method)

    # --- queue -------------------------------------------------------------
    def enqueue(self, data, priority=None):
        """Add one message; ``priority`` None counts as 0, higher runs first."""
        raise NotImplementedError

    def enqueue_many(self, items):
        """Add several ``(data, priority)`` pairs, in order, in as few round trips as possible."""
        for data, priority in items:
            self.enqueue(data, priority)

    def dequeue(self):
        """Remove and return the next message, or None when the queue is empty."""
        raise NotImplementedError

    def queue_size(self):
        raise NotImplementedError

    def enqueued_items(self, limit=None):
        """The waiting messages in the order they would be dequeued, without removing them."""
        raise NotImplementedError

    def flush_queue(self):
        raise NotImplementedError

    # --- schedule ----------------------------------------------------------
    def add_to_schedule(self, data, ts, priority=None):
        """Keep ``data`` until unix time ``ts``; ``priority`` is the one it will be queued with."""
        raise NotImplementedError

    def read_schedule(self, ts):
        """Remove and return, oldest first, every message due at or before ``ts``."""
        raise NotImplementedError

    def next_schedule_time(self):
        """The earliest timestamp in the schedule, or None when it is empty."""
        raise NotImplementedError

    def schedule_size(self):
        raise NotImplementedError

    def scheduled_items(self, limit=None):
        """Scheduled messages, soonest first, without removing them."""
        raise NotImplementedError

    def flush_schedule(self):
        raise NotImplementedError

    # --- data store --------------------------------------------------------
    def put_data(self, key, value, is_result=False):
        raise NotImplementedError

    def peek_data(self, key):
        """The value for ``key``, or ``EmptyData`` when there is none."""
        raise NotImplementedError

    def peek_many(self, keys):
        return [self.peek_data(key) for key in keys]

    # Revocations live in the data store unless a storage keeps them apart.
    def put_revocation(self, key, value):
        self.put_data(key, value)

    def read_revocations(self, keys):
        """The value of each revocation key, or ``EmptyData``, in order."""
        return self.peek_many(keys)

    def delete_revocation(self, key):
        """Remove a revocation; True when it existed (so one caller uses up a revoke-once)."""
        return self.delete_data(key)

    def pop_data(self, key):
        """Remove and return the value for ``key``, or ``EmptyData``; atomic."""
        raise NotImplementedError

    def delete_data(self, key):
        """Remove ``key``; True when something was removed."""
        return self.pop_data(key) is not EmptyData

    def has_data_for_key(self, key):
        raise NotImplementedError

    def put_if_empty(self, key, value, ttl=None):
        """Set ``key`` only when it holds nothing; True when set. ``ttl`` in seconds."""
        raise NotImplementedError

    def result_store_size(self):
        raise NotImplementedError

    def result_items(self):
        """A dict of every key stored with ``is_result=True`` to its value."""
        raise NotImplementedError

    def flush_results(self):
        """Remove everything in the data store (results, revocations, locks)."""
        raise NotImplementedError

    # --- counters ----------------------------------------------------------
    def incr(self, key, amount=1):
        """Add ``amount`` to the counter ``key`` (missing counts as 0); return the new value."""
        raise NotImplementedError

    def delete_counter(self, key):
        raise NotImplementedError

    def flush_counters(self):
        raise NotImplementedError

    # --- write batches --------------------------------------------------------
    # The workers of a pool may ask for their writes (results, events,
    # acknowledgements) to be sent together: the writes of every batching thread
    # wait in one batch, in order, until one of them flushes it. A storage that
    # batches sets ``write_batch`` to a hueyd.storage.batch.SharedBatch and
    # routes its deferrable writes through it; the others write at once.
    write_batch = None

    def begin_batch(self):
        """From now on this thread's writes may wait for flush_batch()."""
        if self.write_batch is not None:
            self.write_batch.begin()

    def flush_batch(self, wait=False):
        """Send the waiting writes of every batching thread, in order.

        When another thread is sending already, it sends these too once it is
        done; ``wait=True`` returns only after they are sent (or raises).
        """
        if self.write_batch is not None:
            self.write_batch.flush(wait)

    def end_batch(self):
        """Flush, and write at once again."""
        if self.write_batch is not None:
            self.write_batch.end()

    def unbatched(self):
        """A context in which this thread writes at once (task code runs in one)."""
        if self.write_batch is None:
            return contextlib.nullcontext()
        return self.write_batch.unbatched()

    # --- delivery: claims, leases and recovery ------------------------------
    # A worker *claims* messages: they move from the queue into that worker's
    # claims and stay there until the worker acknowledges them, after their
    # result is stored. Every worker holds a lease it renews by claiming and by
    # beat(); recover() puts back on the queue the claims of workers whose lease
    # ran out (killed, out of memory, machine gone). A receipt is whatever the
    # storage needs to find one claim again.

    def claim(self, worker, count=1, lease=30.0):
        """Move up to ``count`` messages into ``worker``'s claims; a ``Claimed`` list.

        Renews the worker's lease for ``lease`` seconds. A blocking storage waits
        up to its read timeout for a message when the queue is empty.
        """
        raise NotImplementedError

    def ack(self, worker, receipts):
        """Forget these claims: their messages are done."""
        raise NotImplementedError

    def release(self, worker, receipts):
        """Put these claims back at the head of the queue (the worker stopped before running them)."""
        raise NotImplementedError

    def beat(self, worker, lease):
        """Renew ``worker``'s lease for ``lease`` seconds."""
        raise NotImplementedError

    def retire_worker(self, worker):
        """A clean exit: release whatever ``worker`` still claims and drop its lease."""
        raise NotImplementedError

    def recover(self):
        """Return to the queue the claims of every worker whose lease ran out; how many messages."""
        raise NotImplementedError

    def claimed_items(self):
        """``{worker: [data, ...]}`` for every worker holding claims."""
        raise NotImplementedError

    def worker_claims(self, worker):
        """``[(receipt, data), ...]`` that ``worker`` holds, oldest claim first.

        Read when a worker died: its running tasks are counted and the rest go back.
        Optional: without it the daemon cannot count the crashes of tasks that
        kill their worker (see hueyd.daemon.deaths).
        """
        raise NotImplementedError

    def move_due(self, ts):
        """Move every scheduled message due at ``ts`` to the queue in one step; returns them.

        Storages that can do it atomically override this, so a scheduler killed
        half-way loses nothing; this fallback reads, then enqueues.
        """
        due = self.read_schedule(ts)
        self.enqueue_many([(data, None) for data in due])  # priorities are lost here
        return due

    # --- dead letters --------------------------------------------------------
    # Messages that cannot run (undecodable, unknown task, bad signature, or an
    # at-most-once task that was interrupted) are kept here with why.

    def add_dead_letter(self, key, record):
        """Store ``record`` (bytes) under the unique ``key``."""
        raise NotImplementedError('%s keeps no dead letters' % type(self).__name__)

    def dead_letters(self):
        """Every dead letter as ``(key, record)``, oldest first."""
        return []

    def remove_dead_letters(self, keys):
        """Delete these dead letters; returns how many existed."""
        return 0

    # --- events (optional) -------------------------------------------------
    # Consumer events (hueyd.events) are JSON documents in bytes. A storage that
    # can carry them sets ``supports_events`` and implements publish_events()
    # and listener(); Huey then publishes when created with events=True (or,
    # with events=None, when ``events_by_default`` is true).
    supports_events = False
    events_by_default = False
    #: Set by Huey from its ``events`` option; when False, listener() refuses
    #: instead of waiting for events that nobody will publish.
    events_enabled = True

    def publish_events(self, events):
        """Publish ``events`` (a list of bytes), in order, in one round trip."""
        raise self.events_unsupported_error()

    def listener(self):
        """A ``hueyd.events.EventListener`` for the events published from now on."""
        raise self.events_unsupported_error()

    def __iter__(self):
        """``for event in storage:`` every event published from now on, decoded, forever."""
        return iter(self.listener())

    def events_unsupported_error(self):
        """The ConfigurationError to raise when events are asked of a storage that has none."""
        from hueyd.exceptions import ConfigurationError
        return ConfigurationError(
            '%s cannot carry consumer events: use RedisStorage (publish/subscribe), '
            'SqliteStorage (a table of the latest events) or MemoryStorage (one process), '
            'or create the Huey with events=False' % type(self).__name__)

    def _check_events_enabled(self):
        if not self.events_enabled:
            from hueyd.exceptions import ConfigurationError
            raise ConfigurationError(
                'events are off for queue %r, so no event would ever arrive: create the '
                'Huey with events=True, in the application and in the daemon, to have '
                '%s carry them' % (self.name, type(self).__name__))

    def flush_all(self):
        self.flush_queue()
        self.flush_schedule()
        self.flush_results()
        self.flush_counters()
        self.remove_dead_letters([key for key, _ in self.dead_letters()])

    # --- node state (optional; hueyctl status) ---------------------------------
    # Every live hueyd process publishes a small JSON record of what it is doing
    # (hueyd.nodes) and renews it with its heartbeat; a record not renewed within
    # its ``ttl`` counts as gone, so a node that died disappears by itself.

    def put_state(self, kind, key, value, ttl):
        """Store ``value`` (bytes) as the state of ``key`` among ``kind``, for ``ttl`` seconds."""
        raise NotImplementedError('%s keeps no node state' % type(self).__name__)

    def states(self, kind):
        """``{key: value}`` of every state of ``kind`` whose ttl has not run out."""
        return {}

    def delete_state(self, kind, key):
        """Forget the state of ``key`` among ``kind`` (a clean exit)."""
