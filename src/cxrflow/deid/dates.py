"""Shifting DICOM DA, DT and TM values by one keyed offset per patient.

The option Retain Longitudinal Temporal Information with Modified Dates keeps intervals
between events while hiding when they happened. Each patient gets one offset: whole days for
dates, plus seconds for times of day. Dates move by the days only, so the number of days
between any two dates (the interval longitudinal studies measure) is exact. Times move by the
seconds modulo one day, without carrying into the date: a date never depends on its time, so
StudyDate, StudyTime and a DT built from them stay consistent with each other. The cost,
stated plainly: two times of one day whose shifted values straddle midnight swap order.

Values in the wild are messy: partial dates (`2019`, `201903`), legacy `YYYY.MM.DD` and
`HH:MM:SS`, DT with a UTC offset, and garbage. Partial values shift at their precision;
garbage is returned as None and the caller empties the element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_DA = re.compile(r"^(\d{4})(?:\.?(\d{2})(?:\.?(\d{2}))?)?$")
_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")


@dataclass(frozen=True)
class DateShift:
    """A per-patient offset: `days` (negative: into the past) and `seconds` in [0, 86400)."""

    days: int
    seconds: int


def shift_date(value: str, shift: DateShift) -> str | None:
    """Shift a DA value; None when it is not a date."""
    m = _DA.match(value.strip())
    if not m:
        return None
    year, month, day = m.group(1), m.group(2), m.group(3)
    try:
        if day is not None:
            d = datetime(int(year), int(month), int(day)) + timedelta(days=shift.days)
            return d.strftime("%Y%m%d")
        if month is not None:
            d = datetime(int(year), int(month), 15) + timedelta(days=shift.days)
            return d.strftime("%Y%m")
        d = datetime(int(year), 7, 1) + timedelta(days=shift.days)
        return d.strftime("%Y")
    except (ValueError, OverflowError):
        return None


def _tm_parts(value: str) -> tuple[int, int | None, int | None, str] | None:
    m = _TM.match(value.strip())
    if not m:
        return None
    hh = int(m.group(1))
    mm = int(m.group(2)) if m.group(2) else None
    ss = int(m.group(3)) if m.group(3) else None
    frac = m.group(4) or ""
    # DICOM allows a leap second (60); anything larger is garbage.
    if hh > 23 or (mm is not None and mm > 59) or (ss is not None and ss > 60):
        return None
    return hh, mm, ss, frac


def _format_tm(t: datetime, precision: int, frac: str) -> str:
    out = t.strftime("%H%M%S")[: 2 * precision]
    return out + (frac if precision == 3 else "")


def shift_time(value: str, shift: DateShift) -> str | None:
    """Shift a lone TM value by the seconds part of the offset, wrapping at midnight."""
    parts = _tm_parts(value)
    if parts is None:
        return None
    hh, mm, ss, frac = parts
    precision = 1 + (mm is not None) + (ss is not None)
    base = datetime(2000, 1, 1, hh, mm or 0, min(ss or 0, 59))
    return _format_tm(base + timedelta(seconds=shift.seconds), precision, frac)


def shift_datetime(value: str, shift: DateShift) -> str | None:
    """Shift a DT value at its own precision, keeping any UTC offset suffix."""
    m = _DT.match(value.strip())
    if not m:
        return None
    fields = [m.group(i) for i in range(1, 7)]
    frac, tz = m.group(7) or "", m.group(8) or ""
    present = [f for f in fields if f is not None]
    # Components must be contiguous from the year: `2019` then `03`, never a gap.
    if any(f is None for f in fields[: len(present)]):
        return None
    values = [int(f) for f in present] + [1, 1, 0, 0, 0][len(present) - 1 :]
    try:
        base = datetime(
            values[0], values[1] or 1, values[2] or 1, values[3], values[4], min(values[5], 59)
        )
    except ValueError:
        return None
    # Without a time component only whole days move, as for a lone DA.
    day = base.replace(hour=0, minute=0, second=0) + timedelta(days=shift.days)
    if len(present) <= 3:
        full = day.strftime("%Y%m%d") + "000000"
    else:
        time = base + timedelta(seconds=shift.seconds)  # the time wraps; the date never carries
        full = day.strftime("%Y%m%d") + time.strftime("%H%M%S")
    lengths = [4, 6, 8, 10, 12, 14]
    out = full[: lengths[len(present) - 1]]
    return out + (frac if len(present) == 6 else "") + tz
