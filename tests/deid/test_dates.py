from datetime import datetime

from cxrflow.deid.dates import (
    DateShift,
    shift_date,
    shift_datetime,
    shift_time,
)

SHIFT = DateShift(days=-1000, seconds=3600 * 5 + 17)


def _d(s: str) -> datetime:
    return datetime.strptime(s, "%Y%m%d")


def test_dates_keep_intervals():
    a, b = shift_date("20200315", SHIFT), shift_date("20230101", SHIFT)
    assert (_d(b) - _d(a)) == (_d("20230101") - _d("20200315"))
    assert (_d("20200315") - _d(a)).days == 1000


def test_partial_and_legacy_dates():
    assert shift_date("2020.03.15", SHIFT) == shift_date("20200315", SHIFT)
    assert len(shift_date("202003", SHIFT)) == 6
    assert len(shift_date("2020", SHIFT)) == 4
    assert shift_date("garbage", SHIFT) is None
    assert shift_date("20201399", SHIFT) is None


def test_date_time_and_datetime_stay_consistent_across_midnight():
    # 22:30 + 5 h wraps to 03:30; the date moves by the whole days only, in DA and in DT alike.
    date, time = shift_date("20200315", SHIFT), shift_time("223000", SHIFT)
    assert time == "033017"
    assert shift_datetime("20200315223000", SHIFT) == date + time
    assert (_d("20200315") - _d(date)).days == 1000


def test_times_keep_precision_and_fraction():
    assert shift_time("1015", SHIFT) == "1515"
    assert shift_time("101523.123", SHIFT) == "151540.123"
    assert shift_time("10:15:23", SHIFT) == "151540"
    assert shift_time("256199", SHIFT) is None


def test_datetime_keeps_timezone_and_precision():
    out = shift_datetime("20200315101600.000000+0100", SHIFT)
    assert out.endswith(".000000+0100")
    assert out[:14] == shift_date("20200315", SHIFT) + shift_time("101600", SHIFT)
    assert len(shift_datetime("20200315", SHIFT)) == 8
    assert shift_datetime("2020xx", SHIFT) is None
