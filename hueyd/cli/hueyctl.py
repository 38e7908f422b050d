"""``hueyctl``: operate a hueyd deployment from any machine that reaches its storage.

    hueyctl [--app IMPORT_PATH | --config FILE] COMMAND ...

    status [--json] [--watch [--interval S]]   live nodes, pools, workers, queue figures
    events [--task NAME] [--status STATUS] [--json]   follow the event stream
    dead-letters list | show ID | requeue [ID ...] | purge [ID ...]
    revoke ID [--once] | restore ID            skip a task by its id, or undo that
    flush queue|schedule|results|locks [--yes] delete, after asking
    info [--json]                              queue, schedule and result counts, task names
    stats [--json]                             runs, failures, retries, p50/p95/max per task
    check-config FILE | check-config [hueyd options]   validate as hueyd would (exit 78 if bad)
    ping [--port PORT] [--address ADDRESS]     ask a daemon's /healthz and /readyz (exit 1 if bad)

The application is the import path given with --app (or HUEYD_APP), else the
``app`` key of hueyd's config file named with --config (or HUEYD_CONFIG). Both
options may come before or after the command. ``ping`` imports no application:
it asks the daemon itself, over HTTP.

Exit status: 0 done; 1 failed (the application does not import, the storage
cannot be reached, the answer to a question was no); 2 usage error; 3 not
found (a dead letter id, a task id that was not revoked); 78 configuration
error (the config file, or no application named).
"""
import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

from hueyd import __version__
from hueyd.cli.config import EX_CONFIG, ArgumentParser, ConfigError, MissingApp, load_config

EX_OK, EX_FAILED, EX_USAGE, EX_NOT_FOUND = 0, 1, 2, 3
EX_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE
CONFIG_SUFFIXES = ('.conf', '.ini', '.cfg')
FLUSH_WHAT = ('queue', 'schedule', 'results', 'locks')


class Failure(Exception):
    """Ends the command: ``str()`` is the message for the user, ``code`` the exit status."""

    def __init__(self, message, code=EX_FAILED):
        super().__init__(message)
        self.code = code


def _out(text=''):
    sys.stdout.write(text + '\n')
    sys.stdout.flush()


def _err(text):
    sys.stderr.write('hueyctl: %s\n' % text)
    sys.stderr.flush()


# -- check-config ------------------------------------------------------------------------

def looks_like_config_file(arg):
    return (not arg.startswith('-') and
            (os.path.isfile(arg) or os.sep in arg or arg.endswith(CONFIG_SUFFIXES)))


def check_config(hueyd_args):
    """Validate hueyd's settings exactly as the daemon loads them; 78 and its message if bad."""
    if len(hueyd_args) == 1 and looks_like_config_file(hueyd_args[0]):
        hueyd_args = ['--config', hueyd_args[0]]
    try:
        config = load_config(hueyd_args, os.environ)
    except ConfigError as exc:
        print('hueyctl: configuration error: %s' % exc, file=sys.stderr)
        return EX_CONFIG
    print('configuration is valid%s' % (' (%s)' % config.config_file if config.config_file else ''))
    for key, value in vars(config).items():
        print('  %s = %s' % (key, value))
    return EX_OK


# -- the application and its storage -----------------------------------------------------------

def open_app(args):
    """``(import path, Huey)`` named by --app, HUEYD_APP, or the config file's app key."""
    from hueyd.daemon.app import AppImportError, load_app
    app_path = getattr(args, 'app', None)
    if not app_path:
        config_file = getattr(args, 'config', None)
        try:
            config = load_config(['--config', config_file] if config_file else [], os.environ)
        except MissingApp:
            raise Failure('no application named: pass --app IMPORT_PATH (the path hueyd '
                          'runs, e.g. blog.main.huey), or --config FILE (the config file hueyd '
                          'runs with, for its app key), or set HUEYD_APP', EX_CONFIG) from None
        except ConfigError as exc:
            raise Failure('configuration error: %s' % exc, EX_CONFIG) from None
        app_path = config.app
    try:
        return app_path, load_app(app_path)
    except AppImportError as exc:
        raise Failure(str(exc)) from None


def describe_storage(huey):
    storage = huey.storage
    where = storage.location()
    return '%s %r%s' % (type(storage).__name__, huey.name, ' at %s' % where if where else '')


def confirm(question, args):
    """True when --yes was given or the user answers yes on stdin."""
    if getattr(args, 'yes', False):
        return True
    sys.stderr.write('%s [y/N] ' % question)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:
        raise Failure('no answer (stdin is closed); pass --yes to go ahead without asking')
    return answer.strip().lower() in ('y', 'yes')


# -- status ------------------------------------------------------------------------------

def cmd_status(args, app_path, huey):
    from hueyd.nodes import collect_status, format_status
    frames = 0
    tty = sys.stdout.isatty()
    while True:
        status = collect_status(huey, app_path)
        if args.json:
            _out(json.dumps(status, sort_keys=True))
        elif args.watch and tty:  # in place: home, each line cleared to its end, the rest cleared
            lines = format_status(status).split('\n')
            sys.stdout.write('\x1b[H' + ''.join(line + '\x1b[K\n' for line in lines) + '\x1b[J')
            sys.stdout.flush()
        else:
            _out(format_status(status) + ('\n' if args.watch else ''))
        frames += 1
        if not args.watch or (args.count and frames >= args.count):
            return EX_OK
        time.sleep(args.interval)


# -- events ------------------------------------------------------------------------------

def event_matches(event, tasks, statuses):
    if statuses and event.get('status') not in statuses:
        return False
    if tasks:
        name = event.get('task') or ''
        return any(name == task or name.endswith('.' + task) for task in tasks)
    return True


def format_event(event, received=None):
    """One readable line: time received, status, task, id, then what the event adds.

    The time is when the event arrived (a task's events are published together
    when it ends), so lines are in order; ``--json`` has the events' own fields.
    """
    moment = received or event.get('timestamp') or time.time()
    stamp = time.strftime('%H:%M:%S', time.localtime(moment)) + '.%03d' % (moment % 1 * 1000)
    parts = [stamp, '%-20s' % event.get('status'), event.get('task') or '-', event.get('id') or '']
    if event.get('duration') is not None:
        parts.append('%.3fs' % event['duration'])
    if event.get('status') == 'retrying':
        parts.append('retries %s' % event.get('retries'))
    if event.get('execute_time'):
        parts.append('eta %s' % time.strftime('%Y-%m-%d %H:%M:%S',
                                              time.localtime(event['execute_time'])))
    if event.get('error'):
        lines = [line for line in (event.get('traceback') or '').splitlines() if line.strip()]
        parts.append('error: %s' % (lines[-1].strip() if lines else 'yes'))
    return '  '.join(str(part) for part in parts if part != '')


def cmd_events(args, app_path, huey):
    from hueyd.exceptions import ConfigurationError
    try:
        listener = huey.storage.listener()
    except ConfigurationError as exc:
        raise Failure('%s has no events to follow: %s' % (app_path, exc), EX_CONFIG) from None
    seen = 0
    with listener:
        print('following the events of %s (%s); Ctrl-C to stop'
              % (app_path, describe_storage(huey)), file=sys.stderr, flush=True)
        while not (args.count and seen >= args.count):
            event = listener.get_event(timeout=1.0)
            if event is None or not event_matches(event, args.task, args.status):
                continue
            _out(json.dumps(event, sort_keys=True) if args.json
                 else format_event(event, time.time()))
            seen += 1
    return EX_OK


# -- dead letters --------------------------------------------------------------------------

def resolve_letters(huey, ids):
    """The dead letters with these ids (or unique prefixes of them); all when ``ids`` is empty."""
    letters = huey.dead_letters()
    if not ids:
        return letters
    chosen, missing = [], []
    for wanted in ids:
        matches = [letter for letter in letters if letter.id == wanted] or \
                  [letter for letter in letters if letter.id.startswith(wanted)]
        if len(matches) > 1:
            raise Failure('%r is the start of %d dead letter ids (%s); give more of it'
                          % (wanted, len(matches), ', '.join(m.id for m in matches)), EX_NOT_FOUND)
        if matches:
            chosen.append(matches[0])
        else:
            missing.append(wanted)
    if missing:
        raise Failure('no dead letter with id %s; `hueyctl dead-letters list` shows them (nothing '
                      'was changed)' % ', '.join(missing), EX_NOT_FOUND)
    return chosen


def letter_summary(letter):
    return {'id': letter.id, 'reason': letter.reason, 'time': letter.time, 'task': letter.task,
            'task_id': letter.task_id, 'size': len(letter.payload)}


def _when(timestamp):
    return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(timestamp))


def cmd_dead_letters(args, app_path, huey):
    action = args.action
    if action == 'list':
        letters = huey.dead_letters()
        if args.json:
            _out(json.dumps([letter_summary(letter) for letter in letters]))
            return EX_OK
        if not letters:
            _out('no dead letters in %s' % describe_storage(huey))
            return EX_OK
        rows = [['ID', 'TIME', 'TASK', 'TASK ID', 'REASON']]
        for letter in letters:
            reason = letter.reason if len(letter.reason) <= 72 else letter.reason[:71] + '…'
            rows.append([letter.id, _when(letter.time), letter.task or '-', letter.task_id or '-',
                         reason])
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            _out('  '.join(cell.ljust(width) for cell, width in zip(row, widths)) + '  ' + row[4])
        _out('%d dead letter(s); `hueyctl dead-letters show ID` for one' % len(letters))
        return EX_OK
    if action == 'show':
        (letter,) = resolve_letters(huey, [args.id])
        if args.json:
            _out(json.dumps(dict(letter_summary(letter),
                                 payload=base64.b64encode(letter.payload).decode('ascii'))))
            return EX_OK
        preview = repr(letter.payload[:240]) + (' …' if len(letter.payload) > 240 else '')
        for label, value in (('id', letter.id), ('time', _when(letter.time)),
                             ('task', letter.task or '- (the message could not be decoded)'),
                             ('task id', letter.task_id or '-'), ('reason', letter.reason),
                             ('payload', '%d bytes, never unpickled here: %s'
                              % (len(letter.payload), preview))):
            _out('%-8s %s' % (label, value))
        return EX_OK
    letters = resolve_letters(huey, args.ids)
    if not letters:
        _out('no dead letters in %s' % describe_storage(huey))
        return EX_OK
    ids = [letter.id for letter in letters]
    if action == 'requeue':
        count = huey.requeue_dead_letters(ids)
        _out('requeued %d dead letter(s): their messages are back on the queue' % count)
        return EX_OK
    if not args.ids and not confirm('Delete all %d dead letter(s) of %s for good?'
                                    % (len(letters), describe_storage(huey)), args):
        raise Failure('nothing was deleted')
    _out('purged %d dead letter(s)' % huey.purge_dead_letters(ids))
    return EX_OK


# -- revoke, restore, flush ----------------------------------------------------------------

def cmd_revoke(args, app_path, huey):
    huey.revoke_by_id(args.id, revoke_once=args.once)
    _out('revoked task %s: a worker that takes it will skip it%s; undo with: hueyctl restore %s'
         % (args.id, ' (once)' if args.once else '', args.id))
    return EX_OK


def cmd_restore(args, app_path, huey):
    if not huey.restore_by_id(args.id):
        raise Failure('task %s is not revoked; nothing to restore' % args.id, EX_NOT_FOUND)
    _out('restored task %s: it will run when a worker takes it' % args.id)
    return EX_OK


def cmd_flush(args, app_path, huey):
    storage, where = huey.storage, describe_storage(huey)
    if args.names and args.what != 'locks':
        raise Failure('names are only for `flush locks NAME ...`', EX_USAGE)
    if args.what == 'queue':
        question = 'Delete the %d message(s) waiting in the queue of %s, and the claims of ' \
                   'tasks running now?' % (huey.pending_count(), where)
        action, done = storage.flush_queue, 'the queue is empty'
    elif args.what == 'schedule':
        question = 'Delete the %d scheduled message(s) of %s?' % (huey.scheduled_count(), where)
        action, done = storage.flush_schedule, 'the schedule is empty'
    elif args.what == 'results':
        question = 'Delete the %d key(s) of the result store of %s: results, revocations ' \
                   'and locks alike?' % (huey.result_count(), where)
        action, done = storage.flush_results, 'results, revocations and locks deleted'
    else:
        names = sorted(set(huey.lock_names).union(args.names))
        if not names:
            raise Failure('%s declares no lock (lock_task); name the locks to release: '
                          'hueyctl flush locks NAME ...' % app_path, EX_USAGE)
        question = 'Release the lock(s) %s of %s, even if a task holds them?' % (
            ', '.join(names), where)

        def action():
            return huey.flush_locks(*args.names)

        done = None
    if not confirm(question, args):
        raise Failure('nothing was flushed')
    result = action()
    _out(done or 'released: %s' % (', '.join(sorted(result)) or 'none was held'))
    return EX_OK


# -- info ----------------------------------------------------------------------------------

def cmd_info(args, app_path, huey):
    figures = {
        'app': app_path,
        'storage': type(huey.storage).__name__,
        'queued': huey.pending_count(),
        'scheduled': huey.scheduled_count(),
        'results': huey.result_count(),
        'tasks': huey.registered_tasks,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print('%-10s %s' % (key, ', '.join(value) if isinstance(value, list) else value))
    return EX_OK


# -- stats ---------------------------------------------------------------------------------

def cmd_stats(args, app_path, huey):
    from hueyd.taskstats import collect, format_stats
    report = collect(huey.storage)
    _out(json.dumps(report, sort_keys=True) if args.json else format_stats(report))
    return EX_OK if report['stats'] else EX_FAILED


# -- ping ----------------------------------------------------------------------------------

def probe_address(args):
    """``(host, port)`` of the daemon's metrics port: --port and --address, else
    the metrics_port and metrics_address hueyd's configuration gives (--config,
    HUEYD_CONFIG, HUEYD_METRICS_PORT...)."""
    port, address = args.port, args.address
    if port is None:
        config_file = getattr(args, 'config', None)
        try:
            config = load_config(['--config', config_file] if config_file else [], os.environ)
        except MissingApp:
            config = None
        except ConfigError as exc:
            raise Failure('configuration error: %s' % exc, EX_CONFIG) from None
        if config is None or not config.metrics_port:
            raise Failure('no port to ask: hueyd answers /healthz and /readyz on its '
                          '--metrics-port; pass --port PORT, or --config with the file that '
                          'sets metrics_port', EX_CONFIG)
        port, address = config.metrics_port, address or config.metrics_address
    # The daemon listening on every interface is reached on this machine's.
    address = {None: '127.0.0.1', '': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(
        address, address)
    return ('[%s]' % address if ':' in address else address), port


def cmd_ping(args):
    host, port = probe_address(args)
    healthy = True
    for path in ('/healthz', '/readyz'):
        url = 'http://%s:%d%s' % (host, port, path)
        try:
            with urllib.request.urlopen(url, timeout=args.timeout) as reply:
                text = reply.read().decode(errors='replace').strip()
        except urllib.error.HTTPError as exc:  # 503: the daemon says why
            text, healthy = exc.read().decode(errors='replace').strip(), False
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, 'reason', exc)
            raise Failure('no answer from %s (%s): is hueyd running with --metrics-port %d?'
                          % (url, reason, port)) from None
        _out('%-8s %s' % (path, text))
    return EX_OK if healthy else EX_FAILED


# -- the command line ------------------------------------------------------------------------

def _app_options():
    common = ArgumentParser(add_help=False)
    # SUPPRESS: given before the command or after it, whichever was given counts.
    common.add_argument('--app', metavar='IMPORT_PATH', default=argparse.SUPPRESS,
                        help='import path of the Huey instance, as given to hueyd '
                             '(blog.main.huey); '
                             'default: HUEYD_APP, or the app key of the config file')
    common.add_argument('--config', metavar='FILE', default=argparse.SUPPRESS,
                        help="hueyd's config file, for its app key (default: HUEYD_CONFIG)")
    return common


def build_parser():
    common = _app_options()
    parser = ArgumentParser(
        prog='hueyctl', parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split('\n')[0].replace('``', ''),
        epilog='Exit status: 0 done; 1 failed (application, storage, answered no, unhealthy); '
               '2 usage; 3 not found; 78 configuration error.')
    parser.add_argument('--version', action='version', version='%(prog)s ' + __version__)
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    def command(name, run, help, **kwargs):
        sub = commands.add_parser(name, parents=[common], help=help, description=help, **kwargs)
        sub.set_defaults(run=run)
        return sub

    status = command('status', cmd_status, 'every live node, pool and worker, and queue figures')
    status.add_argument('--json', action='store_true', help='print JSON (one object per refresh)')
    status.add_argument('-w', '--watch', action='store_true', help='refresh until Ctrl-C')
    status.add_argument('-i', '--interval', type=float, default=2.0, metavar='SECONDS',
                        help='seconds between refreshes with --watch (default: 2)')
    status.add_argument('--count', type=int, default=0, metavar='N',
                        help='with --watch, stop after N refreshes')

    from hueyd.events import ALL_EVENTS
    events = command('events', cmd_events, 'follow the event stream live (until Ctrl-C)')
    events.add_argument('--task', action='append', default=[], metavar='NAME',
                        help='only this task (full name or last part); repeat for more')
    events.add_argument('--status', action='append', default=[], choices=ALL_EVENTS,
                        metavar='STATUS', help='only this status (%s); repeat for more'
                        % ', '.join(ALL_EVENTS))
    events.add_argument('--json', action='store_true', help='print each event as a JSON line')
    events.add_argument('--count', type=int, default=0, metavar='N',
                        help='stop after N events')

    letters = command('dead-letters', cmd_dead_letters,
                      'messages that could not run: list, show, requeue, purge')
    actions = letters.add_subparsers(dest='action', required=True, metavar='ACTION')
    sub = actions.add_parser('list', parents=[common], help='every dead letter, oldest first')
    sub.add_argument('--json', action='store_true')
    sub = actions.add_parser('show', parents=[common], help='one dead letter, with its payload')
    sub.add_argument('id', metavar='ID', help='its id (or the start of it)')
    sub.add_argument('--json', action='store_true', help='JSON, the payload in base64')
    sub = actions.add_parser('requeue', parents=[common],
                             help='put their messages back on the queue (all without ids)')
    sub.add_argument('ids', nargs='*', metavar='ID')
    sub = actions.add_parser('purge', parents=[common],
                             help='delete them (all without ids, after asking)')
    sub.add_argument('ids', nargs='*', metavar='ID')
    sub.add_argument('-y', '--yes', action='store_true', help='do not ask')

    revoke = command('revoke', cmd_revoke, 'skip the task with this id when a worker takes it')
    revoke.add_argument('id', metavar='ID', help="the task's id (Result.id, or from status/events)")
    revoke.add_argument('--once', action='store_true', help='skip it once only')
    restore = command('restore', cmd_restore, 'undo revoke: the task runs again')
    restore.add_argument('id', metavar='ID')

    flush = command('flush', cmd_flush, 'delete the queue, the schedule, the results or the locks')
    flush.add_argument('what', choices=FLUSH_WHAT, metavar='{%s}' % '|'.join(FLUSH_WHAT))
    flush.add_argument('names', nargs='*', metavar='NAME',
                       help='for locks: lock names to release besides those the app declares')
    flush.add_argument('-y', '--yes', action='store_true', help='do not ask for confirmation')

    info = command('info', cmd_info, 'queue, schedule and result counts, and the task names')
    info.add_argument('--json', action='store_true', help='print JSON for scripts')

    stats = command('stats', cmd_stats, 'per task: runs, failures, retries and p50/p95/max '
                    'duration over the last hour and 24 hours, from every node')
    stats.add_argument('--json', action='store_true', help='print JSON for scripts')

    from hueyd.dashboard.command import add_command as add_dashboard  # imports no web library
    add_dashboard(command, Failure)

    ping = command('ping', cmd_ping, "ask the daemon's /healthz and /readyz (on its metrics "
                   "port); exit 0 when it is healthy and ready, 1 otherwise")
    ping.set_defaults(needs_app=False)
    ping.add_argument('--port', type=int, metavar='PORT',
                      help="the daemon's --metrics-port (default: from its configuration)")
    ping.add_argument('--address', metavar='ADDRESS',
                      help='where it listens (default: its metrics_address; 0.0.0.0 means here)')
    ping.add_argument('--timeout', type=float, default=5.0, metavar='SECONDS',
                      help='how long to wait for each answer (default: 5)')

    check = commands.add_parser(
        'check-config', help='validate a config file (or hueyd options) exactly as hueyd would; '
                             'exit 78 with its message if invalid')
    check.add_argument('hueyd_args', nargs='*', metavar='FILE | HUEYD_ARG',
                       help='the config file, or the options and IMPORT_PATH hueyd would be given')
    return parser


def run_check_config(argv):
    """``[top-level options] check-config ARGS``: everything after it is hueyd's."""
    index = argv.index('check-config')
    given = vars(_app_options().parse_args(argv[:index]))
    hueyd_args = argv[index + 1:]
    if not hueyd_args and given.get('config'):
        hueyd_args = ['--config', given['config']]
    if not any(arg in ('-h', '--help') for arg in hueyd_args) and given.get('app'):
        hueyd_args = hueyd_args + [given['app']]
    return check_config(hueyd_args)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if 'check-config' in argv and all(
            arg.startswith('--app') or arg.startswith('--config') or
            (i and argv[i - 1] in ('--app', '--config'))
            for i, arg in enumerate(argv[:argv.index('check-config')])):
        sys.exit(run_check_config(argv))
    args = build_parser().parse_args(argv)
    try:
        if not getattr(args, 'needs_app', True):
            code = args.run(args)
        else:
            app_path, huey = open_app(args)
            try:
                code = args.run(args, app_path, huey)
            except KeyboardInterrupt:
                code = EX_OK if args.command in ('status', 'events') else 130
            except BrokenPipeError:
                raise  # stdout, not the storage (both are ConnectionErrors)
            except huey.storage.transient_errors as exc:
                raise Failure('cannot reach the storage (%s): %s: %s. Check that it is running '
                              'and that this machine reaches it with the settings of %s'
                              % (describe_storage(huey), type(exc).__name__, exc, app_path)
                              ) from None
    except Failure as failure:
        _err(str(failure))
        code = failure.code
    except BrokenPipeError:
        # The reader went away (`hueyctl events | head`): stop quietly, as Python's
        # documentation advises, with devnull under stdout so the flush at exit cannot
        # fail again; the status is what a shell shows for a process SIGPIPE ended.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EX_BROKEN_PIPE
    sys.exit(code)


if __name__ == '__main__':
    main()
