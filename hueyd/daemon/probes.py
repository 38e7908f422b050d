"""The HTTP endpoints on ``--metrics-port``, served by a thread of the scheduler process.

``/healthz`` (liveness) answers 200 while the master's loop turns: it reads one
timestamp in shared memory (hueyd.daemon.heartbeat.MasterState), never the
application or the storage, so a slow storage cannot make Kubernetes restart a
daemon that is fine. ``/readyz`` (readiness) answers 200 when, besides, every pool
has booted and the storage answers a query now. ``/metrics`` is Prometheus's
(hueyd.metrics). Anything else is 404.

A dead master takes the scheduler with it (PR_SET_PDEATHSIG), so nothing answers
at all; a stopped or stuck one keeps its children, and /healthz says 503 once its
loop has not turned for ``--worker-timeout`` seconds, the patience the master has
for its own children.
"""
import logging
import socket
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hueyd.metrics import metrics_app

logger = logging.getLogger('hueyd.daemon')


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the scheduler's exit


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass  # probes every few seconds would drown the log


def server_class(address, port):
    """The server class for ``address``'s family: '::' or an IPv6 address needs AF_INET6."""
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    return type('Server', (ThreadingServer,), {'address_family': family})


class ProbeServer:
    RETRY = 0.5  # seconds between attempts to bind a port still in use

    def __init__(self, huey, config, master_pid, master_state):
        self.huey = huey
        self.config = config
        self.port = config.metrics_port
        self.address = config.metrics_address or '0.0.0.0'
        self.master_pid = master_pid
        self.master_state = master_state
        self.metrics = None
        self.httpd = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def start(self):
        self.metrics = metrics_app(self.huey, self.master_pid)
        threading.Thread(target=self._serve, name='http', daemon=True).start()
        return self

    # --- the endpoints ------------------------------------------------------------
    def app(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        if path == '/metrics' and self.metrics is not None:
            return self.metrics(environ, start_response)
        if path == '/healthz':
            ok, text = self.health()
        elif path == '/readyz':
            ok, text = self.readiness()
        else:
            ok, text = None, 'not found: try /healthz, /readyz or /metrics\n'
        status = {True: '200 OK', False: '503 Service Unavailable'}.get(ok, '404 Not Found')
        body = text.encode()
        start_response(status, [('Content-Type', 'text/plain; charset=utf-8'),
                                ('Content-Length', str(len(body)))])
        return [body]

    def health(self):
        silence, limit = self.master_state.silence(), self.config.worker_timeout
        if silence > limit:
            return False, ('unhealthy: the loop of master %d has not turned for %.1fs '
                           '(--worker-timeout %gs)\n' % (self.master_pid, silence, limit))
        return True, 'ok: the loop of master %d turned %.1fs ago\n' % (self.master_pid, silence)

    def readiness(self):
        healthy, text = self.health()
        if not healthy:
            return False, text
        booted, wanted = self.master_state.pools()
        if not wanted or booted < wanted:
            return False, 'not ready: %d of %d pool(s) booted\n' % (booted, wanted)
        try:
            self.huey.storage.queue_size()
        except Exception as exc:
            return False, 'not ready: cannot reach the storage (%s: %s)\n' % (
                type(exc).__name__, exc)
        return True, 'ready: %d of %d pool(s) booted, the storage answers\n' % (booted, wanted)

    # --- serving ------------------------------------------------------------------
    def _serve(self):
        warned = False
        while not self._closed.is_set():
            try:
                httpd = make_server(self.address, self.port, self.app,
                                    server_class(self.address, self.port), QuietHandler)
            except OSError as exc:
                # On reload the previous scheduler may hold the port a moment longer.
                if not warned:
                    logger.error('cannot serve on %s:%d (%s); is another process using that '
                                 'port? Retrying until it is free', self.address, self.port,
                                 exc.strerror or exc)
                    warned = True
                self._closed.wait(self.RETRY)
                continue
            with self._lock:
                if self._closed.is_set():
                    httpd.server_close()
                    return
                self.httpd = httpd
            logger.info('serving /healthz, /readyz%s on http://%s:%d', ' and /metrics'
                        if self.metrics else '', self.address, self.port)
            httpd.serve_forever()
            return

    def close(self):
        with self._lock:
            self._closed.set()
            httpd, self.httpd = self.httpd, None
        if httpd is not None:
            httpd.shutdown()  # serve_forever() ends at once even if it had not begun
            httpd.server_close()
