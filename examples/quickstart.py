"""The quickstart: an app on the embedded SQLite default, run by the real daemon.

    python examples/quickstart.py

starts `hueyd quickstart.huey` in this folder, enqueues a few tasks, prints their
results as the daemon runs them, then stops the daemon with SIGINT (graceful).
The tasks live in this same file, so the daemon imports them from here.
"""
import datetime
import os
import signal
import subprocess
import sys
import time

from hueyd import Huey, crontab

# No storage named: the embedded default, SQLite in ./huey.db (the daemon runs in this folder).
huey = Huey('quickstart')


@huey.task()
def add(a, b):
    return a + b


@huey.task(retries=2)
def shout(word):
    return word.upper() + '!'


@huey.periodic_task(crontab(minute='*'))
def every_minute():
    print('a minute went by')


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(here)
    # Run as a script this file is `__main__`; enqueue through the module the
    # daemon imports, so both sides name the tasks quickstart.add and so on.
    sys.path.insert(0, here)
    from quickstart import add, shout
    daemon = subprocess.Popen([sys.executable, '-m', 'hueyd', 'quickstart.huey', '-w', '2',
                               '--delay', '0.05', '--max-delay', '0.5'])
    try:
        print('enqueued: add(1, 2), shout("hello"), add(40, 2) in 1 second')
        results = [add(1, 2), shout('hello'), add.schedule((40, 2), delay=1)]
        started = time.monotonic()
        for result in results:
            print('result:', result.get(blocking=True, timeout=30))
        print('all done in %.2fs at %s' % (time.monotonic() - started,
                                            datetime.datetime.now().strftime('%H:%M:%S')))
    finally:
        daemon.send_signal(signal.SIGINT)  # graceful stop, as systemd's KillSignal=SIGINT
        code = daemon.wait(timeout=60)
    print('daemon exited with status', code)
    return code


if __name__ == '__main__':
    sys.exit(main())
