"""The parts of a radiology report that describe the image, without the request around it.

A report's INDICATION, HISTORY, COMPARISON and TECHNIQUE sections say why and how the study was
done ("History of pneumothorax", "Positive PPD, history of tuberculosis"): a finding named there
is the question, not the answer, so labelling it would put findings on normal studies. This is
the section step of the CheXpert and CheXbert labelers, which read the impression (and findings)
only. Text before the first heading is kept: many reports have no headings at all; a dropped
section also ends at a blank line, where a report goes on without a heading.

Headings are those of MIMIC-CXR's and IU-CXR (OpenI)'s reports: a known name followed by a colon,
in any case ("FINDINGS:", "Impression:", "CLINICAL HISTORY:", "Reason for exam:").
"""

from __future__ import annotations

import re
from typing import Final

# Sections that describe the image.
KEPT_HEADINGS: Final[tuple[str, ...]] = (
    "findings",
    "finding",
    "impression",
    "impressions",
    "conclusion",
    "conclusions",
    "opinion",
    "interpretation",
    "summary",
    "final report",
    "wet read",
    "addendum",
)
# Sections about the request, the patient's history or the technique.
DROPPED_HEADINGS: Final[tuple[str, ...]] = (
    "indication",
    "indications",
    "clinical indication",
    "history",
    "clinical history",
    "medical history",
    "clinical information",
    "clinical data",
    "clinical details",
    "clinical notes",
    "reason for exam",
    "reason for examination",
    "reason for study",
    "reason for request",
    "comparison",
    "comparisons",
    "technique",
    "procedure",
    "examination",
    "exam",
    "study",
    "type of examination",
    "notification",
    "recommendation",
    "recommendations",
)

_NAMES = sorted(KEPT_HEADINGS + DROPPED_HEADINGS, key=len, reverse=True)  # longest name first
_HEADING = re.compile(
    r"(?<![\w-])("
    + "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in _NAMES)
    + r")(?:\(s\))?\s*:",  # MIMIC-CXR writes "RECOMMENDATION(S):"
    re.IGNORECASE,
)
_DROPPED = frozenset(DROPPED_HEADINGS)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _body(section: str, keep: bool) -> str:
    """What is read of one section's text: all of it, or (dropped) what follows a blank line.

    A dropped section ends at the next heading or at a blank line: in "INDICATION: Cough.\n\n
    There is a right lower lobe consolidation." the second paragraph is the finding.
    """
    if keep:
        return section
    paragraphs = _PARAGRAPH_BREAK.split(section.strip(), maxsplit=1)  # "INDICATION: \n\n..."
    return paragraphs[1] if len(paragraphs) == 2 else ""


def image_sections(text: str) -> str:
    """`text` without its dropped sections; kept sections are separated by a blank line."""
    kept: list[str] = []
    start, keep = 0, True
    for heading in _HEADING.finditer(text):
        kept.append(_body(text[start : heading.start()], keep))
        keep = " ".join(heading.group(1).lower().split()) not in _DROPPED
        start = heading.end()
    kept.append(_body(text[start:], keep))
    return "\n\n".join(part.strip() for part in kept if part.strip())
