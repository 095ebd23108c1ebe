"""A rule-based finding labeler with negation handling, over `cxrflow.findings.FINDINGS`.

An offline stand-in for CheXbert (whose weights cannot be downloaded here): sentence-level
mention patterns, NegEx-style negation (a trigger before the mention in the same clause, or
a few post-mention phrases) and uncertainty cues. Labels: 1 positive, 0 negative or not
mentioned, -1 uncertain (mapped to negative for F1, as the paper maps CheXbert's uncertain).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from cxrflow.findings import FINDINGS

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

# Mention patterns (lower case). Reticular/nodular opacities describe fibrosis/TB, not a
# separate lung opacity finding.
_MENTIONS: Final[dict[str, str]] = {
    "lung_opacity": r"(?<!reticular )(?<!nodular )\bopacit(y|ies)\b|consolidation|airspace",
    "cardiomegaly": r"cardiomegaly|heart is enlarged|enlarged heart|cardiac silhouette is enlarged"
    r"|enlarged cardiac silhouette",
    "pleural_thickening": r"pleural thickening|thickened pleura",
    "aortic_enlargement": r"aortic (enlargement|dilatation|ectasia)|(enlarged|unfolded|ectatic"
    r"|tortuous|dilated),? (unfolded )?aorta|dilatation of the (thoracic )?aorta"
    r"|aortic knob is prominent|widened mediastinum",
    "pulmonary_fibrosis": r"(pulmonary|interstitial) fibrosis|fibrotic lung disease"
    r"|reticular (opacities|pattern)",
    "tuberculosis": r"tubercul(osis|ous)|cavitation",
    "pleural_effusion": r"effusions?\b",
    "pneumothorax": r"pneumothora(x|ces)",
    "chest_tube": r"chest tube|thoracostomy tube|pleural drain|pigtail catheter",
    "rib_fracture": r"fractures?\b",
}
_PRE_NEGATION = re.compile(
    r"\b(no|not|without|negative for|free of|clear of|absence of|resolution of|no evidence of"
    r"|resolved)\b"
)
_POST_NEGATION = re.compile(
    r"^[^.;]{0,30}\b((is|are|has been|have been) (not seen|absent|resolved|removed)"
    r"|(has|have) resolved)"
)
_UNCERTAIN = re.compile(
    r"\b(possible|possibly|may|might|cannot be excluded|can not be excluded|questionable"
    r"|equivocal|could)\b"
)
_CLAUSE_BREAK = re.compile(r"\b(but|however|although|though|with|whereas)\b|;")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
NEGATION_WINDOW = 6  # words between a trigger and the mention, as NegEx's default scope


def _mention_label(sentence: str, match: re.Match[str]) -> int:
    """Label of one mention from its sentence context."""
    before = _CLAUSE_BREAK.split(sentence[: match.start()])[-1]
    words = before.split()
    scope = " ".join(words[-NEGATION_WINDOW:])
    if _PRE_NEGATION.search(scope) or _POST_NEGATION.search(sentence[match.end() :]):
        return NEGATIVE
    if _UNCERTAIN.search(before) or _UNCERTAIN.search(sentence[match.end() :]):
        return UNCERTAIN
    return POSITIVE


def label_report(text: str) -> dict[str, int]:
    """{finding: 1 / 0 / -1} for one report; positive wins over uncertain over negative."""
    labels = dict.fromkeys(FINDINGS, NEGATIVE)
    for sentence in _SENTENCES.split((text or "").lower()):
        for finding, pattern in _MENTIONS.items():
            for match in re.finditer(pattern, sentence):
                label = _mention_label(sentence, match)
                current = labels[finding]
                if label == POSITIVE or (label == UNCERTAIN and current == NEGATIVE):
                    labels[finding] = label
    return labels


def label_reports(texts: Sequence[str]) -> list[dict[str, int]]:
    """`label_report` of each text."""
    return [label_report(t) for t in texts]
