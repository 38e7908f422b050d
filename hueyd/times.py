"""Time conventions shared by the task API and the scheduler.

Like huey, hueyd works in naive datetimes: UTC when ``utc=True`` (the default),
local time otherwise. Storages work in float unix timestamps.
"""
import calendar
import datetime
import time


def now(utc=True):
    if utc:
        return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return datetime.datetime.now()


def to_naive(dt, utc=True):
    """A datetime in hueyd's convention; a naive input is taken as local time."""
    if dt.tzinfo is None:
        if not utc:
            return dt
        dt = dt.astimezone()  # attach the local zone, then convert below
    if utc:
        return dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return dt.astimezone().replace(tzinfo=None)


def normalize_time(eta=None, delay=None, utc=True):
    """The moment a task should run, from an ``eta`` datetime or a ``delay``."""
    if (eta is None) == (delay is None):
        raise ValueError('give either eta= (a datetime) or delay= (seconds), not both or neither')
    if delay is not None:
        if not isinstance(delay, datetime.timedelta):
            delay = datetime.timedelta(seconds=delay)
        return now(utc) + delay
    if not isinstance(eta, datetime.datetime):
        raise ValueError('eta must be a datetime, got %r' % (eta,))
    return to_naive(eta, utc)


def normalize_expires(expires, utc=True):
    """``expires`` as seconds, a timedelta or a datetime -> an absolute naive datetime."""
    if expires is None:
        return None
    if isinstance(expires, datetime.datetime):
        return to_naive(expires, utc)
    if not isinstance(expires, datetime.timedelta):
        expires = datetime.timedelta(seconds=expires)
    return now(utc) + expires


def to_timestamp(dt, utc=True):
    """A naive datetime in hueyd's convention -> unix timestamp."""
    if utc:
        return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
    return time.mktime(dt.timetuple()) + dt.microsecond / 1e6


def unix_time(ts):
    """A schedule time as storages keep it: unix seconds, from a number or a datetime.

    huey's storages take datetimes (a naive one is local time), hueyd's own
    callers pass numbers; both reach the storage.
    """
    return ts.timestamp() if isinstance(ts, datetime.datetime) else ts


def from_timestamp(ts, utc=True):
    if utc:
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).replace(tzinfo=None)
    return datetime.datetime.fromtimestamp(ts)
