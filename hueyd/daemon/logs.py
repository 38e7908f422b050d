"""Logging for the master and its children: one configuration, text or JSON, reopenable."""
import faulthandler
import json
import logging
import sys
import time


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
        return json.dumps({k: v for k, v in entry.items() if v is not None})


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
