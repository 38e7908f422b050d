"""``manage.py run_hueyd [hueyd options]``: run the hueyd daemon on ``settings.HUEY``.

It is hueyd itself (master, pools, scheduler; the same signals, logs and exit
statuses), started from the management command so that Django is set up in
every child. Options, lowest priority first: hueyd's defaults, a config file
(``--config``), ``settings.HUEY['consumer']``, ``HUEYD_<OPTION>`` environment
variables, the command line. ``-A``/``--disable-autoload``: do not import each
app's ``tasks`` module.
"""
import difflib
import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hueyd.cli.config import EX_CONFIG
from hueyd.cli.options import BY_NAME

APP_PATH = 'hueyd.contrib.djhuey.daemon.huey'
NO_AUTOLOAD = ('-A', '--disable-autoload')
# huey's consumer options that hueyd spells differently: name -> (hueyd name, inverted).
HUEY_NAMES = {'initial_delay': ('delay', False), 'periodic': ('no_periodic', True),
              'check_worker_health': ('disable_health_check', True),
              'shutdown_timeout': ('graceful_timeout', False)}
# huey's consumer options hueyd has no use for: huey's short log format (-S); hueyd's log
# lines have their own (--log-format). Accepted, so that huey's settings keep working.
IGNORED = {'simple_log'}
SETTINGS = "settings.HUEY['consumer'][%r]"


def consumer_argv(options, environ=os.environ, where=SETTINGS):
    """settings.HUEY['consumer'] as hueyd command-line arguments, checked like hueyd checks them.

    An option also set in the environment (HUEYD_<OPTION>) is left out: the
    environment wins over it, as it wins over a config file. None is huey's
    "the default". ``where``: how an error names an option.
    """
    argv = []
    for key, value in options.items():
        name = str(key).replace('-', '_')
        if value is None or name in IGNORED:
            continue
        if name in HUEY_NAMES:
            name, inverted = HUEY_NAMES[name]
            value = (not value) if inverted else value
        if name == 'verbose' and value is False:  # huey: verbose=False means quiet
            name, value = 'quiet', True
        opt = BY_NAME.get(name)
        if opt is None or opt.positional:
            close = difflib.get_close_matches(name, [n for n in BY_NAME if n != 'app'], n=1)
            raise CommandError("settings.HUEY['consumer'] has an unknown option %r%s; it takes "
                               "hueyd's options, listed by `manage.py run_hueyd --help`"
                               % (key, ' (did you mean %r?)' % close[0] if close else ''))
        if opt.env in environ:
            continue
        if opt.is_flag:
            if not isinstance(value, bool):
                value = _check(opt, str(value), where % key)
            if value:
                argv.append(opt.long)
            elif opt.off:
                argv.append(opt.off[-1])
            continue
        text = ','.join(value) if isinstance(value, (list, tuple)) else str(value)
        _check(opt, text, where % key)
        argv.append('%s=%s' % (opt.long, text))
    return argv


def _check(opt, text, where):
    try:
        return opt.kind(text)
    except ValueError as exc:
        raise CommandError('%s = %r is not valid; %s' % (where, text, exc)) from None


def _without_django_options(args):
    """manage.py has applied --settings and --pythonpath already: drop them."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ('--settings', '--pythonpath'):
            skip = True
        elif not arg.startswith(('--settings=', '--pythonpath=')):
            kept.append(arg)
    return kept


class Command(BaseCommand):
    help = ("Run hueyd, the task daemon, on settings.HUEY. Takes hueyd's options "
            "(manage.py run_hueyd --help); -A/--disable-autoload: do not import each app's "
            "tasks module.")
    requires_system_checks = []

    def run_from_argv(self, argv):
        # hueyd's own parser reads the arguments: Django's would take -v for its verbosity.
        try:
            self.run_hueyd(_without_django_options(argv[2:]), prog='%s %s' % (
                os.path.basename(argv[0]), argv[1]))
        except CommandError as exc:
            self.stderr.write('%s: configuration error: %s' % (argv[1], exc))
            sys.exit(EX_CONFIG)

    def handle(self, *args, **options):
        """call_command('run_hueyd', '-w', '4')."""
        self.run_hueyd(list(args))

    def print_help(self, prog_name, subcommand):
        self.stdout.write(self.hueyd_help('%s %s' % (os.path.basename(prog_name), subcommand)))

    def hueyd_help(self, prog):
        from hueyd.cli.config import build_parser
        parser = build_parser(prog=prog)
        parser.description = self.help
        text = parser.format_help().replace('[IMPORT_PATH]', '').replace(
            'IMPORT_PATH', 'IMPORT_PATH (given by run_hueyd)')
        return '\n'.join(line for line in text.split('\n') if line == '' or line.strip()) + '\n'

    def run_hueyd(self, args, prog='manage.py run_hueyd'):
        if '-h' in args or '--help' in args:
            self.stdout.write(self.hueyd_help(prog))
            return
        autoload = not any(arg in NO_AUTOLOAD for arg in args)
        start_daemon([arg for arg in args if arg not in NO_AUTOLOAD], autoload)


def start_daemon(args, autoload=True):
    """Run hueyd on settings.HUEY with settings.HUEY['consumer'], then ``args`` (hueyd's
    command-line arguments, which win); exits with hueyd's status. run_huey runs it too."""
    from hueyd.contrib import djhuey
    djhuey.AUTOLOAD = autoload
    config = getattr(settings, 'HUEY', None)
    options = {}
    if isinstance(config, dict):
        options = config.get('consumer') or config.get('consumer_options') or {}
    argv = consumer_argv(options) + args + [APP_PATH]
    from hueyd.cli import hueyd
    sys.stdout.flush()
    hueyd.main(argv)
