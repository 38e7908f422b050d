"""A storage that keeps nothing (huey's BlackHoleStorage), for tests and immediate mode.

Every write is dropped and every read finds nothing. A lock is always free
(put_if_empty() is True) and a counter always starts again (incr() returns
``amount``). ``shared`` is False: the daemon refuses it, since every task
enqueued would be lost before a worker could see it.
"""
from hueyd.constants import EmptyData
from hueyd.storage.base import BaseStorage


class BlackHoleStorage(BaseStorage):
    shared = False

    def enqueue(self, data, priority=None):
        pass

    def dequeue(self):
        return None

    def queue_size(self):
        return 0

    def enqueued_items(self, limit=None):
        return []

    def flush_queue(self):
        pass

    def add_to_schedule(self, data, ts, priority=None):
        pass

    def read_schedule(self, ts):
        return []

    def next_schedule_time(self):
        return None

    def schedule_size(self):
        return 0

    def scheduled_items(self, limit=None):
        return []

    def flush_schedule(self):
        pass

    def put_data(self, key, value, is_result=False):
        pass

    def peek_data(self, key):
        return EmptyData

    def pop_data(self, key):
        return EmptyData

    def has_data_for_key(self, key):
        return False

    def put_if_empty(self, key, value, ttl=None):
        return True

    def result_store_size(self):
        return 0

    def result_items(self):
        return {}

    def flush_results(self):
        pass

    def incr(self, key, amount=1):
        return amount

    def delete_counter(self, key):
        pass

    def flush_counters(self):
        pass
