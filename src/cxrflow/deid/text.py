"""De-identifying free-text reports: free text is PHI until scrubbed.

A side-car report is prose a person wrote, so it can name the patient, the physician, the
hospital, an MRN, a phone number or the day of the examination. `scrub_report` replaces them
with typed placeholders (`[NAME]`, `[ID]`, `[PHONE]`, `[EMAIL]`, `[URL]`, `[ADDRESS]`,
`[POSTCODE]`, `[LOCATION]`, `[DATE]`) and shifts dates by the patient's keyed offset (the one
the header's DA/DT values get, `Deidentifier.date_shift`), so a report's timeline stays
consistent with its images.

Why hand-written recognisers and not a library (checked 2025, offline, from PyPI only):
`scrubadub` 2.0.1 installs, but its name detector needs NLTK/TextBlob corpora downloaded at
run time, its phone detector misses the 555 numbers reports use in examples, its postcode
detector is British only, and it drags scikit-learn, nltk, textblob, faker and dateparser in;
`presidio-analyzer` needs a spaCy model that is not on PyPI; `philter-ucsf` needs NLTK data and
a Stanford NER download; `deid` (pydicom) cleans DICOM headers, not prose. So this module holds
small documented patterns, plus the strongest signal we have: the identifying values of the
same study's header (`KnownIdentifiers`), removed by exact match whatever else the patterns find.

What is recognised, in this order (each found span is protected from the later patterns):

1. e-mail addresses and URLs;
2. the study's known values: patient name parts, patient and other IDs, accession number,
   study ID, physicians' and operators' name parts, institution, department, addresses and
   telephone numbers from the header (case-insensitive, whole words);
3. dates: `03/14/2024`, `14.03.2024`, `2024-03-14`, `3/14/24`, `March 14, 2024`, `14 Mar 2024`,
   `March 2024`. Numeric `a/b/yyyy` reads month first unless `a > 12`. With an offset the date
   is shifted and written back in its own format; without one, or when it is the patient's
   birth date (known, or after "DOB"/"born"), it becomes `[DATE]`. Bare years and times of day
   are kept (not identifying alone under HIPAA Safe Harbor); compact `20240314` counts as an ID;
4. phone and fax numbers (North American shapes, `+` international, or after "tel", "phone",
   "pager", "fax", "ext", "bleep");
5. identifiers: a value after a label (MRN, MR#, accession/Acc#, patient ID, order, encounter,
   visit) and any token with a run of 5+ digits (`A1234567`, `12345678`, `MRN0042424`);
6. street addresses (`12 Example Road, Springfield IL 62704`) and US/UK/Canadian postcodes;
7. names: after a title (`Dr. Jane Smith` -> `Dr. [NAME]`), after a cue ("signed by",
   "dictated by", "discussed with", "patient", "name:" ...), before credentials (`, MD`), and
   DICOM-style `DOE^JANE`;
8. ages over 89 become `90+` (Safe Harbor).

What it cannot do: find a stranger's name in running prose with no cue (no NER model runs
offline here); the header's known values cover the patient and the study's physicians.
Medical vocabulary is left alone: findings, laterality, views (AP, PA), levels (T10) and
measurements (5 mm, 0.5) match none of the patterns.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cxrflow.deid.profile import Deidentifier

# ---- the study's known identifying values ---------------------------------------------------

_NAME_KEYWORDS = frozenset(
    {
        "PatientName",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "ResponsiblePerson",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord",
        "RequestingPhysician",
        "ScheduledPerformingPhysicianName",
        "OperatorsName",
    }
)
_ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "RequestedProcedureID",
        "PerformedProcedureStepID",
        "ScheduledProcedureStepID",
        "PatientTelephoneNumbers",
        "StationName",
        "DeviceSerialNumber",
    }
)
_LOCATION_KEYWORDS = frozenset(
    {
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "PatientAddress",
        "ReferringPhysicianAddress",
    }
)
# Name parts this short or this common would blank ordinary words; they are not removed alone.
_COMMON_SHORT = frozenset(
    [
        "ap",
        "pa",
        "ll",
        "rl",
        "ct",
        "mr",
        "xr",
        "ed",
        "er",
        "or",
        "no",
        "to",
        "in",
        "on",
        "at",
        "of",
        "is",
        "as",
        "by",
        "an",
        "be",
        "do",
        "go",
        "he",
        "if",
        "it",
        "me",
        "my",
        "so",
        "up",
        "us",
        "we",
        "de",
        "la",
        "le",
        "da",
        "di",
        "du",
        "el",
        "st",
        "jr",
        "sr",
        "md",
        "dr",
        "mrs",
        "ms",
        "mr",
        "the",
        "and",
        "van",
        "von",
        "der",
        "den",
    ]
)


@dataclass(frozen=True)
class KnownIdentifiers:
    """Identifying values of one study, removed from its report by exact (word) match."""

    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    birth_dates: tuple[date, ...] = ()

    @classmethod
    def from_dataset(cls, ds: Dataset) -> KnownIdentifiers:
        """Collect them from an original (not yet de-identified) dataset, at any depth."""
        names: list[str] = []
        ids: list[str] = []
        locations: list[str] = []
        births: list[date] = []
        for elem in ds.iterall():
            keyword = elem.keyword
            if elem.VR == "SQ" or elem.value in (None, ""):
                continue
            values = [str(v) for v in _as_list(elem.value)]
            if keyword in _NAME_KEYWORDS:
                names += values
            elif keyword in _ID_KEYWORDS:
                ids += values
            elif keyword in _LOCATION_KEYWORDS:
                locations += values
            elif keyword == "PatientBirthDate":
                for v in values:
                    d = _parse_da(v)
                    if d is not None:
                        births.append(d)
        return cls(tuple(names), tuple(ids), tuple(locations), tuple(births))

    def tokens(self) -> dict[str, str]:
        """{lower-cased token: placeholder kind}: whole values, and name parts and segments."""
        out: dict[str, str] = {}

        def add(token: str, kind: str, min_len: int) -> None:
            token = token.strip(" .,;:")
            if len(token) >= min_len and token.lower() not in _COMMON_SHORT:
                out.setdefault(" ".join(token.lower().split()), kind)

        for value in self.ids:
            add(value, "ID", 3)
        for value in self.names:
            add(value.replace("^", " "), "NAME", 3)
            for part in re.split(r"[\^=\s,]+", value):
                add(part, "NAME", 2)
        for value in self.locations:
            add(value, "LOCATION", 3)
            for segment in re.split(r"[\^\n\r,;]+", value):
                add(segment, "LOCATION", 4)
        return out


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _parse_da(value: str) -> date | None:
    m = re.fullmatch(r"(\d{4})\.?(\d{2})\.?(\d{2})", value.strip())
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


# ---- the result -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrubResult:
    """The scrubbed text and how many spans of each kind were replaced or shifted."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# ---- patterns -------------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:)]", re.IGNORECASE)

_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_BIRTH_CUE = re.compile(
    r"(?:\bDOB|\bD\.O\.B\.?|date of birth|birth ?date|\bborn(?: on)?)\W{0,3}$", re.IGNORECASE
)
_DATE_NUMERIC = re.compile(r"(?<![\w/.-])(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/-]|\.\d)")
_DATE_ISO = re.compile(r"(?<![\w/.-])(\d{4})([/.-])(\d{1,2})\2(\d{1,2})(?![\w/-]|\.\d)")
_DATE_MDY = re.compile(
    rf"\b(?P<month>{_MONTH})(?P<dot>\.?)(?P<sp1>\s+)(?P<day>\d{{1,2}})(?P<suf>st|nd|rd|th)?"
    r"(?P<sep>,?\s+)(?P<year>\d{4})\b",
    re.IGNORECASE,
)
_DATE_DMY = re.compile(
    rf"\b(?P<day>\d{{1,2}})(?P<suf>st|nd|rd|th)?(?P<sp1>\s+)(?:of\s+)?(?P<month>{_MONTH})"
    r"(?P<dot>\.?)(?P<sep>,?\s+)(?P<year>\d{4})\b",
    re.IGNORECASE,
)
_DATE_MY = re.compile(rf"\b(?P<month>{_MONTH})(?P<dot>\.?)(?P<sep>,?\s+)(?P<year>(?:19|20)\d\d)\b")

_PHONE = re.compile(
    r"(?<![\w/.-])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r"(?:\s*(?:ext\.?|x)\s*\d{1,5})?(?![\w/-])"
    r"|(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}\d(?![\w/-])",
    re.IGNORECASE,
)
_PHONE_LABELLED = re.compile(
    r"(?<![A-Za-z])(?:tel|telephone|phone|ph|pager|page|fax|ext|extension|bleep|cell|mobile)"
    r"\.?\s*(?:no\.?|number|#)?\s*[:#]?\s*(\d[\d ().-]{2,}\d|\d{3,})",
    re.IGNORECASE,
)
_ID_LABELLED = re.compile(
    r"(?<![A-Za-z])(?:MRN|MR|medical record|hospital number|accession|acc|patient id|pt id|"
    r"ID|order|encounter|visit|NHS|SSN|case)"
    r"(?:\s*(?:#|no\.?|num\.?|number))?(?![A-Za-z])\s*[:#=]?\s*"
    r"((?=[A-Za-z-]*\d)[A-Za-z0-9][A-Za-z0-9-]{2,}(?: \d{3} \d{4})?)",
    re.IGNORECASE,
)
_ID_DIGITS = re.compile(r"(?<![\w.])[A-Za-z]{0,4}-?\d{5,}[A-Za-z]{0,2}(?![\w]|\.\d)")

_STREET = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Boulevard|Blvd|Court|Ct|Way|Place|Pl|"
    r"Terrace|Close|Crescent|Square|Highway|Hwy|Parkway|Pkwy|Gardens|Row)"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?(?:[ ]+[A-Z][a-z]+){{1,3}}[ ]+{_STREET}\b\.?"
    r"(?:,?[ ]*(?:Apt|Apartment|Suite|Unit|Flat)\.?[ ]*#?\w+)?"
    r"(?:,[ ]*[A-Z][a-z]+(?:[ ][A-Z][a-z]+)?(?:,?[ ]+[A-Z]{2})?(?:,?[ ]+\d{5}(?:-\d{4})?)?)?"
)
_POSTCODE = re.compile(
    r"(?<=[A-Z]{2}[ ])\d{5}(?:-\d{4})?\b"  # after a US state code: IL 62704
    r"|\b\d{5}-\d{4}\b"  # ZIP+4
    r"|\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)[ ]?\d[A-Z]{2}\b"  # UK: SW1A 1AA
    r"|\b[A-Z]\d[A-Z][ ]?\d[A-Z]\d\b"  # Canada: K1A 0B1
)

# A name word, or a name already found (a known name part), so that "Dr. <known> Smith" and
# "Jane <known>" are taken whole.
_WORD = r"(?:[A-Z]\.|[A-Z][a-z]*[A-Za-z'\u2019-]*[a-z]|[A-Z][a-z]|[\uf000-\uf8ff])"
_PERSON = rf"{_WORD}(?:[ ]+{_WORD}){{0,2}}"
_TITLE = r"(?:Dr|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Sister)"
# Capitalised words that follow a cue without being a name.
_NOT_NAMES = frozenset(
    [
        "The",
        "This",
        "That",
        "These",
        "There",
        "Is",
        "Was",
        "Has",
        "Had",
        "Have",
        "With",
        "Who",
        "Which",
        "No",
        "Not",
        "Now",
        "Is",
        "In",
        "On",
        "At",
        "To",
        "Emergency",
        "Department",
        "Team",
        "Radiology",
        "Radiologist",
        "Clinic",
        "Ward",
        "Nurse",
        "Nursing",
        "Surgery",
        "ICU",
        "ED",
        "Attending",
        "Resident",
        "Physician",
        "Referring",
        "Consultant",
        "On-call",
        "Oncall",
        "Staff",
        "Service",
        "Left",
        "Right",
        "Bilateral",
        "AP",
        "PA",
        "Lateral",
        "Findings",
        "Impression",
        "Comparison",
        "History",
        "Technique",
        "Report",
        "Study",
        "Chest",
        "Portable",
        "Prior",
        "Please",
        "See",
        "Clinical",
        "Information",
        "Dr",
        "Doctor",
        "Mr",
        "Mrs",
        "Ms",
        "Miss",
        "Mx",
        "Prof",
        "Professor",
        "Sister",
    ]
)
_TITLED = re.compile(rf"(?<![A-Za-z]){_TITLE}\.?[ ]+({_PERSON})")
_CUED = re.compile(
    r"(?i:\b(?:electronically signed by|signed by|signed|dictated by|read by|reviewed by|"
    r"reported by|verified by|transcribed by|approved by|interpreted by|requested by|"
    r"ordered by|referred by|discussed with|communicated (?:to|with)|d/w|called to|"
    r"attending|radiologist|resident|referring physician|referring|physician|consultant|"
    r"patient name|patient|pt|name|mother|father|wife|husband|daughter|son)\b)"
    rf"[ \t]*[:,-]?[ \t]*(?:{_TITLE}\.?[ ]+)?({_PERSON})"
)
_CREDENTIALED = re.compile(
    rf"(?<![A-Za-z])({_PERSON}),?[ ]+(?:MD|M\.D\.|DO|MBBS|FRCR|FRCP|PhD|RN|NP|PA-C|RT)\b"
)
_CARET = re.compile(r"(?<![\w^])[A-Za-z][A-Za-z'-]*(?:\^[A-Za-z'-]*)+")
_OLD_AGE = re.compile(
    r"\b(?:9\d|1[0-4]\d)(?=[ -]?(?:years?|yrs?|y/?o|yo)\b|[ -]year-old)", re.IGNORECASE
)

_PUA = re.compile("[\ue000-\uf8ff]")
_BASE = 0xE000  # protected spans; names from 0xF000 on, which name patterns may extend
_NAME_BASE = 0xF000


class _Work:
    """Text being scrubbed: found spans are swapped for private-use characters until the end."""

    def __init__(self, text: str) -> None:
        self.text = _PUA.sub(" ", text)
        self.out: list[str] = []
        self.names: list[str] = []
        self.counts: Counter[str] = Counter()

    def sub(
        self,
        pattern: re.Pattern[str],
        kind: str | None,
        repl: Callable[[re.Match[str]], str | None] | None = None,
        group: int = 0,
    ) -> None:
        """Protect each match of `pattern` (or its `group`); `kind` None: the placeholder
        `repl` returns names the kind."""

        def one(m: re.Match[str]) -> str:
            replacement = f"[{kind}]" if repl is None else repl(m)
            if replacement is None:
                return m.group(0)
            start, end = m.span(group)
            self.counts[kind or replacement.strip("[]")] += 1
            if replacement == "[NAME]":
                token = chr(_NAME_BASE + len(self.names))
                self.names.append(replacement)
            else:
                token = chr(_BASE + len(self.out))
                self.out.append(replacement)
            return m.string[m.start() : start] + token + m.string[end : m.end()]

        self.text = pattern.sub(one, self.text)

    def result(self) -> ScrubResult:
        def restore(m: re.Match[str]) -> str:
            code = ord(m.group(0))
            return self.names[code - _NAME_BASE] if code >= _NAME_BASE else self.out[code - _BASE]

        text = _PUA.sub(restore, self.text)
        # "[NAME] [NAME]" from a split name reads as one name.
        text = re.sub(r"\[([A-Z]+)\](?:[ ,^]+\[\1\])+", r"[\1]", text)
        return ScrubResult(text, dict(sorted(self.counts.items())))


def _known_pattern(tokens: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(tokens), key=len, reverse=True)
    if not ordered:
        return None
    alternatives = (r"[\s^,]+".join(re.escape(w) for w in t.split()) for t in ordered)
    return re.compile(
        r"(?<![A-Za-z0-9])(?:" + "|".join(alternatives) + r")(?![A-Za-z0-9])", re.IGNORECASE
    )


def _year4(year: str) -> int:
    if len(year) == 4:
        return int(year)
    return 2000 + int(year) if int(year) < 50 else 1900 + int(year)


def _fmt_year(d: date, like: str) -> str:
    return f"{d.year % 100:02d}" if len(like) == 2 else f"{d.year:04d}"


def _padded(*parts: str) -> bool:
    """Whether a numeric date wrote its month and day on two digits (`03/14`, `12/11`)."""
    return any(p.startswith("0") for p in parts) or all(len(p) == 2 for p in parts)


def _num(value: int, pad: bool) -> str:
    return f"{value:02d}" if pad else str(value)


def _month_word(month: int, like: str) -> str:
    """The month in the style of `like`: abbreviated if it was three letters, same case."""
    d = date(2000, month, 1)
    word = d.strftime("%b") if len(like) == 3 else d.strftime("%B")
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word if like[:1].isupper() else word.lower()


class _Dates:
    """Shifts (or removes) the dates of one text."""

    def __init__(self, offset: int | None, births: tuple[date, ...]) -> None:
        self.offset = offset
        self.births = set(births)

    def _is_birth(self, m: re.Match[str], d: date | None) -> bool:
        return (d is not None and d in self.births) or bool(
            _BIRTH_CUE.search(m.string[max(0, m.start() - 20) : m.start()])
        )

    def _shift(self, m: re.Match[str], d: date | None) -> date | None:
        if d is None or self.offset is None or self._is_birth(m, d):
            return None
        try:
            return d + timedelta(days=self.offset)
        except OverflowError:
            return None

    def numeric(self, m: re.Match[str]) -> str:
        a, sep, b, y = m.group(1), m.group(2), m.group(3), m.group(4)
        month_first = int(a) <= 12
        month, day = (a, b) if month_first else (b, a)
        d = _safe_date(_year4(y), int(month), int(day))
        new = self._shift(m, d)
        if new is None:
            return "[DATE]"
        pad = _padded(month, day)
        mm, dd = _num(new.month, pad), _num(new.day, pad)
        first, second = (mm, dd) if month_first else (dd, mm)
        return f"{first}{sep}{second}{sep}{_fmt_year(new, y)}"

    def iso(self, m: re.Match[str]) -> str:
        y, sep, month, day = m.group(1), m.group(2), m.group(3), m.group(4)
        new = self._shift(m, _safe_date(int(y), int(month), int(day)))
        if new is None:
            return "[DATE]"
        pad = _padded(month, day)
        return f"{new.year:04d}{sep}{_num(new.month, pad)}{sep}{_num(new.day, pad)}"

    def worded(self, m: re.Match[str]) -> str:
        g = m.groupdict()
        month = _MONTHS[g["month"][:3].lower()]
        new = self._shift(m, _safe_date(int(g["year"]), month, int(g.get("day") or 15)))
        if new is None:
            return "[DATE]"
        word = _month_word(new.month, g["month"]) + g["dot"]
        if g.get("day") is None:
            return f"{word}{g['sep']}{new.year:04d}"
        suffix = _ordinal(new.day) if g["suf"] else ""
        day = _num(new.day, g["day"].startswith("0")) + suffix
        if m.re is _DATE_DMY:
            of = m.group(0)[m.end("sp1") - m.start() : m.start("month") - m.start()]
            return f"{day}{g['sp1']}{of}{word}{g['sep']}{new.year:04d}"
        return f"{word}{g['sp1']}{day}{g['sep']}{new.year:04d}"


def _ordinal(day: int) -> str:
    if 10 <= day % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _not_a_name(m: re.Match[str]) -> str | None:
    words = m.group(1).split()
    if words[0].rstrip(".") in _NOT_NAMES or all(w.rstrip(".") in _NOT_NAMES for w in words):
        return None
    return "[NAME]"


def scrub_report(
    text: str, *, known: KnownIdentifiers | None = None, date_offset_days: int | None = None
) -> ScrubResult:
    """Replace identifiers in `text` by placeholders; shift its dates by `date_offset_days`.

    `known` holds the study's header values (removed by exact match); `date_offset_days` the
    patient's offset (`Deidentifier.date_shift(...).days`), or None to remove dates instead.
    """
    work = _Work(text)
    work.sub(_EMAIL, "EMAIL")
    work.sub(_URL, "URL")
    known = known or KnownIdentifiers()
    tokens = known.tokens()
    pattern = _known_pattern(tokens)
    if pattern is not None:
        # The kind of a match is the kind of the token it matched.
        work.sub(
            pattern, None, lambda m: f"[{tokens.get(' '.join(m.group(0).lower().split()), 'ID')}]"
        )
    dates = _Dates(date_offset_days, known.birth_dates)
    for pat in (_DATE_MDY, _DATE_DMY, _DATE_MY):
        work.sub(pat, "DATE", dates.worded)
    work.sub(_DATE_ISO, "DATE", dates.iso)
    work.sub(_DATE_NUMERIC, "DATE", dates.numeric)
    work.sub(_PHONE, "PHONE")
    work.sub(_PHONE_LABELLED, "PHONE", group=1)
    work.sub(_ADDRESS, "ADDRESS")
    work.sub(_ID_LABELLED, "ID", group=1)
    work.sub(_POSTCODE, "POSTCODE")
    work.sub(_ID_DIGITS, "ID")
    work.sub(_TITLED, "NAME", _not_a_name, group=1)
    work.sub(_CUED, "NAME", _not_a_name, group=1)
    work.sub(_CREDENTIALED, "NAME", _not_a_name, group=1)
    work.sub(_CARET, "NAME")
    work.sub(_OLD_AGE, "AGE", lambda m: "90+")
    return work.result()


def scrub_dataset_report(text: str, ds: Dataset, deid: Deidentifier) -> ScrubResult:
    """Scrub the report of the study `ds` (original, before `deid.apply`): its header's values
    are removed, and dates move with the patient's offset when the profile keeps dates."""
    offset = None
    if deid.options.retain_longitudinal_modified_dates:
        offset = deid.date_shift(str(ds.get("PatientID", "") or "")).days
    return scrub_report(text, known=KnownIdentifiers.from_dataset(ds), date_offset_days=offset)
