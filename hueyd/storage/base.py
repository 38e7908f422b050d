"""The storage interface: the one extension point between hueyd and a backend.

A storage keeps what hueyd needs for one queue ``name``. Every method takes and
returns ``bytes`` (or ints and floats); serialization is the caller's job.
Timestamps are float seconds since the epoch.

A storage class inherits :class:`BaseStorage`, which is the four protocols
every storage implements (Queue, Schedule, DataStore, Counters: what huey's own
BaseStorage asks of a subclass, so a huey user's storage works unchanged), and
declares each optional job it does by inheriting that protocol (in
hueyd.storage.protocols) before it, e.g.
``class RedisStorage(Claims, DeadLetters, ..., BaseStorage)``; it implements
every ``@required`` method of the protocols it has. Pass the class as
``storage_class`` to ``Huey``. Callers ask ``storage.supports(Claims)``.

================  ==========================================  ======  ======  ====  =======  ========
protocol          job                                         Memory  Sqlite  File  Redis    Postgres
================  ==========================================  ======  ======  ====  =======  ========
Queue             messages waiting to run                     yes     yes     yes   yes      yes
Schedule          messages waiting for their time             yes     yes     yes   yes      yes
DataStore         results, revocations, locks (key/value)     yes     yes     yes   yes [1]  yes
Counters          atomic integers (chords, rate limits)       yes     yes     yes   yes      yes
Claims            at-least-once delivery: claims and leases   yes     yes     yes   yes [1]  yes
DeadLetters       messages that cannot run, with why          yes     yes     yes   yes      yes
Events            consumer events, published and listened to  yes     yes     no    yes      yes
NodeState         what each live process is doing (status)    yes     yes     yes   yes      yes
WriteBatching     a pool's writes sent together               no      yes     no    yes      yes
Stats             task statistics per minute, kept 25 hours   yes     yes     no    yes      yes
================  ==========================================  ======  ======  ====  =======  ========

[1] RedisStorage (and PriorityRedisStorage) keeps revocations apart from the
data store and hands every one out with a claim (``Claimed.revocations``).

BlackHoleStorage has the four base protocols only, and keeps nothing.

For the optional protocols a storage does not declare, BaseStorage gives the
answers of a storage without them (no dead letters, no node state, no events,
writes sent at once).
"""
import contextlib

from hueyd.storage.protocols import Counters, DataStore, Events, Queue, Schedule, Stats
from hueyd.exceptions import ConfigurationError


class BaseStorage(Queue, Schedule, DataStore, Counters):
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

    def location(self):
        """Where the data lives, for people (a file, host:port/db), or None."""
        return None

    def reserve_connections(self, count):
        """Make room for ``count`` connections used at once (a pool's workers)."""

    def supports(self, protocol):
        """True when this storage declares ``protocol`` (a class of hueyd.storage.protocols)."""
        return isinstance(self, protocol)

    def flush_all(self):
        """Empty the queue, schedule, data store, counters, dead letters and statistics."""
        self.flush_queue()
        self.flush_schedule()
        self.flush_results()
        self.flush_counters()
        self.remove_dead_letters([key for key, _ in self.dead_letters()])
        if self.supports(Stats):
            self.flush_stats()

    # --- what a storage answers for an optional protocol it does not declare ----
    # Huey, hueyctl and the metrics ask these of every storage without asking
    # supports() first.

    @property
    def supports_events(self):
        """Whether Huey may turn events on (Huey asks before it does)."""
        return self.supports(Events)

    def events_unsupported_error(self):
        """The ConfigurationError to raise when events are asked of a storage that has none."""
        return ConfigurationError(
            '%s cannot carry consumer events: use RedisStorage (publish/subscribe), '
            'SqliteStorage (a table of the latest events) or MemoryStorage (one process), '
            'or create the Huey with events=False' % type(self).__name__)

    def listener(self):
        raise self.events_unsupported_error()

    def __iter__(self):
        raise self.events_unsupported_error()

    def add_dead_letter(self, key, record):
        raise NotImplementedError('%s keeps no dead letters' % type(self).__name__)

    def dead_letters(self):
        return []

    def dead_letter_count(self):
        return 0

    def remove_dead_letters(self, keys):
        return 0

    def states(self, kind):
        return {}

    # Without WriteBatching every write goes out at once: batching is a no-op.
    def begin_batch(self):
        pass

    def flush_batch(self, wait=False):
        pass

    def end_batch(self):
        pass

    def unbatched(self):
        return contextlib.nullcontext()
