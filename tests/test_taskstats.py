"""Task statistics in the storage (hueyd.taskstats): recorded from real tasks on every
storage, read back as hueyctl stats, the dashboard and hueyd.contrib.stats show them, and a
real daemon whose figures outlive a restart of the dashboard."""
import json
import re
import threading

import pytest

from daemon_harness import make_app, start_daemon  # noqa: F401 (fixtures)
from hueyd.exceptions import RetryTask
from hueyd.metrics import DURATION_BUCKETS
from hueyd.storage.protocols import Stats
from hueyd.taskstats import (BUCKETS, Recorder, StoredStats, chart, collect, describe,
                             format_stats, quantile)
from conftest import url_for
from ops_support import add_test_tasks, ctl
from support import make_huey

# The conftest storage kinds whose storage keeps statistics (files and SqlStorage keep none).
STATS_KINDS = ['memory', 'sqlite', 'redis', 'postgres']


@pytest.fixture(params=STATS_KINDS)
def stats_huey(request, tmp_path, queue_name):
    huey = make_huey(queue_name, url_for(request.param, request, tmp_path))
    yield huey
    huey.flush()
    huey.storage.close()


def run_all(huey, limit=50):
    for _ in range(limit):
        task = huey.dequeue()
        if task is None:
            return
        huey.execute(task)


def test_real_runs_are_counted_on_every_storage_that_keeps_stats(huey):
    recorder = Recorder(huey)
    attempts = []

    @huey.task()
    def add(a, b):
        return a + b

    @huey.task(retries=1)
    def broken():
        raise ValueError('broken')

    @huey.task()
    def later():
        attempts.append(1)
        if len(attempts) == 1:
            raise RetryTask()

    for i in range(3):
        add(i, i)
    broken()
    later()
    run_all(huey)
    recorder.flush()
    report = collect(huey.storage)
    if not huey.storage.supports(Stats):
        assert report['stats'] is False and report['tasks'] == []
        assert format_stats(report).endswith('keeps no task statistics')
        return
    rows = {row['task']: row for row in report['tasks']}
    assert [row['task'] for row in report['tasks']] == ['add', 'broken', 'later']
    for window in ('hour', 'day'):
        assert [(rows[name][window]['runs'], rows[name][window]['failures'],
                 rows[name][window]['retries']) for name in ('add', 'broken', 'later')] \
            == [(3, 0, 0), (2, 2, 1), (1, 0, 1)]  # RetryTask: a retry, not a run, not a failure
    assert 0 <= rows['add']['hour']['p50'] <= rows['add']['hour']['p95'] <= rows['add']['hour']['max']
    assert sum(point['failures'] for point in chart(huey.storage)) == 2
    assert re.search(r'^add +1h +3 +0 +0 ', format_stats(report), re.MULTILINE)
    stored = StoredStats(huey)
    assert stored.window_counts() == {'executing': 6, 'complete': 4, 'error': 2, 'retrying': 2}
    assert [(row['task'], row['executed'], row['completed'], row['errors'])
            for row in stored.task_breakdown()] == [('add', 3, 3, 0), ('broken', 2, 0, 2),
                                                    ('later', 1, 1, 0)]
    series = stored.throughput(2)  # the runs may straddle two minutes
    assert (sum(series['complete']), sum(series['error'])) == (4, 2)
    assert stored.overview()['error_rate'] == 2 / 6


def test_figures_of_many_flushes_and_threads_add_up(stats_huey):
    huey = stats_huey
    recorder = Recorder(huey)

    @huey.task()
    def noop():
        pass

    def work():
        for _ in range(50):
            huey.execute(noop.s())
            recorder.tick()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.flush()
    assert collect(huey.storage)['tasks'][0]['day']['runs'] == 200


def test_percentiles_are_estimated_from_the_buckets_and_never_pass_the_max():
    assert BUCKETS[0] == 'le=0.005' and BUCKETS[-1] == 'le=inf' \
        and len(BUCKETS) == len(DURATION_BUCKETS) + 1
    # 90 runs in (0.1, 0.25], 10 in (1, 2.5]; the longest took 2 s.
    fields = {'runs': 100, 'sum': 40.0, 'max': 2.0, 'le=0.25': 90, 'le=2.5': 10}
    figures = describe(fields)
    assert figures['p50'] == pytest.approx(0.1 + 0.15 * 50 / 90)
    assert figures['p95'] == pytest.approx(1 + 1.5 * 5 / 10)
    assert (figures['max'], figures['mean']) == (2.0, 0.4)
    assert quantile(0.99, [(2.5, 1)], 1.2) == 1.2          # clamped to the known max
    assert quantile(0.5, [(3600.0, 0), (float('inf'), 2)], 7200.0) == 7200.0
    assert describe({'retries': 1}) == {'runs': 0, 'failures': 0, 'retries': 1, 'mean': None,
                                        'p50': None, 'p95': None, 'max': None}


# -- a real daemon, hueyctl and the dashboard ---------------------------------------------

def stats_json(app):
    code, out, err = ctl(app, 'stats', '--json')
    assert code == 0, err
    return {row['task']: row for row in json.loads(out)['tasks']}


@pytest.mark.parametrize('storage', ['sqlite', 'redis'])
def test_a_daemons_stats_reach_the_storage_hueyctl_and_a_restarted_dashboard(
        make_app, start_daemon, storage):  # noqa: F811
    pytest.importorskip('starlette', reason="pip install 'hueyd[dashboard]'")
    pytest.importorskip('uvicorn', reason="pip install 'hueyd[dashboard]'")
    from dashboard_support import request, start_dashboard
    app = add_test_tasks(make_app(storage))
    daemon = start_daemon(app, '-w', '2')
    daemon.wait_ready(1)
    for i in range(5):
        app.record('r%d' % i)
    app.fail('f')
    daemon.wait_until(lambda: stats_json(app).get('record', {}).get('hour', {}).get('runs') == 5
                      and stats_json(app).get('fail', {}).get('hour', {}).get('failures') == 1,
                      message='the statistics did not reach the storage')
    daemon.stop()  # the figures are the storage's now: no node is running any more

    def dashboard_figures():
        proc, url = start_dashboard(app)
        try:
            status, _, body = request(url + '/api/stats')
            assert status == 200, body
            chart_points = json.loads(request(url + '/api/status')[2])['chart']
            return ({row['task']: row['hour'] for row in json.loads(body)['tasks']},
                    chart_points)
        finally:
            proc.terminate()
            proc.wait(10)

    first, points = dashboard_figures()
    assert (first['record']['runs'], first['fail']['failures']) == (5, 1)
    assert sum(point['failures'] for point in points) == 1 and len(points) == 60
    assert sum(point['rate'] for point in points) > 0
    second, _ = dashboard_figures()  # a new dashboard process: nothing kept in memory
    assert second == first
    assert 'record' in ctl(app, 'stats')[1]


def test_hueyctl_stats_says_when_the_storage_keeps_none(make_app):  # noqa: F811
    app = make_app('file')
    code, out, _ = ctl(app, 'stats')
    assert (code, out.strip()) == (1, 'FileStorage keeps no task statistics')


def test_runs_are_written_together_by_a_flush_not_one_by_one(stats_huey):
    huey = stats_huey
    recorder = Recorder(huey)

    @huey.task()
    def noop():
        pass

    for _ in range(100):
        huey.execute(noop.s())
    assert huey.storage.read_stats(0) == {}
    recorder.flush()
    assert sum(fields['runs'] for fields in huey.storage.read_stats(0).values()) == 100
