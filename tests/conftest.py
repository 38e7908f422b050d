"""Shared fixtures. Storage fixtures run each test against every backend."""
import uuid

import pytest

from support import RedisServer, make_storage

STORAGE_KINDS = ['memory', 'sqlite', 'redis']


@pytest.fixture(scope='session')
def redis_server():
    """One real redis-server for the whole session; tests keep apart by queue name."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def queue_name():
    return 'test-' + uuid.uuid4().hex


@pytest.fixture(params=STORAGE_KINDS)
def storage_url(request, tmp_path):
    if request.param == 'memory':
        return 'memory://'
    if request.param == 'sqlite':
        return f'sqlite:///{tmp_path}/huey.db'
    # Looked up lazily so memory and sqlite runs never start redis-server.
    return request.getfixturevalue('redis_server').url


@pytest.fixture
def storage(storage_url, queue_name):
    storage = make_storage(storage_url, queue_name)
    yield storage
    storage.flush_all()
    storage.close()
