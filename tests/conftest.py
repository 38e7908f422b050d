"""Shared fixtures. Storage fixtures run each test against every backend."""
import uuid

import pytest

from redis_ha_support import Cluster, Sentinels
from support import PostgresServer, RedisServer, make_huey, make_storage

# 'sentinel' and 'cluster': RedisStorage on a redis+sentinel:// and a redis+cluster:// URL.
STORAGE_KINDS = ['memory', 'sqlite', 'file', 'redis', 'postgres', 'sql', 'sentinel', 'cluster']
# Storages that several instances (and processes) can share; memory is per instance.
SHARED_STORAGE_KINDS = ['sqlite', 'file', 'redis', 'postgres', 'sql', 'sentinel', 'cluster']
# The kinds that are RedisStorage on each kind of Redis deployment.
REDIS_KINDS = ['redis', 'sentinel', 'cluster']

# The shared sentinels wait this long before they call a silent master down: a master
# starved of CPU for half a second (the failover tests' setting) must not fail over
# under every other test.
SHARED_DOWN_AFTER_MS = 10000


@pytest.fixture(scope='session')
def redis_server():
    """One real redis-server for the whole session; tests keep apart by queue name."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope='session')
def postgres_server():
    """One real PostgreSQL for the whole session, started on first use; tests keep apart
    by queue name."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope='session')
def redis_cluster():
    """One Redis Cluster (three masters) for the whole session, started on first use; tests
    keep apart by queue name, and none may fail a node over or move a slot (those start a
    tests/redis_ha_support.Cluster of their own)."""
    with Cluster() as deployment:
        yield deployment


@pytest.fixture(scope='session')
def redis_sentinels():
    """One master, its replica and three sentinels for the whole session, started on first
    use; tests keep apart by queue name, and none may stop or kill a server (those start a
    tests/redis_ha_support.Sentinels of their own)."""
    with Sentinels(down_after_ms=SHARED_DOWN_AFTER_MS) as deployment:
        yield deployment


@pytest.fixture
def queue_name():
    return 'test_' + uuid.uuid4().hex


def url_for(kind, request, tmp_path):
    if kind == 'memory':
        return 'memory://'
    if kind == 'sqlite':
        return f'sqlite:///{tmp_path}/huey.db'
    if kind == 'file':
        return (tmp_path / 'files').as_uri()
    if kind == 'sql':  # no URL names SqlStorage: support.make_storage reads this one
        return f'peewee:{tmp_path}/sql.db'
    # Looked up lazily so memory, sqlite and file runs never start a server.
    if kind == 'postgres':
        return request.getfixturevalue('postgres_server').dsn
    if kind == 'sentinel':
        return request.getfixturevalue('redis_sentinels').url
    if kind == 'cluster':
        return request.getfixturevalue('redis_cluster').url
    if kind == 'redis':
        return request.getfixturevalue('redis_server').url
    raise ValueError('no storage kind %r' % kind)


@pytest.fixture(params=STORAGE_KINDS)
def storage_url(request, tmp_path):
    return url_for(request.param, request, tmp_path)


@pytest.fixture
def storage(storage_url, queue_name):
    storage = make_storage(storage_url, queue_name)
    yield storage
    storage.flush_all()
    storage.close()


@pytest.fixture(params=SHARED_STORAGE_KINDS)
def shared_storage_url(request, tmp_path):
    """Like storage_url, for tests about what separate instances share."""
    return url_for(request.param, request, tmp_path)


@pytest.fixture
def shared_storage(shared_storage_url, queue_name):
    storage = make_storage(shared_storage_url, queue_name)
    yield storage
    storage.flush_all()
    storage.close()


@pytest.fixture
def huey(storage_url, queue_name):
    """A Huey on each storage in turn, emptied afterwards."""
    huey = make_huey(queue_name, storage_url)
    yield huey
    huey.flush()
    huey.storage.close()
