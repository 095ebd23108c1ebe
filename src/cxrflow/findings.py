"""The common finding vocabulary and the structures that carry segmentation masks.

Every label column in a manifest, every adapter mapping and every metric uses these names.
"""

from __future__ import annotations

from typing import Final

# The paper's VinDr-CXR classes (Table 1) plus three that the phantom and several public
# datasets carry.
FINDINGS: Final[tuple[str, ...]] = (
    "lung_opacity",
    "cardiomegaly",
    "pleural_thickening",
    "aortic_enlargement",
    "pulmonary_fibrosis",
    "tuberculosis",
    "pleural_effusion",
    "pneumothorax",
    "chest_tube",
    "rib_fracture",
)

# Mask channels, in bit order: bit i of a packed mask image is structure MASK_STRUCTURES[i].
MASK_STRUCTURES: Final[tuple[str, ...]] = (
    "left_lung",
    "right_lung",
    "zone_right_upper",
    "zone_right_middle",
    "zone_right_lower",
    "zone_left_upper",
    "zone_left_middle",
    "zone_left_lower",
    "pneumothorax",
    "chest_tube",
    "ribs",
)

VIEWS: Final[tuple[str, ...]] = ("PA", "AP", "LATERAL")


def label_column(finding: str) -> str:
    """The manifest column that holds the 0/1 label of `finding`."""
    if finding not in FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; known: {', '.join(FINDINGS)}")
    return f"label_{finding}"
