"""sd_notify over real AF_UNIX datagram sockets (no mocks)."""

import os
import socket
import time
import uuid

import pytest

from hueyd.daemon.notify import Notifier


def _receiver(address):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


@pytest.fixture
def server(tmp_path):
    # Short file name: AF_UNIX paths are limited to 107 bytes.
    path = str(tmp_path / 'n.sock')
    sock = _receiver(path)
    yield sock, path
    sock.close()


def recv(sock):
    return sock.recv(4096).decode()


def test_messages(server):
    sock, path = server
    n = Notifier.from_environ({'NOTIFY_SOCKET': path})
    assert n.enabled
    assert n.ready() is True
    assert recv(sock) == 'READY=1'
    n.ready(status='3 workers up')
    assert recv(sock) == 'READY=1\nSTATUS=3 workers up'
    n.status('draining\nnow')
    assert recv(sock) == 'STATUS=draining now'
    n.stopping()
    assert recv(sock) == 'STOPPING=1'
    n.watchdog()
    assert recv(sock) == 'WATCHDOG=1'
    n.mainpid(4321)
    assert recv(sock) == 'MAINPID=4321'
    n.send(EXTEND_TIMEOUT_USEC=5000000, STATUS='x')
    assert recv(sock) == 'EXTEND_TIMEOUT_USEC=5000000\nSTATUS=x'
    n.send_raw('FDSTORE=0')
    assert recv(sock) == 'FDSTORE=0'
    n.close()


def test_reloading_carries_monotonic_usec(server):
    sock, path = server
    n = Notifier.from_environ({'NOTIFY_SOCKET': path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = recv(sock).split('\n')
    assert first == 'RELOADING=1'
    key, value = second.split('=')
    assert key == 'MONOTONIC_USEC'
    assert before <= int(value) <= after


def test_abstract_namespace():
    name = f'hueyd-test-{uuid.uuid4().hex}'
    sock = _receiver('\0' + name)
    try:
        n = Notifier.from_environ({'NOTIFY_SOCKET': '@' + name})
        assert n.ready()
        assert recv(sock) == 'READY=1'
    finally:
        sock.close()


def test_noop_without_socket():
    for environ in ({}, {'NOTIFY_SOCKET': ''}, {'NOTIFY_SOCKET': 'relative/path'}):
        n = Notifier.from_environ(environ)
        assert not n.enabled
        assert n.ready('x') is False
        assert n.reloading() is False
        assert n.watchdog() is False
        assert n.send_raw('READY=1') is False
        assert n._sock is None  # not even a socket was created


def test_missing_socket_does_not_raise(tmp_path):
    n = Notifier.from_environ({'NOTIFY_SOCKET': str(tmp_path / 'gone.sock')})
    assert n.enabled
    assert n.ready() is False
    assert n.stopping() is False


def test_receiver_gone_does_not_raise(server):
    sock, path = server
    n = Notifier.from_environ({'NOTIFY_SOCKET': path})
    assert n.ready()
    sock.close()
    os.unlink(path)
    assert n.watchdog() is False


def test_from_environ_does_not_modify_environ(server):
    _, path = server
    environ = {'NOTIFY_SOCKET': path, 'WATCHDOG_USEC': '30000000', 'OTHER': '1'}
    Notifier.from_environ(environ)
    assert environ == {'NOTIFY_SOCKET': path, 'WATCHDOG_USEC': '30000000', 'OTHER': '1'}


def test_scrub_child_environ():
    environ = {'NOTIFY_SOCKET': '/run/x', 'WATCHDOG_USEC': '1', 'WATCHDOG_PID': '2', 'PATH': '/bin'}
    assert Notifier.scrub_child_environ(environ) is environ
    assert environ == {'PATH': '/bin'}
    assert Notifier.scrub_child_environ({}) == {}


@pytest.mark.parametrize('environ, expected', [
    ({}, None),
    ({'WATCHDOG_USEC': '30000000'}, 15.0),
    ({'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': str(os.getpid())}, 15.0),
    ({'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': str(os.getpid() + 1)}, None),
    ({'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': 'junk'}, None),
    ({'WATCHDOG_USEC': '0'}, None),
    ({'WATCHDOG_USEC': 'junk'}, None),
    ({'WATCHDOG_USEC': '500000'}, 0.25),
])
def test_watchdog_interval(environ, expected):
    assert Notifier.from_environ(environ).watchdog_interval() == expected
