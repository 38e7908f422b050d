"""hueyd: a huey-compatible task queue and the daemon that runs it.

Switch from huey by changing ``from huey import ...`` to ``from hueyd import ...``.
"""
from hueyd.api import (Huey, MemoryHuey, PriorityRedisHuey, RedisHuey, SqliteHuey)
from hueyd.crontab import crontab
from hueyd.exceptions import (CancelExecution, ConfigurationError, HueyException,
                              RateLimitExceeded, ResultTimeout, RetryTask,
                              TaskException, TaskLockedException, TaskTimeout)
from hueyd.result import Result, ResultGroup
from hueyd.serializer import Serializer, SignedSerializer
from hueyd.task import PeriodicTask, Task, TaskWrapper

__version__ = '0.1.0'

__all__ = [
    'Huey', 'MemoryHuey', 'PriorityRedisHuey', 'RedisHuey', 'SqliteHuey',
    'crontab', 'CancelExecution', 'ConfigurationError', 'HueyException',
    'RateLimitExceeded', 'ResultTimeout', 'RetryTask', 'TaskException',
    'TaskLockedException', 'TaskTimeout', 'Result', 'ResultGroup', 'Serializer',
    'SignedSerializer', 'PeriodicTask', 'Task', 'TaskWrapper',
]
