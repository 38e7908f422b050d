"""Helpers of the dashboard tests: a real HTTP server around an app, the system's
Chromium driven by Selenium, and plain HTTP requests."""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from support import wait_until

# Debian's package names: the browser and its WebDriver (CI installs them when missing).
BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')
DRIVERS = ('chromedriver', '/usr/lib/chromium/chromedriver')
INSTALL = 'apt-get install chromium chromium-driver'


def find_browser():
    """``(browser, driver)`` paths, or skip the test saying what to install.

    Selenium gets both paths, so its manager never tries to download a browser."""
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = next(filter(None, map(shutil.which, DRIVERS)), None)
    if browser is None or driver is None:
        pytest.skip('no headless Chromium and chromedriver here (%s)' % INSTALL)
    return browser, driver


def start_browser(width=1100, height=720):
    pytest.importorskip('selenium', reason='pip install selenium')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    browser, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                '--window-size=%d,%d' % (width, height), '--hide-scrollbars'):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class ThreadServer:
    """uvicorn serving an ASGI app from a thread of this process, on a free port."""

    def __init__(self, app):
        import uvicorn
        self.server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=free_port(),
                                                    log_level='warning', lifespan='on'))
        self.url = 'http://127.0.0.1:%d' % self.server.config.port
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, message='uvicorn did not start')
        return self

    def __exit__(self, *exc_info):
        self.server.should_exit = True
        self.thread.join(10)


class WsgiThreadServer:
    """werkzeug serving a WSGI app (Flask) from a thread of this process."""

    def __init__(self, app):
        from werkzeug.serving import make_server
        self.server = make_server('127.0.0.1', 0, app, threaded=True)
        self.url = 'http://127.0.0.1:%d' % self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.thread.join(10)


def start_dashboard(app, *args, env=None):
    """``hueyctl --app app.huey dashboard --port P ARGS`` in ``app``'s directory; returns
    ``(process, url)`` once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'hueyd.cli.hueyctl', '--app', 'app.huey', 'dashboard',
         '--port', str(port), *args],
        cwd=app.dir, env={**os.environ, **app.env, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = 'http://127.0.0.1:%d' % port

    def answers():
        if proc.poll() is not None:
            raise AssertionError('hueyctl dashboard exited %s: %s'
                                 % (proc.returncode, proc.stderr.read().decode()))
        try:
            return request(url + '/static/dashboard.css', auth=(env or {}).get('DASH_TOKEN'))[0]
        except OSError:
            return False

    wait_until(answers, timeout=20, interval=0.1, message='hueyctl dashboard did not answer')
    return proc, url


def request(url, method='GET', body=None, headers=None, auth=None):
    """``(status, headers, body bytes)``; ``auth``: a token, or ``(user, password)``."""
    headers = dict(headers or {})
    if isinstance(auth, tuple):
        headers['Authorization'] = 'Basic ' + base64.b64encode(
            ('%s:%s' % auth).encode()).decode()
    elif auth:
        headers['Authorization'] = 'Bearer ' + auth
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers.setdefault('Content-Type', 'application/json')
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method),
                                    timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def csrf_token(page):
    """The token a dashboard page carries (``data-csrf`` of its body)."""
    marker = b'data-csrf="'
    start = page.index(marker) + len(marker)
    return page[start:page.index(b'"', start)].decode()
