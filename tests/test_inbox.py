"""The pool's inbox: one claim for every idle worker, and claiming ahead only while tasks are quick."""
import threading

from hueyd.daemon.inbox import MAX_CLAIM, Inbox, Message
from support import wait_until


class Fetcher:
    """A fetch function that records each ``count`` and hands out numbered messages."""

    def __init__(self):
        self.counts = []
        self.next = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self, count):
        self.counts.append(count)
        self.release.wait(10)
        messages = [Message(None, self.next + i, None, None) for i in range(count)]
        self.next += count
        return messages


def test_one_claim_serves_every_worker_that_waits_meanwhile():
    fetch = Fetcher()
    fetch.release.clear()
    inbox = Inbox(fetch, lambda: False)
    got = []
    workers = [threading.Thread(target=lambda: got.append(inbox.take().data)) for _ in range(4)]
    for worker in workers:
        worker.start()
    wait_until(lambda: inbox._waiting == 3, timeout=5, message='workers did not wait for the fetcher')
    fetch.release.set()
    for worker in workers:
        worker.join(5)
    # The first fetcher claimed for itself alone; the next one claims for the
    # three that waited meanwhile (nothing ahead: no task has run yet).
    assert fetch.counts == [1, 3]
    assert sorted(got) == [0, 1, 2, 3]


def test_claims_run_ahead_while_tasks_are_quick_and_stop_after_a_slow_one():
    fetch = Fetcher()
    inbox = Inbox(fetch, lambda: False)
    inbox.take()
    assert fetch.counts == [1]  # nothing known about the tasks yet: no more than needed
    for _ in range(9):
        while True:
            inbox.finished(0.0001)
            if not len(inbox):
                break
            inbox.take()
        inbox.take()
    assert fetch.counts == [1, 2, 3, 5, 9, 17, 33, 65, MAX_CLAIM, MAX_CLAIM]
    inbox.finished(1.0)
    while len(inbox):
        inbox.take()
    inbox.take()
    assert fetch.counts[-1] == 1


def test_a_stopping_pool_takes_nothing_more():
    stopping = threading.Event()
    fetch = Fetcher()
    inbox = Inbox(fetch, stopping.is_set)
    stopping.set()
    assert inbox.take() is None
    assert fetch.counts == []
