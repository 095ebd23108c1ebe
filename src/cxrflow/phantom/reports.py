"""Findings sections consistent with a study's labels, with varied phrasing.

Positive findings use one of several templates with laterality and severity words; some absent
findings get explicit negations; a normal study reads "No acute cardiopulmonary process."
"""

from __future__ import annotations

import numpy as np

from cxrflow.phantom.plan import Lesion

NORMAL_SENTENCE = "No acute cardiopulmonary process."

# Words that a positive sentence about each finding always contains (lower case); tests use them.
FINDING_KEYWORDS: dict[str, tuple[str, ...]] = {
    "lung_opacity": ("opacity", "consolidation", "airspace"),
    "cardiomegaly": ("cardiomegaly", "enlarged", "cardiac silhouette"),
    "pleural_thickening": ("pleural thickening", "thickened pleura"),
    "aortic_enlargement": ("aort",),
    "pulmonary_fibrosis": ("fibrosis", "fibrotic", "reticular"),
    "tuberculosis": ("tuberculosis", "tuberculous", "cavit"),
    "pleural_effusion": ("effusion",),
    "pneumothorax": ("pneumothorax",),
    "chest_tube": ("chest tube", "thoracostomy", "pleural drain"),
    "rib_fracture": ("fracture",),
}

_SEVERITY = {
    "pleural_effusion": {1: "small", 2: "moderate", 3: "large"},
    "pneumothorax": {1: "small", 2: "moderate", 3: "large"},
    "default": {1: "mild", 2: "moderate", 3: "severe"},
}
_ZONE = {"upper": "upper", "middle": "mid", "lower": "lower"}

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "lung_opacity": (
        "{Sev} patchy airspace opacity in the {side} {zone} zone{s}.",
        "Focal consolidation in the {side} {zone} lung{s}, {sev} in extent.",
        "There is {a_sev} opacity projecting over the {side} {zone} zone{s}, likely pneumonia.",
    ),
    "cardiomegaly": (
        "The heart is enlarged ({sev} cardiomegaly).",
        "{Sev} cardiomegaly.",
        "The cardiac silhouette is enlarged, cardiothoracic ratio above 0.5.",
    ),
    "pleural_thickening": (
        "{Sev} pleural thickening along the {side} lateral chest wall.",
        "{Side_cap} pleural thickening, {sev}.",
        "Thickened pleura over the {side} hemithorax.",
    ),
    "aortic_enlargement": (
        "The aortic knob is prominent; {sev} aortic enlargement.",
        "Widened mediastinum with an enlarged, unfolded aorta.",
        "{Sev} dilatation of the thoracic aorta.",
    ),
    "pulmonary_fibrosis": (
        "Bilateral basal reticular opacities with volume loss, consistent with pulmonary fibrosis.",
        "{Sev} interstitial fibrosis in the lower zones with reduced lung volumes.",
        "Coarse reticular pattern at both bases, in keeping with fibrotic lung disease.",
    ),
    "tuberculosis": (
        # Asserted, not hedged: the phantom's label is positive, and "suspicious for" /
        # "concerning for" are uncertainty cues (CheXpert labeler); "fibrotic changes" would
        # also name pulmonary fibrosis, which the phantom did not draw.
        "Nodular opacities in the {side} upper zone{s}, consistent with tuberculosis.",
        "{Side_cap} apical nodular opacities consistent with tuberculosis.",
        "Upper-zone nodules on the {side} with cavitation, consistent with active tuberculosis.",
    ),
    "pleural_effusion": (
        "{A_sev} {side} pleural effusion{s} with blunting of the costophrenic angle{s}.",
        "{Side_cap} {sev} pleural effusion{s}.",
        "Blunting of the {side} costophrenic angle{s} in keeping with {a_sev} effusion{s}.",
    ),
    "pneumothorax": (
        "{A_sev} {side} pneumothorax with a visible pleural line.",
        "{Side_cap} apical pneumothorax, {sev}.",
        "There is {a_sev} {side} pneumothorax; no mediastinal shift.",
    ),
    "chest_tube": (
        "{Side_cap} chest tube in place with its tip at the apex.",
        "A {side} thoracostomy tube is in place.",
        "{Side_cap} pleural drain projects over the hemithorax.",
    ),
    "rib_fracture": (
        "Displaced fracture of a {side} posterior rib.",
        "{Side_cap} rib fracture with a visible step in the cortex.",
        "Fracture of the {side} lateral rib cage.",
    ),
}

_NEGATIONS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("pneumothorax", "pleural_effusion"),
        ("No pneumothorax or pleural effusion.", "No pleural effusion or pneumothorax."),
    ),
    (("pneumothorax",), ("No pneumothorax.", "There is no pneumothorax.")),
    (("pleural_effusion",), ("No pleural effusion.", "The costophrenic angles are sharp.")),
    (("cardiomegaly",), ("Heart size is normal.", "The cardiac silhouette is not enlarged.")),
    (("lung_opacity",), ("No focal consolidation.", "The lungs are clear of focal opacity.")),
    (("aortic_enlargement",), ("The mediastinal contours are normal.",)),
    (("rib_fracture",), ("No acute osseous abnormality.", "No displaced rib fracture.")),
)

_NORMAL_EXTRAS = (
    "The lungs are clear.",
    "Heart size and mediastinal contours are within normal limits.",
    "No pleural effusion or pneumothorax.",
    "The osseous structures are intact.",
)


def _side_words(side: str) -> tuple[str, str, str]:
    """(side, Side, plural suffix)."""
    word = {"left": "left", "right": "right", "bilateral": "bilateral"}[side]
    return word, word.capitalize(), "s" if side == "bilateral" else ""


def _sentence(rng: np.random.Generator, les: Lesion) -> str:
    sev = _SEVERITY.get(les.finding, _SEVERITY["default"])[les.severity]
    side, side_cap, plural = _side_words(les.side)
    if les.finding == "tuberculosis" and side == "bilateral":
        side = "both"
    template = _TEMPLATES[les.finding][int(rng.integers(len(_TEMPLATES[les.finding])))]
    if les.finding == "tuberculosis" and les.severity < 2:
        template = _TEMPLATES["tuberculosis"][0]  # no cavity drawn when mild
    article = "an" if sev[0] in "aeiou" else "a"
    text = template.format(
        sev=sev,
        Sev=sev.capitalize(),
        a_sev=f"{article} {sev}",
        A_sev=f"{article.capitalize()} {sev}",
        side=side,
        Side_cap=side_cap,
        s=plural,
        zone=_ZONE[les.zone],
    )
    return text


def write_report(
    rng: np.random.Generator,
    lesions: tuple[Lesion, ...],
    prior: tuple[Lesion, ...] | None,
) -> str:
    """A "FINDINGS:" section for one study."""
    parts: list[str] = []
    if prior is not None:
        parts.append(
            ("Comparison is made with the prior radiograph.", "Compared with the prior study.")[
                int(rng.integers(2))
            ]
        )
    if not lesions:
        extras = list(_NORMAL_EXTRAS)
        rng.shuffle(extras)
        parts += extras[: int(rng.integers(0, 3))]
        parts.append(NORMAL_SENTENCE)
        return "FINDINGS: " + " ".join(parts)
    prior_findings = {les.finding for les in prior or ()}
    for les in lesions:
        sentence = _sentence(rng, les)
        if prior is not None:
            if les.finding in prior_findings and rng.random() < 0.5:
                sentence = sentence[:-1] + ", unchanged from prior."
            elif les.finding not in prior_findings and rng.random() < 0.5:
                sentence = "New: " + sentence[0].lower() + sentence[1:]
        parts.append(sentence)
    present = {les.finding for les in lesions}
    used: set[str] = set()
    for findings, options in _NEGATIONS:
        if any(f in present or f in used for f in findings) or rng.random() < 0.4:
            continue
        parts.append(options[int(rng.integers(len(options)))])
        used.update(findings)
    return "FINDINGS: " + " ".join(parts)
