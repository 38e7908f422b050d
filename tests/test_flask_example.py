"""examples/flask_app driven with Flask's test client: in immediate mode, then against a
real daemon running its tasks."""
import os
import sys
from pathlib import Path

import pytest

from daemon_harness import Daemon
from ops_support import Project

EXAMPLE = Path(__file__).resolve().parent.parent / 'examples' / 'flask_app'


@pytest.fixture(scope='module')
def example(tmp_path_factory):
    """The example's modules, imported as Flask would, with their queue in a temporary file."""
    directory = tmp_path_factory.mktemp('flask')
    db = str(directory / 'huey.db')
    saved = os.environ.get('HUEY_DB'), sys.dont_write_bytecode
    os.environ['HUEY_DB'], sys.dont_write_bytecode = db, True
    sys.path.insert(0, str(EXAMPLE))
    try:
        import tasks
        import web
    finally:
        sys.path.remove(str(EXAMPLE))
        sys.dont_write_bytecode = saved[1]
        if saved[0] is None:
            os.environ.pop('HUEY_DB')
        else:
            os.environ['HUEY_DB'] = saved[0]
    yield Project(directory, {'HUEY_DB': db}), tasks, web.app.test_client()
    tasks.huey.flush()
    tasks.huey.storage.close()
    for name in ('tasks', 'web'):
        sys.modules.pop(name, None)


def enqueue(client, **form):
    reply = client.post('/tasks', json=form)
    assert reply.status_code == 202, reply.get_data(as_text=True)
    return reply.get_json()['url']


def state(client, url):
    return client.get(url + '?format=json').get_json()


def test_views_enqueue_and_show_results_in_immediate_mode(example):
    _, tasks, client = example
    tasks.huey.immediate = True
    try:
        url = enqueue(client, task='count_words', text='the quick brown fox')
        assert state(client, url) == {'id': url.rsplit('/', 1)[1], 'state': 'done',
                                      'result': {'words': 4, 'longest': 'quick'}, 'error': None}
        failed = state(client, enqueue(client, task='divide', a=1, b=0))
        assert failed['state'] == 'failed' and 'ZeroDivisionError' in failed['error']
        page = client.post('/tasks', data={'task': 'slow_square', 'n': '3', 'seconds': '0'},
                           follow_redirects=True)
        assert page.status_code == 200 and '<strong>done</strong>' in page.get_data(as_text=True)
        assert client.post('/tasks', json={'task': 'nothing'}).status_code == 400
    finally:
        tasks.huey.immediate = False


def test_views_enqueue_for_a_real_daemon_and_show_its_results(example):
    project, tasks, client = example
    daemon = Daemon(project, ['-w', '2'], app_path='tasks.huey', cwd=str(EXAMPLE))
    daemon.start()
    try:
        daemon.wait_ready(1)
        square = enqueue(client, task='slow_square', n=7, seconds=0.3)
        words = enqueue(client, task='count_words', text='hello background world')
        failed = enqueue(client, task='divide', a=1, b=0)
        done = daemon.wait_until(lambda: (lambda s: s['state'] == 'done' and s)(
            state(client, square)))
        assert done['result'] == 49
        assert daemon.wait_until(lambda: state(client, words)['state'] == 'done')
        assert state(client, words)['result'] == {'words': 3, 'longest': 'background'}
        daemon.wait_until(lambda: state(client, failed)['state'] == 'failed')
        page = client.get(square).get_data(as_text=True)
        assert '<strong>done</strong>' in page and '49' in page
        assert tasks.huey.pending_count() == 0
    finally:
        daemon.stop()
