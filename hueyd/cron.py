"""``crontab()``: a cron-like test of whether a periodic task is due at a minute.

Each field takes ``*``, ``*/n``, ``m``, ``m-n``, ``m-n/s`` and comma lists of these.
A range whose end is below its start wraps round (``hour='22-2'``).
``day_of_week`` counts 0 = Sunday to 6 = Saturday (7 is Sunday too); as in huey,
it takes no ``*/n`` (a week does not divide evenly), and a value out of a
field's range is an error.
"""
import functools
import re

# field name -> (lowest, highest) value accepted
_FIELDS = (
    ('minute', 0, 59),
    ('hour', 0, 23),
    ('day', 1, 31),
    ('month', 1, 12),
    ('day_of_week', 0, 7),
)
_TOKEN = re.compile(r'^(?:(\*)|(\d+)(?:-(\d+))?)(?:/(\d+))?$')


class CrontabError(ValueError):
    """A crontab field could not be parsed or holds a value out of range."""


def _parse_field(name, spec, low, high, strict):
    values = set()
    for token in str(spec).replace(' ', '').split(','):
        match = _TOKEN.match(token)
        if not match:
            raise CrontabError(
                'crontab %s=%r: cannot parse %r; use *, */n, m, m-n, m-n/s or '
                'a comma-separated list of these' % (name, spec, token))
        star, start, end, step = match.groups()
        step = int(step or 1)
        if step < 1:
            raise CrontabError('crontab %s=%r: step must be at least 1' % (name, spec))
        if star:
            if name == 'day_of_week' and match.group(4):
                raise CrontabError('crontab day_of_week=%r: */n cannot step through a week; '
                                   'list the days instead (day_of_week=\'1,3,5\')' % (spec,))
            first, last = low, high
        else:
            first = int(start)
            last = int(end) if end is not None else (high if match.group(4) else first)
        if not (low <= first <= high and low <= last <= high):
            raise CrontabError(
                'crontab %s=%r: %r is outside %d-%d' % (name, spec, token, low, high))
        if first <= last or end is None:
            run = range(first, last + 1)
        else:
            # A range that runs past the top wraps round, as in huey: hour='22-2'
            # is 22, 23, 0, 1, 2 and day_of_week='5-1' is Friday to Monday.
            top = 6 if name == 'day_of_week' else high
            run = list(range(first, top + 1)) + list(range(low, last + 1))
        values.update(v for v in run[::step] if low <= v <= high)
    if not values:
        raise CrontabError('crontab %s=%r matches no valid value (%d-%d)'
                           % (name, spec, low, high))
    return frozenset(values)


def crontab(minute='*', hour='*', day='*', month='*', day_of_week='*', strict=False):
    """Return ``validate(datetime) -> bool``, true at every minute the spec matches.

    A field that cannot be parsed, or holds a value out of its range, raises
    :class:`CrontabError` (a ValueError) naming the field and the value.
    ``strict`` is accepted for huey's sake; every field is checked strictly.
    """
    spec = dict(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week)
    allowed = {name: _parse_field(name, spec[name], low, high, strict)
               for name, low, high in _FIELDS}
    dow = allowed['day_of_week']
    if 7 in dow:
        dow = dow | {0}

    def validate_datetime(timestamp):
        return (timestamp.minute in allowed['minute']
                and timestamp.hour in allowed['hour']
                and timestamp.day in allowed['day']
                and timestamp.month in allowed['month']
                and timestamp.isoweekday() % 7 in dow)

    validate_datetime.spec = spec
    return validate_datetime


# huey's shortcuts: at the start of every hour, and at midnight.
crontab.hourly = functools.partial(crontab, minute='0')
crontab.daily = functools.partial(crontab, minute='0', hour='0')
