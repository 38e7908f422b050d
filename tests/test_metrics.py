"""The Prometheus endpoint (--metrics-port), scraped over HTTP from a running daemon."""
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from daemon_harness import make_app, start_daemon, stop_gracefully, write_config  # noqa: F401
from hueyd.metrics import multiprocess_dir
from ops_support import add_test_tasks, hueyctl_env, open_gate
from support import free_port

FAST = ('-d', '0.01', '-m', '0.1')


def scrape(port):
    """The metrics as {(name, frozenset(labels)): value}, or None while nothing answers."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(metrics, name, **labels):
    return None if metrics is None else metrics.get((name, frozenset(labels.items())))


LABEL = {'hueyd_workers': 'state', 'hueyd_pool_restarts_total': 'reason'}  # else 'task'


def scrape_until(daemon, port, **expected):
    """Scrape until every ``name=value`` holds; a label value follows '__' (finished__record)."""
    def check():
        metrics = scrape(port)
        for key, wanted in expected.items():
            name, _, label = key.partition('__')
            labels = {LABEL.get(name, 'task'): label} if label else {}
            if value(metrics, name, **labels) != wanted:
                return None
        return metrics
    return daemon.wait_until(check, timeout=20, message='metrics never showed %s; last: %s'
                             % (expected, scrape(port)))


def test_metrics_count_every_pools_tasks_and_survive_pool_deaths_and_reloads(make_app,
                                                                            start_daemon):
    app = add_test_tasks(make_app('sqlite'))
    port = free_port()
    daemon = start_daemon(app, '-k', 'process', '-w', '2', '--metrics-port', str(port),
                          '--metrics-address', '127.0.0.1', *FAST)
    daemon.wait_ready(2)
    app.gate('one')
    app.gate('two')
    daemon.wait_until(lambda: app.count('start', 'one') and app.count('start', 'two'))
    for tag in 'abc':
        app.record(tag)
    scrape_until(daemon, port, hueyd_workers_busy=2, hueyd_workers__busy=2, hueyd_workers__idle=0,
                 hueyd_queue_length=3, hueyd_storage_up=1, hueyd_dead_letters=0)
    open_gate(app, 'one')
    open_gate(app, 'two')
    app.fail('f')
    app.flaky('k')  # fails, is retried once, fails again
    metrics = scrape_until(
        daemon, port, hueyd_queue_length=0,
        hueyd_tasks_started_total__record=3, hueyd_tasks_finished_total__record=3,
        hueyd_tasks_finished_total__gate=2, hueyd_tasks_failed_total__fail=1,
        hueyd_tasks_started_total__flaky=2, hueyd_tasks_failed_total__flaky=2,
        hueyd_tasks_retried_total__flaky=1, hueyd_task_duration_seconds_count__record=3,
        hueyd_pool_restarts_total__died=0, hueyd_pool_restarts_total__recycled=0)
    assert value(metrics, 'hueyd_task_duration_seconds_bucket', task='gate', le='+Inf') == 2
    assert value(metrics, 'hueyd_task_duration_seconds_sum', task='record') > 0
    assert value(metrics, 'hueyd_tasks_finished_total', task='fail') is None

    # A pool killed with -9 is replaced; what it counted stays counted.
    os.kill(daemon.pool_pids()[0], signal.SIGKILL)
    scrape_until(daemon, port, hueyd_pool_restarts_total__died=1,
                 hueyd_tasks_finished_total__record=3, hueyd_tasks_finished_total__gate=2)
    daemon.wait_ready(2)

    # A reload replaces the scheduler that serves the port: the new one takes it over.
    scheduler = daemon.scheduler().pid
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: getattr(daemon.scheduler(), 'pid', scheduler) != scheduler,
                      timeout=20)  # scheduler(): None while two of them run
    app.record('d')
    scrape_until(daemon, port, hueyd_tasks_finished_total__record=4,
                 hueyd_tasks_finished_total__gate=2, hueyd_pool_restarts_total__died=1)
    counts = multiprocess_dir(daemon.pid)
    assert os.path.isdir(counts)
    stop_gracefully(daemon)
    assert not os.path.exists(counts), 'the master leaves its metrics directory behind'


def test_metrics_port_without_prometheus_client_is_a_configuration_error(make_app, tmp_path):
    app = make_app('sqlite')
    config = write_config(tmp_path / 'hueyd.conf', app='app.huey', metrics_port=9100)
    # sys.modules[name] = None is how Python spells "this package is not installed".
    code = ("import sys; sys.modules['prometheus_client'] = None; "
            "from hueyd.cli.hueyd import main; main()")
    done = subprocess.run([sys.executable, '-c', code, '--config', config], cwd=app.dir,
                          env=hueyctl_env(app), capture_output=True, text=True, timeout=30)
    assert done.returncode == 78, done.stderr
    assert ("%s, line 3: metrics_port = '9100' is not valid; it needs the prometheus_client "
            "package, which is not installed: pip install 'hueyd[metrics]'" % config) in done.stderr
