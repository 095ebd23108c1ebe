"""A rule-based finding labeler on NegEx scope rules, over `cxrflow.findings.FINDINGS`.

An offline stand-in for CheXbert (whose weights cannot be downloaded here), built as the
CheXpert labeler is: mention extraction, then negation and uncertainty classification, then
aggregation. A blank spaCy pipeline (nothing downloaded): a sentencizer, an EntityRuler with the
mention patterns of `cxrflow.report.labeling.vocabulary`, and two negspacy `Negex` components,
one with the negation termset and one with the uncertainty termset. A trigger's scope is its
clause: a new sentence or a termination term ("but", "however", "which", ";") ends it, so one
"No" covers a whole list ("No focal airspace disease, pleural effusion or pneumothorax");
post-mention triggers ("has resolved") reach back a few tokens only. Only the sections that
describe the image are read (`cxrflow.report.labeling.sections`): a finding in the INDICATION or
HISTORY is the question asked, not the answer.

Labels: 1 positive, 0 negative or not mentioned, -1 uncertain (mapped to negative for F1, as the
paper maps CheXbert's uncertain). Per finding, positive beats uncertain beats negative over the
report's mentions (the CheXpert labeler's aggregation).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import spacy
from negspacy.negation import Negex
from spacy.language import Language
from spacy.tokens import Doc, Span

from cxrflow.findings import FINDINGS
from cxrflow.report.labeling import vocabulary as vocab
from cxrflow.report.labeling.sections import image_sections

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

_NEGATED, _HEDGED = "cxr_negated", "cxr_uncertain"  # Span extensions set by the two Negex
_RANK = {NEGATIVE: 0, UNCERTAIN: 1, POSITIVE: 2}  # aggregation: positive > uncertain > negative
_LABEL_FINDINGS: dict[str, tuple[str, ...]] = {f: (f,) for f in FINDINGS} | {
    vocab.HYDROPNEUMOTHORAX: ("pneumothorax", "pleural_effusion"),
}
_PARAGRAPHS = re.compile(r"\n\s*\n")  # a blank line ends a sentence; single newlines are wraps


class _WindowedNegex(Negex):
    """negspacy's Negex whose post-mention triggers reach only `following_window` tokens back.

    negspacy lets a following trigger cover every earlier mention of the clause, so in "Left
    chest tube in place and the pneumothorax has resolved" the tube would be negated too.
    """

    def __init__(
        self,
        nlp: Language,
        name: str,
        neg_termset: dict[str, list[str]],
        extension_name: str,
        following_window: int,
    ) -> None:
        super().__init__(nlp, name, neg_termset, extension_name=extension_name)
        self.following_window = following_window

    def _apply_negation(self, span: Span, sub_preceding, sub_following) -> None:
        """Negex's rule, with following triggers limited to the window after `span`."""
        near = [m for m in sub_following if 0 <= m[1] - span.end <= self.following_window]
        super()._apply_negation(span, sub_preceding, near)


@Language.factory(
    "cxrflow_negex",
    default_config={"neg_termset": {}, "extension_name": "negex", "following_window": 5},
)
def _make_negex(
    nlp: Language,
    name: str,
    neg_termset: dict[str, list[str]],
    extension_name: str,
    following_window: int,
) -> _WindowedNegex:
    """spaCy factory of `_WindowedNegex`."""
    return _WindowedNegex(nlp, name, neg_termset, extension_name, following_window)


@functools.cache
def labeler_pipeline() -> Language:
    """The spaCy pipeline (built once per process: the matchers take a while to compile)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"overwrite_ents": True})
    ruler.add_patterns(vocab.entity_ruler_patterns())
    for name, termset, extension in (
        ("negation", vocab.NEGATION_TERMS, _NEGATED),
        ("uncertainty", vocab.UNCERTAINTY_TERMS, _HEDGED),
    ):
        config = {
            "neg_termset": termset,
            "extension_name": extension,
            "following_window": vocab.FOLLOWING_WINDOW,
        }
        nlp.add_pipe("cxrflow_negex", name=name, config=config)
    return nlp


def _alternatives(doc: Doc) -> set[int]:
    """Indices (in `doc.ents`) of mentions in an "X or Y" / "X versus Y" run."""
    ents = doc.ents
    hedged: set[int] = set()
    run, has_conjunction = [0], False
    for i in range(1, len(ents) + 1):
        between = [] if i == len(ents) else [t.lower_ for t in doc[ents[i - 1].end : ents[i].start]]
        joined = (
            i < len(ents)
            and ents[i].sent.start == ents[i - 1].sent.start
            and all(
                w in vocab.ALTERNATIVE_FILLERS or w in vocab.ALTERNATIVE_CONJUNCTIONS
                for w in between
            )
        )
        if joined:
            run.append(i)
            has_conjunction |= any(w in vocab.ALTERNATIVE_CONJUNCTIONS for w in between)
            continue
        if has_conjunction:
            hedged.update(run)
        run, has_conjunction = [i], False
    return hedged


def _mention_label(ent: Span, alternative: bool) -> int:
    """Label of one mention: negation first, then uncertainty (CheXpert's order)."""
    if ent._.get(_NEGATED):
        return NEGATIVE
    if ent._.get(_HEDGED) or ent.ent_id_ == vocab.UNCERTAIN_ID or alternative:
        return UNCERTAIN
    return POSITIVE


def _merge(labels: dict[str, int], doc: Doc) -> None:
    """Fold the mentions of `doc` into `labels` (positive > uncertain > negative)."""
    alternatives = _alternatives(doc)
    for i, ent in enumerate(doc.ents):
        label = _mention_label(ent, i in alternatives)
        for finding in _LABEL_FINDINGS.get(ent.label_, ()):
            if _RANK[label] > _RANK[labels[finding]]:
                labels[finding] = label


def _paragraphs(text: str) -> list[str]:
    """Paragraphs of a report's image sections, with line wraps and runs of spaces collapsed."""
    sections = image_sections(text or "")
    return [" ".join(p.split()) for p in _PARAGRAPHS.split(sections) if p.strip()]


def label_reports(texts: Sequence[str]) -> list[dict[str, int]]:
    """{finding: 1 / 0 / -1} for each text; positive wins over uncertain over negative."""
    nlp = labeler_pipeline()
    owners: list[int] = []
    paragraphs: list[str] = []
    for i, text in enumerate(texts):
        for paragraph in _paragraphs(text):
            owners.append(i)
            paragraphs.append(paragraph)
    results = [dict.fromkeys(FINDINGS, NEGATIVE) for _ in texts]
    for owner, doc in zip(owners, nlp.pipe(paragraphs, batch_size=256), strict=True):
        _merge(results[owner], doc)
    return results


def label_report(text: str) -> dict[str, int]:
    """{finding: 1 / 0 / -1} for one report; positive wins over uncertain over negative."""
    return label_reports([text])[0]
