"""The FINDINGS section of a free-text radiology report.

MIMIC-CXR reports (and most North-American reports, e.g. CANDID-PTX's) are sections headed by an
upper-case title and a colon (`EXAMINATION:`, `INDICATION:`, `FINDINGS:`, `IMPRESSION:`). The
Findings text is what follows `FINDINGS:` (or `FINDINGS AND IMPRESSION:`) up to the next such
header, with whitespace collapsed. Reports without a Findings header give None — as in the
paper, which drops samples without a Findings section for report generation.
"""

from __future__ import annotations

import re

_KNOWN = (
    "FINDINGS AND IMPRESSION|FINDINGS|FINDING|IMPRESSION|CONCLUSION|CONCLUSIONS|OPINION|COMMENT"
    "|RECOMMENDATION\\(S\\)|RECOMMENDATIONS|RECOMMENDATION|NOTIFICATION|COMPARISON|INDICATION"
    "|HISTORY|CLINICAL HISTORY|TECHNIQUE|EXAMINATION"
)
_HEADER = re.compile(rf"^[ \t]*([A-Z][A-Z /&()\-]{{2,60}}):|(?<!\S)({_KNOWN}):", re.MULTILINE)
_FINDINGS = {"FINDINGS", "FINDINGS AND IMPRESSION", "FINDING"}


def extract_findings(report: str | None) -> str | None:
    """The Findings section's text, or None when the report has none (or it is empty)."""
    if not report:
        return None
    headers = list(_HEADER.finditer(report))
    for i, h in enumerate(headers):
        if (h.group(1) or h.group(2)).strip() in _FINDINGS:
            end = headers[i + 1].start() if i + 1 < len(headers) else len(report)
            text = " ".join(report[h.end() : end].split())
            return text or None
    return None
