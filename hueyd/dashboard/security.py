"""Who may use the dashboard: credentials, the Host check, and the CSRF token of actions.

The secret is read from an environment variable or a file (``env:NAME``,
``file:PATH``), never taken from the command line itself, where ``ps`` and the
shell history would show it.
"""
import base64
import binascii
import hmac
import ipaddress
import os

LOOPBACK_NAMES = ('localhost', '127.0.0.1', '::1')

# On every response: only this server's own scripts and styles run (an injected <script>
# would not, even if some text were ever put in as markup), no framing (clickjacking).
HEADERS = [
    (b'content-security-policy', b"default-src 'self'; img-src 'self' data:; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b'x-content-type-options', b'nosniff'),
    (b'referrer-policy', b'same-origin'),
]


class SecretError(ValueError):
    """The --auth source names no readable secret."""


def read_secret(source, environ=os.environ):
    """The secret named by ``env:NAME`` or ``file:PATH``."""
    kind, _, where = source.partition(':')
    if kind == 'env' and where:
        secret = environ.get(where, '').strip()
        if not secret:
            raise SecretError('the environment variable %s is not set or empty' % where)
        return secret
    if kind == 'file' and where:
        try:
            with open(where) as f:
                secret = f.read().strip()
        except OSError as exc:
            raise SecretError('cannot read %s: %s' % (where, exc.strerror)) from None
        if not secret:
            raise SecretError('%s is empty' % where)
        return secret
    raise SecretError('give the token or user:password as env:VARIABLE or file:PATH, '
                      'never on the command line itself (ps shows it to every user)')


def is_loopback(host):
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Credentials:
    """A token (``Authorization: Bearer TOKEN``, or Basic with any user name and the token
    as password, which is what a browser's login prompt sends) or ``user:password`` (Basic)."""

    def __init__(self, secret):
        user, sep, password = secret.partition(':')
        self.user = user if sep else None
        self.password = password if sep else secret

    def accept(self, header):
        scheme, _, value = (header or '').partition(' ')
        scheme, value = scheme.lower(), value.strip()
        if scheme == 'bearer' and self.user is None:
            return _same(value, self.password)
        if scheme != 'basic':
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(':')
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both compared, whatever the first gives: the time taken tells nothing.
        password_ok = _same(password, self.password)
        user_ok = self.user is None or _same(user, self.user)
        return bool(sep) and password_ok and user_ok


def _same(given, expected):
    return hmac.compare_digest(given.encode(), expected.encode())


def request_host(headers):
    """The host name of the Host header, without port or brackets."""
    host = headers.get('host', '')
    if host.startswith('['):
        return host[1:].partition(']')[0]
    return host.rpartition(':')[0] if host.count(':') == 1 else host


class Guard:
    """ASGI middleware in front of the whole dashboard: credentials, Host, HEADERS.

    ``loopback_only``: answer only requests whose Host header names this machine,
    so a page elsewhere cannot reach a dashboard on 127.0.0.1 by DNS rebinding.
    """

    def __init__(self, app, credentials=None, loopback_only=False):
        self.app = app
        self.credentials = credentials
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        headers = {key.decode('latin-1'): value.decode('latin-1')
                   for key, value in scope['headers']}
        if self.loopback_only and not is_loopback(request_host(headers)):
            return await _reply(send, 421, b'this dashboard answers on this machine only\n')
        if self.credentials is not None and not self.credentials.accept(
                headers.get('authorization')):
            return await _reply(send, 401, b'authentication required\n',
                                [(b'www-authenticate', b'Basic realm="hueyd", charset="UTF-8"')])

        async def send_with_headers(message):
            if message['type'] == 'http.response.start':
                message = dict(message, headers=[*message.get('headers', []), *HEADERS])
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _reply(send, status, body, headers=()):
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', b'text/plain; charset=utf-8'), *headers, *HEADERS]})
    await send({'type': 'http.response.body', 'body': body})


def csrf_ok(token, given):
    return bool(token and given) and _same(given, token)
