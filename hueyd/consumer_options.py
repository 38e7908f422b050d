"""huey's ``huey.consumer_options``: ``ConsumerConfig``, the consumer's options as one value,
and ``OptionParserHandler``, huey_consumer's command-line options.

``ConsumerConfig(**options).values`` is what ``Consumer(huey, **values)`` (or
``huey.create_consumer(**values)``) takes; the defaults are the Consumer's own.
``logfile``, ``verbose`` and ``simple_log`` are for ``setup_logger()``.
"""
import inspect
import logging
import optparse

from hueyd.consumer import WORKER_TYPES, Consumer, check_options

# The Consumer's signature is the one list of options and defaults.
CONSUMER_OPTIONS = tuple(
    (name, parameter.default)
    for name, parameter in inspect.signature(Consumer).parameters.items()
    if parameter.default is not inspect.Parameter.empty)
LOG_OPTIONS = (('logfile', None), ('verbose', None), ('simple_log', None))


class ConsumerConfig:
    def __init__(self, **options):
        known = dict(CONSUMER_OPTIONS + LOG_OPTIONS)
        unknown = set(options) - set(known)
        if unknown:
            raise TypeError('ConsumerConfig got unknown option(s): %s; known: %s'
                            % (', '.join(sorted(unknown)), ', '.join(known)))
        known.update(options)
        self.__dict__.update(known)

    def validate(self):
        """Raise ValueError naming the option that a Consumer could not run with."""
        check_options(self.backoff, self.scheduler_interval, self.graceful_signal)

    @property
    def loglevel(self):
        if self.verbose is None:
            return logging.INFO
        return logging.DEBUG if self.verbose else logging.WARNING

    def setup_logger(self, logger=None):
        """Log to ``logfile`` (or stderr) at ``loglevel``, as huey's consumer does."""
        worker = '%(process)d' if self.worker_type == 'process' else '%(threadName)s'
        fmt, datefmt = '[%(asctime)s] %(levelname)s:%(name)s:' + worker + ':%(message)s', None
        if self.simple_log:
            fmt, datefmt = '%(asctime)s %(message)s', '%H:%M:%S'
        handler = logging.FileHandler(self.logfile) if self.logfile else logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt, datefmt))
        logger = logger or logging.getLogger()
        logger.addHandler(handler)
        logger.setLevel(self.loglevel)

    @property
    def values(self):
        """The options for ``Consumer``, without the logging ones."""
        return {name: getattr(self, name) for name, _ in CONSUMER_OPTIONS}

    def __repr__(self):
        return 'ConsumerConfig(%s)' % ', '.join(
            '%s=%r' % (name, getattr(self, name)) for name, _ in CONSUMER_OPTIONS + LOG_OPTIONS)


def _option(short, name, help, **kwargs):
    """``(short flag, long flag, optparse keywords)``, the form huey's handler returns."""
    kwargs.setdefault('dest', name.replace('-', '_'))
    return '-' + short, '--' + name, dict(kwargs, help=help)


class OptionParserHandler:
    """huey_consumer's options for an optparse parser (or, one by one, for argparse, as
    a Django management command adds them). No option has a default: what is not given
    stays None, and ConsumerConfig supplies the Consumer's default."""

    def get_worker_options(self):
        return (
            _option('w', 'workers', 'how many workers (default 1)', type='int'),
            _option('k', 'worker-type', 'thread (default), greenlet or process',
                    choices=WORKER_TYPES),
            _option('d', 'delay', 'seconds between looks at an empty queue, at first '
                    '(default 0.1)', dest='initial_delay', type='float', metavar='SECONDS'),
            _option('m', 'max-delay', 'the most seconds between looks at an empty queue '
                    '(default 10)', type='float', metavar='SECONDS'),
            _option('b', 'backoff', 'how much longer each look at an empty queue waits '
                    '(default 1.15, at least 1)', type='float', metavar='FACTOR'),
            _option('c', 'health-check-interval', 'seconds between checks that every '
                    'worker lives (default 10)', type='float', metavar='SECONDS'),
            _option('C', 'disable-health-check', 'do not replace workers that die',
                    dest='check_worker_health', action='store_false'),
            _option('f', 'flush-locks', 'release every task lock at start',
                    action='store_true'),
            _option('L', 'extra-locks', 'more locks to release at start, comma-separated'),
            _option('M', 'max-tasks', 'replace a worker once it ran COUNT tasks',
                    type='int', metavar='COUNT'),
            _option('t', 'shutdown-timeout', 'on a graceful stop, seconds to wait for '
                    'running tasks before interrupting them (default: no limit)',
                    type='float', metavar='SECONDS'),
            _option('g', 'graceful-signal', 'the signal that stops once running tasks '
                    'finish, INT (default) or TERM; the other one stops at once',
                    choices=('INT', 'TERM')),
        )

    def get_scheduler_options(self):
        return (
            _option('s', 'scheduler-interval', 'seconds between looks at the schedule '
                    '(default 1, a divisor of 60)', type='int'),
            _option('n', 'no-periodic', 'do not enqueue periodic tasks', dest='periodic',
                    action='store_false'),
        )

    def get_logging_options(self):
        return (
            _option('l', 'logfile', 'log to FILE instead of stderr', metavar='FILE'),
            _option('v', 'verbose', 'log DEBUG messages too', action='store_true'),
            _option('q', 'quiet', 'log warnings and errors only', dest='verbose',
                    action='store_false'),
            _option('S', 'simple', 'log "time message" only', dest='simple_log',
                    action='store_true'),
        )

    def get_option_parser(self):
        parser = optparse.OptionParser('Usage: %prog [options] path.to.huey_instance')
        for title, options in (('Logging', self.get_logging_options()),
                               ('Workers', self.get_worker_options()),
                               ('Scheduler', self.get_scheduler_options())):
            group = parser.add_option_group(title)
            for short, long, kwargs in options:
                group.add_option(short, long, **kwargs)
        return parser
