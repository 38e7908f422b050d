"""The dashboard over real HTTP (uvicorn, werkzeug) on a real SQLite storage: its API,
credentials, CSRF, read-only mode, and mounting it in Starlette and Flask."""
import json
import subprocess
import sys
import types

import pytest

pytest.importorskip('starlette', reason="pip install 'hueyd[dashboard]'")
pytest.importorskip('uvicorn', reason="pip install 'hueyd[dashboard]'")

from dashboard_support import ThreadServer, WsgiThreadServer, csrf_token, request  # noqa: E402
from hueyd import Huey  # noqa: E402
from hueyd.dashboard import create_app  # noqa: E402
from hueyd.dashboard.security import SecretError, read_secret  # noqa: E402
from support import wait_until  # noqa: E402


@pytest.fixture
def huey(tmp_path):
    huey = Huey('dash-test', url='sqlite:///%s' % (tmp_path / 'huey.db'), events=True)
    yield huey
    huey.storage.close()


@pytest.fixture
def tasks(huey):
    @huey.task()
    def add(a, b):
        return a + b

    @huey.task()
    def fail(text):
        raise ValueError('broken <b>%s</b>' % text)

    return types.SimpleNamespace(add=add, fail=fail)


def serve(huey, **options):
    return ThreadServer(create_app(huey, 'tests.app', **options))


def post(server, path, body, token=None, **kwargs):
    """A POST as the page's script sends it: the token in the header and in the cookie."""
    headers = {'X-CSRF-Token': token, 'Cookie': 'hueyd_csrf=' + token} if token else {}
    return request(server.url + path, 'POST', body, headers, **kwargs)


def json_of(reply):
    status, _, body = reply
    assert status == 200, (status, body)
    return json.loads(body)


def test_pages_and_queue_figures(huey, tasks):
    tasks.add(1, 2)
    with serve(huey) as server:
        status, headers, page = request(server.url + '/')
        assert status == 200 and b'data-page="overview"' in page
        assert "script-src" not in headers['content-security-policy']  # default-src 'self'
        for path in ('/queue', '/dead-letters', '/events', '/task/some-id',
                     '/static/dashboard.js', '/static/dashboard.css'):
            assert request(server.url + path)[0] == 200, path
        figures = json_of(request(server.url + '/api/status'))
        assert (figures['queued'], figures['node_state'], len(figures['chart'])) == (1, True, 60)
        listed = json_of(request(server.url + '/api/messages'))
        assert [row['task'] for row in listed['queue']] == ['add']
        assert listed['queue'][0]['args'] is None  # hidden without show_args


def test_arguments_shown_only_when_asked(huey, tasks):
    tasks.add('<script>alert(1)</script>', 'x')
    with serve(huey, show_args=True) as server:
        row = json_of(request(server.url + '/api/messages'))['queue'][0]
        assert row['args'] == "'<script>alert(1)</script>', 'x'"


def test_actions_need_the_csrf_token(huey, tasks):
    result = tasks.add(1, 2)
    with serve(huey) as server:
        token = csrf_token(request(server.url + '/queue')[2])
        assert post(server, '/api/revoke', {'id': result.id})[0] == 403
        assert request(server.url + '/api/revoke', 'POST', {'id': result.id},  # not the cookie's
                       {'X-CSRF-Token': 'forged', 'Cookie': 'hueyd_csrf=' + token})[0] == 403
        assert request(server.url + '/api/revoke', 'POST', {'id': result.id},  # no cookie
                       {'X-CSRF-Token': token})[0] == 403
        assert not huey.is_revoked(result.id)
        assert json_of(post(server, '/api/revoke', {'id': result.id}, token)) == {'done': 1}
        assert huey.is_revoked(result.id)
        assert json_of(request(server.url + '/api/messages'))['queue'][0]['revoked']
        assert json_of(post(server, '/api/restore', {'id': result.id}, token)) == {'done': 1}
        assert not huey.is_revoked(result.id)
        assert post(server, '/api/restore', 'not an object', token)[0] == 400


def test_dead_letters_requeue_and_purge(huey, tasks):
    letters = [huey.add_dead_letter(huey.serialize_task(tasks.add.s(i, i)), 'test %d' % i)
               for i in range(4)]
    with serve(huey) as server:
        token = csrf_token(request(server.url + '/dead-letters')[2])
        listed = json_of(request(server.url + '/api/dead-letters'))
        assert {letter['id'] for letter in listed} == set(letters)
        assert listed[0]['task'] is None and listed[0]['reason'].startswith('test')
        assert json_of(post(server, '/api/dead-letters/requeue', {'ids': letters[:2]}, token)) \
            == {'done': 2}
        assert huey.pending_count() == 2
        assert json_of(post(server, '/api/dead-letters/purge', {'ids': [letters[2]]}, token)) \
            == {'done': 1}
        assert json_of(post(server, '/api/dead-letters/requeue', {'all': True}, token)) \
            == {'done': 1}
        assert (huey.pending_count(), huey.dead_letters()) == (3, [])


def test_task_page_has_the_error_traceback_and_events(huey, tasks):
    with serve(huey) as server:
        request(server.url + '/')  # starts the monitor, which follows events from now on
        wait_until(lambda: json_of(request(server.url + '/api/events'))['events_on'])
        result = tasks.fail('x')
        huey.execute(huey.dequeue())
        task = wait_until(lambda: (lambda t: t['events'] and t)(
            json_of(request(server.url + '/api/task/' + result.id))))
        assert (task['state'], task['task']) == ('failed', 'fail')
        assert task['error'] == "ValueError('broken <b>x</b>')"
        assert 'Traceback' in task['traceback'] and 'broken <b>x</b>' in task['traceback']
        assert [e['status'] for e in task['events']] == ['started', 'error-task']
        found = json_of(request(server.url + '/api/events?status=error-task&task=FAI'))
        assert [e['id'] for e in found['events']] == [result.id]

        done = tasks.add(2, 3)
        huey.execute(huey.dequeue())
        task = json_of(request(server.url + '/api/task/' + done.id))
        assert (task['state'], task['result']) == ('finished', '5')


def test_read_only_has_no_actions(huey):
    letter = huey.add_dead_letter(b'junk', 'test')
    with serve(huey, read_only=True) as server:
        status, _, page = request(server.url + '/dead-letters')
        assert status == 200 and '&quot;readOnly&quot;: true' in page.decode()
        token = csrf_token(page)
        for path in ('/api/revoke', '/api/dead-letters/requeue', '/api/dead-letters/purge'):
            assert post(server, path, {'all': True}, token)[0] in (404, 405), path
        assert [dead.id for dead in huey.dead_letters()] == [letter]


@pytest.mark.parametrize('secret,good,bad', [
    ('s3cret-token', 's3cret-token', ('anyone', 'wrong')),
    ('admin:pa:ss', ('admin', 'pa:ss'), ('admin', 'pa')),
])
def test_auth_guards_every_request(huey, secret, good, bad):
    with serve(huey, auth=secret) as server:
        for path in ('/', '/api/status', '/static/dashboard.js'):
            status, headers, _ = request(server.url + path)
            assert status == 401 and headers['www-authenticate'].startswith('Basic'), path
            assert request(server.url + path, auth=bad)[0] == 401, path
            assert request(server.url + path, auth=good)[0] == 200, path
        if isinstance(good, str):  # a token is also accepted as Basic's password (browsers)
            assert request(server.url + '/', auth=('any-name', good))[0] == 200
        token = csrf_token(request(server.url + '/', auth=good)[2])
        assert post(server, '/api/revoke', {'id': 'x'}, auth=good)[0] == 403  # no CSRF token
        assert post(server, '/api/revoke', {'id': 'x'}, token, auth=good)[0] == 200


def test_loopback_only_refuses_other_host_names(huey):
    with serve(huey, loopback_only=True) as server:
        assert request(server.url + '/')[0] == 200
        assert request(server.url + '/', headers={'Host': 'localhost:1'})[0] == 200
        assert request(server.url + '/', headers={'Host': 'evil.example:80'})[0] == 421


def test_secret_sources(tmp_path):
    path = tmp_path / 'secret'
    path.write_text('user:pw\n')
    assert read_secret('file:%s' % path) == 'user:pw'
    assert read_secret('env:DASH', {'DASH': ' tok '}) == 'tok'
    for source in ('tok', 'env:MISSING', 'file:%s' % (tmp_path / 'none')):
        with pytest.raises(SecretError):
            read_secret(source, {})


def test_hueyctl_refuses_a_secret_on_the_command_line(tmp_path):
    (tmp_path / 'app.py').write_text(
        'from hueyd import Huey\nhuey = Huey("x", url="sqlite:///%s")\n' % (tmp_path / 'h.db'))
    proc = subprocess.run([sys.executable, '-m', 'hueyd.cli.hueyctl', '--app', 'app.huey',
                           'dashboard', '--auth', 'hunter2'], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert 'env:VARIABLE or file:PATH' in proc.stderr


def test_mounted_in_starlette(huey):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    site = Starlette(routes=[
        Route('/', lambda request: PlainTextResponse('the site')),
        Mount('/admin/queue', app=create_app(huey, 'tests.app')),
    ])
    with ThreadServer(site) as server:
        assert request(server.url + '/')[2] == b'the site'
        status, _, page = request(server.url + '/admin/queue/')
        assert status == 200 and b'data-root="/admin/queue"' in page
        assert b'href="/admin/queue/static/dashboard.css"' in page
        assert request(server.url + '/admin/queue/static/dashboard.js')[0] == 200
        assert json_of(request(server.url + '/admin/queue/api/status'))['queue'] == 'dash-test'
        letter = huey.add_dead_letter(b'junk', 'test')
        assert json_of(post(server, '/admin/queue/api/dead-letters/purge', {'ids': [letter]},
                            csrf_token(page))) == {'done': 1}


def test_mounted_in_flask(huey):
    flask = pytest.importorskip('flask')
    a2wsgi = pytest.importorskip('a2wsgi')
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    site = flask.Flask('site')
    site.add_url_rule('/', 'home', lambda: 'the site')
    site.wsgi_app = DispatcherMiddleware(site.wsgi_app, {
        '/queue': a2wsgi.ASGIMiddleware(create_app(huey, 'tests.app'))})
    with WsgiThreadServer(site) as server:
        assert request(server.url + '/')[2] == b'the site'
        status, _, page = request(server.url + '/queue/dead-letters')
        assert status == 200 and b'data-root="/queue"' in page
        assert request(server.url + '/queue/static/dashboard.js')[0] == 200
        assert json_of(request(server.url + '/queue/api/status'))['queue'] == 'dash-test'
        assert post(server, '/queue/api/revoke', {'id': 'x'})[0] == 403
        assert json_of(post(server, '/queue/api/revoke', {'id': 'x'}, csrf_token(page))) == \
            {'done': 1}
