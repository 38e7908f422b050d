"""Run huey's own test suite against hueyd: how much of huey's promise hueyd keeps.

    python tools/huey_suite.py [--version 3.5.4] [--min PERCENT] [-k EXPR] [--file test_api]

Downloads huey's source distribution with pip (once, into .cache/huey-suite/),
copies its ``huey/tests`` twice, and runs both copies with pytest on this
interpreter, with a redis-server the tool starts on 127.0.0.1:6379 (huey's tests
use Redis's default address):

* **huey**: the tests as they are, against huey from the same sdist;
* **hueyd**: the tests with their import lines rewritten (``huey`` -> ``hueyd``,
  ``huey.tests`` -> the copy), and the dotted paths of Django settings
  (``'huey.contrib.…'``), and nothing else, against this checkout.

A throw-away PostgreSQL (tests/support.py's PostgresServer) serves huey's
test_postgres.py, with a database of its own for each run (``HUEY_PG_DSN``).

Prints a table per test file: the tests that pass on huey, and how many of those
pass on hueyd. With ``--min``, exits 1 when hueyd passes less than that share of
huey's passes (CI uses it as a ratchet). ``--show-failures`` lists the tests that
pass on huey and not on hueyd, with the first line of each error.
"""
import argparse
import collections
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = ROOT / '.cache' / 'huey-suite'
REDIS_PORT = 6379
TEST_TIMEOUT = 30  # seconds for one test

# An import line naming huey (or one of its modules) as the module imported from.
IMPORT_LINE = re.compile(r'^(\s*)(from|import)\s+huey(\.tests)?\b')


def download(version):
    """huey's sdist, extracted; returns the folder that holds its ``huey`` package."""
    folder = CACHE / ('huey-%s' % version)
    if (folder / 'huey' / 'tests').is_dir():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps',
                    '--no-binary', ':all:', 'huey==%s' % version, '-d', str(CACHE)], check=True)
    with tarfile.open(CACHE / ('huey-%s.tar.gz' % version)) as archive:
        archive.extractall(CACHE, filter='data')
    return folder


def rewrite(line):
    """Point one import line at hueyd (and at the copied tests); leave other lines alone."""
    match = IMPORT_LINE.match(line)
    if match is None:
        return line
    indent, keyword, tests = match.groups()
    target = 'hueytests' if tests else 'hueyd'
    rest = line[match.end():]
    if keyword == 'import' and not tests and not rest.lstrip().startswith(('.', 'as')):
        return '%simport hueyd as huey%s' % (indent, rest)  # ``huey.x`` keeps meaning hueyd.x
    return '%s%s %s%s' % (indent, keyword, target, rest)


def copy_tests(source, destination, rewrite_imports):
    """The ``huey/tests`` of ``source`` as the package ``hueytests`` in ``destination``."""
    target = destination / 'hueytests'
    shutil.copytree(source / 'huey' / 'tests', target)
    for path in target.glob('*.py'):
        text = path.read_text()
        if rewrite_imports:
            text = ''.join(rewrite(line) for line in text.splitlines(keepends=True))
            # Django imports the classes its settings name by dotted path: an import too.
            text = text.replace("'huey.contrib.", "'hueyd.contrib.")
        else:
            text = text.replace('huey.tests', 'hueytests')  # the copy's own name
        path.write_text(text)
    # The package's __init__ star-imports every file: one file failing to import would fail
    # them all, and pytest collects each file by itself anyway.
    (target / '__init__.py').write_text('')
    return target


def run_pytest(tests, pythonpath, keyword, files, pg_dsn=None):
    """``{file: {test id: error or None}}`` from one pytest run over ``tests``."""
    report = tests.parent / 'report.xml'
    targets = [str(tests / ('%s.py' % name)) for name in files] if files else [str(tests)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath), HUEY_CI='1')
    if pg_dsn:
        env['HUEY_PG_DSN'] = pg_dsn
    command = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-o',
               'addopts=', '--rootdir', str(tests.parent), '--junitxml', str(report),
               '--continue-on-collection-errors', '-W', 'ignore',
               # A test that hangs (waiting for a result that never comes) fails alone.
               '-o', 'timeout=%d' % TEST_TIMEOUT, *targets]
    if keyword:
        command += ['-k', keyword]
    subprocess.run(command, cwd=tests.parent, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=900)
    results = collections.defaultdict(dict)
    for case in ET.parse(report).iter('testcase'):
        if not case.get('classname'):
            continue  # a file that failed to import: its tests are missing from the report
        module = case.get('classname').split('.')
        name = next((part for part in module if part.startswith('test_')), module[0])
        failure = case.find('failure')
        if failure is None:
            failure = case.find('error')
        if case.find('skipped') is not None:
            continue
        error = None if failure is None else (failure.get('message') or 'failed').splitlines()[0]
        results[name]['%s::%s' % (case.get('classname'), case.get('name'))] = error
    return results


def port_in_use(port):
    with socket.socket() as sock:
        return sock.connect_ex(('127.0.0.1', port)) == 0


def start_redis():
    sys.path.insert(0, str(ROOT / 'tests'))
    from support import RedisServer
    if port_in_use(REDIS_PORT):
        sys.exit('huey_suite: something already listens on 127.0.0.1:%d, where huey\'s tests '
                 'expect the Redis they may flush; stop it first' % REDIS_PORT)
    return RedisServer(port=REDIS_PORT).start()


def start_postgres():
    """A PostgreSQL for test_postgres.py, or None (its tests skip) when none can start."""
    sys.path.insert(0, str(ROOT / 'tests'))
    from support import PostgresServer
    try:
        return PostgresServer().start()
    except Exception as exc:
        print('huey_suite: no PostgreSQL (%s); test_postgres.py will skip' % exc, file=sys.stderr)
        return None


def table(huey, hueyd):
    rows, total_huey, total_both = [], 0, 0
    for name in sorted(set(huey) | set(hueyd)):
        passing = {test for test, error in huey.get(name, {}).items() if error is None}
        both = {test for test in passing if hueyd.get(name, {}).get(test, 'missing') is None}
        total_huey += len(passing)
        total_both += len(both)
        rows.append((name, len(passing), len(both)))
    lines = ['| file | pass on huey | also pass on hueyd | share |', '| --- | ---: | ---: | ---: |']
    for name, passing, both in rows + [('**all**', total_huey, total_both)]:
        share = '%.0f%%' % (100.0 * both / passing) if passing else '-'
        lines.append('| %s | %d | %d | %s |' % (name, passing, both, share))
    return '\n'.join(lines), (100.0 * total_both / total_huey if total_huey else 0.0)


def failures(huey, hueyd):
    for name in sorted(huey):
        for test, error in sorted(huey[name].items()):
            if error is None:
                theirs = hueyd.get(name, {}).get(test, 'not run (the file failed to import?)')
                if theirs is not None:
                    yield '%s: %s' % (test, theirs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--version', default='3.5.4', help="huey's version (default 3.5.4)")
    parser.add_argument('--min', type=float, default=0.0, metavar='PERCENT',
                        help="exit 1 when hueyd passes less than this share of huey's passes")
    parser.add_argument('-k', dest='keyword', help="pytest's -k, for both runs")
    parser.add_argument('--file', action='append', default=[], metavar='NAME',
                        help='only this test file (test_api, ...); repeatable')
    parser.add_argument('--show-failures', action='store_true',
                        help='list the tests that pass on huey and fail on hueyd')
    args = parser.parse_args(argv)

    source = download(args.version)
    redis_server = start_redis()
    pg_server = start_postgres()
    work = pathlib.Path(tempfile.mkdtemp(prefix='huey-suite-'))
    try:
        results = {}
        for label, rewrite_imports, path in (('huey', False, [str(source)]),
                                              ('hueyd', True, [str(ROOT)])):
            folder = work / label
            folder.mkdir()
            tests = copy_tests(source, folder, rewrite_imports)
            # A database per run: neither run sees the tables the other left.
            pg_dsn = pg_server.create_database('suite_' + label) if pg_server else None
            results[label] = run_pytest(tests, [str(folder)] + path, args.keyword, args.file,
                                        pg_dsn)
            redis_server.client().flushall()
    finally:
        redis_server.stop()
        redis_server.cleanup()
        if pg_server is not None:
            pg_server.stop()
        shutil.rmtree(work, ignore_errors=True)

    text, share = table(results['huey'], results['hueyd'])
    print("huey %s's test suite, imports rewritten to hueyd (python tools/huey_suite.py):\n"
          % args.version)
    print(text)
    if args.show_failures:
        print()
        for line in failures(results['huey'], results['hueyd']):
            print(line)
    if share < args.min:
        print('\nhueyd passes %.1f%% of the tests that pass on huey, below --min %.1f%%'
              % (share, args.min))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
