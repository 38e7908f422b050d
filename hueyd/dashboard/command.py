"""``hueyctl dashboard``: serve the dashboard with uvicorn."""
import os
import sys

from hueyd.cli.config import EX_CONFIG
from hueyd.dashboard.security import SecretError, is_loopback, read_secret

DEFAULT_PORT = 8470


def add_command(command, failure):
    """Add ``dashboard`` to hueyctl's commands: ``command`` is its sub-parser factory,
    ``failure`` its exception for a message and an exit status (passed in: under
    ``python -m hueyd.cli.hueyctl`` an import here would get a second copy of it)."""
    def start(args, app_path, huey):
        return run(args, app_path, huey, failure)

    sub = command('dashboard', start, 'serve the web dashboard (pip install "hueyd[dashboard]")')
    sub.add_argument('--host', default='127.0.0.1',
                     help='address to listen on (default: 127.0.0.1, this machine only)')
    sub.add_argument('--port', type=int, default=DEFAULT_PORT,
                     help='port to listen on (default: %d)' % DEFAULT_PORT)
    sub.add_argument('--auth', metavar='env:VARIABLE|file:PATH',
                     help='require a token, or user:password, read from this environment '
                          'variable or file, on every request (HTTP Basic or Bearer)')
    sub.add_argument('--read-only', action='store_true',
                     help='no actions: no revoke, requeue or purge')
    sub.add_argument('--show-args', action='store_true',
                     help="show the tasks' arguments (hidden by default: they may be private)")
    return sub


def run(args, app_path, huey, failure):
    try:
        import uvicorn

        from hueyd.dashboard.app import create_app
    except ImportError:
        raise failure("the dashboard needs Starlette and uvicorn: pip install 'hueyd[dashboard]'",
                      EX_CONFIG) from None
    try:
        secret = read_secret(args.auth, os.environ) if args.auth else None
    except SecretError as exc:
        raise failure('--auth: %s' % exc, EX_CONFIG) from None
    loopback = is_loopback(args.host)
    if not loopback and secret is None:
        print('hueyctl: warning: the dashboard listens on %s without --auth: anyone who reaches '
              'that address can use it' % args.host, file=sys.stderr)
    app = create_app(huey, app_path, auth=secret, read_only=args.read_only,
                     show_args=args.show_args, loopback_only=loopback)
    host = '[%s]' % args.host if ':' in args.host else args.host
    print('hueyd dashboard of %s on http://%s:%d/%s; Ctrl-C to stop'
          % (app_path, host, args.port, ' (read-only)' if args.read_only else ''),
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level='warning', access_log=False)
    return 0
