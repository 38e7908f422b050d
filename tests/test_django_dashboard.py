"""hueyd's dashboard in the Django test project (tests/django_project, DJANGO_DASHBOARD=1),
served by a real server process: uvicorn running Django's ASGI app (proj/asgi.py), and
Django's runserver (WSGI). In the admin (hueyd.contrib.djhuey.dashboard) behind Django's
login and permissions, and beside Django at /queue by an ASGI router with a token."""
import http.cookiejar
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

pytest.importorskip('starlette', reason="pip install 'hueyd[dashboard]'")
pytest.importorskip('uvicorn', reason="pip install 'hueyd[dashboard]'")

from daemon_harness import _clean_environ  # noqa: E402
from dashboard_support import csrf_token, free_port  # noqa: E402
from dashboard_support import request as http_request  # noqa: E402 (pytest's fixture is request)
from support import wait_until  # noqa: E402
from test_django import PROJECT, manage  # noqa: E402

DASHBOARD = '/admin/hueyd_dashboard/dashboard/'
TOKEN = 'queue-token'
ENV = {'DJANGO_DASHBOARD': '1'}

# The users, and a queued task: its id is printed.
SETUP = '''
from django.contrib.auth.models import Permission, User
from shop.tasks import add
User.objects.create_superuser('boss', password='boss-pw')
viewer = User.objects.create_user('viewer', password='viewer-pw', is_staff=True)
viewer.user_permissions.add(Permission.objects.get(codename='view_dashboard'))
User.objects.create_user('customer', password='customer-pw')
print(add(1, 2).id)
'''

SERVERS = {
    'asgi': [sys.executable, '-m', 'uvicorn', 'proj.asgi:application', '--log-level', 'warning',
             '--port'],
    'wsgi': [sys.executable, 'manage.py', 'runserver', '--noreload', '--skip-checks'],
}


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    """The project's files, made once: migrated, its users made, a task queued."""
    directory = tmp_path_factory.mktemp('dashboard_project')
    for command in (('migrate', '-v', '0'), ('shell', '-v', '0', '-c', SETUP)):
        done = manage(directory, *command, **ENV)
        assert done.returncode == 0, done.stderr
    return directory, done.stdout.strip()


@pytest.fixture
def project(tmp_path, prepared):
    """A copy of the prepared files in tmp_path; returns the queued task's id."""
    directory, task_id = prepared
    for name in ('db.sqlite3', 'huey.db'):
        shutil.copy(directory / name, tmp_path / name)
    return task_id


@pytest.fixture(params=sorted(SERVERS))
def site(request, tmp_path, project):
    """The project served by ``request.param``'s server; yields its URL."""
    port = free_port()
    argv = SERVERS[request.param] + [str(port) if request.param == 'asgi'
                                     else '127.0.0.1:%d' % port]
    proc = subprocess.Popen(argv, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**_clean_environ(), **ENV, 'DJANGO_TEST_DIR': str(tmp_path),
                                 'DJANGO_SETTINGS_MODULE': 'proj.settings',
                                 'QUEUE_DASHBOARD_AUTH': TOKEN})
    url = 'http://127.0.0.1:%d' % port

    def answers():
        if proc.poll() is not None:
            raise AssertionError('%s exited: %s' % (request.param, proc.stderr.read().decode()))
        try:
            return http_request(url + '/admin/login/')[0]
        except OSError:
            return False

    try:
        wait_until(answers, timeout=30, interval=0.1, message='%s did not answer' % request.param)
        yield request.param, url, project
    finally:
        proc.terminate()
        proc.wait(10)


class Browser:
    """Requests with a cookie jar, following redirects: a Django session, as a browser has."""

    def __init__(self, url):
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open(self, path, data=None, headers=None):
        """``(status, the URL it ended at, body)``."""
        req = urllib.request.Request(self.url + path, data, headers or {})
        try:
            with self.opener.open(req, timeout=10) as reply:
                return reply.status, reply.url[len(self.url):], reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.url[len(self.url):], exc.read()

    def cookie(self, name):
        return next((cookie.value for cookie in self.jar if cookie.name == name), None)

    def login(self, user, password):
        """Through the admin's login form, as a person does."""
        self.open('/admin/login/')
        form = {'username': user, 'password': password, 'next': '/admin/',
                'csrfmiddlewaretoken': self.cookie('csrftoken')}
        return self.open('/admin/login/', urllib.parse.urlencode(form).encode())

    def json(self, path):
        status, _, body = self.open(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def act(self, path, body, token):
        """A dashboard action, as its script sends it: the page's CSRF token in a header."""
        headers = {'Content-Type': 'application/json'}
        if token:
            headers['X-CSRF-Token'] = token
        return self.open(path, json.dumps(body).encode(), headers)[0]


def test_the_dashboard_in_djangos_admin(site):
    kind, url, task_id = site
    anonymous = Browser(url)
    for path in (DASHBOARD, DASHBOARD + 'api/status', DASHBOARD + 'static/dashboard.js'):
        status, landed, _ = anonymous.open(path)
        assert landed.startswith('/admin/login/?next='), (path, status, landed)
    customer = Browser(url)  # not staff: the admin refuses the login itself
    customer.login('customer', 'customer-pw')
    assert customer.open(DASHBOARD)[1].startswith('/admin/login/')

    boss = Browser(url)
    status, landed, index = boss.login('boss', 'boss-pw')
    assert (status, landed) == (200, '/admin/')
    assert b'<a href="%s"' % DASHBOARD.encode() in index and b'Task queue' in index
    status, _, page = boss.open(DASHBOARD)
    assert status == 200 and b'data-root="%s"' % DASHBOARD.rstrip('/').encode() in page
    assert boss.open(DASHBOARD + 'static/dashboard.css')[0] == 200
    figures = boss.json(DASHBOARD + 'api/status')
    assert (figures['queue'], figures['queued']) == ('shop', 1)
    [queued] = boss.json(DASHBOARD + 'api/messages')['queue']
    assert (queued['id'], queued['task'], queued['revoked']) == (task_id, 'add', False)

    # Django's CSRF check is off for the dashboard: its own token guards every action.
    token = csrf_token(page)
    assert boss.act(DASHBOARD + 'api/revoke', {'id': task_id}, None) == 403
    assert boss.act(DASHBOARD + 'api/revoke', {'id': task_id}, 'forged') == 403
    assert not boss.json(DASHBOARD + 'api/task/' + task_id)['revoked']
    assert boss.act(DASHBOARD + 'api/revoke', {'id': task_id}, token) == 200
    assert boss.json(DASHBOARD + 'api/messages')['queue'][0]['revoked']

    # Staff with the view permission only: looks, does not act.
    viewer = Browser(url)
    _, _, index = viewer.login('viewer', 'viewer-pw')
    assert b'<a href="%s"' % DASHBOARD.encode() in index
    status, _, page = viewer.open(DASHBOARD)
    assert status == 200
    assert viewer.act(DASHBOARD + 'api/restore', {'id': task_id}, csrf_token(page)) == 403
    assert boss.json(DASHBOARD + 'api/messages')['queue'][0]['revoked']

    if kind == 'asgi':  # proj/asgi.py also mounts it at /queue, beside Django, with a token
        assert http_request(url + '/queue/')[0] == 401
        status, _, page = http_request(url + '/queue/', auth=TOKEN)
        assert status == 200 and b'data-root="/queue"' in page
