"""Where RedisStorage's connections go: one Redis server, the master a Sentinel names, or
the master of a Redis Cluster that serves the queue's hash slot.

URLs (the query takes redis-py's connection options, and hueyd's: URL_OPTIONS)::

    redis+sentinel://[[user]:password@]host:26379[,host:26379...]/service_name[/db]
    rediss+sentinel://...   TLS, to the master and to the sentinels
    redis+cluster://[[user]:password@]host:7000[,host:7001...]
    rediss+cluster://...    TLS

A password in the URL is the master's (and the cluster nodes'); sentinels that have a
password of their own take ``?sentinel_password=`` (or ``sentinel_kwargs=`` in Python).

Every key of a queue carries one hash tag in a cluster, so a queue lives in one slot
and therefore on one master at a time. RedisStorage talks to that master through a
plain connection pool (redis-py's cluster pipelines refuse EVALSHA, BRPOPLPUSH and
PUBLISH, which the claims and the write batch need): a connection asks the cluster
which master serves the slot when it connects, and a redirection (MOVED, ASK) or a
cluster outage drops it, as a ConnectionError the storage's callers retry. Sentinel
connections are redis-py's, which ask the sentinels the same way. Either logs once when
the master changed (a failover) and it reconnected. So a cluster storage's pool, lent to
another storage (``connection_pool=``), serves only the queues whose keys are in its slot.
"""
import logging
import threading
from typing import NamedTuple, Optional
from urllib.parse import unquote, urlsplit

from hueyd.exceptions import ConfigurationError
from hueyd.storage.urls import parse_value, take_options

try:
    import redis
    from redis.crc import key_slot
    from redis.exceptions import AskError, ClusterDownError, TryAgainError
    from redis.sentinel import (Sentinel, SentinelConnectionPool, SentinelManagedConnection,
                                SentinelManagedSSLConnection)
except ImportError:  # pragma: no cover - redis is a hard dependency of hueyd
    redis = None

logger = logging.getLogger('hueyd')

SCHEMES = ('redis', 'rediss', 'unix')
SENTINEL_SCHEMES = ('redis+sentinel', 'rediss+sentinel')
CLUSTER_SCHEMES = ('redis+cluster', 'rediss+cluster')
# Query options that are RedisStorage's own, not redis-py's.
URL_OPTIONS = ('blocking', 'read_timeout', 'wait_replicas', 'wait_timeout', 'sentinel_password')

# A master that stops answering (a partition: no reset reaches us) costs at most this
# long beyond the longest wait a command asks for; a connect, at most CONNECT_TIMEOUT.
SOCKET_MARGIN = 2.0
CONNECT_TIMEOUT = 2.0


def url_kwargs(url):
    """RedisStorage's keyword arguments for a Redis URL: ``url``, and hueyd's own
    options taken out of its query (``?wait_replicas=1&read_timeout=5``)."""
    options, url = take_options(url, URL_OPTIONS)
    kwargs = {key: value if key == 'sentinel_password' else parse_value(value)
              for key, value in options.items()}
    if 'blocking' in kwargs:
        kwargs['blocking'] = bool(kwargs['blocking'])  # '0' counts as off too
    return {**kwargs, 'url': url}


class NotReplicated(redis.RedisError if redis else Exception):
    """A write reached the master, but fewer replicas than ``wait_replicas`` confirmed it
    within ``wait_timeout``: a failover before they have it would lose it."""


class Reach(NamedTuple):
    """The connection pool of a RedisStorage, and what it reaches."""
    pool: object
    cluster: bool = False
    #: For people (``location()``); None: read it from the pool's connection options.
    where: Optional[str] = None


def connect(name, url=None, sentinels=None, service_name=None, sentinel_kwargs=None,
            sentinel_password=None, cluster=False, startup_nodes=None, longest_wait=1.0,
            **params):
    """The Reach of a storage for queue ``name`` (see the module's docstring).

    ``longest_wait`` is the longest a command blocks on purpose (BRPOP, WAIT): every
    connection's socket timeout is set beyond it, so a silent server ends a blocking
    claim with an error instead of hanging, and a wait never times out early.
    """
    scheme = urlsplit(url).scheme.lower() if url else ''
    if scheme in SENTINEL_SCHEMES:
        sentinels, path = _parse_ha_url(url, params, 26379)
        service_name, _, db = path.partition('/')
        service_name = unquote(service_name)
        if db:
            params['db'] = _int(db, url)
    elif scheme in CLUSTER_SCHEMES:
        startup_nodes, _ = _parse_ha_url(url, params, 6379)
        cluster = True
    elif url:
        if sentinels or cluster or startup_nodes:
            raise ConfigurationError('a redis:// URL names one server: for Sentinel or '
                                     'Cluster use redis+sentinel:// or redis+cluster://')
        try:
            params.update(redis.connection.parse_url(url))  # as from_url: the URL's win
        except ValueError as exc:
            raise ConfigurationError('bad Redis URL %r: %s' % (url, exc)) from None
    if bool(sentinels) != bool(service_name):
        raise ConfigurationError('Redis Sentinel needs both sentinels=[(host, port), ...] '
                                 'and service_name=')
    if sentinels and cluster:
        raise ConfigurationError('a Redis deployment is either Sentinel or Cluster, not both')
    _set_timeouts(params, longest_wait)
    if sentinels:
        if sentinel_password is not None:
            sentinel_kwargs = {**(sentinel_kwargs or {}), 'password': sentinel_password}
        return _sentinel(sentinels, service_name, sentinel_kwargs, params)
    if cluster:
        if not startup_nodes:
            startup_nodes = [(params.pop('host', 'localhost'), params.pop('port', 6379))]
        return _cluster(name, startup_nodes, params)
    if 'unix_socket_path' in params:
        params['path'] = params.pop('unix_socket_path')
        params['connection_class'] = redis.UnixDomainSocketConnection
        params.pop('host', None)
        params.pop('port', None)
    return Reach(redis.ConnectionPool(**params))


def borrowed(name, pool):
    """The Reach of a storage for queue ``name`` on a connection pool it was given
    (``connection_pool=``).

    A pool that another storage made for a Redis Cluster reaches the master of that
    storage's slot only: it serves the queues whose keys are in that slot, with their
    keys' hash tags, and no other (their commands would be redirected, MOVED, forever,
    or land in keys of the wrong layout that no storage made from a URL reads).
    """
    slot_master = pool.connection_kwargs.get('slot_master')
    if not isinstance(slot_master, SlotMaster):
        return Reach(pool)  # one server, or a Sentinel's master: any queue
    slot = key_slot(hash_tag(name).encode())
    if slot != slot_master.slot:
        raise ConfigurationError(
            'this connection pool reaches the Redis Cluster master of slot %d only, and the '
            'keys of queue %r are in slot %d: give the storage the redis+cluster:// URL (or '
            'cluster=True and startup_nodes) instead' % (slot_master.slot, name, slot))
    return Reach(pool, cluster=True, where=_cluster_where(slot_master.startup_nodes, name, slot))


def _parse_ha_url(url, params, default_port):
    """The (host, port) list and the path of a Sentinel or Cluster URL; its other parts
    (user, password, TLS, query options) go into ``params`` as redis-py reads them."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition('@')
    nodes = []
    for node in hosts.split(','):
        host, colon, port = node.rpartition(':')
        if not colon or ']' in port:  # no port: a bare name, or a bare [IPv6 address]
            host, port = node, default_port
        nodes.append((host.strip('[]'), _int(port, url)))
    if not all(host for host, _ in nodes):
        raise ConfigurationError('bad Redis URL %r: name every host (host:port,host:port)'
                                 % url)
    tls = parts.scheme.lower().startswith('rediss')
    # redis-py reads the rest as it reads any URL of one server.
    one = '%s://%s%slocalhost?%s' % ('rediss' if tls else 'redis', userinfo, '@' * bool(userinfo),
                                     parts.query)
    options = redis.connection.parse_url(one)
    for key in ('host', 'port', 'connection_class'):
        options.pop(key, None)
    params.update(options, **({'ssl': True} if tls else {}))
    return nodes, parts.path.strip('/')


def _int(text, url):
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError('bad Redis URL %r: %r is not a number' % (url, text)) from None


def _set_timeouts(params, longest_wait):
    params.setdefault('socket_connect_timeout', CONNECT_TIMEOUT)
    params.setdefault('socket_timeout', longest_wait + SOCKET_MARGIN)
    if params['socket_timeout'] is None or params['socket_timeout'] <= longest_wait:
        raise ConfigurationError(
            'socket_timeout=%s would end blocking reads of %ss early (and a retry would '
            'turn them into polling): make it longer, or leave it out'
            % (params['socket_timeout'], longest_wait))


class MasterWatch:
    """The address of the master a pool's connections reach, logged when it changes."""

    def __init__(self, what):
        self.what = what
        self.address = None
        self.lock = threading.Lock()

    def connected(self, address):
        with self.lock:
            previous, self.address = self.address, tuple(address)
        if previous is not None and previous != self.address:
            logger.warning('the Redis master of %s moved from %s:%s to %s:%s (a failover); '
                           'reconnected', self.what, *previous, *self.address)


# --- Sentinel -------------------------------------------------------------------------

class WatchedSentinelConnection(SentinelManagedConnection if redis else object):
    def __init__(self, watch, **kwargs):
        self.watch = watch
        super().__init__(**kwargs)

    def connect_to(self, address):
        super().connect_to(address)
        self.watch.connected(address)


class WatchedSentinelSSLConnection(WatchedSentinelConnection,
                                   SentinelManagedSSLConnection if redis else object):
    pass


def _sentinel(sentinels, service_name, sentinel_kwargs, params):
    # The sentinels answer at once: short timeouts, and the master's TLS settings.
    reach_sentinels = {key: value for key, value in params.items() if key.startswith('ssl')}
    reach_sentinels.update(socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT)
    manager = Sentinel([tuple(node) for node in sentinels],
                       sentinel_kwargs={**reach_sentinels, **(sentinel_kwargs or {})})
    params['connection_class'] = (WatchedSentinelSSLConnection if params.pop('ssl', False)
                                  else WatchedSentinelConnection)
    where = 'Sentinel service %r' % service_name
    pool = SentinelConnectionPool(service_name, manager, watch=MasterWatch(where), **params)
    return Reach(pool, where='%s (%s)/%s' % (where, ','.join('%s:%s' % tuple(node)
                                                          for node in sentinels),
                                          params.get('db', 0)))


# --- Cluster --------------------------------------------------------------------------

class SlotMaster:
    """Finds the master that serves one hash slot, asking the nodes it knows (CLUSTER SLOTS)."""

    def __init__(self, slot, nodes, params):
        self.slot = slot
        self.startup_nodes = [tuple(node) for node in nodes]
        self.nodes = list(self.startup_nodes)  # then those learnt
        self.params = params

    def address(self):
        errors = []
        for host, port in list(self.nodes):
            client = redis.Redis(host, port, **self.params)
            try:
                ranges = client.execute_command('CLUSTER SLOTS')
            except redis.RedisError as exc:
                errors.append('%s:%s: %s' % (host, port, exc))
                continue
            finally:
                client.close()
            found = None
            for start, end, *served_by in ranges:
                for node in served_by:
                    # An empty host is the node we asked (it does not know its own name).
                    learnt = (_text(node[0]) or host, int(node[1]))
                    if learnt not in self.nodes:
                        self.nodes.append(learnt)
                    if start <= self.slot <= end and node is served_by[0]:
                        found = learnt
            if found:
                return found
            errors.append('%s:%s: no master serves slot %d' % (host, port, self.slot))
        raise redis.ConnectionError('no Redis Cluster node named the master of slot %d (%s)'
                                    % (self.slot, '; '.join(errors)))


class SlotConnection(redis.Connection if redis else object):
    """A connection to whichever master serves a slot when it connects."""

    def __init__(self, slot_master, watch, **kwargs):
        self.slot_master = slot_master
        self.watch = watch
        super().__init__(**kwargs)

    def connect(self):
        if self._sock is None:
            self.host, self.port = self.slot_master.address()
            super().connect()
            self.watch.connected((self.host, self.port))

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except (AskError, TryAgainError, ClusterDownError) as exc:  # MOVED is an AskError
            # The slot moved (or is moving, or has no master): connect again, to
            # wherever it is then; until then the caller sees a transient error.
            self.disconnect()
            raise redis.ConnectionError('Redis Cluster, slot %d: %s'
                                        % (self.slot_master.slot, exc)) from exc


class SlotSSLConnection(SlotConnection, redis.SSLConnection if redis else object):
    pass


def _cluster(name, startup_nodes, params):
    if params.pop('db', 0):
        raise ConfigurationError('a Redis Cluster has only database 0')
    tag = hash_tag(name)
    slot = key_slot(tag.encode())
    discovery = {key: value for key, value in params.items()
                 if key.startswith(('ssl', 'socket_')) or key in ('username', 'password')}
    params['connection_class'] = SlotSSLConnection if params.pop('ssl', False) else SlotConnection
    pool = redis.ConnectionPool(slot_master=SlotMaster(slot, startup_nodes, discovery),
                                watch=MasterWatch('queue %r (slot %d)' % (name, slot)), **params)
    return Reach(pool, cluster=True, where=_cluster_where(startup_nodes, name, slot))


def _cluster_where(startup_nodes, name, slot):
    return 'Redis Cluster (%s), queue %r (slot %d)' % (
        ','.join('%s:%s' % tuple(node) for node in startup_nodes), name, slot)


def hash_tag(name):
    """The part of a queue's keys that Redis Cluster hashes: ``{name}``."""
    return '{%s}' % name


def _text(value):
    return value.decode() if isinstance(value, bytes) else value
