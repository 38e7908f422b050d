"""The tasks of the Flask example, and the Huey instance the daemon runs: tasks.huey.

    hueyd tasks.huey -w 2        # in this directory

The queue is SQLite in huey.db next to this file (HUEY_DB names another file);
HUEY_IMMEDIATE=1 runs tasks inline in the web process instead, with no daemon.
"""
import os
import time

from hueyd import Huey

HERE = os.path.dirname(os.path.abspath(__file__))

huey = Huey('flask-example', filename=os.environ.get('HUEY_DB') or os.path.join(HERE, 'huey.db'),
            immediate=os.environ.get('HUEY_IMMEDIATE') == '1')


@huey.task(retries=1)
def count_words(text):
    """Something worth doing in the background: here, counting words."""
    words = text.split()
    return {'words': len(words), 'longest': max(words, key=len) if words else None}


@huey.task()
def slow_square(n, seconds=1.0):
    time.sleep(seconds)
    return n * n


@huey.task()
def divide(a, b):
    return a / b  # b = 0 shows a failed task
