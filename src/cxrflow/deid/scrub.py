"""Cleaning free text (the `C` action on descriptors) of the identifiers a dataset carries.

Clean Descriptors keeps the meaning of text such as StudyDescription ("CHEST PA") while taking
out what identifies. We cannot parse arbitrary prose, so the cleaner removes, case-insensitively
and at word boundaries, every identifying value found elsewhere in the same file (the values
of the attributes the profile removes, empties or replaces, and of all private elements: the
patient's name and its parts, IDs, accession numbers, physicians, institutions, addresses),
plus anything shaped like a date, a time or a long number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"
_MIN_TOKEN = 3
_SHAPES = re.compile(
    r"\b\d{4}[-./]\d{1,2}[-./]\d{1,2}\b"  # 2019-03-04, 2019.03.04
    r"|\b\d{1,2}[-./]\d{1,2}[-./]\d{2,4}\b"  # 04/03/2019
    r"|\b\d{1,2}:\d{2}(?::\d{2})?\b"  # 10:15, 10:15:23
    r"|\d{5,}"  # MRNs, accession numbers, compact dates, phone numbers
)


def identifier_tokens(values: Iterable[str]) -> set[str]:
    """Split identifying values into the strings to remove: whole values and name parts."""
    tokens: set[str] = set()
    for value in values:
        value = value.strip()
        if not value:
            continue
        tokens.add(value)
        for part in re.split(r"[\^=\s,]+", value):
            part = part.strip(".")
            if len(part) >= _MIN_TOKEN:
                tokens.add(part)
    return {t for t in tokens if len(t) >= _MIN_TOKEN}


class TextScrubber:
    """Removes a fixed set of identifier tokens and identifier-shaped substrings from text."""

    def __init__(self, tokens: Iterable[str]) -> None:
        ordered = sorted(set(tokens), key=len, reverse=True)
        self._pattern = (
            re.compile(
                r"(?<![A-Za-z0-9])(?:"
                + "|".join(re.escape(t) for t in ordered)
                + r")(?![A-Za-z0-9])",
                re.IGNORECASE,
            )
            if ordered
            else None
        )

    def __call__(self, text: str) -> str:
        out = self._pattern.sub(REDACTED, text) if self._pattern is not None else text
        out = _SHAPES.sub(REDACTED, out)
        # Collapse runs such as "[REDACTED] [REDACTED]" that split names leave behind.
        return re.sub(rf"(?:{re.escape(REDACTED)}[\s^,]*)+(?={re.escape(REDACTED)})", "", out)
