"""Redis storage.

Keys for a queue called ``<name>`` (as in huey, only its letters, digits and
underscores, unless ``clean_name=False``):

``hueyd.<name>.queue``
    list of messages (LPUSH, then BRPOP/RPOP): FIFO, ``priority`` ignored.
    PriorityRedisStorage keeps a sorted set under the same key instead.
``hueyd.<name>.queue.seq``
    counter behind PriorityRedisStorage's member prefixes.
``hueyd.<name>.schedule`` and ``hueyd.<name>.schedule.seq``
    sorted set scored by timestamp; every member is a header (see LAYOUT),
    then the message, so equal messages stay distinct and equal timestamps
    keep insertion order. The header is stripped on read.
``hueyd.<name>.results``
    hash of the values stored with ``is_result=True``.
``hueyd.<name>.notify.<key>``
    with ``notify_result=True``: a list pushed to when a result is stored, which
    ``wait_result`` blocks on; it expires after ``notify_result_ttl`` seconds.
``hueyd.<name>.result.<key>``
    in RedisExpireStorage instead: each result in a string key of its own, so
    Redis expires it.
``hueyd.<name>.data``
    hash of the other values (locks taken without a ttl, chord state).
``hueyd.<name>.revoked``
    hash of revocations, apart so a claim can return them all in its round trip.
``hueyd.<name>.ttl.<key>``
    plain string key written by ``put_if_empty(..., ttl=...)`` with SET PX, so
    Redis itself expires it (a lock whose holder died frees itself).
``hueyd.<name>.counters``
    hash of counters.
``hueyd.<name>.claims.<worker>``
    list of the messages a worker has claimed and not yet acknowledged.
``hueyd.<name>.leases``
    sorted set of workers scored by when their lease runs out (Redis TIME, so
    every node agrees); ``recover`` returns the claims of lapsed workers.
``hueyd.<name>.dead``
    hash of dead letters; ``hueyd.<name>.dead.order`` lists their keys in order.
``hueyd.<name>.stats.<minute>``
    task statistics of one minute (unix time // 60): a sorted set whose members are
    ``<field>|<task>`` scored by their number (ZINCRBY adds, ZADD GT keeps a ``max``);
    it expires ``stats_retention`` (25 h) after its last write. Needs Redis 6.2.

In a Redis Cluster (``cluster=True``, ``redis+cluster://``) the name is a hash tag,
``hueyd.{<name>}.queue`` and so on, so every key of a queue (the claim keys the
delivery scripts build from a worker name too) is in one slot; queues with other names
spread over the masters. Where the connections go (one server, Sentinel, Cluster) is
redis_ha's job.

A data key lives in exactly one of ``results`` (or its ``result`` key), ``data``
or its ``ttl`` key: writes clear the other two, and reads look in all three.
"""
import re
import time
from contextlib import contextmanager, nullcontext

from hueyd.constants import EmptyData
from hueyd.exceptions import ConfigurationError
from hueyd.storage import redis_ha
from hueyd.storage.base import BaseStorage
from hueyd.storage.batch import SharedBatch
from hueyd.storage.listener import EventListener
from hueyd.storage.protocols import (Claimed, Claims, DeadLetters, Events, NodeState, Stats,
                                     WriteBatching, text_key)
from hueyd.times import unix_time

try:
    import redis
except ImportError:  # pragma: no cover - redis is a hard dependency of hueyd
    redis = None

# The header of a sorted-set member, the one layout Python and the Lua scripts
# share (the scripts are formatted from LAYOUT): a sequence number of SEQ_LEN
# digits, so equal messages stay distinct and equal scores keep insertion order;
# then, in the schedule of a PriorityRedisStorage only, the priority the message
# will be queued with, as PRIORITY_LEN characters (a sign and digits); then the
# message.
SEQ_LEN = 16
PRIORITY_LEN = 11
PRIORITY_FORMAT = b'%%+0%dd' % PRIORITY_LEN
LAYOUT = {
    'seq_format': '%%0%dd' % SEQ_LEN,  # for Lua's string.format
    # Lua's string.sub counts from 1, both ends included.
    'after_seq': SEQ_LEN + 1,
    'priority_end': SEQ_LEN + PRIORITY_LEN,
    'after_priority': SEQ_LEN + PRIORITY_LEN + 1,
}

# KEYS: target, sequence. ARGV: data, score.
ADD_WITH_SEQ = """
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[2], string.format('%(seq_format)s', n) .. ARGV[1])
""" % LAYOUT

# KEYS: schedule. ARGV: max score.
READ_SCHEDULE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #items > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
end
return items
"""

# How the data scripts reach a result, given KEYS[1] and the field: in the
# results hash, which a read empties (RedisStorage)...
HASHED_RESULTS = """
local function result_exists(key, field) return redis.call('HEXISTS', key, field) == 1 end
local function pop_result(key, field)
    local v = redis.call('HGET', key, field)
    if v then redis.call('HDEL', key, field) end
    return v
end
"""
# ...or in a key of its own, which only its expiry removes (RedisExpireStorage).
KEYED_RESULTS = """
local function result_exists(key, field) return redis.call('EXISTS', key) == 1 end
local function pop_result(key, field) return redis.call('GET', key) end
"""

# KEYS: result location (see above), data, ttl key. ARGV: field.
POP_DATA = """
local v = pop_result(KEYS[1], ARGV[1])
if v then return v end
v = redis.call('HGET', KEYS[2], ARGV[1])
if v then redis.call('HDEL', KEYS[2], ARGV[1]) return v end
v = redis.call('GET', KEYS[3])
if v then redis.call('DEL', KEYS[3]) end
return v
"""

# KEYS: result location (see above), data, ttl key. ARGV: field, value, ttl in ms (0: none).
PUT_IF_EMPTY = """
if result_exists(KEYS[1], ARGV[1]) or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1
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


# Lua helpers shared by the delivery scripts. ARGV[1] is '1' when the queue is
# a priority sorted set, whose claim entries are "<score>|<member>".
LUA_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""
LUA_REQUEUE = """
local function requeue(queue, wake, entry)
    if ARGV[1] == '1' then
        local sep = string.find(entry, '|', 1, true)
        redis.call('ZADD', queue, string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1))
        redis.call('LPUSH', wake, '1')
        redis.call('LTRIM', wake, 0, 63)
    else
        redis.call('RPUSH', queue, entry)  -- the head: it runs next
    end
end
"""

# Every revocation, unless there are so many that the worker had better ask for
# the few it needs: a claim returns them so checking costs no round trip.
LUA_REVOCATIONS = """
local function revocations(key)
    if redis.call('HLEN', key) > 64 then return false end
    return redis.call('HGETALL', key)
end
"""

# How many clients listen to the events channel ARGV[n] (false for ''): read after the
# claim, so it counts every listener that subscribed before the claimed tasks were
# enqueued, and a pool builds no event when it is 0 (see RedisStorage.listening).
LUA_LISTENERS = """
local function listeners(channel)
    if channel == '' then return false end
    return redis.call('PUBSUB', 'NUMSUB', channel)[2]
end
"""

# KEYS: revoked. ARGV: events channel.
REVOCATIONS = LUA_REVOCATIONS + LUA_LISTENERS + """
return {revocations(KEYS[1]), listeners(ARGV[1])}
"""

# KEYS: queue, claims, leases, revoked.
# ARGV: priority flag, worker, count, lease seconds, events channel.
# Returns {claim entries, revocations (see LUA_REVOCATIONS), listeners (LUA_LISTENERS)}.
CLAIM = LUA_NOW + LUA_REVOCATIONS + LUA_LISTENERS + """
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
local taken = {}
if ARGV[1] == '1' then
    local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[3])
    for i = 1, #popped, 2 do
        local entry = popped[i + 1] .. '|' .. popped[i]
        redis.call('LPUSH', KEYS[2], entry)
        taken[#taken + 1] = entry
    end
else
    for i = 1, tonumber(ARGV[3]) do
        local entry = redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
        if not entry then break end
        taken[i] = entry
    end
end
return {taken, revocations(KEYS[4]), listeners(ARGV[5])}
"""

# KEYS: claims. ARGV: receipts. A write batch's acknowledgements in one command: redis-py
# spends far more on each command of a pipeline than Redis spends on an LREM. From the
# tail (-1), where a claim's oldest messages are: those finish first.
ACK = """
for i = 1, #ARGV do redis.call('LREM', KEYS[1], -1, ARGV[i]) end
"""

# KEYS: leases. ARGV: worker, lease seconds.
BEAT = LUA_NOW + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"""

# KEYS: claims, queue, wake. ARGV: priority flag, receipts in claim order.
RELEASE = LUA_REQUEUE + """
for i = #ARGV, 2, -1 do  -- newest first, so the oldest ends up at the head
    if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then requeue(KEYS[2], KEYS[3], ARGV[i]) end
end
"""

# KEYS: leases, queue, wake. ARGV: priority flag, claims key prefix, one worker
# (retire it) or '' (every worker whose lease has run out).
REQUEUE_CLAIMS = LUA_NOW + LUA_REQUEUE + """
local workers = {ARGV[3]}
if ARGV[3] == '' then workers = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now) end
local moved = 0
for _, worker in ipairs(workers) do
    local claims = ARGV[2] .. worker
    while true do
        local entry = redis.call('LPOP', claims)  -- newest first, as in RELEASE
        if not entry then break end
        requeue(KEYS[2], KEYS[3], entry)
        moved = moved + 1
    end
    redis.call('ZREM', KEYS[1], worker)
end
return moved
"""

# KEYS: schedule, queue, queue sequence, wake. ARGV: priority flag, max score.
# Schedule members are laid out as LAYOUT says.
MOVE_DUE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if #items == 0 then return items end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, item in ipairs(items) do
    if ARGV[1] == '1' then
        local n = redis.call('INCR', KEYS[3])
        redis.call('ZADD', KEYS[2], -tonumber(string.sub(item, %(after_seq)d, %(priority_end)d)),
                   string.format('%(seq_format)s', n) .. string.sub(item, %(after_priority)d))
        redis.call('LPUSH', KEYS[4], '1')
        redis.call('LTRIM', KEYS[4], 0, 63)
    else
        redis.call('LPUSH', KEYS[2], string.sub(item, %(after_seq)d))
    end
end
return items
""" % LAYOUT

# Node state: per kind, a hash of values and a sorted set of expiries. Expiry
# times come from Redis TIME, so nodes with skewed clocks still agree. Both keys
# also carry a Redis expiry, so nothing lingers once every node is gone.
# KEYS: values hash, expiries zset. ARGV: key, value, ttl seconds ('' for a read).
STATE = LUA_NOW + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
    redis.call('HDEL', KEYS[1], unpack(dead))
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end
if ARGV[3] == '' then return redis.call('HGETALL', KEYS[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local keep = math.ceil(tonumber(ARGV[3]) * 1000) + 1000
for _, key in ipairs(KEYS) do
    if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
return {}
"""


class RedisStorage(Claims, DeadLetters, Events, NodeState, Stats,
                   WriteBatching, BaseStorage):
    #: False: messages come out in FIFO order whatever their priority.
    priority = False
    transient_errors = BaseStorage.transient_errors + (
        (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) if redis else ())

    def __init__(self, name='huey', blocking=True, read_timeout=1, connection_pool=None,
                 url=None, client_name=None, notify_result=False, notify_result_ttl=60,
                 clean_name=True, wait_replicas=0, wait_timeout=1.0, sentinels=None,
                 service_name=None, sentinel_kwargs=None, sentinel_password=None,
                 cluster=False, startup_nodes=None, **connection_params):
        # As huey: only letters, digits and underscores go into key names, unless told not to.
        super().__init__(re.sub(r'[^A-Za-z0-9_]', '', name) if clean_name else name)
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
        if self._own_pool:
            reach = redis_ha.connect(
                self.name, url, sentinels, service_name, sentinel_kwargs, sentinel_password,
                cluster, startup_nodes, longest_wait=max(read_timeout, wait_timeout, 1.0),
                **connection_params)
        else:
            # A Redis Cluster pool of another storage: cluster keys, and only in its slot.
            reach = redis_ha.borrowed(self.name, connection_pool)
        self.pool = reach.pool
        self.where = reach.where
        self.conn = redis.Redis(connection_pool=self.pool)
        if client_name is not None and not self._own_pool:
            # A borrowed pool is not ours to reconfigure: only this connection gets the name.
            self.conn.client_setname(client_name)
        self.blocking = blocking
        self.read_timeout = read_timeout
        # With wait_replicas, an enqueue (or a schedule) from outside a write batch returns
        # once that many replicas have it (WAIT), so a failover to one of them keeps it.
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout

        # With notify_result, storing a result also pushes to a list its waiters
        # block on (wait_result), instead of their polling.
        self.notify_result = notify_result
        self.notify_result_ttl = notify_result_ttl

        # In a cluster every key of the queue hashes its name only: one slot for them all.
        prefix = 'hueyd.%s.' % (redis_ha.hash_tag(self.name) if reach.cluster else self.name)
        # A cluster node counts only its own subscribers, so there the listeners stay unknown.
        self._counts_listeners = not reach.cluster
        self._listeners = None  # of the events channel, as the last claim found (listening())
        self.key_prefix = prefix
        self.notify_prefix = prefix + 'notify.'
        self.queue_key = prefix + 'queue'
        self.queue_seq_key = prefix + 'queue.seq'
        self.schedule_key = prefix + 'schedule'
        self.schedule_seq_key = prefix + 'schedule.seq'
        self.results_key = prefix + 'results'
        self.data_key = prefix + 'data'
        self.revoked_key = prefix + 'revoked'
        self.ttl_prefix = (prefix + 'ttl.').encode()
        self.counters_key = prefix + 'counters'
        self.claims_prefix = prefix + 'claims.'
        self.leases_key = prefix + 'leases'
        self.wake_key = prefix + 'queue.wake'
        self.dead_key = prefix + 'dead'
        self.dead_order_key = prefix + 'dead.order'
        self.stats_prefix = prefix + 'stats.'

        self._add_with_seq = self.conn.register_script(ADD_WITH_SEQ)
        self._read_schedule = self.conn.register_script(READ_SCHEDULE)
        self._pop_data = self.conn.register_script(self.results_lua + POP_DATA)
        self._put_if_empty = self.conn.register_script(self.results_lua + PUT_IF_EMPTY)
        self._claim = self.conn.register_script(CLAIM)
        self._revocations = self.conn.register_script(REVOCATIONS)
        self._ack = self.conn.register_script(ACK)
        self._beat = self.conn.register_script(BEAT)
        self._release = self.conn.register_script(RELEASE)
        self._requeue_claims = self.conn.register_script(REQUEUE_CLAIMS)
        self._move_due = self.conn.register_script(MOVE_DUE)
        self._state = self.conn.register_script(STATE)
        # The writes whose answer nobody waits for (enqueue, schedule, put_data,
        # ack, events) of the batching threads: one pipeline, one round trip.
        self.write_batch = SharedBatch(self._new_batch, self._send_batch)
        self._batch_pipe = _BatchPipe(self.write_batch)

    def _new_batch(self):
        return _RedisBatch(self.conn.pipeline(transaction=False))

    def _send_batch(self, batch):
        for claims, receipts in batch.acks.items():  # after the results of their tasks
            # EVAL, not EVALSHA: a Redis that restarted would refuse an EVALSHA
            batch.pipe.eval(ACK, 1, claims, *receipts)
        if batch.events:  # after the results they report
            batch.pipe.publish(self.events_channel, _one_message(batch.events))
        if batch.claim is not None:  # last: claim() reads the last reply
            keys, args = batch.claim
            batch.pipe.eval(CLAIM, len(keys), *keys, *args)
        return batch.pipe.execute()

    def _writer(self, replicated=False):
        """Where one command goes (a context): the write batch in a batching thread, else
        Redis at once.

        ``replicated``: a write the caller takes as stored (an enqueue); sent at once, it
        waits for ``wait_replicas``. A write batch needs no wait: the acknowledgement of
        the task that wrote it follows it, and replicas apply writes in order, so a
        failover that loses it loses the acknowledgement too, and the task runs again.
        """
        if self.write_batch.active:
            return self._batch_pipe
        if replicated and self.wait_replicas:
            return self._own_pipeline(False, replicated=True)
        return nullcontext(self.conn)

    def _pipeline(self, transaction=False, replicated=False):
        """A pipeline to fill (a context): the write batch in a batching thread, else one
        executed on leaving."""
        if self.write_batch.active:
            return self._batch_pipe
        return self._own_pipeline(transaction, replicated)

    @contextmanager
    def _own_pipeline(self, transaction, replicated):
        pipe = self.conn.pipeline(transaction=transaction)
        yield pipe
        if not (replicated and self.wait_replicas):
            pipe.execute()
            return
        # WAIT counts the replicas that have every earlier write of its connection: the
        # pipeline's, which shares one connection.
        pipe.wait(self.wait_replicas, max(1, int(self.wait_timeout * 1000)))
        confirmed = pipe.execute()[-1]
        if confirmed < self.wait_replicas:
            raise redis_ha.NotReplicated(
                'stored on the Redis master, but %d of the %d replicas asked for '
                '(wait_replicas) confirmed it within %ss: a failover now could lose it'
                % (confirmed, self.wait_replicas, self.wait_timeout))

    def location(self):
        if self.where:
            return self.where
        kwargs = self.pool.connection_kwargs
        return kwargs.get('path') or '%s:%s/%s' % (kwargs.get('host'), kwargs.get('port'),
                                                   kwargs.get('db', 0))

    def reserve_connections(self, count):
        # redis-py's pool raises "Too many connections" past max_connections.
        if self.pool.max_connections < count:
            self.pool.max_connections = count

    def close(self):
        if self._own_pool:
            # Idle connections only: other threads may be mid-command on theirs.
            # Connections reopen lazily if the storage is used again.
            self.pool.disconnect(inuse_connections=False)

    # --- queue -------------------------------------------------------------
    def enqueue(self, data, priority=None):
        with self._writer(replicated=True) as writer:
            writer.lpush(self.queue_key, data)

    def enqueue_many(self, items):
        items = list(items)
        if not items:
            return
        with self._pipeline(replicated=True) as pipe:
            for start in range(0, len(items), 1000):  # bounded command size
                pipe.lpush(self.queue_key, *(data for data, _ in items[start:start + 1000]))

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
        claims = list(self._scan(self.claims_prefix.encode()))
        self.conn.delete(self.queue_key, self.queue_seq_key, self.wake_key, self.leases_key, *claims)

    # --- schedule ----------------------------------------------------------
    #: What precedes the message in a schedule member (see LAYOUT).
    schedule_prefix_len = SEQ_LEN

    def _schedule_member(self, data, priority):
        return data

    def add_to_schedule(self, data, ts, priority=None):
        with self._writer(replicated=True) as writer:
            self._add_with_seq(keys=[self.schedule_key, self.schedule_seq_key],
                               args=[self._schedule_member(data, priority), repr(float(unix_time(ts)))],
                               client=writer)

    def read_schedule(self, ts):
        items = self._read_schedule(keys=[self.schedule_key], args=[repr(float(unix_time(ts)))])
        return [item[self.schedule_prefix_len:] for item in items]

    def move_due(self, ts):
        items = self._move_due(keys=[self.schedule_key, self.queue_key, self.queue_seq_key,
                                     self.wake_key], args=[self._flag, repr(float(ts))])
        return [item[self.schedule_prefix_len:] for item in items]

    def next_schedule_time(self):
        first = self.conn.zrange(self.schedule_key, 0, 0, withscores=True)
        return first[0][1] if first else None

    def schedule_size(self):
        return self.conn.zcard(self.schedule_key)

    def scheduled_items(self, limit=None):
        return [item[self.schedule_prefix_len:] for item in self._zrange(self.schedule_key, limit)]

    def flush_schedule(self):
        self.conn.delete(self.schedule_key, self.schedule_seq_key)

    def _zrange(self, key, limit):
        if limit is not None and limit <= 0:
            return []
        return self.conn.zrange(key, 0, -1 if limit is None else limit - 1)

    # --- data store --------------------------------------------------------
    def _ttl_key(self, key):
        return _prefixed(self.ttl_prefix, key)

    def _data_keys(self, key):
        """The keys of the data scripts: the result location, data, ttl key."""
        return [self.results_key, self.data_key, self._ttl_key(key)]

    # Where results live: fields of the results hash here, keys of their own in
    # RedisExpireStorage, which overrides these and results_lua.
    results_lua = HASHED_RESULTS

    def _put_result(self, pipe, key, value):
        pipe.hset(self.results_key, key, value)

    def _forget_result(self, pipe, key):
        pipe.hdel(self.results_key, key)

    def _read_result(self, pipe, key):
        pipe.hget(self.results_key, key)

    def _has_result(self, pipe, key):
        pipe.hexists(self.results_key, key)

    def put_data(self, key, value, is_result=False):
        with self._pipeline(transaction=True) as pipe:  # MULTI: never in two places at once
            if is_result:
                self._put_result(pipe, key, value)
                pipe.hdel(self.data_key, key)
                if self.notify_result:
                    notify_key = self.notify_prefix + text_key(key)
                    pipe.lpush(notify_key, b'1')
                    pipe.expire(notify_key, self.notify_result_ttl)
            else:
                pipe.hset(self.data_key, key, value)
                self._forget_result(pipe, key)
            pipe.delete(self._ttl_key(key))

    def delete_data(self, key):
        # Unlike pop_data it reads nothing back, and it removes a RedisExpireStorage result.
        pipe = self.conn.pipeline()
        self._forget_result(pipe, key)
        pipe.hdel(self.data_key, key)
        pipe.delete(self._ttl_key(key))
        return any(pipe.execute())

    def peek_many(self, keys):
        pipe = self.conn.pipeline(transaction=False)  # reads: no MULTI needed
        for key in keys:
            self._read_result(pipe, key)
            pipe.hget(self.data_key, key)
            pipe.get(self._ttl_key(key))
        replies = pipe.execute()
        values = {}
        for key, i in zip(keys, range(0, len(replies), 3)):
            found = [value for value in replies[i:i + 3] if value is not None]
            if found:
                values[key] = found[0]
        return values

    def peek_data(self, key):
        return self.peek_many([key]).get(key, EmptyData)

    def put_revocation(self, key, value):
        self.conn.hset(self.revoked_key, key, value)

    def read_revocations(self, keys):
        if not keys:
            return []
        return [EmptyData if value is None else value
                for value in self.conn.hmget(self.revoked_key, keys)]

    def delete_revocation(self, key):
        return bool(self.conn.hdel(self.revoked_key, key))

    def pop_data(self, key):
        value = self._pop_data(keys=self._data_keys(key), args=[key])
        return EmptyData if value is None else value

    def has_data_for_key(self, key):
        pipe = self.conn.pipeline()
        self._has_result(pipe, key)
        pipe.hexists(self.data_key, key)
        pipe.exists(self._ttl_key(key))
        return any(pipe.execute())

    def put_if_empty(self, key, value, ttl=None):
        ttl_ms = max(1, int(ttl * 1000)) if ttl else 0
        return bool(self._put_if_empty(keys=self._data_keys(key), args=[key, value, ttl_ms]))

    @property
    def waits_for_results(self):
        return self.notify_result  # else wait_result polls

    def wait_result(self, key, timeout=None, backoff=1.15, max_delay=1.0):
        if not self.notify_result:
            return super().wait_result(key, timeout, backoff, max_delay)
        notify_key = self.notify_prefix + text_key(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        # One push wakes one waiter: the others find the result between short waits.
        while not self.has_data_for_key(key):
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                return False
            if self.conn.blpop(notify_key, timeout=max(left, 0.01)) is not None:
                self.conn.delete(notify_key)
                return True
        return True

    def result_store_size(self):
        pipe = self.conn.pipeline(transaction=False)
        for key in (self.results_key, self.data_key, self.revoked_key):
            pipe.hlen(key)
        return sum(pipe.execute()) + sum(1 for _ in self._scan(self.ttl_prefix))

    def result_items(self):
        items = {}
        for key in (self.revoked_key, self.data_key, self.results_key):
            items.update(self.conn.hgetall(key))
        start = len(self.ttl_prefix)
        ttl_keys = list(self._scan(self.ttl_prefix))
        for key, value in zip(ttl_keys, self.conn.mget(ttl_keys) if ttl_keys else []):
            if value is not None:  # expired between the scan and the read
                items[key[start:]] = value
        return {key.decode(): value for key, value in items.items()}

    def flush_results(self):
        self.conn.delete(self.results_key, self.data_key, self.revoked_key)
        self._delete_prefixed(self.ttl_prefix)

    def _scan(self, prefix):
        """Every key that starts with ``prefix`` (bytes)."""
        return self.conn.scan_iter(match=_glob_escape(prefix) + b'*', count=500)

    def _delete_prefixed(self, prefix):
        batch = []
        for key in self._scan(prefix):
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

    # --- events: PUBLISH on hueyd.<name>.events ------------------------------
    events_by_default = True  # as huey's RedisHuey

    @property
    def events_channel(self):
        return 'hueyd.%s.events' % self.name

    @property
    def _listened_channel(self):
        """The channel whose listeners a claim counts: '' when they are not to be counted."""
        return self.events_channel if self._counts_listeners and self.events_enabled else ''

    def listening(self):
        # The count the last claim read, after the messages it took had been enqueued.
        return self._listeners != 0

    def publish_events(self, events):
        # One message for many events: a PUBLISH costs far more than a longer JSON array.
        if self.write_batch.active:
            with self.write_batch.adding() as batch:
                batch.events.extend(events)
        else:
            self.conn.publish(self.events_channel, _one_message(events))

    def listener(self):
        """Subscribes now (it returns once Redis confirmed), so no later event is missed."""
        self.check_events_enabled()
        pubsub = self.conn.pubsub()
        pubsub.subscribe(self.events_channel)
        early = []
        while True:
            message = pubsub.get_message(timeout=5)
            if message is None:
                pubsub.close()
                raise ConfigurationError('Redis did not confirm the subscription to %r'
                                         % self.events_channel)
            if message['type'] == 'subscribe':
                break
            early.append(message['data'])  # not expected before the confirmation

        def fetch(timeout):
            found = early[:]
            del early[:]
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            while message is not None:
                if message['type'] == 'message':
                    found.append(message['data'])
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            return found

        return EventListener(self.events_channel, fetch, pubsub.close)

    # --- delivery ----------------------------------------------------------
    _flag = '0'  # '1' in PriorityRedisStorage: see the Lua scripts

    def _data_of(self, entry):
        return entry

    claim_sends_writes = True

    def claim(self, worker, count=1, lease=30.0):
        keys, args = self._claim_keys_args(worker, count, lease)
        # After the pending writes, in their round trip (EVAL: a Redis that restarted
        # would refuse an EVALSHA, and the writes before it must not fail with it).
        replies = self.write_batch.send_with(
            lambda batch: setattr(batch, 'claim', (keys, args)))
        reply = replies[-1] if replies else self._claim(keys=keys, args=args)
        entries, revoked, self._listeners = reply
        if not entries and self.blocking:
            pipe = self.conn.pipeline(transaction=False)
            self._wait_and_claim(pipe, worker, lease)
            # Runs once the wait is over, and answers in the same round trip.
            _in_pipeline(pipe, self._revocations, [self.revoked_key], [self._listened_channel])
            *waited, after = _execute_scripts(pipe, [self._claim, self._revocations])
            entries = self._waited_entries(waited)
            if isinstance(after, Exception):  # Redis lacked the script (a fresh server)
                after = self._revocations(keys=[self.revoked_key], args=[self._listened_channel])
            revoked, self._listeners = after
        claimed = Claimed((entry, self._data_of(entry)) for entry in entries)
        if revoked is not None:  # a flat [key, value, ...] of every revocation
            claimed.revocations = {revoked[i].decode(): revoked[i + 1]
                                   for i in range(0, len(revoked), 2)}
        return claimed

    def _claim_keys_args(self, worker, count, lease):
        """The keys and arguments of the CLAIM script."""
        return ([self.queue_key, self.claims_prefix + worker, self.leases_key, self.revoked_key],
                [self._flag, worker, count, lease, self._listened_channel])

    def _wait_and_claim(self, pipe, worker, lease):
        # The claim script renewed the lease just before; the move itself is atomic.
        pipe.brpoplpush(self.queue_key, self.claims_prefix + worker, timeout=self.read_timeout)

    def _waited_entries(self, replies):
        return [replies[0]] if replies[0] is not None else []

    def ack(self, worker, receipts):
        claims = self.claims_prefix + worker
        if self.write_batch.active:
            with self.write_batch.adding() as batch:
                batch.acks.setdefault(claims, []).extend(receipts)
            return
        receipts = list(receipts)
        if receipts:
            self._ack(keys=[claims], args=receipts)

    def release(self, worker, receipts):
        receipts = list(receipts)
        if receipts:
            self._release(keys=[self.claims_prefix + worker, self.queue_key, self.wake_key],
                          args=[self._flag, *receipts])

    def beat(self, worker, lease):
        self._beat(keys=[self.leases_key], args=[worker, lease])

    def retire_worker(self, worker):
        self._requeue_claims(keys=[self.leases_key, self.queue_key, self.wake_key],
                             args=[self._flag, self.claims_prefix, worker])

    def recover(self):
        return self._requeue_claims(keys=[self.leases_key, self.queue_key, self.wake_key],
                                    args=[self._flag, self.claims_prefix, ''])

    def claimed_items(self):
        claimed = {}
        start = len(self.claims_prefix)
        for key in self._scan(self.claims_prefix.encode()):
            entries = self.conn.lrange(key, 0, -1)
            if entries:
                claimed[key.decode()[start:]] = [self._data_of(e) for e in reversed(entries)]
        return claimed

    def worker_claims(self, worker):
        entries = self.conn.lrange(self.claims_prefix + worker, 0, -1)
        return [(entry, self._data_of(entry)) for entry in reversed(entries)]

    # --- dead letters ------------------------------------------------------
    def add_dead_letter(self, key, record):
        pipe = self.conn.pipeline()
        pipe.hset(self.dead_key, key, record)
        pipe.rpush(self.dead_order_key, key)
        pipe.execute()

    def dead_letters(self):
        keys = self.conn.lrange(self.dead_order_key, 0, -1)
        if not keys:
            return []
        records = self.conn.hmget(self.dead_key, keys)
        return [(key.decode(), record) for key, record in zip(keys, records) if record is not None]

    def dead_letter_count(self):
        # The hash, not the order list: a key added again is pushed onto the list twice.
        return self.conn.hlen(self.dead_key)

    def remove_dead_letters(self, keys):
        keys = list(keys)
        if not keys:
            return 0
        pipe = self.conn.pipeline()
        pipe.hdel(self.dead_key, *keys)
        for key in keys:
            pipe.lrem(self.dead_order_key, 1, key)
        return pipe.execute()[0]

    # --- node state: the STATE script --------------------------------------------
    def _state_keys(self, kind):
        key = '%sstate.%s' % (self.key_prefix, kind)
        return [key, key + '.expires']

    def _state_script(self, kind, *args):
        return self._state(keys=self._state_keys(kind), args=args)

    def put_state(self, kind, key, value, ttl):
        self._state_script(kind, key, value, repr(float(ttl)))

    def states(self, kind):
        flat = self._state_script(kind, '', '', '')
        return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

    def delete_state(self, kind, key):
        values, expiries = self._state_keys(kind)
        pipe = self.conn.pipeline()
        pipe.hdel(values, key)
        pipe.zrem(expiries, key)
        pipe.execute()

    # --- statistics: a sorted set per minute -------------------------------------------
    def add_stats(self, figures):
        keys = set()
        pipe = self.conn.pipeline(transaction=False)
        for (minute, task), fields in figures.items():
            key = '%s%d' % (self.stats_prefix, minute)
            keys.add(key)
            for field, value in fields.items():
                member = '%s|%s' % (field, task)
                if field == 'max':
                    pipe.zadd(key, {member: value}, gt=True)
                else:
                    pipe.zincrby(key, value, member)
        for key in keys:
            pipe.expire(key, self.stats_retention)
        pipe.execute()

    def read_stats(self, since):
        last = int(time.time()) // 60 + 1  # a node whose clock is a little ahead
        minutes = range(max(since, last - self.stats_retention // 60), last + 1)
        pipe = self.conn.pipeline(transaction=False)
        for minute in minutes:
            pipe.zrange('%s%d' % (self.stats_prefix, minute), 0, -1, withscores=True)
        figures = {}
        for minute, members in zip(minutes, pipe.execute()):
            for member, value in members:
                field, _, task = member.decode().partition('|')
                figures.setdefault((minute, task), {})[field] = value
        return figures

    def flush_stats(self):
        self._delete_prefixed(self.stats_prefix.encode())


class PriorityRedisStorage(RedisStorage):
    """Honours ``priority``: the queue is a sorted set (needs Redis 5 or later).

    The score is ``-priority`` so ZPOPMIN yields the highest priority first, and
    each member starts with a sequence number (see LAYOUT) so equal priorities
    come out in insertion order (and equal messages stay distinct).
    """
    priority = True
    _flag = '1'
    schedule_prefix_len = SEQ_LEN + PRIORITY_LEN

    def _schedule_member(self, data, priority):
        return PRIORITY_FORMAT % (priority or 0) + data

    def _data_of(self, entry):
        return entry.split(b'|', 1)[1][SEQ_LEN:]

    def _wait_and_claim(self, pipe, worker, lease):
        # BZPOPMIN would hold a message outside both the queue and the claims for
        # a moment; instead wait on the wake-up list, then claim atomically.
        pipe.brpop(self.wake_key, timeout=self.read_timeout)
        _in_pipeline(pipe, self._claim, *self._claim_keys_args(worker, 1, lease))

    def _waited_entries(self, replies):
        return [] if isinstance(replies[1], Exception) else replies[1][0]

    def enqueue(self, data, priority=None):
        self.enqueue_many([(data, priority)])

    def enqueue_many(self, items):
        items = list(items)
        if not items:
            return
        with self._pipeline(replicated=True) as pipe:
            for data, priority in items:
                self._add_with_seq(keys=[self.queue_key, self.queue_seq_key],
                                   args=[data, -(priority or 0)], client=pipe)
            pipe.lpush(self.wake_key, *([b'1'] * min(len(items), 64)))
            pipe.ltrim(self.wake_key, 0, 63)

    def dequeue(self):
        if self.blocking:
            popped = self.conn.bzpopmin(self.queue_key, timeout=self.read_timeout)
            member = popped[1] if popped else None
        else:
            popped = self.conn.zpopmin(self.queue_key)
            member = popped[0][0] if popped else None
        return None if member is None else member[SEQ_LEN:]

    def queue_size(self):
        return self.conn.zcard(self.queue_key)

    def enqueued_items(self, limit=None):
        return [item[SEQ_LEN:] for item in self._zrange(self.queue_key, limit)]


class RedisExpireStorage(RedisStorage):
    """Results that Redis deletes ``expire_time`` seconds after they are stored (huey's).

    Each result is a key of its own (``hueyd.<name>.result.<key>``) with that
    expiry, and reading it, even with pop_data, leaves it: every reader gets it
    until it expires, or until delete_data. Other data is RedisStorage's.
    """
    results_lua = KEYED_RESULTS

    def __init__(self, name='huey', expire_time=86400, *args, **kwargs):
        if not expire_time or expire_time <= 0:
            raise ConfigurationError('expire_time must be a positive number of seconds, not %r'
                                     % (expire_time,))
        super().__init__(name, *args, **kwargs)
        self.expire_time = expire_time
        self.result_prefix = (self.key_prefix + 'result.').encode()

    def _result_key(self, key):
        return _prefixed(self.result_prefix, key)

    def _data_keys(self, key):
        return [self._result_key(key), self.data_key, self._ttl_key(key)]

    def _put_result(self, pipe, key, value):
        pipe.set(self._result_key(key), value, px=max(1, int(self.expire_time * 1000)))

    def _forget_result(self, pipe, key):
        pipe.delete(self._result_key(key))

    def _read_result(self, pipe, key):
        pipe.get(self._result_key(key))

    def _has_result(self, pipe, key):
        pipe.exists(self._result_key(key))

    def result_store_size(self):
        # Counted, not read: the results are keys of their own, the rest RedisStorage's.
        return super().result_store_size() + sum(1 for _ in self._scan(self.result_prefix))

    def result_items(self):
        items = super().result_items()
        keys = list(self._scan(self.result_prefix))
        start = len(self.result_prefix)
        values = self.conn.mget(keys) if keys else []
        items.update((key[start:].decode(), value) for key, value in zip(keys, values)
                     if value is not None)  # expired between the scan and the read
        return items

    def flush_results(self):
        super().flush_results()
        self._delete_prefixed(self.result_prefix)


class PriorityRedisExpireStorage(RedisExpireStorage, PriorityRedisStorage):
    """PriorityRedisStorage's queue with RedisExpireStorage's results."""


class _RedisBatch:
    __slots__ = ('pipe', 'acks', 'events', 'claim')

    def __init__(self, pipe):
        self.pipe = pipe
        self.acks = {}    # claims key -> receipts, acknowledged in one command when sent
        self.events = []  # published as one message when the batch is sent
        self.claim = None  # (keys, args) of a CLAIM sent with the batch (claim())


class _BatchPipe:
    """The write batch's pipeline, as a context holding the batch for one whole operation
    (SharedBatch.adding). Not a generator, as adding() is not: every acknowledgement goes
    through it."""
    __slots__ = ('_adding',)

    def __init__(self, write_batch):
        self._adding = write_batch.adding()

    def __enter__(self):
        return self._adding.__enter__().pipe

    def __exit__(self, *exc_info):
        self._adding.__exit__(*exc_info)


def _one_message(events):
    """One pub/sub message for encoded events: the event itself, or a JSON array of them."""
    return events[0] if len(events) == 1 else b'[' + b','.join(events) + b']'


def _in_pipeline(pipe, script, keys, args=()):
    """EVALSHA in a pipeline, without redis-py's SCRIPT EXISTS round trip per execute()."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def _execute_scripts(pipe, scripts):
    """Execute ``pipe``; a script Redis has forgotten (a restart) is loaded for next time.

    Its reply is then the NoScriptError, for the caller to treat as "nothing done".
    """
    replies = pipe.execute(raise_on_error=False)
    if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
        for script in scripts:
            script.sha = script.registered_client.script_load(script.script)
    for reply in replies:
        if isinstance(reply, Exception) and not isinstance(reply, redis.exceptions.NoScriptError):
            raise reply
    return replies


def _prefixed(prefix, key):
    return prefix + (key if isinstance(key, bytes) else str(key).encode())


def _glob_escape(raw):
    return b''.join(b'\\' + bytes([c]) if c in b'*?[]\\' else bytes([c]) for c in raw)
