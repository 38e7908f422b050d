"""A test application with workflow tasks, for running under the real daemon.

``workflow_app('sqlite' | 'redis', priority=False)`` (a fixture) writes
``app.py`` with the source below into its own directory and loads it here as
module ``app``, exactly like tests/daemon_harness.py does with its own app, so
``start_daemon(app, ...)`` runs it. Tasks report by appending lines
``<kind> <tag> <pid> <unix time>`` (see ``WorkflowApp.records``).
"""
import pytest

from daemon_harness import App, app_factory

SOURCE = '''\
"""Workflow test application (written by tests/workflow_app.py)."""
import datetime
import json
import os
import time

from hueyd import Huey, PriorityRedisHuey
from hueyd.exceptions import CancelExecution, RateLimitExceeded
from hueyd.result import Error, Skipped
from hueyd.signals import SIGNAL_LOCKED, SIGNAL_RATE_LIMITED, SIGNAL_TIMEOUT

URL = os.environ['HUEYD_TEST_URL']
NAME = os.environ.get('HUEYD_TEST_NAME', 'hueyd-test')
OUT = os.environ['HUEYD_TEST_OUT']

if os.environ.get('HUEYD_TEST_PRIORITY') == '1':
    huey = PriorityRedisHuey(NAME, url=URL)
else:
    huey = Huey(NAME, url=URL)


def write(kind, tag, *more):
    # One O_APPEND write per line: lines of concurrent processes never interleave.
    words = [kind, str(tag), str(os.getpid()), repr(time.time())] + [str(m) for m in more]
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (' '.join(words) + '\\n').encode())
    finally:
        os.close(fd)


@huey.pre_execute()
def cancel_some(task):
    if task.kwargs.get('cancel'):
        raise CancelExecution()


@huey.signal(SIGNAL_TIMEOUT, SIGNAL_LOCKED, SIGNAL_RATE_LIMITED)
def report(signal, task, *args, **kwargs):
    write(signal, task.args[0] if task.args else task.id)


@huey.task()
def square(x, cancel=False):
    if x == 13:
        raise ValueError('unlucky %d' % x)
    return x * x


def describe(value):
    if isinstance(value, Error):
        return 'E:' + value.metadata['error'].split('(')[0]
    if isinstance(value, Skipped):
        return 'S:' + value.reason
    return value


@huey.task()
def collect(tag, results):
    write('collect', tag, json.dumps([describe(v) for v in results]))
    return len(results)


@huey.task()
def record(tag):
    write('ran', tag)


@huey.task(timeout=0.3)
def sleepy(tag):
    write('start', tag)
    time.sleep(10)            # interrupted: SIGALRM (process) or gevent.Timeout (greenlet)
    write('done', tag)


@huey.task(timeout=0.3, context=True)
def cooperative(tag, task=None):
    write('start', tag)
    for _ in range(1000):     # a thread worker cannot be interrupted: the task checks
        task.check_timeout()
        time.sleep(0.01)
    write('done', tag)


@huey.task()
@huey.lock_task('only-one')
def exclusive(tag, seconds):
    write('start', tag)
    time.sleep(seconds)
    write('done', tag)


@huey.task()
def limited(tag, limit, per):
    # RateLimit reads the clock once, between ``before`` and the time of the line
    # written: the window this attempt counted in is known to lie between the two.
    before = time.time()
    try:
        with huey.rate_limit('api', limit, per):
            write('ran', tag, repr(before))
    except RateLimitExceeded:
        write('refused', tag, repr(before))
        raise
'''


class WorkflowApp(App):
    def __init__(self, directory, url, priority=False):
        super().__init__(directory, url)
        self.huey.storage.close()  # the harness's own app, replaced below
        with open(self.path, 'w') as f:
            f.write(SOURCE)
        if priority:
            self.env['HUEYD_TEST_PRIORITY'] = '1'
        self.module = self._load()
        self.huey = self.module.huey
        if url.startswith('redis'):
            self.huey.storage.blocking = False

    def records(self, kind=None):
        """[(kind, tag, pid, time, rest...)] of every line, in file order."""
        found = []
        for words in self.lines():
            if kind is None or words[0] == kind:
                found.append((words[0], words[1], int(words[2]), float(words[3]),
                              ' '.join(words[4:])))
        return found


@pytest.fixture
def workflow_app(tmp_path, request):
    """workflow_app('sqlite' | 'redis', priority=False) -> WorkflowApp in its own directory."""
    yield from app_factory(tmp_path, request, WorkflowApp, prefix='wapp')
