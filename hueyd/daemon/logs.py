"""Logging for the master and its children: one configuration, text or JSON, reopenable."""
import faulthandler
import json
import logging
import sys
import time

from hueyd import signals as S
from hueyd.events import SIGNAL_EVENTS
from hueyd.exceptions import RetryTask

# Every LogRecord has these; any other attribute came with ``extra=`` and becomes a JSON key.
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {'message', 'asctime'}
# The signals that end a run of a task; the log line's status is the event's name.
FINISHING = (S.SIGNAL_COMPLETE, S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_LOCKED,
             S.SIGNAL_RATE_LIMITED, S.SIGNAL_CANCELED, S.SIGNAL_INTERRUPTED, S.SIGNAL_RETRYING)
task_logger = logging.getLogger('hueyd.tasks')


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            'time': time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))
                    + '.%03dZ' % record.msecs,
            'level': record.levelname,
            'logger': record.name,
            'pid': record.process,
            'process': record.processName if record.processName != 'MainProcess' else None,
            'message': record.getMessage(),
        }
        if record.exc_info:
            entry['exception'] = self.formatException(record.exc_info)
        entry = {k: v for k, v in entry.items() if v is not None}
        entry.update((k, v) for k, v in vars(record).items()
                     if k not in STANDARD_ATTRIBUTES and k not in entry)
        return json.dumps(entry, default=str)  # an extra= value JSON cannot hold: its str()


TEXT_FORMAT = '[%(asctime)s] %(levelname)s %(process)d %(name)s: %(message)s'
_handler = None


def configure(config):
    """Send every log record (hueyd's and the application's) where the config says."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    if config.logfile:
        _handler = logging.FileHandler(config.logfile)
    else:
        _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(JsonFormatter() if config.log_format == 'json'
                          else logging.Formatter(TEXT_FORMAT))
    root.addHandler(_handler)
    root.setLevel(config.loglevel)
    enable_tracebacks()


def reopen():
    """Reopen the log file after logrotate moved it (SIGUSR1)."""
    if isinstance(_handler, logging.FileHandler):
        stream = open(_handler.baseFilename, 'a', encoding=_handler.encoding)
        previous = _handler.setStream(stream)  # under the handler's lock
        if previous is not None:
            previous.close()
        enable_tracebacks()  # faulthandler writes to a file descriptor: the new one


def enable_tracebacks():
    """On SIGSEGV, SIGABRT (the master's word to a hung child) and the like, write
    every thread's stack to the log before the process dies. Set up in the master;
    the children inherit it across fork()."""
    stream = getattr(_handler, 'stream', None) or sys.stderr
    try:
        faulthandler.enable(file=stream, all_threads=True)
    except (AttributeError, ValueError, OSError):  # a stream without a file descriptor
        pass


def flush():
    if _handler is not None:
        _handler.flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def describe(config):
    """The configuration as one log line, as huey's consumer shows it at startup."""
    return ', '.join('%s=%s' % (key, value) for key, value in vars(config).items()
                     if key not in ('verbose', 'quiet'))


def log_finished_tasks(huey):
    """One INFO line for each run of a task that ends: name, id, duration, status, retries.

    The fields are also attributes of the record, so ``--log-format json`` has them as
    keys: ``task``, ``task_id``, ``duration`` (seconds; null for a task given up
    without running), ``status`` (the event's name: finished, error-task, timeout,
    locked, rate-limited, canceled, interrupted, retrying) and ``retries`` (left).
    """
    def on_finish(signal, task, outcome):
        # Its fields and text would be built for logging to drop them (-q logs ERROR only).
        if not task_logger.isEnabledFor(logging.INFO):
            return
        if outcome.storing_result:
            return  # SIGNAL_COMPLETE follows: the task itself ran to its end
        if signal == S.SIGNAL_RETRYING and not isinstance(outcome.exception, RetryTask):
            return  # its failure signal has told already; RetryTask sends no other
        fields = {'task': task.name, 'task_id': task.id, 'duration': outcome.duration,
                  'status': SIGNAL_EVENTS[signal], 'retries': task.retries}
        task_logger.info('%s %s %s in %s%s%s', task.name, task.id, fields['status'],
                         '-' if outcome.duration is None else '%.3fs' % outcome.duration,
                         describe_error(outcome.exception),
                         # retries left only matter to a run that did not finish
                         ', %d retries left' % task.retries
                         if task.retries and signal != S.SIGNAL_COMPLETE else '',
                         extra=fields)

    huey.observe(*FINISHING)(on_finish)
    return on_finish


def describe_error(exception):
    """': ValueError: bad input', or ': RetryTask' for one without a message."""
    if exception is None:
        return ''
    text = str(exception)
    name = type(exception).__name__
    return ': %s: %s' % (name, text) if text and text != 'None' else ': ' + name
