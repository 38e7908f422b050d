"""Many nodes on one storage (issue 14): four hueyd daemons, each a real ``python -m hueyd``
with its own master, pool and scheduler, as four machines would run them, share one Redis
and, in the second run, one PostgreSQL.

- Every task runs: each one's number is counted once whoever ran it (at least once;
  duplicates are reported in the figures line, not asserted).
- Each periodic task is enqueued once per minute across the nodes, the killed one included.
- The claims of a node killed with -9 (every process of it at once, as when its machine
  is lost) go back to the queue when their lease runs out and the others run them.
- ``hueyctl status --json`` shows the four nodes, then the three that are left.
- A new PostgreSQL client (a pool starting, hueyctl) does not hold up the others' writes.

The minute. A scheduler enqueues periodic tasks when its clock's minute changes (and once
at start), after marking the minute in the storage (``Huey.enqueue_periodic``); its clock
is UTC, or local time with the documented ``-o/--localtime``. The nodes here run with
``--localtime`` in a POSIX time zone whose offset has seconds (``TZ=HNT-0:00:37``), picked
so that their minute turns over BOUNDARY_AFTER seconds after they start instead of up to a
minute later. The four share the zone, so at that moment they race for the same mark, as
nodes in one zone do: nothing in hueyd is told it is being tested.

Every wait is bounded; the run prints one line, visible without ``-s``::

    many nodes: storage=redis nodes=4 tasks=1000 lost=0 duplicates=0 victim_claims=12 ...
"""
import collections
import json
import os
import re
import signal
import time
import uuid

import pytest

from daemon_harness import APP_SOURCE, make_app, start_daemon  # noqa: F401 (fixtures)
from hueyd.nodes import node_id
from hueyd.storage import PostgresStorage
from ops_support import hueyctl, open_gate

NODES = 4
TASKS = 1000
GATES = 3               # tasks that hold their worker until the test opens the gate
LEASE_TIMEOUT = 2
BOUNDARY_AFTER = 20     # seconds from the start to the nodes' first minute boundary
# A scheduler marks a minute, then enqueues its periodic tasks: a node killed in between
# skips that minute (documented). The kill stays out of this window around the boundary.
BOUNDARY_GUARD = (1.0, 4.0)
NODE_ARGS = ('-k', 'thread', '-w', '2', '--lease-timeout', str(LEASE_TIMEOUT), '--localtime')
WAIT = 30               # seconds any one condition may take on a loaded 2-core machine

# The daemon tests' application (huey, write, DIR), and the tasks of this test.
APP = APP_SOURCE + '''
from hueyd import crontab  # noqa: E402


@huey.task()
def mark(number):
    write('mark', number, os.getpid())


@huey.task()
def gate(tag):
    """Holds its worker until the test creates the file gate-<tag> (60 s at most)."""
    write('start', tag, os.getpid())
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(DIR, 'gate-' + tag)) and time.time() < deadline:
        time.sleep(0.01)
    write('done', tag, os.getpid())


@huey.periodic_task(crontab(), context=True)  # every minute
def every_minute(task):
    write('periodic', 'every_minute', task.id, os.getpid())


@huey.periodic_task(crontab(), context=True)
def also_every_minute(task):
    write('periodic', 'also_every_minute', task.id, os.getpid())
'''

PERIODIC = ('every_minute', 'also_every_minute')
ENQUEUED_PERIODIC = re.compile(r'enqueued (\d+) periodic task\(s\) for (\S+ \S+)')


def zone_turning_minute_at(unix_time):
    """A POSIX TZ whose clock starts a new minute at ``unix_time`` (to the second)."""
    ahead = -round(unix_time) % 60   # local = UTC + ahead seconds
    return 'HNT-0:00:%02d' % ahead


def status_nodes(app):
    """The nodes `hueyctl status --json` shows: {node id: node record with its pools}."""
    done = hueyctl(app, 'status', '--json')
    assert done.returncode == 0, 'hueyctl status: %s%s' % (done.stdout, done.stderr)
    return {node['node']: node for node in json.loads(done.stdout)['nodes']}


def shown(app, daemons):
    """True when status shows exactly these nodes, each with its own record and its pool."""
    nodes = status_nodes(app)
    return set(nodes) == {node_id(d.pid) for d in daemons} and all(
        not nodes[node_id(d.pid)].get('missing_record') and
        sorted(pool['pid'] for pool in nodes[node_id(d.pid)]['pools']) == d.pool_pids()
        for d in daemons)


def periodic_log(daemons):
    """[(minute, count)] for every 'enqueued N periodic task(s) for MINUTE' line of the nodes."""
    return [(m.group(2), int(m.group(1))) for d in daemons
            for m in ENQUEUED_PERIODIC.finditer(d.log_text())]


def periodic_runs(app):
    """{task name: set of task ids that ran}."""
    runs = collections.defaultdict(set)
    for words in app.lines():
        if words[0] == 'periodic':
            runs[words[1]].add(words[2])
    return runs


def worker_pid(worker):
    return int(worker.rsplit(':', 1)[1])  # worker ids are "<host>:<pool pid>"


@pytest.mark.parametrize('storage', ['redis', 'postgres'])
def test_four_nodes_share_one_storage(make_app, start_daemon, capsys, storage):
    started = time.monotonic()
    app = make_app(storage, source=APP)
    boundary = time.monotonic() + BOUNDARY_AFTER
    zone = zone_turning_minute_at(time.time() + BOUNDARY_AFTER)
    daemons = [start_daemon(app, *NODE_ARGS, env={'TZ': zone}) for _ in range(NODES)]
    for daemon in daemons:
        daemon.wait_ready(1, booted=True)
    first = daemons[0]
    first.wait_until(lambda: shown(app, daemons), WAIT,
                     'hueyctl status never showed the %d nodes' % NODES)

    # A node runs a gated task (it holds that claim), then the tasks flow through all.
    gates = ['g%d' % i for i in range(GATES)]
    for tag in gates:
        app.gate(tag)
    pid_node = {pid: d for d in daemons for pid in d.pool_pids()}
    node_index = {pid: daemons.index(d) for pid, d in pid_node.items()}

    def started_gates():
        return [(tag, pid) for tag, pid in app.events('start') if pid in pid_node]
    first.wait_until(started_gates, WAIT, 'no gated task started')
    victim = pid_node[started_gates()[0][1]]
    survivors = [d for d in daemons if d is not victim]
    app.huey.enqueue_many(app.mark.s(n) for n in range(TASKS))

    def marked():
        return len({words[1] for words in app.lines() if words[0] == 'mark'})
    first.wait_until(lambda: marked() >= TASKS // 10, WAIT, 'the tasks did not start flowing')
    if boundary - BOUNDARY_GUARD[0] < time.monotonic() < boundary + BOUNDARY_GUARD[1]:
        first.wait_until(lambda: time.monotonic() >= boundary + BOUNDARY_GUARD[1], WAIT)

    # kill -9 every process of the victim at once: no SIGTERM hand-back, only its leases.
    victim_pools = set(victim.pool_pids())
    held_gates = [tag for tag, pid in app.events('start') if pid in victim_pools]
    os.killpg(victim.pid, signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    victim.wait_no_leftovers()
    victim_claims = sum(len(messages) for worker, messages in
                        app.huey.storage.claimed_items().items()
                        if worker_pid(worker) in victim_pools)
    for tag in gates:
        open_gate(app, tag)

    # Its claims come back when the lease runs out, and the others run them.
    def alive():
        for daemon in survivors:
            daemon.check_running()  # fails at once, with its log, if a survivor exited
        return True
    survivor_pools = {pid for d in survivors for pid in d.pool_pids()}
    first = survivors[0]
    first.wait_until(lambda: alive() and all(
        any(t == tag and pid in survivor_pools for t, pid in app.events('done'))
        for tag in held_gates), WAIT, 'the killed node\'s tasks %s never ran elsewhere'
        % held_gates)
    first.wait_until(lambda: not any(worker_pid(w) in victim_pools
                                     for w in app.huey.storage.claimed_items()), WAIT,
                     'the killed node\'s claims were never recovered')
    assert any('claimed by pools that died to the queue' in d.log_text() for d in survivors)
    first.wait_until(lambda: alive() and marked() == TASKS and all(
        app.count('done', tag) for tag in gates), WAIT, 'not every task ran')
    first.wait_until(lambda: shown(app, survivors), WAIT,
                     'hueyctl status did not show the three nodes left')

    # The minute turns over on every node at once: its periodic tasks are enqueued once.
    def minutes_done():
        minutes = {minute for minute, _ in periodic_log(daemons)}
        runs = periodic_runs(app)
        return len(minutes) >= 2 and all(len(runs[name]) == len(minutes) for name in PERIODIC)
    first.wait_until(lambda: alive() and minutes_done(),
                     max(WAIT, boundary - time.monotonic() + WAIT),
                     'the periodic tasks of two minutes never ran')

    for daemon in survivors:
        daemon.send(signal.SIGINT)
    statuses = [daemon.wait(15) for daemon in survivors]
    log = periodic_log(daemons)
    per_minute = collections.Counter(minute for minute, _ in log)
    runs = periodic_runs(app)
    mark_runs = collections.Counter(words[1] for words in app.lines() if words[0] == 'mark')
    lost = TASKS - len(mark_runs)
    duplicates = sum(count - 1 for count in mark_runs.values())
    ran_on = [node_index.get(int(words[2])) for words in app.lines() if words[0] == 'mark']
    by_node = [ran_on.count(i) for i in range(NODES)]  # a pool started later counts nowhere
    with capsys.disabled():
        print('\nmany nodes: storage=%s nodes=%d tasks=%d lost=%d duplicates=%d '
              'victim_claims=%d recovered_gates=%d minutes=%d periodic_enqueues=%s '
              'tasks_by_node=%s seconds=%.1f' % (
                  storage, NODES, TASKS, lost, duplicates, victim_claims, len(held_gates),
                  len(per_minute), dict(sorted(per_minute.items())), by_node,
                  time.monotonic() - started), flush=True)

    assert lost == 0
    assert held_gates and victim_claims >= len(held_gates)
    assert all(count == 1 for count in per_minute.values()), \
        'a minute\'s periodic tasks were enqueued more than once: %s' % log
    assert all(count == len(PERIODIC) for _, count in log), log
    # Never more runs than minutes: a second enqueue of a minute would add a task id.
    assert all(len(runs[name]) <= len(per_minute) for name in PERIODIC), (runs, log)
    assert statuses == [0] * len(survivors)


def test_a_new_postgres_client_does_not_stall_the_others(postgres_server):
    """Every new process (a pool, a web worker, hueyctl) checks the schema on its first
    connection. CREATE INDEX IF NOT EXISTS locks its table against writes even when the
    index exists, so it waited for the writes other nodes had in flight and held up all
    later ones; indexes that exist are no longer created again."""
    import psycopg
    name = 'many-' + uuid.uuid4().hex[:12]
    first = PostgresStorage(name, dsn=postgres_server.dsn, blocking=False)
    first.enqueue(b'a')
    assert first.claim('node-a:1', 1)  # every table and index exists now
    # A bound on every lock wait: a statement that would queue behind the others fails.
    late = PostgresStorage(name, dsn=postgres_server.dsn, blocking=False,
                           options='-c lock_timeout=2000')
    with psycopg.connect(postgres_server.dsn, autocommit=True) as other:
        with other.transaction():  # another node's write batch, not committed yet
            other.execute('INSERT INTO huey_task (queue, data) VALUES (%s, %s)', (name, b'b'))
            other.execute('DELETE FROM huey_claim WHERE queue = %s', (name,))
            late.enqueue(b'c')                   # its first connection: the base schema
            late.beat('node-b:1', 30)            # and the delivery schema
    assert late.queue_size() == 2
    for storage in (first, late):
        storage.flush_all()
        storage.close()
