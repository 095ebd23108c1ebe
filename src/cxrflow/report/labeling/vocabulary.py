"""The labeler's vocabulary: mention patterns per finding and the negation/uncertainty termsets.

Basis: the CheXpert labeler (github.com/stanfordmlgroup/chexpert-labeler, MIT licence):
`phrases/mention/*.txt` and `mention_phrases/*.txt` for mentions, `patterns/negation.txt`,
`patterns/pre_negation_uncertainty.txt` and `patterns/post_negation_uncertainty.txt` for the
cues (there dependency-graph rules; here their trigger words as NegEx phrases), plus negspacy's
`en_clinical` termset (NegEx, Chapman et al. 2001). Adapted to `cxrflow.findings.FINDINGS`:

- a mention asserts the finding ("heart size is enlarged"), where CheXpert mentions the organ
  ("heart size") and then decides; so "heart size is normal" mentions nothing;
- narrower than CheXpert where our finding is narrower: rib fracture (CheXpert: any fracture),
  aortic enlargement (CheXpert: enlarged cardiomediastinum), pleural thickening (CheXpert:
  pleural other), tuberculosis (the word, not a cavity);
- lung opacity is CheXpert's airspace opacity less the interstitial and nodular patterns (those
  describe fibrosis, tuberculosis or a lesion); atelectasis, edema and pneumonia are not it;
- look-alikes get a label of their own (`OTHER`) so the longer match wins over the finding
  ("pericardial effusion", "clavicle fracture", "nodular opacity") and they still count as
  list members for the "X versus Y" rule.

Pattern syntax (compiled by `token_patterns`): space-separated token slots matched on the
lower-cased token; a slot is `|`-separated alternatives, `@NAME` expands a word class, `~RE` is
a regular expression; a trailing `?`, `*` or `+` is the slot's quantifier.
"""

from __future__ import annotations

import re
from typing import Final

OTHER: Final = "OTHER"  # a look-alike that is none of our findings
HYDROPNEUMOTHORAX: Final = "HYDROPNEUMOTHORAX"  # both pneumothorax and pleural effusion
UNCERTAIN_ID: Final = "uncertain"  # pattern id of phrases that are hedged by themselves

WORD_CLASSES: Final[dict[str, tuple[str, ...]]] = {
    # Verbs and adverbs between a subject and its predicate ("heart size is again mildly").
    "COPULA": (
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "remains",
        "remain",
        "appears",
        "appear",
        "seems",
        "again",
        "still",
        "now",
        "also",
        "persistently",
        "mildly",
        "moderately",
        "markedly",
        "severely",
        "slightly",
        "minimally",
        "massively",
        "significantly",
        "substantially",
        "somewhat",
        "stably",
        "grossly",
        "considerably",
        "mild",
        "moderate",
        "severe",
        "marked",
        "slight",
        "minimal",
        "overall",
        # Templated reports: "Heart size: enlarged".
        ":",
        # Redaction tokens (IU-CXR's XXXX, MIMIC-CXR's ___) stand where a word was removed.
        "xxxx",
        "___",
    ),
    "AORTA_ADJ": (
        "tortuous",
        "unfolded",
        "ectatic",
        "dilated",
        "enlarged",
        "elongated",
        "uncoiled",
        "aneurysmal",
        "widened",
    ),
    "AORTA_DESC": (
        "calcified",
        "atherosclerotic",
        "thoracic",
        "ascending",
        "descending",
        "proximal",
        "mildly",
        "moderately",
        "markedly",
        "slightly",
        "and",
        ",",
        "-",
        "the",
        "an",
        "a",
    ),
    "AORTA_PART": ("aorta", "aortic"),
    "AORTA_SEG": ("thoracic", "ascending", "descending", "proximal", "distal"),
    # Words between "fracture of" and "rib(s)": side, position, number, age of the fracture.
    "RIB_DESC": (
        "left",
        "right",
        "bilateral",
        "both",
        "a",
        "an",
        "one",
        "two",
        "three",
        "several",
        "multiple",
        "posterior",
        "anterior",
        "lateral",
        "posterolateral",
        "anterolateral",
        "upper",
        "lower",
        "mid",
        "through",
        "to",
        "and",
        "-",
        ",",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
    ),
    "NOT_RIB": (
        "clavicle",
        "clavicular",
        "scapula",
        "scapular",
        "sternal",
        "sternum",
        "humeral",
        "humerus",
        "vertebral",
        "compression",
        "spinous",
        "transverse",
        "spine",
    ),
}
# "6th", "5th-7th" (no "|": that separates alternatives)
_ORDINAL = r"~^\d+[snrt][tdh](-\d+[snrt][tdh])?$"

# label -> patterns. Labels are finding names, `OTHER` or `HYDROPNEUMOTHORAX`.
MENTIONS: Final[dict[str, tuple[str, ...]]] = {
    "lung_opacity": (
        # CheXpert airspace_opacity.txt / consolidation.txt: opaci*, consolidat*, infiltrat*,
        # airspace disease; "increased density" too.
        "opacity|opacities|opacification|opacifications",
        "consolidation|consolidations|consolidative|consolidated",
        "infiltrate|infiltrates|infiltration|infiltrations",
        "airspace disease|diseases|process|opacity|opacities",
        "air - space disease|opacity|opacities",
        "air space disease|opacity|opacities",
        "increased density|densities",
        "ground - glass opacity|opacities|opacification",
        "ground glass opacity|opacities|opacification",
    ),
    "cardiomegaly": (
        # CheXpert cardiomegaly.txt names the organ; here the enlargement must be stated.
        "cardiomegaly",
        "cardiac enlargement",
        "enlarged heart|cardiac",
        "enlarged cardiac silhouette|shadow|size|contour",
        "enlargement of the? heart|cardiac",
        "enlargement of the? cardiac silhouette|shadow|size",
        "increased heart|cardiac size",
        "increase|increased in heart|cardiac size",
        "large heart",
        "heart size|silhouette|shadow|contour|contours? @COPULA* enlarged|increased|large",
        "cardiac silhouette|size|shadow|contour|contours @COPULA* enlarged|increased|large",
    ),
    "pleural_thickening": (
        # CheXpert pleural_other.txt, the thickening part of it; plaques and apical caps are
        # focal pleural thickening (PadChest: calcified pleural thickening).
        "pleural thickening|thickenings",
        "thickening of the? pleura",
        "thickened pleura",
        "pleural plaque|plaques|scar|scars|scarring|fibrosis|calcification|calcifications",
        "pleural - parenchymal scar|scars|scarring",
        "pleuroparenchymal scar|scars|scarring",
        "pleuro - parenchymal scar|scars|scarring",
        "apical|biapical pleural? cap|caps|capping",
        "pleural cap|caps|capping",
        "fibrothorax",
    ),
    "aortic_enlargement": (
        # Beyond CheXpert (which has no aorta label): VinDr "aortic enlargement", PadChest
        # "aortic elongation" / "aortic button enlargement" / "aortic aneurysm".
        "@AORTA_ADJ @AORTA_DESC{0,3} aorta|aortic",
        "aorta|aortic arch|knob|root? @COPULA* @AORTA_ADJ",
        "aorta|aortic arch|knob|root? @COPULA* calcified|atherosclerotic and|, @AORTA_ADJ",
        "aortic enlargement|dilatation|dilation|ectasia|tortuosity|elongation|unfolding|aneurysm",
        "aortic arch|root|knob enlargement|dilatation|dilation|ectasia|aneurysm",
        "tortuosity|ectasia|dilatation|dilation|elongation|unfolding|enlargement|aneurysm of "
        "the? @AORTA_SEG{0,2} aorta|aortic",
        "aneurysmal dilatation|dilation of the? @AORTA_SEG{0,2} aorta",
        "prominent|enlarged|widened aortic knob|arch",
        "aortic knob|arch @COPULA* prominent",
        "prominence of the? aortic knob|arch",
    ),
    "pulmonary_fibrosis": (
        "fibrosis",
        "fibrotic change|changes|lung|disease|scarring|appearance|process|band|bands|strands",
        "fibrotic - appearing",
        "fibrotic interstitial lung? disease",
        "honeycombing|honeycomb",
        "usual interstitial pneumonia",
        "uip",
    ),
    "tuberculosis": (
        # The word only: a cavity or granuloma is not tuberculosis until the report says so.
        "tuberculosis|tuberculous|tuberculoma|tb",
        "post - tuberculous|tuberculosis",
        "posttuberculous",
    ),
    "pleural_effusion": (
        # CheXpert pleural_effusion.txt: "effusion", "pleural fluid"; hemothorax/hydrothorax are
        # fluid in the pleural space.
        "effusion|effusions",
        "pleural fluid",
        "hemothorax|hemothoraces|haemothorax|hydrothorax",
    ),
    "pneumothorax": ("pneumothorax|pneumothoraces|ptx",),
    HYDROPNEUMOTHORAX: ("hydropneumothorax|hydropneumothoraces",),
    "chest_tube": (
        # CheXpert support_devices.txt, the pleural drains of it.
        "chest tube|tubes|drain|drains|catheter|catheters",
        "thoracostomy tube|tubes|catheter|catheters|drain|drains",
        "pleural drain|drains|tube|tubes|catheter|catheters",
        "pleural drainage tube|tubes|catheter|catheters",
        "intercostal drain|drains|tube|tubes|catheter|catheters",
        "pigtail catheter|catheters|drain|drains",
        "pleurx",
    ),
    "rib_fracture": (
        "rib|ribs fracture|fractures|fx",
        "rib|ribs and|or|, @NOT_RIB fracture|fractures",
        "rib fracture|fractures deformity|deformities",
        f"fracture|fractures|fx of the|a|an? @RIB_DESC|{_ORDINAL}* rib|ribs",
        "fractured rib|ribs",
        f"fractured @RIB_DESC|{_ORDINAL}* rib|ribs",
    ),
    OTHER: (
        "pericardial effusion|effusions|fluid",
        "joint effusion|effusions",
        "fracture|fractures",  # any bone; rib fractures are the longer matches above
        "nodular|reticular|reticulonodular|interstitial|fibronodular|micronodular "
        "opacity|opacities|densities",
        "cystic fibrosis",
        "mediastinal drain|drains|tube|tubes",
        "widened|widening mediastinum",
        "mediastinal widening",
        "atelectasis|pneumonia|edema|aspiration|infection|nodule|nodules|mass|granuloma",
        "granulomas|scarring|lipomatosis",
    ),
}

# Phrases hedged by themselves: a mention of the finding with an uncertain label.
HEDGED_MENTIONS: Final[dict[str, tuple[str, ...]]] = {
    # CheXpert post_negation_uncertainty.txt: "borderline heart size".
    "cardiomegaly": (
        "borderline heart|cardiac size",
        "top|upper -? normal heart|cardiac size",
        "borderline cardiomegaly|enlargement",
        "heart|cardiac size|silhouette @COPULA* borderline",
        "heart|cardiac size|silhouette @COPULA* top|upper -? normal",
        "heart|cardiac size|silhouette @COPULA* borderline? at? the? upper limit|limits|range "
        "of normal",
        "borderline enlarged|enlargement of the? heart|cardiac",
    ),
    # CheXpert: "blunting of the costophrenic angle" is uncertain for effusion.
    "pleural_effusion": (
        "blunting|blunted of? the? left|right|bilateral|both? costophrenic angle|angles|sulcus",
        "costophrenic angle|angles @COPULA* blunted|blunting",
    ),
}

# NegEx termsets (negspacy's four keys). Negation: CheXpert negation.txt triggers + NegEx.
NEGATION_TERMS: Final[dict[str, list[str]]] = {
    "pseudo_negations": [
        # "no change" asserts what it qualifies ("no change in the small effusion").
        "no change",
        "no significant change",
        "no interval change",
        "no definite change",
        "no significant interval change",
        "no substantial change",
        "not significantly changed",
        "not changed",
        "without change",
        "without interval change",
        "no increase",
        "no further",
        "not only",
        "not necessarily",
        # Uncertainty, not negation (CheXpert pre_negation_uncertainty.txt).
        "cannot exclude",
        "cannot be excluded",
        "not be excluded",
        "not excluded",
        "not entirely excluded",
        "cannot rule out",
        "cannot be ruled out",
        "not ruled out",
        "not be ruled out",
        "not well seen",
        "not well visualized",
        "not well evaluated",
        "not clearly seen",
        "not definitely seen",
        "not definitely excluded",
        "difficult to exclude",
    ],
    "preceding_negations": [
        "no",
        "not",
        "without",
        "absence of",
        "negative for",
        "free of",
        "clear of",
        "no evidence of",
        "no evidence for",
        "no signs of",
        "no sign of",
        "resolution of",
        "resolved",
        "removal of",
        "never",
        "nor",
        "neither",
        "rather than",
        "fails to reveal",
        "no findings of",
    ],
    "following_negations": [
        "resolved",
        "has resolved",
        "have resolved",
        "is resolved",
        "are resolved",
        "has cleared",
        "have cleared",
        "absent",
        "is absent",
        "are absent",
        "removed",
        "has been removed",
        "have been removed",
        "was removed",
        "were removed",
        "removal",
        "no longer seen",
        "no longer visualized",
        "no longer visible",
        "no longer present",
        "no longer identified",
        "no longer evident",
        "no longer demonstrated",
        "not seen",
        "not identified",
        "not present",
        "not visualized",
        "not demonstrated",
        "not evident",
        "not appreciated",
        "ruled out",
        "unlikely",
        "excluded",
        # Templated reports: "Pneumothorax: none", "Pleural effusion: negative".
        "none",
        "none seen",
        "negative",
    ],
    "termination": [
        # A new clause ends a trigger's scope (NegEx terminations; CheXpert's "but"/"however").
        # Not ":": headings are split off by `sections`, and in a templated line ("Pneumothorax:
        # absent") the colon joins the mention to its negation.
        "but",
        "however",
        "although",
        "though",
        "which",
        "otherwise",
        "except",
        "except for",
        "apart from",
        "aside from",
        "other than",
        "yet",
        "nevertheless",
        "still",
        "whereas",
        "with",
        "given",
        "and there is",
        "and there are",
        "and there has been",
        "and there remains",
        ";",
    ],
}

# Uncertainty: CheXpert pre-/post-negation uncertainty triggers ("possible", "may represent",
# "cannot exclude", "suspicious for", "concerning for", "differential includes", ...).
# "versus" and "or" hedge only the mentions they join (`ALTERNATIVE_CONJUNCTIONS`).
UNCERTAINTY_TERMS: Final[dict[str, list[str]]] = {
    "pseudo_negations": ["no doubt", "without doubt", "not suspicious", "not concerning"],
    "preceding_negations": [
        "possible",
        "possibly",
        "probable",
        "probably",
        "presumed",
        "presumably",
        "questionable",
        "question of",
        "questionably",
        "suspect",
        "suspected",
        "suspicious for",
        "suspicion for",
        "suspicion of",
        "concerning for",
        "concern for",
        "worrisome for",
        "may",
        "might",
        "could",
        "may represent",
        "may reflect",
        "may be",
        "could represent",
        "could reflect",
        "could be",
        "suggestive of",
        "suggests",
        "suggesting",
        "suggest",
        "suggestion of",
        "cannot exclude",
        "cannot rule out",
        "differential includes",
        "differential diagnosis includes",
        "differential include",
        "differential diagnosis",
        "differential considerations include",
        "differential",
        "equivocal",
        "indeterminate",
        "borderline",
        "correlate clinically for",
        "consider",
        "considered",
        "such as",
        "maybe",
        "rule out",
        "evaluate for",
        "evaluation for",
        "assessment for",
        "r/o",
        "difficult to exclude",
    ],
    "following_negations": [
        "cannot be excluded",
        "not be excluded",
        "not excluded",
        "not entirely excluded",
        "cannot be ruled out",
        "not ruled out",
        "may be present",
        "might be present",
        "could be present",
        "is possible",
        "are possible",
        "is also possible",
        "is questioned",
        "is suspected",
        "are suspected",
        "suspected",
        "not well seen",
        "not well visualized",
        "not clearly seen",
        "not well evaluated",
        "is questionable",
        "placement recommended",
        "placement is recommended",
        "insertion recommended",
        "insertion is recommended",
        "is difficult to exclude",
    ],
    "termination": [
        "but",
        "however",
        "although",
        "though",
        "which",
        "otherwise",
        "yet",
        "nevertheless",
        "whereas",
        "with",
        ";",
        ":",
    ],
}

# "X or Y" / "X versus Y" between mentions hedges them (CheXpert's conj:or / conj:versus rules):
# a run of mentions separated only by these fillers and commas, with one of the conjunctions.
ALTERNATIVE_CONJUNCTIONS: Final[frozenset[str]] = frozenset({"or", "versus", "vs", "vs.", "and/or"})
ALTERNATIVE_FILLERS: Final[frozenset[str]] = frozenset(
    {
        ",",
        "a",
        "an",
        "the",
        "small",
        "tiny",
        "trace",
        "minimal",
        "mild",
        "moderate",
        "large",
        "left",
        "right",
        "bilateral",
        "basilar",
        "apical",
        "focal",
        "early",
        "underlying",
        "loculated",
        "subpulmonic",
        "residual",
        "some",
        "superimposed",
        "adjacent",
    }
)

FOLLOWING_WINDOW: Final = 5  # tokens from a mention to a post-mention trigger (NegEx's window)


def _slot(text: str) -> dict[str, object]:
    """One token slot of a pattern (see the module docstring)."""
    op = None
    if text[-1] in "?*+" and len(text) > 1:
        text, op = text[:-1], text[-1]
    elif text.endswith("}") and "{" in text:
        text, quantifier = text.split("{", 1)
        op = "{" + quantifier
    words: list[str] = []
    regexes: list[str] = []
    for alternative in text.split("|"):
        if alternative.startswith("@"):
            words.extend(WORD_CLASSES[alternative[1:]])
        elif alternative.startswith("~"):
            regexes.append(alternative[1:])
        else:
            words.append(alternative)
    if regexes:
        exact = [rf"^{re.escape(w)}$" for w in words]
        slot: dict[str, object] = {"LOWER": {"REGEX": "|".join(exact + regexes)}}
    elif len(words) == 1:
        slot = {"LOWER": words[0]}
    else:
        slot = {"LOWER": {"IN": words}}
    if op:
        slot["OP"] = op
    return slot


def token_patterns(pattern: str) -> list[dict[str, object]]:
    """The spaCy token pattern of one vocabulary pattern."""
    return [_slot(part) for part in pattern.split()]


def entity_ruler_patterns() -> list[dict[str, object]]:
    """Every mention pattern as an EntityRuler pattern (label; id `uncertain` when hedged)."""
    patterns: list[dict[str, object]] = []
    for label, texts in MENTIONS.items():
        patterns += [{"label": label, "pattern": token_patterns(t)} for t in texts]
    for label, texts in HEDGED_MENTIONS.items():
        patterns += [
            {"label": label, "id": UNCERTAIN_ID, "pattern": token_patterns(t)} for t in texts
        ]
    return patterns
