"""What operating a daemon needs besides metrics: the log line of each finished task,
/healthz and /readyz with `hueyctl ping`, --version, "did you mean" for a mistyped
option, and hueyctl's output piped into `head`. Against real daemons, real HTTP
requests, real signals and a real pipe."""
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import pytest

from daemon_harness import App, make_app, start_daemon, stop_gracefully  # noqa: F401
from hueyd import MemoryHuey, __version__
from hueyd.daemon.logs import JsonFormatter, log_finished_tasks
from hueyd.exceptions import RetryTask
from ops_support import add_test_tasks, hueyctl, hueyctl_argv, hueyctl_env
from support import RedisServer, free_port

FAST = ('-d', '0.01', '-m', '0.1')


def get(port, path):
    """(status, body) of a GET on the daemon's port; (None, reason) while nothing answers."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError) as exc:
        return None, str(exc)


def answers(daemon, port, path, status):
    """Wait until ``path`` answers ``status``; returns the body."""
    return daemon.wait_until(lambda: get(port, path)[0] == status and get(port, path)[1],
                             timeout=20, message='%s never answered %s; last: %s'
                             % (path, status, get(port, path)))


# -- /healthz, /readyz and hueyctl ping ----------------------------------------------

def test_probes_follow_the_master_loop_and_the_storage_and_ping_exits_by_them(start_daemon,
                                                                            tmp_path):
    with RedisServer() as redis:  # of its own: this test stops it
        app = App(tmp_path, redis.url)
        port = free_port()
        # --worker-timeout bounds how long the master's loop may stand still: 2 s here.
        daemon = start_daemon(app, '-k', 'process', '-w', '2', '--metrics-port', str(port),
                              '--metrics-address', '127.0.0.1', '--worker-timeout', '2', *FAST)
        assert 'ready: 2 of 2 pool(s) booted' in answers(daemon, port, '/readyz', 200)
        assert get(port, '/healthz')[0] == 200
        assert get(port, '/metrics')[0] == 200 and 'hueyd_queue_length' in get(port, '/metrics')[1]
        assert get(port, '/nothing')[0] == 404
        ping = hueyctl(app, 'ping', '--port', port, app_path=None)  # no application needed
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout.startswith('/healthz ok: the loop of master %d' % daemon.pid)

        # The storage goes away: not ready, yet alive (a restart would not bring it back).
        redis.stop()
        assert 'cannot reach the storage' in answers(daemon, port, '/readyz', 503)
        assert get(port, '/healthz')[0] == 200
        ping = hueyctl(app, 'ping', '--port', port, app_path=None)
        assert ping.returncode == 1 and 'not ready: cannot reach the storage' in ping.stdout
        redis.start()
        answers(daemon, port, '/readyz', 200)

        # The master's loop stops turning (SIGSTOP): unhealthy, until it turns again.
        daemon.send(signal.SIGSTOP)
        try:
            body = answers(daemon, port, '/healthz', 503)
            assert 'has not turned for' in body and '(--worker-timeout 2s)' in body
            assert get(port, '/readyz')[0] == 503
            ping = hueyctl(app, 'ping', '--port', port, app_path=None)
            assert ping.returncode == 1 and 'unhealthy' in ping.stdout
        finally:
            daemon.send(signal.SIGCONT)
        answers(daemon, port, '/healthz', 200)
        stop_gracefully(daemon)
        app.close()


def test_ping_reads_the_port_from_the_config_file_and_says_when_nothing_answers(make_app,
                                                                               tmp_path):
    app = make_app('sqlite')
    port = free_port()  # nothing listens there
    config = tmp_path / 'hueyd.conf'
    config.write_text('[hueyd]\napp = app.huey\nmetrics_port = %d\n' % port)
    ping = hueyctl(app, '--config', config, 'ping', app_path=None)
    assert ping.returncode == 1
    assert ping.stderr == ('hueyctl: no answer from http://127.0.0.1:%d/healthz ([Errno 111] '
                           'Connection refused): is hueyd running with --metrics-port %d?\n'
                           % (port, port))
    config.write_text('[hueyd]\napp = app.huey\n')
    ping = hueyctl(app, '--config', config, 'ping', app_path=None)
    assert ping.returncode == 78 and 'pass --port PORT' in ping.stderr


# -- the log line of a finished task ---------------------------------------------------

def test_each_finished_task_logs_one_line_with_its_fields_as_json_keys(make_app, start_daemon):
    app = add_test_tasks(make_app('sqlite'))
    daemon = start_daemon(app, '-k', 'process', '--log-format', 'json', *FAST)
    ok, failing, flaky = app.record('r'), app.fail('f'), app.flaky('k')

    def finished():
        records = []
        for line in daemon.stderr_text().splitlines():
            record = json.loads(line)
            if record['logger'] == 'hueyd.tasks':
                records.append(record)
        return len(records) == 4 and records

    records = daemon.wait_until(finished, message='expected 4 finished-task lines')
    by_id = {}
    for record in records:
        assert isinstance(record['duration'], float) and record['duration'] >= 0
        assert record['level'] == 'INFO'
        by_id.setdefault(record['task_id'], []).append(
            (record['task'], record['status'], record['retries']))
    assert by_id == {ok.id: [('record', 'finished', 0)],
                     failing.id: [('fail', 'error-task', 0)],
                     flaky.id: [('flaky', 'error-task', 1), ('flaky', 'error-task', 0)]}
    line = next(record['message'] for record in records if record['task_id'] == failing.id)
    assert line.startswith('fail %s error-task in ' % failing.id)
    assert line.endswith('s: ValueError: failing on purpose: f')
    stop_gracefully(daemon)


def test_the_text_line_says_the_outcome_and_a_retry_asked_for_is_logged_once(caplog):
    huey = MemoryHuey('log-line')
    log_finished_tasks(huey)

    @huey.task()
    def again():
        raise RetryTask()

    huey.enqueue(again.s())
    with caplog.at_level(logging.INFO, logger='hueyd.tasks'):
        task = huey.dequeue()
        huey.execute(task)
    (record,) = [r for r in caplog.records if r.name == 'hueyd.tasks']
    assert record.getMessage().startswith('again %s retrying in ' % task.id)
    assert record.getMessage().endswith('s: RetryTask, 1 retries left')
    entry = json.loads(JsonFormatter().format(record))
    assert (entry['task'], entry['task_id'], entry['status'], entry['retries']) == (
        'again', task.id, 'retrying', 1)


def test_a_finished_run_says_nothing_of_the_retries_it_did_not_need(caplog):
    huey = MemoryHuey('log-line-ok')
    log_finished_tasks(huey)

    @huey.task(retries=2)
    def fine():
        return 1

    huey.enqueue(fine.s())
    with caplog.at_level(logging.INFO, logger='hueyd.tasks'):
        task = huey.dequeue()
        huey.execute(task)
    (record,) = [r for r in caplog.records if r.name == 'hueyd.tasks']
    assert record.getMessage() == 'fine %s finished in %.3fs' % (task.id, record.duration)
    assert record.retries == 2  # the JSON key keeps it


# -- --version, "did you mean", a closed pipe ------------------------------------------

@pytest.mark.parametrize('command', [['-m', 'hueyd'], ['-m', 'hueyd.cli.hueyctl']])
def test_version_and_did_you_mean(command):
    name = 'hueyd' if command[-1] == 'hueyd' else 'hueyctl'
    done = subprocess.run([sys.executable, *command, '--version'], capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, '%s %s\n' % (name, __version__))
    mistyped = ['--wokers', '3', 'app.huey'] if name == 'hueyd' else ['info', '--jsn']
    done = subprocess.run([sys.executable, *command, *mistyped], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    expected = ("unrecognized option --wokers (did you mean '--workers'?)" if name == 'hueyd'
                else "unrecognized option --jsn (did you mean '--json'?)")
    assert done.stderr.endswith('%s: error: %s\n' % (name, expected)), done.stderr


def test_a_mistyped_command_gets_a_suggestion():
    done = subprocess.run([sys.executable, '-m', 'hueyd.cli.hueyctl', 'statuss'],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "(did you mean 'status'?)" in done.stderr


def test_hueyctl_piped_into_head_ends_quietly(make_app):
    app = make_app('sqlite')
    ctl = subprocess.Popen(hueyctl_argv('status', '--watch', '-i', '0.05'), cwd=app.dir,
                           env=hueyctl_env(app), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(['head', '-n', '1'], stdin=ctl.stdout, stdout=subprocess.PIPE)
    ctl.stdout.close()  # head alone reads it: when head exits, the pipe is broken
    first, _ = head.communicate(timeout=30)
    assert first.decode().startswith('app.huey')
    assert ctl.wait(timeout=30) == 128 + signal.SIGPIPE
    assert ctl.stderr.read() == b''
    ctl.stderr.close()


# -- the Kubernetes example ----------------------------------------------------------

def test_the_kubernetes_example_probes_the_port_its_valid_config_file_opens():
    from hueyd.cli.config import load_config
    deploy = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'deploy', 'kubernetes')
    with open(os.path.join(deploy, 'configmap.yaml')) as f:
        lines = f.read().split('  hueyd.conf: |\n', 1)[1].splitlines()
    config_text = '\n'.join(line[4:] for line in lines if line.startswith('    ') or not line)
    with tempfile.NamedTemporaryFile('w', suffix='.conf') as f:
        f.write(config_text)
        f.flush()
        config = load_config(['--config', f.name], {})  # raises if hueyd would refuse it
    with open(os.path.join(deploy, 'deployment.yaml')) as f:
        deployment = f.read()
    assert config.metrics_port == 9100 and 'containerPort: %d' % config.metrics_port in deployment
    for probe, path in (('startupProbe', '/healthz'), ('livenessProbe', '/healthz'),
                        ('readinessProbe', '/readyz')):
        assert re.search(r'%s:\n\s+httpGet:\n\s+path: %s\n\s+port: metrics' % (probe, path),
                         deployment), probe
    assert config.graceful_signal == 'term'  # what Kubernetes sends is the graceful stop
    grace = int(re.search(r'terminationGracePeriodSeconds: (\d+)', deployment)[1])
    assert grace > config.graceful_timeout
