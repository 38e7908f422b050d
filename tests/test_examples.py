"""The examples run, and the huey-compatible one runs unchanged under huey itself."""
import ast
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / 'examples'
COMPATIBLE = EXAMPLES / 'huey_compatible.py'

# The modules the example may import from hueyd: those huey also has.
HUEY_MODULES = {'hueyd': 'huey', 'hueyd.exceptions': 'huey.exceptions',
                'hueyd.signals': 'huey.signals'}

EXPECTED_OUTPUT = """\
== call a task
   add(1, 2) = 3
   signals: enqueued, executing, complete
== retries
   fetched https://example.com after 3 attempts
   signals: enqueued, executing, error, retrying, enqueued, executing, error, retrying, \
enqueued, executing, complete
== retries exhausted
   failed for good: ValueError('no good')
   signals: enqueued, executing, error, retrying, enqueued, executing, error
== map
   multiply.map(...) = [10, 20, 30]
   signals: enqueued, executing, complete, enqueued, executing, complete, enqueued, \
executing, complete
== pipeline
   add(1, 2) -> add(3) -> multiply(10) = [3, 6, 60]
   signals: enqueued, executing, complete, enqueued, executing, complete, enqueued, \
executing, complete
== schedule
   waiting in the schedule: ['add']
   after a minute: 42
   signals: enqueued, scheduled, executing, complete
== lock_task
   while the lock was held: not run, TaskLockedException
   once released: report weekly done
   reports written: ['weekly']
   signals: enqueued, executing, locked, enqueued, executing, complete
== revoke and restore
   revoked: True, result None
   restored: True, result 10
   signals: enqueued, revoked, enqueued, executing, complete
== revoke and restore one result
   revoked: True
   restored, then ran: 42
   signals: enqueued, scheduled, executing, complete
== periodic tasks
   Mon 03:00: ['nightly_cleanup', 'weekday_poll']
   Mon 03:07: nothing
   Sat 03:00: ['nightly_cleanup']
   Sat 12:30: nothing
   ran: ['nightly cleanup', 'nightly cleanup', 'weekday poll']
   signals: enqueued, executing, complete, enqueued, executing, complete, enqueued, \
executing, complete
"""


def run_script(path, cwd):
    return subprocess.run([sys.executable, str(path)], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def hueyd_imports(source):
    """Line numbers of the import statements naming hueyd, checked to be the only mentions."""
    tree = ast.parse(source)
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split('.')[0] == 'hueyd' for a in node.names), (
                'use "from hueyd import ...", as huey users write "from huey import ..."')
        elif isinstance(node, ast.ImportFrom) and (node.module or '').split('.')[0] == 'hueyd':
            assert node.module in HUEY_MODULES, (
                '%s has no counterpart in huey' % node.module)
            assert node.lineno == node.end_lineno, 'keep each hueyd import on one line'
            lines.add(node.lineno)
        elif isinstance(node, ast.Name):
            assert node.id != 'hueyd', 'line %d names hueyd outside an import' % node.lineno
    return lines


def as_huey(source):
    """The example with hueyd swapped for huey in its import lines, and nowhere else."""
    lines = source.splitlines(keepends=True)
    for lineno in hueyd_imports(source):
        line = lines[lineno - 1]
        module = line.split()[1]
        lines[lineno - 1] = line.replace('from %s ' % module,
                                         'from %s ' % HUEY_MODULES[module], 1)
    return ''.join(lines)


def test_compatible_example_runs_and_reports(tmp_path):
    done = run_script(COMPATIBLE, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED_OUTPUT
    assert done.stderr == ''
    assert list(tmp_path.iterdir()) == []  # immediate mode touched no storage file


def test_compatible_example_differs_from_huey_only_in_imports(tmp_path):
    import huey  # noqa: F401 -- the comparison needs real huey (the project's test extra)

    source = COMPATIBLE.read_text()
    imports = hueyd_imports(source)
    assert imports, 'the example should import hueyd'
    converted = as_huey(source)
    changed = [n for n, (a, b) in enumerate(zip(source.splitlines(), converted.splitlines()),
                                           start=1) if a != b]
    assert changed == sorted(imports)
    # Nothing in the converted program refers to hueyd any more.
    tree = ast.parse(converted)
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(m and m.split('.')[0] == 'hueyd' for m in modules)
    assert 'huey' in modules

    copy = tmp_path / 'huey_compatible_under_huey.py'
    copy.write_text(converted)
    under_huey = run_script(copy, tmp_path)
    assert under_huey.returncode == 0, under_huey.stderr
    under_hueyd = run_script(COMPATIBLE, tmp_path)
    assert under_hueyd.returncode == 0, under_hueyd.stderr
    assert under_huey.stdout == under_hueyd.stdout == EXPECTED_OUTPUT
    assert sorted(os.listdir(tmp_path)) == [copy.name]


# --- examples/huey_project: a Django project written for huey 3.5 --------------------

PROJECT = EXAMPLES / 'huey_project'
PROJECT_OUTPUT = """\
order 7 total: 20
fulfilment: order 7 reserved, charged 20, shipped
periodic tasks due at 2026-01-05 03:00:00: ['nightly_report']
periodic tasks due at 2026-01-05 03:01:00: []
nightly report: report for 3 products
order 8 while the desk was taken: TaskLockedException
order 8 once free: order 8, shipped
"""


def project_copy(destination, library):
    """The project in ``destination``, as it is (hueyd) or switched to huey.

    The switch replaces ``hueyd`` with ``huey`` and asserts that it touched only import
    lines and the dotted paths in the settings, which is all a huey user changes.
    """
    shutil.copytree(PROJECT, destination, ignore=shutil.ignore_patterns('__pycache__', '*.db'))
    if library == 'huey':
        for path in destination.rglob('*.py'):
            source = path.read_text()
            converted = source.replace('hueyd', 'huey')
            for old, new in zip(source.splitlines(), converted.splitlines()):
                if old != new:
                    assert old.startswith(('from hueyd', 'import hueyd')) or (
                        path.name == 'settings.py' and "'hueyd." in old), (path, old)
            path.write_text(converted)
    return destination


def manage(project, *args, immediate, queue, **popen):
    env = dict(os.environ, SHOP_QUEUE_DB=str(queue), SHOP_IMMEDIATE='1' if immediate else '0',
               PYTHONPATH=str(project))
    return subprocess.Popen([sys.executable, 'manage.py', *args], cwd=project, env=env,
                            text=True, **popen)


@pytest.mark.parametrize('library', ['hueyd', 'huey'])
def test_huey_project_runs_inline_under_either_library(tmp_path, library):
    project = project_copy(tmp_path / 'project', library)
    demo = manage(project, 'shop_demo', immediate=True, queue=tmp_path / 'queue.db',
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err
    assert out == PROJECT_OUTPUT


@pytest.mark.parametrize('library', ['hueyd', 'huey'])
def test_huey_project_runs_on_its_consumer_under_either_library(tmp_path, library):
    # manage.py run_huey: hueyd's daemon, or huey's consumer, on one SQLite file.
    project = project_copy(tmp_path / 'project', library)
    queue = tmp_path / 'queue.db'
    consumer = manage(project, 'run_huey', '-w', '2', immediate=False, queue=queue,
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        demo = manage(project, 'shop_demo', immediate=False, queue=queue,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = demo.communicate(timeout=120)
        assert demo.returncode == 0, err
        assert out == PROJECT_OUTPUT
    finally:
        consumer.send_signal(signal.SIGINT)
        _, consumer_log = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, consumer_log
