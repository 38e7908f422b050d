"""huey's ``huey.utils`` names, for code that imports them from there."""
import fcntl
import os

from hueyd.result import SKIPPED, Error
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


class FileLock:
    """A lock shared by every process on this machine: flock() on ``filename``.

    The file (and its folder) is created once and never removed, so a second
    FileLock on the same path never takes the file from under a holder.
    """

    def __init__(self, filename):
        self.filename = filename
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        os.close(os.open(filename, os.O_CREAT | os.O_WRONLY, 0o644))
        self.fd = None

    def acquire(self):
        fd = os.open(self.filename, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()
