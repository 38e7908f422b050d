"""File storage: a folder of files shared by the processes of one machine (huey's FileStorage).

Every operation holds one lock per queue: flock() on its ``lock`` file, or,
with ``use_thread_lock=True``, a lock of this process only (then the storage is
not ``shared``, and the daemon, which runs several processes, refuses it).
Every file is written in ``tmp/`` and renamed into place, so a reader never
sees half of one and a process killed mid-write leaves nothing behind.

The queue ``name`` picks a folder of ``path``, so queues sharing a path stay
apart and a folder written by huey is never read as ours::

    <path>/hueyd.<name>/              (the name percent-encoded)
        lock                          the FileLock
        seq                           the last sequence number handed out
        tmp/                          the file being written
        queue/<priority>-<seq>        waiting messages; their names sort in dequeue order
        claims/<worker>/<same name>   claimed messages; release() puts them back, same place
        leases/<worker>               the unix time the worker's lease runs out
        schedule/<ts>-<seq>-<priority>
        data/<x>/<y>/<md5 of key>     results, revocations, locks (``levels`` folders deep)
        counters/<md5 of key>
        dead/<seq>-<md5 of key>       dead letters
        state/<kind>/<key>            node state (hueyctl status), expiring like a lock
"""
import fcntl
import hashlib
import heapq
import itertools
import os
import shutil
import struct
import threading
import time
from urllib.parse import quote, unquote

from hueyd.constants import EmptyData
from hueyd.exceptions import ConfigurationError
from hueyd.storage.base import BaseStorage
from hueyd.storage.protocols import Claimed, Claims, DeadLetters, NodeState
from hueyd.times import unix_time

FOLDERS = ('tmp', 'queue', 'claims', 'leases', 'schedule', 'data', 'counters', 'dead', 'state')
# A data or dead-letter file: is_result, expiry (unix time, 0 for none), key length, key, value.
RECORD = struct.Struct('>?dI')
MIN_PRIORITY, MAX_PRIORITY = -2 ** 31, 2 ** 31 - 1
SIGN, ALL_BITS = 1 << 63, (1 << 64) - 1
# use_thread_lock: one lock per folder, so two instances in one process exclude each other too.
_THREAD_LOCKS = {}


class FileLock:
    """A lock shared by every process on this machine: flock() on ``filename``.

    The file (and its folder) is created once and never removed, so a second
    FileLock on the same path never takes the file from under a holder. Each
    acquire() opens the file anew: flock() excludes other open files, so the
    threads of one process exclude each other too.
    """

    def __init__(self, filename):
        self.filename = filename
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        os.close(os.open(filename, os.O_CREAT | os.O_WRONLY, 0o644))
        self.fd = None

    def acquire(self):
        fd = os.open(self.filename, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()


class FileStorage(Claims, DeadLetters, NodeState, BaseStorage):
    blocking = False
    priority = True

    def __init__(self, name='huey', path=None, levels=2, use_thread_lock=False, **storage_kwargs):
        super().__init__(name)
        if path is None:
            raise ConfigurationError(
                'FileStorage needs path=, the folder to keep queue %r in (created when '
                'missing), e.g. FileHuey(%r, path="/var/lib/hueyd")' % (name, name))
        if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= 4:
            raise ConfigurationError('FileStorage levels=%r: pass an integer from 0 to 4, the '
                                     'depth of folders its data files are spread over' % (levels,))
        self.path = os.path.abspath(os.fspath(path))
        self.folder = os.path.join(self.path, 'hueyd.' + quote(name, safe=''))
        self.levels = levels
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ConfigurationError('FileStorage path %s is a file: pass the path of a folder '
                                     '(created when missing)' % self.path)
        try:
            for folder in FOLDERS:
                os.makedirs(self._in(folder), exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                'cannot create FileStorage folder %s (%s): pass a path this user can create '
                'and write to' % (self.folder, exc.strerror)) from exc
        if use_thread_lock:
            self.lock = _THREAD_LOCKS.setdefault(self.folder, threading.Lock())
            self.shared = False
        else:
            self.lock = FileLock(self._in('lock'))

    def location(self):
        return self.folder

    # --- files: the callers of these hold the lock (_first() takes it itself) -------
    def _in(self, *names):
        return os.path.join(self.folder, *names)

    def _names(self, *folder):
        """The file names in a folder of this queue, sorted."""
        return sorted(os.listdir(self._in(*folder)))

    def _write(self, filename, data):
        temporary = self._in('tmp', 'writing')  # one writer at a time: the lock is held
        with open(temporary, 'wb') as f:
            f.write(data)
        os.replace(temporary, filename)

    def _read_all(self, folder, names):
        return [_read(os.path.join(folder, name)) for name in names]

    def _first(self, folder, limit):
        """The contents of the first ``limit`` files of a folder of this queue (all for None)."""
        with self.lock:
            return self._read_all(self._in(folder), self._names(folder)[:limit])

    def _next_seq(self, count=1):
        """The first of ``count`` new sequence numbers."""
        filename = self._in('seq')
        try:
            last = int(_read(filename))
        except FileNotFoundError:
            last = 0
        self._write(filename, b'%d' % (last + count))
        return last + 1

    def _empty(self, folder):
        # What is inside goes, the folder stays: listings without the lock never miss it.
        for name in os.listdir(self._in(folder)):
            path = self._in(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    # --- queue -------------------------------------------------------------
    def enqueue(self, data, priority=None):
        self.enqueue_many([(data, priority)])

    def enqueue_many(self, items):
        items = [(data, _priority_key(priority)) for data, priority in items]
        with self.lock:
            first = self._next_seq(len(items))
            for seq, (data, key) in enumerate(items, first):
                self._write(self._in('queue', '%s-%016x' % (key, seq)), data)

    def dequeue(self):
        with self.lock:
            name = min(os.listdir(self._in('queue')), default=None)
            if name is None:
                return None
            filename = self._in('queue', name)
            data = _read(filename)
            os.unlink(filename)
            return data

    def queue_size(self):
        # No lock: a file comes and goes in one rename, and the folder itself always
        # exists, so a listing is never half-done.
        return len(os.listdir(self._in('queue')))

    def enqueued_items(self, limit=None):
        return self._first('queue', limit)

    def flush_queue(self):
        with self.lock:
            self._empty('queue')
            self._empty('claims')

    # --- schedule ----------------------------------------------------------
    def add_to_schedule(self, data, ts, priority=None):
        key = _priority_key(priority)
        with self.lock:
            name = '%s-%016x-%s' % (_sortable_time(unix_time(ts)), self._next_seq(), key)
            self._write(self._in('schedule', name), data)

    def _due(self, ts):
        """The names of the scheduled messages due at ``ts``, oldest first."""
        last = _sortable_time(ts)
        return list(itertools.takewhile(lambda name: name[:16] <= last, self._names('schedule')))

    def read_schedule(self, ts):
        with self.lock:
            due = self._due(unix_time(ts))
            messages = self._read_all(self._in('schedule'), due)
            for name in due:
                os.unlink(self._in('schedule', name))
        return messages

    def move_due(self, ts):
        # Each message is renamed into the queue (behind those waiting), under the lock:
        # a process killed half-way leaves every message in one place or the other.
        with self.lock:
            due = self._due(ts)
            if not due:
                return []  # every scheduler tick comes here: write nothing then
            messages = self._read_all(self._in('schedule'), due)
            for seq, name in enumerate(due, self._next_seq(len(due))):
                os.rename(self._in('schedule', name),
                          self._in('queue', '%s-%016x' % (name.rsplit('-', 1)[1], seq)))
        return messages

    def next_schedule_time(self):
        name = min(os.listdir(self._in('schedule')), default=None)
        return None if name is None else _time_of(name[:16])

    def schedule_size(self):
        return len(os.listdir(self._in('schedule')))

    def scheduled_items(self, limit=None):
        return self._first('schedule', limit)

    def flush_schedule(self):
        with self.lock:
            self._empty('schedule')

    # --- data store --------------------------------------------------------
    def path_for_key(self, key):
        """The file that holds ``key``'s value."""
        digest = _digest(key)
        return self._in('data', *digest[:self.levels], digest)

    def _record(self, filename):
        """``(key, value, is_result)`` of a data or dead-letter file, or None when it has
        none (an expired one is removed on the way)."""
        try:
            blob = _read(filename)
        except FileNotFoundError:
            return None
        is_result, expires_at, size = RECORD.unpack_from(blob)
        if expires_at and expires_at <= time.time():
            os.unlink(filename)
            return None
        return blob[RECORD.size:RECORD.size + size], blob[RECORD.size + size:], is_result

    def _put(self, filename, key, value, is_result=False, expires_at=0.0):
        os.makedirs(os.path.dirname(filename), exist_ok=True)
        self._write(filename, RECORD.pack(is_result, expires_at, len(key)) + key + value)

    def put_data(self, key, value, is_result=False):
        with self.lock:
            self._put(self.path_for_key(key), _bytes(key), value, is_result)

    def peek_data(self, key):
        with self.lock:
            record = self._record(self.path_for_key(key))
        return EmptyData if record is None else record[1]

    def pop_data(self, key):
        filename = self.path_for_key(key)
        with self.lock:
            record = self._record(filename)
            if record is None:
                return EmptyData
            os.unlink(filename)
        return record[1]

    def has_data_for_key(self, key):
        with self.lock:
            return self._record(self.path_for_key(key)) is not None

    def put_if_empty(self, key, value, ttl=None):
        filename = self.path_for_key(key)
        with self.lock:
            if self._record(filename) is not None:
                return False
            self._put(filename, _bytes(key), value, expires_at=time.time() + ttl if ttl else 0.0)
            return True

    def result_store_size(self):
        return len(self.result_items())

    def result_items(self):
        items = {}
        with self.lock:
            for folder, _, names in os.walk(self._in('data')):
                for name in names:
                    record = self._record(os.path.join(folder, name))
                    if record is not None:
                        items[record[0].decode()] = record[1]
        return items

    def flush_results(self):
        with self.lock:
            self._empty('data')

    # --- counters ----------------------------------------------------------
    def incr(self, key, amount=1):
        filename = self._in('counters', _digest(key))
        with self.lock:
            try:
                value = int(_read(filename)) + amount
            except FileNotFoundError:
                value = amount
            self._write(filename, b'%d' % value)
        return value

    def delete_counter(self, key):
        with self.lock:
            _remove(self._in('counters', _digest(key)))

    def flush_counters(self):
        with self.lock:
            self._empty('counters')

    # --- delivery ----------------------------------------------------------
    # A claim is a message file moved to claims/<worker>/ under its queue name, which
    # is its receipt. Leases are in unix time: every process on the machine reads them.
    def _claims(self, worker):
        return self._in('claims', quote(worker, safe=''))

    def _renew(self, worker, lease):
        self._write(self._in('leases', quote(worker, safe='')), repr(time.time() + lease).encode())

    def claim(self, worker, count=1, lease=30.0):
        claims = self._claims(worker)
        with self.lock:
            self._renew(worker, lease)
            os.makedirs(claims, exist_ok=True)
            names = heapq.nsmallest(count, os.listdir(self._in('queue')))
            for name in names:
                os.rename(self._in('queue', name), os.path.join(claims, name))
            return Claimed(zip(names, self._read_all(claims, names)))

    def ack(self, worker, receipts):
        claims = self._claims(worker)
        with self.lock:
            for receipt in receipts:
                _remove(os.path.join(claims, receipt))

    def release(self, worker, receipts):
        claims = self._claims(worker)
        with self.lock:
            for receipt in receipts:
                try:
                    os.rename(os.path.join(claims, receipt), self._in('queue', receipt))
                except FileNotFoundError:  # acknowledged, or recovered, already
                    pass

    def beat(self, worker, lease):
        with self.lock:
            self._renew(worker, lease)

    def retire_worker(self, worker):
        with self.lock:
            self._requeue(quote(worker, safe=''))

    def recover(self):
        now = time.time()
        with self.lock:
            workers = set(os.listdir(self._in('claims'))) | set(os.listdir(self._in('leases')))
            return sum(self._requeue(worker) for worker in workers
                       if self._lease_end(worker) <= now)

    def _lease_end(self, worker):
        try:
            return float(_read(self._in('leases', worker)))
        except FileNotFoundError:
            return 0.0

    def _requeue(self, worker):
        """Put back every claim of ``worker`` (file name) and drop its lease; how many."""
        claims = self._in('claims', worker)
        names = _listdir(claims)
        for name in names:
            os.rename(os.path.join(claims, name), self._in('queue', name))
        shutil.rmtree(claims, ignore_errors=True)
        _remove(self._in('leases', worker))
        return len(names)

    def claimed_items(self):
        with self.lock:
            claimed = {unquote(worker): self._read_all(self._in('claims', worker),
                                                       self._names('claims', worker))
                       for worker in os.listdir(self._in('claims'))}
        return {worker: items for worker, items in claimed.items() if items}

    def worker_claims(self, worker):
        claims = self._claims(worker)
        with self.lock:
            names = sorted(_listdir(claims))
            return list(zip(names, self._read_all(claims, names)))

    # --- dead letters ------------------------------------------------------
    def _dead_names(self):
        """``{md5 of key: file name}`` of the dead letters."""
        return {name.split('-')[1]: name for name in os.listdir(self._in('dead'))}

    def add_dead_letter(self, key, record):
        digest = _digest(key)
        with self.lock:
            old = self._dead_names().get(digest)
            if old is not None:  # keys are unique: the new record replaces the old one
                os.unlink(self._in('dead', old))
            self._put(self._in('dead', '%016x-%s' % (self._next_seq(), digest)), _bytes(key), record)

    def dead_letters(self):
        with self.lock:
            records = [self._record(self._in('dead', name)) for name in self._names('dead')]
        return [(key.decode(), value) for key, value, _ in records]

    def dead_letter_count(self):
        return len(os.listdir(self._in('dead')))

    def remove_dead_letters(self, keys):
        with self.lock:
            names = self._dead_names()
            removed = {names[digest] for digest in map(_digest, keys) if digest in names}
            for name in removed:
                os.unlink(self._in('dead', name))
        return len(removed)

    # --- node state ----------------------------------------------------------
    def _state_file(self, kind, key):
        return self._in('state', quote(kind, safe=''), quote(key, safe=''))

    def put_state(self, kind, key, value, ttl):
        with self.lock:
            self._put(self._state_file(kind, key), _bytes(key), value, expires_at=time.time() + ttl)

    def states(self, kind):
        folder = self._in('state', quote(kind, safe=''))
        with self.lock:
            records = [self._record(os.path.join(folder, name)) for name in sorted(_listdir(folder))]
        return {key.decode(): value for key, value, _ in filter(None, records)}

    def delete_state(self, kind, key):
        with self.lock:
            _remove(self._state_file(kind, key))


def _read(filename):
    with open(filename, 'rb') as f:
        return f.read()


def _listdir(folder):
    """The names in ``folder``, none when it does not exist."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _remove(filename):
    try:
        os.unlink(filename)
    except FileNotFoundError:
        pass


def _bytes(key):
    return key.encode() if isinstance(key, str) else key


def _digest(key):
    return hashlib.md5(_bytes(key)).hexdigest()


def _priority_key(priority):
    """Eight hex digits that sort the highest priority first (huey's file names do too)."""
    priority = int(priority or 0)  # huey truncates fractional priorities
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError('FileStorage priorities are integers from %d to %d, not %d'
                         % (MIN_PRIORITY, MAX_PRIORITY, priority))
    return '%08x' % (MAX_PRIORITY - priority)


# A timestamp in a file name: its IEEE bits, turned so that the hex digits sort as the
# floats do (sign bit set for positives, all bits flipped for negatives). They read back
# exactly, so a message scheduled at ``ts`` is due at ``ts`` and not a rounding later.
def _sortable_time(ts):
    bits, = struct.unpack('>Q', struct.pack('>d', ts))
    return '%016x' % (bits ^ (ALL_BITS if bits & SIGN else SIGN))


def _time_of(digits):
    bits = int(digits, 16)
    return struct.unpack('>d', struct.pack('>Q', bits ^ (SIGN if bits & SIGN else ALL_BITS)))[0]
