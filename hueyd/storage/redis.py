"""Redis storage.

Keys for a queue called ``<name>``:

``hueyd.<name>.queue``
    list of messages (LPUSH, then BRPOP/RPOP): FIFO, ``priority`` ignored.
    PriorityRedisStorage keeps a sorted set under the same key instead.
``hueyd.<name>.queue.seq``
    counter behind PriorityRedisStorage's member prefixes.
``hueyd.<name>.schedule`` and ``hueyd.<name>.schedule.seq``
    sorted set scored by timestamp; every member is a 16-digit counter value
    followed by the message, so equal messages stay distinct and equal
    timestamps keep insertion order. The prefix is stripped on read.
``hueyd.<name>.results``
    hash of the values stored with ``is_result=True``.
``hueyd.<name>.data``
    hash of the other values (revocations, locks taken without a ttl).
``hueyd.<name>.ttl.<key>``
    plain string key written by ``put_if_empty(..., ttl=...)`` with SET PX, so
    Redis itself expires it (a lock whose holder died frees itself).
``hueyd.<name>.counters``
    hash of counters.

A data key lives in exactly one of ``results``, ``data`` or its ``ttl`` key:
writes clear the other two, and reads look in all three.
"""
from hueyd.constants import EmptyData
from hueyd.exceptions import ConfigurationError
from hueyd.storage.base import BaseStorage

try:
    import redis
except ImportError:  # pragma: no cover - redis is a hard dependency of hueyd
    redis = None

PREFIX_LEN = 16

# KEYS: target, sequence. ARGV: data, score.
ADD_WITH_SEQ = """
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[2], string.format('%016d', n) .. ARGV[1])
"""

# KEYS: schedule. ARGV: max score.
READ_SCHEDULE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #items > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
end
return items
"""

# KEYS: results, data, ttl key. ARGV: field.
POP_DATA = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) return v end
v = redis.call('HGET', KEYS[2], ARGV[1])
if v then redis.call('HDEL', KEYS[2], ARGV[1]) return v end
v = redis.call('GET', KEYS[3])
if v then redis.call('DEL', KEYS[3]) end
return v
"""

# KEYS: results, data, ttl key. ARGV: field, value, ttl in ms (0: none).
PUT_IF_EMPTY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1
   or redis.call('EXISTS', KEYS[3]) == 1 then
    return 0
end
if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
else
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 1
"""


class RedisStorage(BaseStorage):
    #: False: messages come out in FIFO order whatever their priority.
    priority = False

    def __init__(self, name='huey', blocking=True, read_timeout=1, connection_pool=None,
                 url=None, client_name=None, **connection_params):
        super().__init__(name)
        if redis is None:
            raise ConfigurationError('RedisStorage needs the "redis" package: pip install redis')
        for param in ('host', 'port', 'db'):
            if connection_params.get(param, 0) is None:
                del connection_params[param]
        given = [label for label, value in (('url', url), ('connection_pool', connection_pool),
                                            ('connection parameters', connection_params)) if value]
        if len(given) > 1:
            raise ConfigurationError('RedisStorage got %s: pass only one of url, '
                                     'connection_pool or connection parameters' % ' and '.join(given))
        self._own_pool = connection_pool is None
        if client_name is not None and self._own_pool:
            connection_params['client_name'] = client_name  # sent by every new connection
        if url:
            try:
                connection_pool = redis.ConnectionPool.from_url(url, **connection_params)
            except ValueError as exc:
                raise ConfigurationError('bad Redis URL %r: %s' % (url, exc)) from None
        elif connection_pool is None:
            if 'unix_socket_path' in connection_params:
                connection_params['path'] = connection_params.pop('unix_socket_path')
                connection_params['connection_class'] = redis.UnixDomainSocketConnection
                connection_params.pop('host', None)
                connection_params.pop('port', None)
            connection_pool = redis.ConnectionPool(**connection_params)
        self.pool = connection_pool
        self.conn = redis.Redis(connection_pool=connection_pool)
        if client_name is not None and not self._own_pool:
            # A borrowed pool is not ours to reconfigure: only this connection gets the name.
            self.conn.client_setname(client_name)
        self.blocking = blocking
        self.read_timeout = read_timeout

        prefix = 'hueyd.%s.' % name
        self.queue_key = prefix + 'queue'
        self.queue_seq_key = prefix + 'queue.seq'
        self.schedule_key = prefix + 'schedule'
        self.schedule_seq_key = prefix + 'schedule.seq'
        self.results_key = prefix + 'results'
        self.data_key = prefix + 'data'
        self.ttl_prefix = (prefix + 'ttl.').encode()
        self.counters_key = prefix + 'counters'

        self._add_with_seq = self.conn.register_script(ADD_WITH_SEQ)
        self._read_schedule = self.conn.register_script(READ_SCHEDULE)
        self._pop_data = self.conn.register_script(POP_DATA)
        self._put_if_empty = self.conn.register_script(PUT_IF_EMPTY)

    def close(self):
        if self._own_pool:
            # Idle connections only: other threads may be mid-command on theirs.
            # Connections reopen lazily if the storage is used again.
            self.pool.disconnect(inuse_connections=False)

    # --- queue -------------------------------------------------------------
    def enqueue(self, data, priority=None):
        self.conn.lpush(self.queue_key, data)

    def enqueue_many(self, items):
        items = list(items)
        if not items:
            return
        pipe = self.conn.pipeline()
        for start in range(0, len(items), 1000):  # bounded command size
            pipe.lpush(self.queue_key, *(data for data, _ in items[start:start + 1000]))
        pipe.execute()

    def dequeue(self):
        if self.blocking:
            popped = self.conn.brpop(self.queue_key, timeout=self.read_timeout)
            return popped[1] if popped else None
        return self.conn.rpop(self.queue_key)

    def queue_size(self):
        return self.conn.llen(self.queue_key)

    def enqueued_items(self, limit=None):
        if limit is not None and limit <= 0:
            return []
        # The oldest message sits at the tail of the list.
        return self.conn.lrange(self.queue_key, -limit if limit else 0, -1)[::-1]

    def flush_queue(self):
        self.conn.delete(self.queue_key, self.queue_seq_key)

    # --- schedule ----------------------------------------------------------
    def add_to_schedule(self, data, ts):
        self._add_with_seq(keys=[self.schedule_key, self.schedule_seq_key], args=[data, repr(float(ts))])

    def read_schedule(self, ts):
        items = self._read_schedule(keys=[self.schedule_key], args=[repr(float(ts))])
        return [item[PREFIX_LEN:] for item in items]

    def next_schedule_time(self):
        first = self.conn.zrange(self.schedule_key, 0, 0, withscores=True)
        return first[0][1] if first else None

    def schedule_size(self):
        return self.conn.zcard(self.schedule_key)

    def scheduled_items(self, limit=None):
        return [item[PREFIX_LEN:] for item in self._zrange(self.schedule_key, limit)]

    def flush_schedule(self):
        self.conn.delete(self.schedule_key, self.schedule_seq_key)

    def _zrange(self, key, limit):
        if limit is not None and limit <= 0:
            return []
        return self.conn.zrange(key, 0, -1 if limit is None else limit - 1)

    # --- data store --------------------------------------------------------
    def _ttl_key(self, key):
        return self.ttl_prefix + (key if isinstance(key, bytes) else str(key).encode())

    def _data_keys(self, key):
        return [self.results_key, self.data_key, self._ttl_key(key)]

    def put_data(self, key, value, is_result=False):
        target, other = ((self.results_key, self.data_key) if is_result
                         else (self.data_key, self.results_key))
        pipe = self.conn.pipeline()  # MULTI: the key never shows up in two places
        pipe.hset(target, key, value)
        pipe.hdel(other, key)
        pipe.delete(self._ttl_key(key))
        pipe.execute()

    def peek_many(self, keys):
        pipe = self.conn.pipeline()
        for key in keys:
            pipe.hget(self.results_key, key)
            pipe.hget(self.data_key, key)
            pipe.get(self._ttl_key(key))
        replies = pipe.execute()
        values = []
        for i in range(0, len(replies), 3):
            found = [value for value in replies[i:i + 3] if value is not None]
            values.append(found[0] if found else EmptyData)
        return values

    def peek_data(self, key):
        return self.peek_many([key])[0]

    def pop_data(self, key):
        value = self._pop_data(keys=self._data_keys(key), args=[key])
        return EmptyData if value is None else value

    def has_data_for_key(self, key):
        pipe = self.conn.pipeline()
        pipe.hexists(self.results_key, key)
        pipe.hexists(self.data_key, key)
        pipe.exists(self._ttl_key(key))
        return any(pipe.execute())

    def put_if_empty(self, key, value, ttl=None):
        ttl_ms = max(1, int(ttl * 1000)) if ttl else 0
        return bool(self._put_if_empty(keys=self._data_keys(key), args=[key, value, ttl_ms]))

    def result_store_size(self):
        return self.conn.hlen(self.results_key)

    def result_items(self):
        return {key.decode(): value for key, value in self.conn.hgetall(self.results_key).items()}

    def flush_results(self):
        self.conn.delete(self.results_key, self.data_key)
        pattern = _glob_escape(self.ttl_prefix) + b'*'
        batch = []
        for key in self.conn.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                self.conn.delete(*batch)
                batch = []
        if batch:
            self.conn.delete(*batch)

    # --- counters ----------------------------------------------------------
    def incr(self, key, amount=1):
        return self.conn.hincrby(self.counters_key, key, amount)

    def delete_counter(self, key):
        self.conn.hdel(self.counters_key, key)

    def flush_counters(self):
        self.conn.delete(self.counters_key)


class PriorityRedisStorage(RedisStorage):
    """Honours ``priority``: the queue is a sorted set (needs Redis 5 or later).

    The score is ``-priority`` so ZPOPMIN yields the highest priority first, and
    each member starts with a 16-digit counter value so equal priorities come
    out in insertion order (and equal messages stay distinct).
    """
    priority = True

    def enqueue(self, data, priority=None):
        self._add_with_seq(keys=[self.queue_key, self.queue_seq_key], args=[data, -(priority or 0)])

    def enqueue_many(self, items):
        pipe = self.conn.pipeline()
        for data, priority in items:
            self._add_with_seq(keys=[self.queue_key, self.queue_seq_key],
                               args=[data, -(priority or 0)], client=pipe)
        pipe.execute()

    def dequeue(self):
        if self.blocking:
            popped = self.conn.bzpopmin(self.queue_key, timeout=self.read_timeout)
            member = popped[1] if popped else None
        else:
            popped = self.conn.zpopmin(self.queue_key)
            member = popped[0][0] if popped else None
        return None if member is None else member[PREFIX_LEN:]

    def queue_size(self):
        return self.conn.zcard(self.queue_key)

    def enqueued_items(self, limit=None):
        return [item[PREFIX_LEN:] for item in self._zrange(self.queue_key, limit)]


def _glob_escape(raw):
    return b''.join(b'\\' + bytes([c]) if c in b'*?[]\\' else bytes([c]) for c in raw)
