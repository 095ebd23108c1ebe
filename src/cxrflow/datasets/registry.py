"""The adapters by name, and one call to load any of them.

`ADAPTERS` maps a dataset name to its `Adapter` (its loader, the cohort namespace of its ids,
whether it describes masks, and a one-line description). `load_dataset(name, root, **options)`
calls the loader; options are the loader's keyword arguments (e.g. `uncertain="positive"` for
the CheXpert-labelled datasets, `vote="majority"` for VinDr-CXR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cxrflow.datasets.brax import load_brax
from cxrflow.datasets.candid_ptx import load_candid_ptx
from cxrflow.datasets.chestxray14 import load_chestxray14
from cxrflow.datasets.chexpert import load_chexpert
from cxrflow.datasets.mimic_cxr import load_mimic_cxr
from cxrflow.datasets.mimic_lung import load_mimic_lung
from cxrflow.datasets.padchest import load_padchest
from cxrflow.datasets.rsna_pneumonia import load_rsna_pneumonia
from cxrflow.datasets.vindr_cxr import load_vindr_cxr
from cxrflow.datasets.vindr_ribcxr import load_vindr_ribcxr


class UnknownDatasetError(ValueError):
    """No adapter has that name (the known names are in the message)."""


@dataclass(frozen=True)
class Adapter:
    name: str
    load: Callable[..., pd.DataFrame]
    namespace: str  # prefix of its subject/study/image ids
    has_masks: bool
    description: str


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter(
            "mimic_cxr", load_mimic_cxr, "mimic", False, "MIMIC-CXR-JPG, reports, CheXpert labels"
        ),
        Adapter("chexpert", load_chexpert, "chexpert", False, "CheXpert v1.0 train/valid"),
        Adapter("chestxray14", load_chestxray14, "cxr14", False, "NIH ChestX-ray14"),
        Adapter("padchest", load_padchest, "padchest", False, "PadChest (BIMCV)"),
        Adapter("brax", load_brax, "brax", False, "BRAX (Brazil)"),
        Adapter("vindr_cxr", load_vindr_cxr, "vindr_cxr", False, "VinDr-CXR image labels"),
        Adapter("vindr_ribcxr", load_vindr_ribcxr, "vindr_rib", True, "VinDr-RibCXR rib masks"),
        Adapter("rsna_pneumonia", load_rsna_pneumonia, "rsna", False, "RSNA Pneumonia stage 2"),
        Adapter("candid_ptx", load_candid_ptx, "candid", True, "CANDID-PTX PTX/tube/fracture"),
        Adapter("mimic_lung", load_mimic_lung, "mimic", True, "CheXmask lungs + ImaGenome zones"),
    )
}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(ADAPTERS))}"
        ) from None


def load_dataset(name: str, root: Path, **options: Any) -> pd.DataFrame:
    """Manifest rows of dataset `name` from its published metadata under `root`."""
    return get_adapter(name).load(Path(root), **options)
