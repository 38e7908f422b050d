"""The chaos suite (issue 5): a real daemon on a real storage, abused while it works.

Every run prints one line of figures, visible without ``-s``::

    chaos: storage=redis tasks=5000 lost=0 duplicates=N orphans=0 dead_letters=0 ...

* ``test_redis_chaos``: 5,000 tasks on a dedicated persistent redis-server while
  a pool process is killed with SIGKILL every 300 ms, the master is killed with
  SIGKILL once (and a new daemon started), Redis is restarted once and the
  master gets 20 SIGHUPs in 2 seconds.
* ``test_redis_asyncio_chaos``: the same with ``-k asyncio`` pools (four, each running
  ASYNC_WORKERS tasks at once) and tasks that take up to 19 ms, half of them
  ``async def`` (awaited on the pool's loop), half plain (in its thread pool): a kill
  -9 then hits a pool with many tasks in flight, messages claimed ahead of its slots,
  and acknowledgements waiting for its next write batch.
* ``test_postgres_chaos``: the same on a dedicated PostgreSQL, restarted (a fast
  shutdown, then a start on the same data) where Redis is.
* ``test_sentinel_chaos``: the same on Redis Sentinel (a master, a replica, three
  sentinels), where the restart is a failover: the master is killed with SIGKILL, the
  sentinels promote the replica, and the killed server comes back as its replica. The
  test enqueues with ``wait_replicas=1``, without which a failover may lose enqueues
  already acknowledged (docs/redis-ha.md).
* ``test_cluster_chaos``: the same on a Redis Cluster of three masters (without
  replicas) that keep their data (AOF, fsync always), where the restart is a SIGKILL
  of the master serving the queue's slot, and a start on its port, data and nodes.conf.
* ``test_sqlite_chaos``: the same on SQLite, without the restart.
* ``test_bad_messages_become_dead_letters``: 1,000 malformed, unsigned,
  forged or unknown-task messages mixed into 1,000 good ones.

Each task appends its number to a file with one O_APPEND write when it runs
(before its result is stored and its claim acknowledged), so a task that
ran twice shows up twice: ``lost`` (asserted zero) is how many numbers never
appear, ``duplicates`` (reported) how many extra lines there are. Every wait
is bounded by time; a failure gives the figures, a timeline, the missing
numbers, the daemons' errors counted by kind and their log tails.

The pool killed every 300 ms is a random one of those holding a claim (a
task in hand), found through ``claimed_items()``, when at least two do: a pool
still importing the app is never the victim, as killing those only trips the
master's crash-loop backoff, and the last pool at work is spared (see
``Chaos.victims``). So how many kills 5,000 tasks leave room for depends on the machine's
speed: a run goes on until MIN_POOL_KILLS were made, adding tasks whenever the
queue runs low (a fast machine), within the last stage's time limit.
``CHAOS_VERBOSE=1`` also prints each run's timeline, and the errors its daemons logged.
"""
import collections
import os
import random
import re
import signal
import time

import psutil
import pytest

from daemon_harness import App, start_daemon  # noqa: F401 (start_daemon: a fixture)
from hueyd import SignedSerializer
from redis_ha_support import Cluster, Sentinels
from support import PostgresServer, RedisServer

pytestmark = pytest.mark.chaos

TASKS = 5000
POOLS = 4
LEASE_TIMEOUT = 2
# Every kill -9 of a pool counts a crash for the task it was running (hueyd.daemon.deaths);
# with up to ~200 kills on a loaded machine a few tasks are hit twice, and the default of
# 3 would turn a rare third hit into a dead letter. 10 is never reached by chance here.
MAX_DELIVERIES = 10
DAEMON_ARGS = ('-k', 'process', '-w', str(POOLS), '--lease-timeout', str(LEASE_TIMEOUT),
               '--max-deliveries', str(MAX_DELIVERIES))
ASYNC_WORKERS = 10  # tasks each -k asyncio pool runs at once
ASYNCIO_ARGS = ('-k', 'asyncio', '--processes', str(POOLS), '-w', str(ASYNC_WORKERS),
                '--lease-timeout', str(LEASE_TIMEOUT), '--max-deliveries', str(MAX_DELIVERIES))
POOL_KILL_EVERY = 0.3           # seconds between two kill -9 of a pool
MIN_POOL_KILLS = 10             # the run goes on, with more tasks, until that many were made
TOP_UP = 200                    # tasks added at a time meanwhile, when the queue runs low
SIGHUPS, SIGHUP_SPAN = 20, 2.0  # that many reloads within that many seconds
STORAGE_DOWN_FOR = 1.0          # seconds the storage's server stays stopped in its restart
STAGE_TIMEOUT = 60              # seconds a stage of the run may take
DRAIN_TIMEOUT = 60              # seconds for the last tasks, leases and recoveries
STALL_AFTER = 5 * LEASE_TIMEOUT # no task ran that long, and nothing is left to run: lost
STOP_TIMEOUT = 30               # seconds for the daemons and their processes to go
SECRET = 'chaos-secret'
FORGED_FROM = 100000            # task numbers in bad messages start here

CHAOS_APP = '''\
"""The chaos suite's application (written by tests/chaos/test_chaos.py)."""
import asyncio
import os
import time

from hueyd import Huey, SignedSerializer

URL = os.environ['HUEYD_TEST_URL']
NAME = os.environ['HUEYD_TEST_NAME']
OUT = os.environ['HUEYD_TEST_OUT']
SECRET = os.environ.get('CHAOS_SECRET')

huey = Huey(NAME, url=URL, **({'serializer': SignedSerializer(secret=SECRET)} if SECRET else {}))


@huey.task()
def mark(number):
    # One O_APPEND write per run: lines of concurrent processes never interleave.
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b'%d %d\\n' % (number, os.getpid()))
    finally:
        os.close(fd)
    return number


@huey.task()
async def amark(number):
    # Up to 19 ms on the loop first, so that a pool has many tasks in flight when killed.
    await asyncio.sleep(number % 20 / 1000)
    return mark.call_local(number)


@huey.task()
def nap(number):
    # The same in a thread: a plain task under -k asyncio runs in the pool's thread pool.
    time.sleep(number % 20 / 1000)
    return mark.call_local(number)
'''


class ChaosApp(App):
    """The harness's App (directory, env, output file) with the chaos application."""

    def __init__(self, directory, url, secret=None):
        super().__init__(directory, url)
        self.huey.storage.close()
        with open(self.path, 'w') as f:
            f.write(CHAOS_APP)
        if secret:
            self.env['CHAOS_SECRET'] = secret
        self.module = self._load()
        self.huey = self.module.huey
        if url.startswith(('redis', 'postgres')):
            self.huey.storage.blocking = False
        self._offset = 0
        self._runs = collections.Counter()

    def runs(self):
        """Counter: task number -> how many times it ran (reads only what is new)."""
        try:
            with open(self.out, 'rb') as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self._runs
        complete = data[:data.rfind(b'\n') + 1]  # a line is written whole, but be safe
        self._offset += len(complete)
        for line in complete.splitlines():
            self._runs[int(line.split()[0])] += 1
        return self._runs

    def done(self):
        return len(self.runs())


def banner(capsys, line):
    with capsys.disabled():
        print('\n' + line, flush=True)


class Chaos:
    """Drives daemons on one app, killing a random working pool every POOL_KILL_EVERY
    seconds while it waits for something (``run_until``), and keeps the figures."""

    def __init__(self, app, start_daemon, seed, kill_pools=True, args=DAEMON_ARGS):
        self.app = app
        self.start_daemon = start_daemon
        self.args = args  # the daemon's
        self.rng = random.Random(seed)
        self.seed = seed
        self.kill_pools = kill_pools
        self.daemons = []
        self.started = time.monotonic()
        self.next_kill = None
        self.figures = collections.Counter()
        self.timeline = []  # 'seconds since the start, what happened (tasks done by then)'
        self.restart = None  # (stop, start) of the storage's server, to restart it once
        self.numbers = ()   # the task numbers this run expects to see run

    @property
    def daemon(self):
        return self.daemons[-1]

    def note(self, what):
        self.timeline.append('%.1fs %s (done %d)' % (time.monotonic() - self.started, what,
                                                      self.app.done()))

    def start(self):
        self.daemons.append(self.start_daemon(self.app, *self.args))
        self.figures['daemons'] += 1
        return self.daemon

    # -- chaos ------------------------------------------------------------------

    def tick(self):
        """Kill -9 one pool of the current daemon when it is time to.

        Kills are at least POOL_KILL_EVERY seconds apart; one that is due waits
        (and is retried on the next poll) until there is a pool worth killing.
        """
        if not self.kill_pools:
            return
        now = time.monotonic()
        if self.next_kill is None:
            self.next_kill = now + POOL_KILL_EVERY
        if now < self.next_kill:
            return
        pools = self.victims()
        if not pools:
            return
        try:
            self.rng.choice(pools).send_signal(signal.SIGKILL)
            self.figures['pool_kills'] += 1
        except psutil.Error:
            return  # it died meanwhile: try again on the next poll
        self.next_kill += POOL_KILL_EVERY
        if self.next_kill < now:  # the kill was late (no victim for a while): no burst
            self.next_kill = now + POOL_KILL_EVERY

    def victims(self):
        """The pools of the current daemon holding a claim: a task in hand.

        Killing one of those is the interesting case (its claim must come back
        through lease recovery), and it spares pools still importing the app:
        killing those only exercises the master's crash-loop backoff, which then
        starves the run. Empty while the storage cannot be read.

        Empty too while only one pool holds claims: the kill would leave no pool
        working until a new one has booted, and when booting takes longer than the
        kill interval (PostgreSQL pools import psycopg after the fork, over a
        second on a loaded 2-core machine) every new pool would be killed as soon
        as it claims, and the run would measure boot times instead of delivery.
        """
        try:
            # Worker ids are "<host>:<pid>".
            working = {int(worker.rsplit(':', 1)[1])
                       for worker in self.app.huey.storage.claimed_items()}
        except Exception:  # the storage is down
            return []
        pools = [proc for proc, title in self.daemon.descendants()
                 if proc.pid in working and title.startswith('hueyd: pool')]
        return pools if len(pools) > 1 else []

    def pace(self, seconds):
        """Let ``seconds`` pass, killing pools on schedule meanwhile."""
        end = time.monotonic() + seconds
        while True:
            self.tick()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.02, left))

    def run_until(self, predicate, timeout, what, need_running=True, stall=False,
                  meanwhile=None):
        """Wait (killing pools on schedule, calling ``meanwhile()`` if given) until
        ``predicate()``; fail with the figures.

        ``what`` names what is awaited (a callable: computed only on failure).
        ``stall=True``: also fail as soon as nothing can happen any more: no task
        ran for STALL_AFTER seconds and the queue, the schedule and the claims are
        empty (whatever is missing then is lost), instead of waiting out ``timeout``.
        """
        name = what if callable(what) else (lambda: what)
        deadline = time.monotonic() + timeout
        last_done, last_change, next_look = -1, time.monotonic(), 0.0
        while not predicate():
            self.tick()
            now = time.monotonic()
            if need_running and self.daemon.proc.poll() is not None:
                self.fail('the hueyd master exited (status %s) while waiting for %s'
                          % (self.daemon.proc.returncode, name()))
            if now > deadline:
                self.fail('%s: not reached within %ss' % (name(), timeout))
            if stall and now >= next_look:
                next_look = now + 1.0
                done = self.app.done()
                if done != last_done:
                    last_done, last_change = done, now
                elif (now - last_change > STALL_AFTER and self.storage_empty()
                      and not predicate()):
                    self.fail('%s: stalled: no task ran for %ss and the queue, the schedule '
                              'and the claims are empty, so the missing tasks are lost'
                              % (name(), STALL_AFTER))
            if meanwhile is not None:
                meanwhile()
            time.sleep(0.02)

    def storage_empty(self):
        storage = self.app.huey.storage
        try:
            return not (storage.queue_size() or storage.schedule_size()
                        or storage.claimed_items())
        except Exception:  # unreadable (Redis restarting): not known to be empty
            return False

    def kill_master(self):
        """kill -9 the master; its children must hand their claims back at once and exit."""
        old = self.daemon
        pools = {proc.pid for proc in old.pools()}  # also remembers every child, to check each dies
        os.kill(old.pid, signal.SIGKILL)
        assert old.wait(10) == -signal.SIGKILL
        self.figures['master_kills'] += 1
        self.start()
        self.run_until(lambda: not old.leftovers(), STOP_TIMEOUT,
                       lambda: 'the children of the killed master %d to exit (left: %s)'
                       % (old.pid, ['%d %r' % (p.pid, p.name()) for p in old.leftovers()]))
        # They got SIGTERM from the kernel: their claims are back on the queue already,
        # not waiting for their leases to run out.
        held = {worker: len(messages) for worker, messages in self.claimed().items()
                if int(worker.rsplit(':', 1)[1]) in pools}
        if held:
            self.fail('pools of the killed master exited without handing their claims back: '
                      '%s' % held)

    def claimed(self):
        """claimed_items(), or {} while the storage cannot be read."""
        try:
            return self.app.huey.storage.claimed_items()
        except Exception:
            return {}

    def restart_storage(self):
        stop, start = self.restart
        stop()
        try:
            self.pace(STORAGE_DOWN_FOR)
        finally:
            start()
        self.figures['storage_restarts'] += 1

    def sighups(self):
        for _ in range(SIGHUPS):
            self.daemon.send(signal.SIGHUP)
            self.figures['sighups'] += 1
            self.pace(SIGHUP_SPAN / SIGHUPS)

    # -- figures ----------------------------------------------------------------

    def counts(self, numbers):
        runs = self.app.runs()
        lost = [n for n in numbers if n not in runs]
        duplicates = sum(count - 1 for count in runs.values() if count > 1)
        return lost, duplicates

    def orphans(self):
        return [proc for daemon in self.daemons for proc in daemon.leftovers()]

    def wait_for_no_orphans(self):
        """After the last stop: the processes of every daemon still alive STOP_TIMEOUT later."""
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.orphans() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.orphans()

    def storage_state(self):
        try:
            storage = self.app.huey.storage
            return 'queue=%s claimed=%s dead_letters=%s' % (
                storage.queue_size(), sum(map(len, storage.claimed_items().values())),
                len(storage.dead_letters()))
        except Exception as exc:  # the storage may be what is broken
            return 'storage unreadable: %s: %s' % (type(exc).__name__, exc)

    def log_errors(self):
        """The ERROR and CRITICAL messages of every daemon, counted by kind."""
        kinds = collections.Counter()
        for daemon in self.daemons:
            for line in daemon.log_text().splitlines():
                match = re.match(r'\[[^]]*\] (ERROR|CRITICAL) \d+ ([\w.]+): (.*)', line)
                if match:
                    text = re.sub(r'[0-9a-f]{8}-[0-9a-f-]{27}', '<id>', match.group(3))
                    text = re.sub(r'\d+', 'N', text)[:120]
                    kinds['%s %s' % (match.group(1), text)] += 1
        return '; '.join('%dx %s' % (count, text) for text, count in kinds.most_common(10))

    def fail(self, why):
        runs = self.app.runs()
        lines = [why,
                 'figures: done=%d runs=%d %s elapsed=%.1fs seed=%s' % (
                     len(runs), sum(runs.values()),
                     ' '.join('%s=%s' % item for item in sorted(self.figures.items())),
                     time.monotonic() - self.started, self.seed),
                 'timeline: %s' % '; '.join(self.timeline),
                 'storage: %s' % self.storage_state()]
        missing = [n for n in self.numbers if n not in runs]
        if missing:
            lines.append('not run (yet): %d, first: %s' % (len(missing), missing[:10]))
        lines.append('errors in the daemons\' logs: %s' % (self.log_errors() or 'none'))
        for index, daemon in enumerate(self.daemons):
            lines.append('=== daemon %d of %d' % (index + 1, len(self.daemons)))
            lines.append(daemon.describe())
        pytest.fail('\n'.join(lines), pytrace=False)


def chunks(numbers, parts):
    size = -(-len(numbers) // parts)
    return [numbers[i:i + size] for i in range(0, len(numbers), size)]


def run_chaos(app, start_daemon, capsys, storage_name, restart=None, args=DAEMON_ARGS,
              task=None):
    """5,000 tasks in four stages; between stages, with a stage's tasks in flight:
    kill -9 the master, restart the storage's server (``restart``: its stop and start
    functions, when given), 20 SIGHUPs in 2 seconds.
    Pools are killed every POOL_KILL_EVERY seconds throughout.
    ``args``: the daemon's; ``task(number)``: the task that marks ``number`` (``mark``)."""
    seed = random.randrange(1 << 30)
    chaos = Chaos(app, start_daemon, seed, args=args)
    task = task or app.mark.s
    kind = args[args.index('-k') + 1]
    chaos.restart = restart
    numbers = chaos.numbers = list(range(TASKS))  # grows with the tasks added at the end
    stages = chunks(numbers, 4)
    enqueued = 0
    storage = app.huey.storage

    def enqueue(stage):
        nonlocal enqueued
        app.huey.enqueue_many(task(n) for n in stage)
        enqueued += len(stage)

    def halfway_through_last_stage():
        # Half of the latest stage done: the event then hits work in flight.
        return app.done() >= enqueued - len(stages[0]) // 2

    def enough_kills():
        return chaos.figures['pool_kills'] >= MIN_POOL_KILLS

    def keep_pools_busy():
        # Short of kills (the tasks went fast): more work for pools to be killed holding.
        if enough_kills():
            return
        try:
            low = storage.queue_size() < TOP_UP
        except Exception:  # unreadable for now: look again on the next poll
            return
        if low:
            more = list(range(len(numbers), len(numbers) + TOP_UP))
            numbers.extend(more)
            enqueue(more)

    chaos.start().wait_ready(POOLS, booted=True)
    chaos.note('daemon ready')
    enqueue(stages[0])
    chaos.run_until(halfway_through_last_stage, STAGE_TIMEOUT, 'stage 1 half done', stall=True)
    chaos.note('stage 1 half done')

    enqueue(stages[1])
    chaos.kill_master()
    chaos.note('master killed, new daemon started, old children gone')
    chaos.run_until(halfway_through_last_stage, STAGE_TIMEOUT, 'stage 2 half done', stall=True)
    chaos.note('stage 2 half done')

    enqueue(stages[2])
    if restart is not None:
        chaos.restart_storage()
        chaos.note('%s restarted' % storage_name)
        chaos.run_until(halfway_through_last_stage, STAGE_TIMEOUT, 'stage 3 half done', stall=True)
        chaos.note('stage 3 half done')

    enqueue(stages[3])
    chaos.sighups()
    chaos.note('%d SIGHUPs sent' % SIGHUPS)
    chaos.run_until(lambda: enough_kills() and not chaos.counts(numbers)[0],
                    STAGE_TIMEOUT + DRAIN_TIMEOUT,
                    lambda: 'every task to run at least once, after %d pool kills'
                    % MIN_POOL_KILLS, stall=True, meanwhile=keep_pools_busy)
    chaos.note('every task ran, %d pool kills' % chaos.figures['pool_kills'])
    # No more kills: let recoveries finish, so the duplicate count is final.
    chaos.kill_pools = False
    chaos.run_until(lambda: storage.queue_size() == 0 and not storage.claimed_items(),
                    DRAIN_TIMEOUT, 'the queue and the claims to empty')
    chaos.note('queue and claims empty')

    daemon = chaos.daemon
    daemon.send(signal.SIGINT)
    status = daemon.wait(STOP_TIMEOUT)
    orphans = chaos.wait_for_no_orphans()

    lost, duplicates = chaos.counts(numbers)
    dead = len(app.huey.dead_letters())
    figures = chaos.figures
    banner(capsys, 'chaos: storage=%s -k %s tasks=%d lost=%d duplicates=%d orphans=%d '
           'dead_letters=%d pool_kills=%d master_kills=%d storage_restarts=%d sighups=%d '
           'seconds=%.1f seed=%d' % (
               storage_name, kind, len(numbers), len(lost), duplicates, len(orphans), dead,
               figures['pool_kills'], figures['master_kills'], figures['storage_restarts'],
               figures['sighups'], time.monotonic() - chaos.started, seed))
    if os.environ.get('CHAOS_VERBOSE'):
        banner(capsys, 'chaos:   %s' % '; '.join(chaos.timeline))
        banner(capsys, 'chaos:   errors logged: %s' % (chaos.log_errors() or 'none'))

    if lost or orphans or dead or status != 0:
        chaos.fail('lost=%d (first: %s) orphans=%s dead_letters=%d exit status=%s' % (
            len(lost), lost[:10], ['%d %r' % (p.pid, p.name()) for p in orphans],
            dead, status))
    # The run went on until this held (see keep_pools_busy), whatever the machine's speed.
    assert figures['pool_kills'] >= MIN_POOL_KILLS, 'the chaos barely happened: %s' % dict(figures)


@pytest.fixture
def persistent_redis():
    """A redis-server of its own (the test restarts it) that keeps its data: AOF, fsync always."""
    with RedisServer(persistent=True) as server:
        yield server


# persistent_redis before start_daemon: the daemons are torn down before the server.
def test_redis_chaos(tmp_path, persistent_redis, start_daemon, capsys):
    app = ChaosApp(tmp_path, persistent_redis.url)
    try:
        run_chaos(app, start_daemon, capsys, 'redis',
                  restart=(persistent_redis.stop, persistent_redis.start))
    finally:
        app.huey.storage.close()


# persistent_redis before start_daemon: the daemons are torn down before the server.
def test_redis_asyncio_chaos(tmp_path, persistent_redis, start_daemon, capsys):
    app = ChaosApp(tmp_path, persistent_redis.url)
    try:
        run_chaos(app, start_daemon, capsys, 'redis',
                  restart=(persistent_redis.stop, persistent_redis.start), args=ASYNCIO_ARGS,
                  task=lambda n: (app.amark if n % 2 else app.nap).s(n))
    finally:
        app.huey.storage.close()


@pytest.fixture
def restartable_postgres():
    """A PostgreSQL of its own (the test restarts it); its fast shutdown keeps every
    committed transaction."""
    with PostgresServer() as server:
        yield server


# restartable_postgres before start_daemon: the daemons are torn down before the server.
def test_postgres_chaos(tmp_path, restartable_postgres, start_daemon, capsys):
    app = ChaosApp(tmp_path, restartable_postgres.dsn)
    try:
        run_chaos(app, start_daemon, capsys, 'postgres',
                  restart=(restartable_postgres.halt, restartable_postgres.start))
    finally:
        app.huey.storage.close()


@pytest.fixture
def failing_sentinels():
    """A Sentinel deployment of its own: the test kills its master."""
    with Sentinels() as deployment:
        yield deployment


# failing_sentinels before start_daemon: the daemons are torn down before the servers.
def test_sentinel_chaos(tmp_path, failing_sentinels, start_daemon, capsys):
    app = ChaosApp(tmp_path, failing_sentinels.url)
    # An enqueue returns once the replica has it, so the failover keeps it.
    app.huey.storage.wait_replicas = 1
    try:
        run_chaos(app, start_daemon, capsys, 'sentinel',
                  restart=(failing_sentinels.master.kill, failing_sentinels.rejoin))
    finally:
        app.huey.storage.close()


@pytest.fixture
def persistent_cluster():
    """A Redis Cluster of its own (the test restarts a node) whose nodes keep their data:
    AOF, fsync always."""
    with Cluster(settings=['appendonly yes', 'appendfsync always']) as deployment:
        yield deployment


# persistent_cluster before start_daemon: the daemons are torn down before the servers.
def test_cluster_chaos(tmp_path, persistent_cluster, start_daemon, capsys):
    app = ChaosApp(tmp_path, persistent_cluster.url)
    storage = app.huey.storage
    node = persistent_cluster.node_serving(
        storage.conn.execute_command('CLUSTER KEYSLOT', storage.queue_key))
    try:
        run_chaos(app, start_daemon, capsys, 'cluster',
                  restart=(node.kill, lambda: persistent_cluster.restart(node)))
    finally:
        storage.close()


def test_sqlite_chaos(tmp_path, start_daemon, capsys):
    app = ChaosApp(tmp_path, 'sqlite:///%s/huey.db' % tmp_path)
    try:
        run_chaos(app, start_daemon, capsys, 'sqlite')
    finally:
        app.close()


# -- bad messages -------------------------------------------------------------

def bad_messages(app, rng, count, first):
    """``count`` messages a pool must refuse, a quarter of each kind. Those that
    name ``mark`` use numbers from ``first`` on: if one ran, its number tells."""
    huey = app.huey
    other = SignedSerializer(secret='not-' + SECRET)
    kinds = [
        # random bytes: unsigned (short ones are too short to hold a signature)
        lambda i: rng.randbytes(rng.randrange(1, 200)),
        # correctly signed pickles of things that are not task messages
        lambda i: huey.serializer.serialize(rng.choice(
            [{'not': 'a message', 'n': i}, ('tuple', i), i, None, [i, b'x' * i]])),
        # correctly signed messages naming a task nobody registered
        lambda i: huey.serializer.serialize(huey.registry.create_message(
            app.mark.s(first + i))._replace(name='app.no_such_task_%d' % i)),
        # real task messages, signed with another secret
        lambda i: other.serialize(huey.registry.create_message(app.mark.s(first + i))),
    ]
    return [kinds[i % len(kinds)](i) for i in range(count)]


@pytest.mark.parametrize('storage', ['redis', 'sqlite'])
def test_bad_messages_become_dead_letters(tmp_path, start_daemon, capsys, request, storage):
    count = 1000
    if storage == 'redis':
        url = request.getfixturevalue('redis_server').url
    else:
        url = 'sqlite:///%s/huey.db' % tmp_path
    app = ChaosApp(tmp_path, url, secret=SECRET)
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    chaos = Chaos(app, start_daemon, seed, kill_pools=False)
    try:
        daemon = chaos.start()
        daemon.wait_ready(POOLS, booted=True)
        master = psutil.Process(daemon.pid)
        good = [app.huey.serialize_task(app.mark.s(n)) for n in range(count)]
        bad = bad_messages(app, rng, count, first=FORGED_FROM)
        mixed = good + bad
        rng.shuffle(mixed)
        app.huey.storage.enqueue_many([(data, None) for data in mixed])

        numbers = chaos.numbers = list(range(count))
        storage_ = app.huey.storage
        chaos.run_until(lambda: not chaos.counts(numbers)[0], STAGE_TIMEOUT,
                        'every good task to run', stall=True)
        chaos.run_until(lambda: len(storage_.dead_letters()) >= count, STAGE_TIMEOUT,
                        '%d dead letters' % count)
        chaos.run_until(lambda: storage_.queue_size() == 0 and not storage_.claimed_items(),
                        STAGE_TIMEOUT, 'the queue and the claims to empty')
        letters = app.huey.dead_letters()
        same_master = daemon.running and master.is_running() and daemon.pid == master.pid
        # A pool that crashed on a message would have been replaced: the master says so.
        crashes = [line for line in daemon.log_text().splitlines() if ' died (' in line]
        daemon.send(signal.SIGINT)
        status = daemon.wait(STOP_TIMEOUT)
        orphans = chaos.wait_for_no_orphans()
        lost, duplicates = chaos.counts(numbers)
        refused_but_ran = sorted(n for n in app.runs() if n >= FORGED_FROM)
        banner(capsys, 'chaos: storage=%s tasks=%d bad=%d lost=%d duplicates=%d orphans=%d '
               'dead_letters=%d master_pid_unchanged=%s pool_crashes=%d seconds=%.1f seed=%d' % (
                   storage, count, count, len(lost), duplicates, len(orphans), len(letters),
                   same_master, len(crashes), time.monotonic() - started, seed))

        if lost or refused_but_ran:
            chaos.fail('good tasks lost: %d (first: %s); bad messages that ran: %d (first: %s)'
                       % (len(lost), lost[:10], len(refused_but_ran), refused_but_ran[:10]))
        assert same_master, 'the master changed or died\n%s' % daemon.describe()
        assert not crashes, 'pools died on bad messages:\n%s' % '\n'.join(crashes[:10])
        assert len(letters) == count, '%d dead letters, expected %d' % (len(letters), count)
        # Each bad message is a dead letter exactly once, with its raw payload.
        assert collections.Counter(letter.payload for letter in letters) == \
            collections.Counter(bad)
        reasons = collections.Counter(
            'signature' if 'signature' in letter.reason else
            'unknown task' if 'not found in TaskRegistry' in letter.reason else
            'not a message' if 'not a task message' in letter.reason else letter.reason
            for letter in letters)
        assert reasons == {'signature': count // 2, 'unknown task': count // 4,
                           'not a message': count // 4}, reasons
        assert status == 0 and not orphans, (status, orphans)
    finally:
        app.close()
