"""The consumer's building blocks driven by hand, so API tests control every step."""
import datetime
import threading


def drain(huey, timestamp=None, limit=1000):
    """Dequeue and execute until the queue is empty; returns how many ran."""
    count = 0
    while count < limit:
        task = huey.dequeue()
        if task is None:
            return count
        huey.execute(task, timestamp)
        count += 1
    raise AssertionError('queue did not drain after %d tasks' % limit)


def run_due(huey, seconds_ahead=0):
    """Do the scheduler's job as if ``seconds_ahead`` had passed, then drain."""
    moment = huey.now() + datetime.timedelta(seconds=seconds_ahead)
    for task in huey.read_schedule(moment):
        huey.enqueue(task)
    return drain(huey, moment)


class BackgroundWorker:
    """A thread running dequeue/execute until stopped, for blocking Result tests."""

    def __init__(self, huey):
        self.huey = huey
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            task = self.huey.dequeue()
            if task is None:
                self._stop.wait(0.005)
            else:
                self.huey.execute(task)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
