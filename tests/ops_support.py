"""Helpers for the tests of operating hueyd: hueyctl, metrics, Django and Flask.

``add_test_tasks(app)`` appends tasks to the harness's app.py (a gate that holds
its worker until the test opens it, failing tasks, a declared lock);
``hueyctl(app, ...)`` runs the real command in a subprocess, ``ctl(app, ...)`` runs
its main() in this process (quicker; the app module is imported afresh each
time and forgotten afterwards); ``Project`` lets
daemon_harness.Daemon run a command other than ``python -m hueyd``.
"""
import contextlib
import io
import os
import subprocess
import sys

from daemon_harness import _clean_environ

EXTRA_TASKS = '''

@huey.task()
def gate(tag):
    """Holds its worker until the test creates the file gate-<tag> (30 s at most)."""
    write('start', tag, os.getpid())
    deadline = time.time() + 30
    while not os.path.exists(os.path.join(DIR, 'gate-' + tag)) and time.time() < deadline:
        time.sleep(0.01)
    write('done', tag, os.getpid())


@huey.task()
def fail(tag):
    write('fail', tag, os.getpid())
    raise ValueError('failing on purpose: ' + tag)


@huey.task(retries=1)
def flaky(tag):
    write('flaky', tag, os.getpid())
    raise ValueError('failing every time: ' + tag)


report_lock = huey.lock_task('report')
'''


def add_test_tasks(app):
    with open(app.path, 'a') as f:
        f.write(EXTRA_TASKS)
    app.module = app._load()
    app.huey = app.module.huey
    if app.url.startswith('redis'):
        app.huey.storage.blocking = False
    return app


def open_gate(app, tag):
    open(os.path.join(app.dir, 'gate-' + tag), 'w').close()


def hueyctl_argv(*args, app_path='app.huey'):
    return [sys.executable, '-m', 'hueyd.cli.hueyctl'] + (
        ['--app', app_path] if app_path else []) + [str(arg) for arg in args]


def hueyctl_env(app, **extra):
    return {**_clean_environ(), **app.env, 'PYTHONDONTWRITEBYTECODE': '1', **extra}


def hueyctl(app, *args, input='', timeout=30, app_path='app.huey'):
    """Run hueyctl to the end; a CompletedProcess with text stdout and stderr."""
    return subprocess.run(hueyctl_argv(*args, app_path=app_path), cwd=app.dir,
                          env=hueyctl_env(app), input=input, capture_output=True, text=True,
                          timeout=timeout)


class Project:
    """What daemon_harness.Daemon needs of an app, for a process started another way."""

    def __init__(self, directory, env=None):
        self.dir = str(directory)
        self.env = env or {}

    def lines(self):
        return []


def ctl(app, *args, input='', app_path='app.huey'):
    """hueyctl's main() here, in the app's directory and environment: (status, out, err)."""
    from hueyd.cli import hueyctl as command
    argv = (['--app', app_path] if app_path else []) + [str(arg) for arg in args]
    saved_env = {key: os.environ.get(key) for key in app.env}
    saved_cwd, saved_path, saved_stdin = os.getcwd(), list(sys.path), sys.stdin
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(app.env)
    os.chdir(app.dir)
    sys.stdin = io.StringIO(input)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                command.main(argv)
                code = 0
            except SystemExit as exit:
                code = exit.code
    finally:
        sys.stdin = saved_stdin
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        module = sys.modules.pop('app', None)
        if module is not None and hasattr(module, 'huey'):
            module.huey.storage.close()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, out.getvalue(), err.getvalue()
