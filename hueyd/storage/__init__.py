"""Storage backends and ``storage_from_url``."""
from urllib.parse import parse_qsl, unquote, urlsplit

from hueyd.exceptions import ConfigurationError
from hueyd.storage.base import BaseStorage
from hueyd.storage.blackhole import BlackHoleStorage
from hueyd.storage.file import FileStorage
from hueyd.storage.memory import MemoryStorage
from hueyd.storage.postgres import PostgresStorage
from hueyd.storage.redis import (PriorityRedisExpireStorage, PriorityRedisStorage,
                                 RedisExpireStorage, RedisStorage)
from hueyd.storage import redis_ha
# cysqlite: the driver module, or None when it is not installed (huey's storage.cysqlite).
from hueyd.storage.sqlite import CySqliteStorage, SqliteStorage, cysqlite
from hueyd.storage.urls import parse_value, take_options

__all__ = ['BaseStorage', 'BlackHoleStorage', 'CySqliteStorage', 'FileStorage', 'MemoryStorage',
           'PostgresStorage', 'PriorityRedisExpireStorage', 'PriorityRedisStorage',
           'RedisExpireStorage', 'RedisStorage', 'SqliteStorage', 'cysqlite', 'storage_from_url']

URL_EXAMPLES = (
    'redis://[:password@]host:6379/0',
    'rediss://[:password@]host:6379/0 (TLS)',
    'unix:///path/to/redis.sock?db=0',
    'redis+sentinel://[:password@]host:26379,host2:26379/service_name/0 (or rediss+sentinel)',
    'redis+cluster://[:password@]host:7000,host2:7000 (or rediss+cluster)',
    'sqlite:///relative/path/huey.db or sqlite:////absolute/path/huey.db',
    'file:///absolute/path/to/folder (FileStorage)',
    'postgresql://user:password@host:5432/dbname (or postgres://)',
    'memory://',
)


def storage_from_url(url):
    """Return ``(storage_class, kwargs)`` for a storage URL.

    Redis URLs are handed to redis-py (``url=url``), but for the options that are
    RedisStorage's own (``?wait_replicas=1&read_timeout=5``). For SQLite,
    three slashes start a path relative to the working directory and four an
    absolute one. A file URL names a folder by its absolute path, percent-encoded
    as file URLs are. Query options (``?journal_mode=wal&timeout=5``,
    ``?levels=1``) become keyword arguments, converted to bool, int or float
    when they read as one. A PostgreSQL URL goes to libpq as the ``dsn``, but for
    the options that are PostgresStorage's own (``?read_timeout=5&table_prefix=x``).
    """
    parts = urlsplit(url or '')
    scheme = parts.scheme.lower()
    if scheme in redis_ha.SCHEMES + redis_ha.SENTINEL_SCHEMES + redis_ha.CLUSTER_SCHEMES:
        return RedisStorage, redis_ha.url_kwargs(url)
    if scheme == 'memory':
        return MemoryStorage, {}
    if scheme in ('postgresql', 'postgres'):
        return _postgres_kwargs(url)
    if scheme in ('sqlite', 'file') and not parts.netloc and parts.path.startswith('/') \
            and parts.path != '/':
        kwargs = {key: parse_value(value) for key, value in parse_qsl(parts.query)}
        if scheme == 'file':
            return FileStorage, {**kwargs, 'path': unquote(parts.path)}
        return SqliteStorage, {**kwargs, 'filename': parts.path[1:]}
    raise ConfigurationError('unsupported storage URL %r; use one of: %s'
                             % (url, '; '.join(URL_EXAMPLES)))


POSTGRES_OPTIONS = ('blocking', 'read_timeout', 'table_prefix', 'create_tables')


def _postgres_kwargs(url):
    # The options that are not PostgresStorage's (sslmode, connect_timeout, ...) are libpq's.
    options, dsn = take_options(url, POSTGRES_OPTIONS)
    return PostgresStorage, {**{key: parse_value(value) for key, value in options.items()},
                             'dsn': dsn}
