"""``manage.py run_huey [huey's options]``: huey's command, running hueyd's daemon.

huey's run_huey is its production consumer (worker processes, the scheduler,
health checks, signals); hueyd's equivalent is the daemon, so this is
``run_hueyd`` with huey's options: the same flags, dest names and defaults,
``-V``/``--huey-verbose`` for huey's verbose (Django owns ``-v``), and
``settings.HUEY['consumer']`` beneath them. ``run_hueyd`` takes hueyd's options.
"""
import sys

from django.core.management.base import BaseCommand, CommandError

from hueyd.cli.config import EX_CONFIG
from hueyd.contrib.djhuey.management.commands.run_hueyd import consumer_argv, start_daemon

# huey's run_huey options: (flags, argparse keywords). The dests are huey's consumer option
# names, which consumer_argv() translates into hueyd's.
HUEY_OPTIONS = (
    (('-l', '--logfile'), dict(metavar='FILE')),
    (('-V', '--huey-verbose'), dict(dest='verbose', action='store_true',
                                    help='verbose logging (includes DEBUG statements)')),
    (('-q', '--quiet'), dict(dest='verbose', action='store_false', help='minimal logging')),
    (('-S', '--simple'), dict(dest='simple_log', action='store_true',
                              help="accepted for huey's sake; hueyd keeps its log format")),
    (('-w', '--workers'), dict(type=int, help='number of workers (default 1)')),
    (('-k', '--worker-type'), dict(choices=('thread', 'greenlet', 'process'),
                                   help='what a worker is (default thread)')),
    (('-d', '--delay'), dict(dest='initial_delay', type=float, metavar='SECONDS',
                             help='first wait before polling an empty queue again')),
    (('-m', '--max-delay'), dict(type=float, metavar='SECONDS',
                                 help='longest wait between polls of an empty queue')),
    (('-b', '--backoff'), dict(type=float, metavar='FACTOR',
                               help='factor the wait grows by after an empty poll')),
    (('-c', '--health-check-interval'), dict(type=float, metavar='SECONDS',
                                             help="seconds between checks of workers' health")),
    (('-C', '--disable-health-check'), dict(dest='check_worker_health', action='store_false',
                                            help='never replace a worker for bad health')),
    (('-f', '--flush-locks'), dict(action='store_true', help='release all locks at start-up')),
    (('-L', '--extra-locks'), dict(help='more lock names to release, comma-separated')),
    (('-M', '--max-tasks'), dict(type=int, metavar='COUNT',
                                 help='replace a worker after it has run COUNT tasks')),
    (('-t', '--shutdown-timeout'), dict(type=float, metavar='SECONDS',
                                        help='how long a graceful stop waits for running tasks')),
    (('-g', '--graceful-signal'), dict(choices=('INT', 'TERM'),
                                       help='the signal that stops gracefully (default INT)')),
    (('-s', '--scheduler-interval'), dict(type=int, metavar='SECONDS',
                                          help='seconds between two runs of the scheduler')),
    (('-n', '--no-periodic'), dict(dest='periodic', action='store_false',
                                   help='do not enqueue periodic tasks')),
)


class Command(BaseCommand):
    help = ("Run the queue consumer (hueyd's daemon) on settings.HUEY, with huey's options; "
            "manage.py run_hueyd takes hueyd's.")

    def add_arguments(self, parser):
        for flags, keywords in HUEY_OPTIONS:
            parser.add_argument(*flags, default=None, **keywords)
        parser.add_argument('-A', '--disable-autoload', action='store_true',
                            help="do not import each app's tasks module")

    def handle(self, *args, **options):
        dests = {keywords.get('dest') or flags[-1][2:].replace('-', '_')
                 for flags, keywords in HUEY_OPTIONS}
        given = {name: options[name] for name in dests if options.get(name) is not None}
        try:
            # The command line as hueyd arguments: they win over settings and environment.
            start_daemon(consumer_argv(given, environ={}, where='run_huey option %r'),
                         autoload=not options['disable_autoload'])
        except CommandError as exc:
            self.stderr.write('run_huey: configuration error: %s' % exc)
            sys.exit(EX_CONFIG)
