"""huey's ``huey.utils`` names, for code that imports them from there."""
from hueyd.result import SKIPPED, Error
from hueyd.storage.file import FileLock
from hueyd.times import normalize_expires, normalize_time, now

__all__ = ['Error', 'FileLock', 'SKIPPED', 'normalize_expire_time', 'normalize_time', 'utcnow']


def utcnow():
    """Now, as a naive datetime in UTC."""
    return now(utc=True)


def normalize_expire_time(expires, utc=True):
    """``expires`` (seconds, a timedelta or a datetime) as an absolute naive datetime."""
    if expires is None:
        raise ValueError('expires must be seconds, a timedelta or a datetime, not None')
    return normalize_expires(expires, utc)
