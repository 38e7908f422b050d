"""A small task app written against huey's public API.

The imports are the only lines that name hueyd: change ``hueyd`` to ``huey``
in them and the app runs unchanged under huey (tests/test_examples.py checks
exactly that).

Run as a script it works in immediate mode (every task runs inline, in memory)
and prints what happened:

    python examples/huey_compatible.py

Imported, ``huey`` stores in the SQLite file ``huey-example.db`` in the current
directory, ready for a consumer (``hueyd huey_compatible.huey``).
"""
import datetime
import logging
import sys

from hueyd import SqliteHuey, crontab
from hueyd.exceptions import TaskException

huey = SqliteHuey('huey-example', filename='huey-example.db',
                  immediate=__name__ == '__main__')

fired = []  # names of the signals sent since the last report()
attempts = {}
reports = []


@huey.signal()
def remember_signal(signal, task, exc=None):
    fired.append(signal)


@huey.task()
def add(a, b):
    return a + b


@huey.task()
def multiply(a, b):
    return a * b


@huey.task(retries=2)
def flaky_fetch(url):
    """Fails twice, then works: the two retries absorb the failures."""
    attempts[url] = attempts.get(url, 0) + 1
    if attempts[url] < 3:
        raise ConnectionError('%s did not answer' % url)
    return 'fetched %s after %d attempts' % (url, attempts[url])


@huey.task(retries=1)
def always_broken():
    raise ValueError('no good')


@huey.task()
@huey.lock_task('report-lock')
def generate_report(name):
    reports.append(name)
    return 'report %s done' % name


@huey.periodic_task(crontab(minute='0', hour='3'))
def nightly_cleanup():
    reports.append('nightly cleanup')


@huey.periodic_task(crontab(minute='*/15', day_of_week='1-5'))
def weekday_poll():
    reports.append('weekday poll')


def utc_now():
    """Naive UTC: the clock huey keeps when ``utc=True`` (the default)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def report(title, *lines):
    print('== %s' % title)
    for line in lines:
        print('   %s' % line)
    print('   signals: %s' % (', '.join(fired) or '-'))
    del fired[:]


def main():
    verbose = '-v' in sys.argv[1:]
    logging.basicConfig(level=logging.INFO if verbose else logging.CRITICAL,
                        stream=sys.stderr)

    result = add(1, 2)
    report('call a task', 'add(1, 2) = %s' % result.get(blocking=True))

    result = flaky_fetch('https://example.com')
    report('retries', result.get(blocking=True, timeout=5))

    result = always_broken()
    outcome = 'succeeded (unexpected)'
    try:
        result.get(blocking=True)
    except TaskException as exc:
        outcome = 'failed for good: %s' % exc.metadata['error']
    report('retries exhausted', outcome)

    results = multiply.map([(1, 10), (2, 10), (3, 10)])
    report('map', 'multiply.map(...) = %s' % results.get(blocking=True))

    pipeline = add.s(1, 2).then(add, 3).then(multiply, 10)
    results = huey.enqueue(pipeline)
    report('pipeline', 'add(1, 2) -> add(3) -> multiply(10) = %s'
           % results.get(blocking=True))

    result = add.schedule((20, 22), delay=60)
    waiting = [task.name for task in huey.scheduled()]
    # What the consumer's scheduler does once the minute has passed:
    later = utc_now() + datetime.timedelta(seconds=61)
    for task in huey.read_schedule(later):
        huey.execute(task, later)
    report('schedule', 'waiting in the schedule: %s' % waiting,
           'after a minute: %s' % result.get(blocking=True))

    with huey.lock_task('report-lock'):
        result = generate_report('daily')
        outcome = 'ran (unexpected)'
        try:
            result.get(blocking=True)
        except TaskException as exc:
            outcome = 'not run, %s' % exc.metadata['error'].split('(')[0]
    result = generate_report('weekly')
    report('lock_task', 'while the lock was held: %s' % outcome,
           'once released: %s' % result.get(blocking=True),
           'reports written: %s' % reports)

    add.revoke()
    skipped = add(5, 5)
    revoked = add.is_revoked()
    add.restore()
    result = add(5, 5)
    report('revoke and restore', 'revoked: %s, result %s' % (revoked, skipped.get()),
           'restored: %s, result %s' % (not add.is_revoked(), result.get(blocking=True)))

    scheduled = multiply.schedule((6, 7), delay=60)
    scheduled.revoke()
    was_revoked = scheduled.is_revoked()
    scheduled.restore()
    later = utc_now() + datetime.timedelta(seconds=61)
    for task in huey.read_schedule(later):
        huey.execute(task, later)
    report('revoke and restore one result', 'revoked: %s' % was_revoked,
           'restored, then ran: %s' % scheduled.get(blocking=True))

    del reports[:]
    moments = [datetime.datetime(2024, 1, 1, 3, 0),    # Monday 03:00
               datetime.datetime(2024, 1, 1, 3, 7),    # Monday 03:07
               datetime.datetime(2024, 1, 6, 3, 0),    # Saturday 03:00
               datetime.datetime(2024, 1, 6, 12, 30)]  # Saturday 12:30
    due = []
    for moment in moments:
        names = sorted(task.name for task in huey.read_periodic(moment))
        due.append('%s: %s' % (moment.strftime('%a %H:%M'), names or 'nothing'))
        for task in huey.read_periodic(moment):  # what the consumer does each minute
            huey.enqueue(task)
    report('periodic tasks', *due + ['ran: %s' % sorted(reports)])
    return 0


if __name__ == '__main__':
    sys.exit(main())
