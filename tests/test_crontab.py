"""crontab(): which minutes a spec matches, and how bad specs are reported."""
import datetime

import pytest

from hueyd import crontab
from hueyd.cron import CrontabError

# January 2024 starts on a Monday, so the 7th is a Sunday and the 6th a Saturday.
MONDAY = datetime.datetime(2024, 1, 1)
SUNDAY = datetime.datetime(2024, 1, 7)


def at(day=1, hour=0, minute=0, month=1, year=2024):
    return datetime.datetime(year, month, day, hour, minute)


def matching(validate, moments):
    return [m for m in moments if validate(m)]


def minutes_of_hour(validate, hour=0):
    return [m.minute for m in matching(validate, (at(hour=hour, minute=i) for i in range(60)))]


def hours_of_day(validate):
    return [m.hour for m in matching(validate, (at(hour=h) for h in range(24)))]


def days_of_week(validate):
    """The crontab day numbers (0 = Sunday) matched in one week starting on a Monday."""
    week = [MONDAY + datetime.timedelta(days=i) for i in range(7)]
    return sorted((m.isoweekday() % 7) for m in matching(validate, week))


# --- field syntax ----------------------------------------------------------------

def test_star_matches_every_minute():
    validate = crontab()
    start = datetime.datetime(2024, 2, 28, 23, 58)
    moments = [start + datetime.timedelta(minutes=i * 37) for i in range(500)]
    assert matching(validate, moments) == moments


def test_every_n():
    assert minutes_of_hour(crontab(minute='*/15')) == [0, 15, 30, 45]
    assert hours_of_day(crontab(minute='0', hour='*/4')) == [0, 4, 8, 12, 16, 20]
    assert minutes_of_hour(crontab(minute='*/1')) == list(range(60))
    assert [m.month for m in matching(crontab(month='*/3'), (at(month=i) for i in range(1, 13)))] \
        == [1, 4, 7, 10]
    assert [m.day for m in matching(crontab(day='*/10'), (at(day=i) for i in range(1, 32)))] \
        == [1, 11, 21, 31]


def test_range_is_inclusive():
    assert hours_of_day(crontab(minute='0', hour='9-17')) == list(range(9, 18))
    assert minutes_of_hour(crontab(minute='58-59')) == [58, 59]
    assert minutes_of_hour(crontab(minute='7-7')) == [7]


def test_list():
    assert minutes_of_hour(crontab(minute='0,30')) == [0, 30]
    assert minutes_of_hour(crontab(minute='5, 10,50')) == [5, 10, 50]
    assert hours_of_day(crontab(minute='0', hour='1-3,12,20-21')) == [1, 2, 3, 12, 20, 21]
    assert minutes_of_hour(crontab(minute='*/20,7')) == [0, 7, 20, 40]


def test_range_with_step():
    assert minutes_of_hour(crontab(minute='10-30/10')) == [10, 20, 30]
    assert minutes_of_hour(crontab(minute='1-10/3')) == [1, 4, 7, 10]
    assert hours_of_day(crontab(minute='0', hour='8-18/2')) == [8, 10, 12, 14, 16, 18]
    assert minutes_of_hour(crontab(minute='0-59/30,45')) == [0, 30, 45]


def test_integers_are_accepted():
    assert minutes_of_hour(crontab(minute=5)) == [5]
    assert hours_of_day(crontab(minute=0, hour=23)) == [23]


def test_range_past_the_top_wraps_round_as_in_huey():
    assert hours_of_day(crontab(minute='0', hour='22-2')) == [0, 1, 2, 22, 23]
    assert hours_of_day(crontab(minute='0', hour='23-3/2')) == [1, 3, 23]
    assert days_of_week(crontab(day_of_week='5-1')) == [0, 1, 5, 6]  # Friday to Monday


# --- day of week ---------------------------------------------------------------

def test_day_of_week_zero_is_sunday():
    assert SUNDAY.strftime('%A') == 'Sunday' and MONDAY.strftime('%A') == 'Monday'
    assert crontab(day_of_week='0')(SUNDAY)
    assert not crontab(day_of_week='0')(MONDAY)
    assert crontab(day_of_week='1')(MONDAY)
    assert days_of_week(crontab(day_of_week='6')) == [6]
    assert crontab(day_of_week='6')(at(day=6))  # Saturday the 6th


def test_day_of_week_seven_is_sunday_too():
    assert days_of_week(crontab(day_of_week='7')) == [0]
    assert crontab(day_of_week='7')(SUNDAY)
    assert days_of_week(crontab(day_of_week='5-7')) == [0, 5, 6]
    assert days_of_week(crontab(day_of_week='0,7')) == [0]


def test_day_of_week_ranges_and_lists():
    assert days_of_week(crontab(day_of_week='1-5')) == [1, 2, 3, 4, 5]
    assert days_of_week(crontab(day_of_week='0,6')) == [0, 6]
    assert days_of_week(crontab(day_of_week='*')) == list(range(7))
    assert days_of_week(crontab(day_of_week='0-6/2')) == [0, 2, 4, 6]


# --- combinations ----------------------------------------------------------------

def test_nightly_at_three():
    nightly = crontab(minute='0', hour='3')
    assert nightly(at(day=15, hour=3, minute=0))
    assert not nightly(at(day=15, hour=3, minute=1))
    assert not nightly(at(day=15, hour=4, minute=0))
    assert not nightly(at(day=15, hour=15, minute=0))


def test_weekdays_during_office_hours():
    office = crontab(minute='*/30', hour='9-17', day_of_week='1-5')
    assert office(datetime.datetime(2024, 1, 3, 9, 0))       # Wednesday
    assert office(datetime.datetime(2024, 1, 5, 17, 30))     # Friday
    assert not office(datetime.datetime(2024, 1, 5, 17, 45))  # not on a half hour
    assert not office(datetime.datetime(2024, 1, 5, 18, 0))   # after hours
    assert not office(datetime.datetime(2024, 1, 6, 12, 0))   # Saturday
    assert not office(datetime.datetime(2024, 1, 7, 12, 0))   # Sunday
    week = [datetime.datetime(2024, 1, 1, 0, 0) + datetime.timedelta(minutes=i)
            for i in range(0, 7 * 24 * 60, 30)]
    assert len(matching(office, week)) == 5 * 9 * 2  # 9:00 .. 17:30 each weekday


def test_quarterly_on_the_first_at_midnight():
    quarterly = crontab(minute='0', hour='0', day='1', month='*/3')
    days = [datetime.datetime(2024, 1, 1) + datetime.timedelta(days=i) for i in range(366)]
    assert [(d.month, d.day) for d in matching(quarterly, days)] == [
        (1, 1), (4, 1), (7, 1), (10, 1)]
    assert not quarterly(datetime.datetime(2024, 4, 1, 0, 1))


def test_day_and_day_of_week_must_both_match():
    friday_13th = crontab(minute='0', hour='12', day='13', day_of_week='5')
    days = [datetime.datetime(2024, 1, 1, 12) + datetime.timedelta(days=i) for i in range(366)]
    assert [(d.month, d.day) for d in matching(friday_13th, days)] == [(9, 13), (12, 13)]


def test_last_days_of_month_and_leap_day():
    leap = crontab(minute='0', hour='0', day='29', month='2')
    assert leap(datetime.datetime(2024, 2, 29))
    assert not leap(datetime.datetime(2024, 3, 1))
    thirty_first = crontab(minute='0', hour='0', day='31')
    days = [datetime.datetime(2024, 1, 1) + datetime.timedelta(days=i) for i in range(366)]
    assert [d.month for d in matching(thirty_first, days)] == [1, 3, 5, 7, 8, 10, 12]


# --- errors ----------------------------------------------------------------------

@pytest.mark.parametrize('field, value', [
    ('minute', '60'), ('minute', '0,61'), ('minute', '50-60'),
    ('hour', '24'), ('hour', '20-25/2'),
    ('day', '0'), ('day', '32'),
    ('month', '0'), ('month', '13'),
    ('day_of_week', '8'), ('day_of_week', '1-8'),
])
@pytest.mark.parametrize('strict', [False, True], ids=['lenient', 'strict'])
def test_out_of_range_value_raises_naming_field_and_value(field, value, strict):
    with pytest.raises(CrontabError) as info:
        crontab(strict=strict, **{field: value})
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert field in message and value in message


def test_strict_accepts_values_in_range():
    validate = crontab(minute='0-59', hour='0-23', day='1-31', month='1-12',
                       day_of_week='0-7', strict=True)
    assert validate(at(day=31, month=12, hour=23, minute=59))


def test_day_of_week_takes_no_step_through_the_week():
    with pytest.raises(CrontabError) as info:
        crontab(day_of_week='*/3')
    assert 'day_of_week' in str(info.value)


def test_hourly_is_the_first_minute_of_every_hour():
    assert hours_of_day(crontab.hourly()) == list(range(24))
    assert minutes_of_hour(crontab.hourly()) == [0]


def test_daily_is_midnight():
    assert hours_of_day(crontab.daily()) == [0]
    assert minutes_of_hour(crontab.daily()) == [0]


@pytest.mark.parametrize('strict', [False, True], ids=['lenient', 'strict'])
@pytest.mark.parametrize('field, value', [
    ('minute', 'abc'), ('minute', '1-'), ('minute', '*/x'), ('minute', ''),
    ('hour', '1--2'), ('hour', '*/0'), ('day', '1,,2'), ('day', 'L'),
    ('month', 'jan'), ('day_of_week', 'mon'), ('day_of_week', '-1'),
])
def test_unparseable_field_always_raises_naming_it(field, value, strict):
    with pytest.raises(CrontabError) as info:
        crontab(strict=strict, **{field: value})
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_periodic_task_with_crontab_is_read_at_now_by_default():
    from hueyd import MemoryHuey
    huey = MemoryHuey('crontab-periodic')

    @huey.periodic_task(crontab())
    def every_minute():
        pass

    @huey.periodic_task(crontab(minute='*/15', hour='9-17'))
    def office_quarter():
        pass

    assert 'every_minute' in [t.name for t in huey.read_periodic()]  # huey's default: now
    at_ten = datetime.datetime(2024, 1, 2, 10, 15)
    assert sorted(t.name for t in huey.read_periodic(at_ten)) == ['every_minute',
                                                                 'office_quarter']
