"""hueyd: a huey-compatible task queue and the daemon that runs it.

Switch from huey by changing ``from huey import ...`` to ``from hueyd import ...``.

The names below are imported on first use: ``import hueyd`` alone (``from hueyd import
crontab``, say) loads no storage client. The daemon's master does load them (through its
pool module) before it forks: its children share those pages rather than each loading its
own, which costs more memory in all (PSS) than the master's smaller RSS would save.
"""
import importlib
import logging

__version__ = '0.1.0'

# hueyd's loggers ('hueyd', 'hueyd.daemon', ...) pass their records through huey's
# 'huey' logger, so a logging configuration written for huey (its level, its
# handlers) applies unchanged; configure 'hueyd' to reach hueyd's records alone.
logging.getLogger('hueyd').parent = logging.getLogger('huey')

_EXPORTS = {
    'hueyd.api': ('BlackHoleHuey', 'CySqliteHuey', 'FileHuey', 'Huey', 'MemoryHuey', 'PostgresHuey',
                  'PriorityRedisExpireHuey', 'PriorityRedisHuey', 'RedisExpireHuey', 'RedisHuey', 'SqliteHuey'),
    'hueyd.cron': ('crontab', 'CrontabError'),
    'hueyd.exceptions': ('CancelExecution', 'ConfigurationError', 'HueyException',
                         'RateLimitExceeded', 'ResultTimeout', 'RetryTask', 'TaskException',
                         'TaskLockedException', 'TaskTimeout'),
    'hueyd.result': ('ChordResult', 'Result', 'ResultGroup'),
    'hueyd.serializer': ('Serializer', 'SignedSerializer'),
    'hueyd.task': ('PeriodicTask', 'Task', 'TaskWrapper', 'chord', 'group'),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError('module %r has no attribute %r' % (__name__, name))
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
