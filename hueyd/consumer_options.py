"""huey's ``huey.consumer_options``: ``ConsumerConfig``, the consumer's options as one value.

``ConsumerConfig(**options).values`` is what ``Consumer(huey, **values)`` (or
``huey.create_consumer(**values)``) takes; the defaults are the Consumer's own.
``logfile``, ``verbose`` and ``simple_log`` are for ``setup_logger()``.
"""
import inspect
import logging

from hueyd.consumer import Consumer, check_options

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
        fmt, datefmt = '[%(asctime)s] %(levelname)s:%(name)s:%(threadName)s:%(message)s', None
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
