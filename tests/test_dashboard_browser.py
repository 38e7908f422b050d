"""The dashboard in a real browser: the system's headless Chromium driven by Selenium,
against ``hueyctl dashboard`` and a hueyd daemon, both subprocesses on one SQLite file.

The screenshots of the README are taken here: ``HUEYD_SCREENSHOTS=1`` writes them to
docs/img/ (off by default, so a test run leaves the checkout as it was).
"""
import os
import pathlib

import pytest

pytest.importorskip('starlette', reason="pip install 'hueyd[dashboard]'")
pytest.importorskip('selenium', reason='pip install selenium')

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from daemon_harness import APP_SOURCE, App, app_factory, start_daemon  # noqa: E402,F401
from dashboard_support import request, start_browser, start_dashboard  # noqa: E402

SCREENSHOTS = pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'img'
WAIT = 15

SOURCE = APP_SOURCE.replace('huey = Huey(NAME, url=URL)',
                            'huey = Huey(NAME, url=URL, events=True)') + '''

@huey.task()
def sync_feed(url):
    raise ConnectionError('feed %s unreachable' % url)
'''
assert 'events=True' in SOURCE


@pytest.fixture
def make_app(tmp_path, request):
    yield from app_factory(tmp_path, request, lambda directory, url: App(directory, url,
                                                                         source=SOURCE))


@pytest.fixture
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture
def dashboard():
    """dashboard(app, *args) -> its URL; every one is stopped at teardown."""
    procs = []

    def factory(app, *args):
        proc, url = start_dashboard(app, *args)
        procs.append(proc)
        # Events are followed from the moment its listener exists: wait for it.
        wait_for(lambda: b'"events_on":true' in request(url + '/api/events')[2])
        return url

    yield factory
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def wait_for(condition, timeout=WAIT, interval=0.05):
    from support import wait_until
    return wait_until(condition, timeout=timeout, interval=interval)


def wait(browser, find, message=None):
    try:
        return WebDriverWait(browser, WAIT, poll_frequency=0.05).until(lambda d: find(d))
    except TimeoutException:
        page = browser.find_element(By.TAG_NAME, 'body').text
        raise AssertionError('%s; the page shows:\n%s'
                             % (message or 'condition not met', page)) from None


def screenshot(browser, name):
    if os.environ.get('HUEYD_SCREENSHOTS') == '1':
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / name))


def test_overview_shows_a_running_task_and_requeue_runs_a_dead_letter(
        make_app, start_daemon, dashboard, browser):
    app = make_app('sqlite')
    daemon = start_daemon(app, '-w', '2')
    daemon.wait_ready(1)
    url = dashboard(app)

    failed = app.sync_feed('https://example.com/feed')
    daemon.wait_until(lambda: app.huey.result_count())
    running = app.slow('seen', 60)
    browser.get(url + '/')
    link = wait(browser, lambda d: d.find_elements(By.LINK_TEXT, running.id),
                'the running task did not appear on the overview')[0]
    row = link.find_element(By.XPATH, './ancestor::tr').text
    assert 'busy' in row and 'slow' in row
    screenshot(browser, 'dashboard-overview.png')

    app.huey.bury(b'not a message', 'cannot run this message: UnpicklingError')
    revived = app.record.s('revived')
    letter = app.huey.add_dead_letter(app.huey.serialize_task(revived),
                                      'task app.record: it kept killing its worker')
    browser.get(url + '/dead-letters')
    requeue = wait(browser, lambda d: d.find_elements(
        By.CSS_SELECTOR, 'tr[data-id="%s"] button.requeue' % letter))[0]
    screenshot(browser, 'dashboard-dead-letters.png')
    requeue.click()
    daemon.wait_until(lambda: app.recorded('revived'), message='the requeued message did not run')
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, 'tr[data-id="%s"]' % letter))
    assert [dead.reason for dead in app.huey.dead_letters()] == [
        'cannot run this message: UnpicklingError']

    browser.get(url + '/events')
    wait(browser, lambda d: any('finished' in row.text and revived.id in row.text
                                for row in d.find_elements(By.CSS_SELECTOR, 'main tbody tr')))
    screenshot(browser, 'dashboard-events.png')

    browser.get(url + '/task/' + failed.id)
    traceback = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'pre.traceback'))[0]
    assert 'ConnectionError: feed https://example.com/feed unreachable' in traceback.text
    screenshot(browser, 'dashboard-task.png')


def test_forged_post_is_refused_and_a_script_argument_is_text(make_app, dashboard, browser):
    app = make_app('sqlite')
    payload = '<script>window.injected = 1</script><img src=x onerror="window.injected = 2">'
    queued = app.record(payload)  # no daemon: it stays on the queue
    url = dashboard(app, '--show-args')

    browser.get(url + '/queue')
    cell = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'td.args'))[0]
    assert cell.text == repr(payload)
    assert browser.find_elements(By.CSS_SELECTOR, 'main script, main img') == []
    assert browser.execute_script('return window.injected') is None

    # A POST without the page's token: from this very page, and from outside a browser.
    status = browser.execute_async_script(
        'const done = arguments[arguments.length - 1];'
        'fetch("/api/revoke", {method: "POST", headers: {"Content-Type": "application/json"},'
        ' body: JSON.stringify({id: arguments[0]})}).then((reply) => done(reply.status));',
        queued.id)
    assert status == 403
    assert request(url + '/api/revoke', 'POST', {'id': queued.id})[0] == 403
    assert not app.huey.is_revoked(queued.id)

    # The page's own button carries it.
    browser.find_element(By.XPATH, '//td[contains(@class, "args")]/..//button').click()
    wait_for(lambda: app.huey.is_revoked(queued.id))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.revoked'))
    screenshot(browser, 'dashboard-queue.png')


def test_statistics_page_shows_the_storages_figures_of_every_task(
        make_app, start_daemon, dashboard, browser):
    from hueyd.taskstats import collect
    app = make_app('sqlite')
    daemon = start_daemon(app, '-w', '2')
    daemon.wait_ready(1)
    for i in range(3):
        app.record('s%d' % i)
    app.sync_feed('https://example.com/feed')
    daemon.wait_until(lambda: sum(row['hour']['runs'] for row in collect(app.huey.storage)['tasks'])
                      == 4, message='the statistics did not reach the storage')
    url = dashboard(app)

    browser.get(url + '/stats')
    rows = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'table.stats tbody tr'))
    cells = {row.find_element(By.TAG_NAME, 'td').text: [cell.text for cell in row.find_elements(
        By.TAG_NAME, 'td')] for row in rows}
    assert cells['record'][1:4] == ['3', '0', '0'] and cells['record'][7:10] == ['3', '0', '0']
    assert cells['sync_feed'][1:4] == ['1', '1', '0']
    screenshot(browser, 'dashboard-stats.png')

    browser.get(url + '/')
    wait(browser, lambda d: 'from the statistics the storage keeps' in d.find_element(
        By.TAG_NAME, 'main').text, 'the chart does not say it comes from the storage')
