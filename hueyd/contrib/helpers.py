"""huey's ``huey.contrib.helpers``: a lock that ``value`` holders may take at once.

``RedisSemaphore`` keeps its holders in a Redis sorted set scored by when each
last renewed; a holder that stops renewing for ``timeout`` seconds (its worker
died) loses its place. Times come from the Redis server, so every node agrees.
"""
import functools
import logging
import threading
import uuid

from hueyd.exceptions import ConfigurationError, TaskLockedException
from hueyd.storage.redis import LUA_NOW, RedisStorage

logger = logging.getLogger('hueyd.contrib.helpers')

DEFAULT_TIMEOUT = 300.0  # seconds a holder keeps its place without renewing

# Both scripts: KEYS[1] the holders; ARGV[1] a holder, ARGV[2] the timeout. They first
# drop the holders that did not renew within the timeout (times from the Redis server).
DROP_EXPIRED = LUA_NOW + """
redis.call('zremrangebyscore', KEYS[1], '-inf', now - tonumber(ARGV[2]))
"""
# ARGV[3]: how many may hold. 1 if ARGV[1] holds a place now, else 0.
TAKE = DROP_EXPIRED + """
local holding = redis.call('zscore', KEYS[1], ARGV[1])
if not holding and redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('zadd', KEYS[1], now, ARGV[1])
return 1
"""
# 1 if ARGV[1] still held its place (now renewed), else 0.
RENEW = DROP_EXPIRED + """
if not redis.call('zscore', KEYS[1], ARGV[1]) then
    return 0
end
redis.call('zadd', KEYS[1], now, ARGV[1])
return 1
"""


class RedisSemaphore:
    """Up to ``value`` holders of ``name`` at once, across every process using ``huey``."""

    def __init__(self, huey, name, value=1, timeout=None):
        self.huey = huey
        self.name = name
        self.value = value
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        if self.timeout <= 0:
            raise ValueError('RedisSemaphore(%r, timeout=%r): the timeout is how long a holder '
                             'keeps its place without renewing; it must be > 0' % (name, timeout))
        self.key = 'hueyd.%s.semaphore.%s' % (huey.name, name)
        self.scripts = None  # registered on first use: the storage may be swapped before

    def conn(self):
        storage = self.huey.storage
        if not isinstance(storage, RedisStorage):
            raise ConfigurationError(
                'RedisSemaphore(%r) needs a Redis storage (RedisHuey, Huey(url="redis://...")); '
                '%r stores in %s' % (self.name, self.huey.name, type(storage).__name__))
        if self.scripts is None:
            self.scripts = (storage.conn.register_script(TAKE),
                            storage.conn.register_script(RENEW))
        return storage.conn

    def acquire(self, name=None):
        """Take a place as ``name`` (a new one by default); the name, or None when full."""
        self.conn()
        name = name or uuid.uuid4().hex
        taken = self.scripts[0](keys=[self.key], args=[name, self.timeout, self.value])
        return name if taken else None

    def renew(self, name):
        """Keep ``name``'s place for another ``timeout``; False if it had lost it."""
        self.conn()
        return bool(self.scripts[1](keys=[self.key], args=[name, self.timeout]))

    def release(self, name):
        """Give ``name``'s place back; 1 if it held one, else 0."""
        return self.conn().zrem(self.key, name)

    def keep_renewing(self, name, stop):
        """Renew ``name`` every third of ``timeout`` until ``stop`` is set; a renewal that
        fails is logged and tried again (the place is kept for a whole ``timeout``)."""
        while not stop.wait(self.timeout / 3.0):
            try:
                if not self.renew(name):
                    logger.error('semaphore %r: %s lost its place (not renewed within %ss); '
                                 'another holder may now run beside it', self.name, name,
                                 self.timeout)
                    return
            except self.huey.storage.transient_errors as exc:
                logger.warning('semaphore %r: cannot renew %s (%s); retrying', self.name, name, exc)


def lock_task_semaphore(huey, lock_name, value=1, timeout=None):
    """Decorator: at most ``value`` runs of the task at once; a run that finds every place
    taken raises TaskLockedException (retried as the task's ``retries`` say). The place is
    renewed while the task runs, so ``timeout`` only bounds how long a dead worker holds it.
    """
    semaphore = RedisSemaphore(huey, lock_name, value, timeout)

    def decorator(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            name = semaphore.acquire()
            if name is None:
                raise TaskLockedException('unable to acquire lock %s: its %d place(s) are '
                                          'taken' % (lock_name, value))
            stop = threading.Event()
            renewer = threading.Thread(target=semaphore.keep_renewing, args=(name, stop),
                                       daemon=True)
            renewer.start()
            try:
                return fn(*args, **kwargs)
            finally:
                stop.set()
                renewer.join()
                semaphore.release(name)
        return inner
    return decorator
