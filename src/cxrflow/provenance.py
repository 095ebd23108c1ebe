"""Whether a dataset's images are synthetic or of real patients, derived from its manifest.

The model card must never let phantom images pass for patients. Each manifest row says where
its image came from (`source_dataset`): ingest writes `PHANTOM_SOURCE` for the files the phantom
generator stamped (its implementation version name in the DICOM file meta, which
de-identification leaves alone) and `DICOM_SOURCE` for any other DICOM; the public-dataset
import writes the dataset's name. The data-version stage records the summary as the
`cxrflow.data_source` tag that the card reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pydicom.dataset import Dataset

PHANTOM_SOURCE: Final = "cxrflow-phantom"
DICOM_SOURCE: Final = "dicom"
# The phantom writer's (0002,0013) ImplementationVersionName; an SH value of at most 16 chars.
PHANTOM_IMPLEMENTATION_VERSION: Final = "CXRFLOW_PHANTOM1"


def dicom_source(ds: Dataset) -> str:
    """`PHANTOM_SOURCE` for a file the phantom generator wrote, else `DICOM_SOURCE`."""
    meta = getattr(ds, "file_meta", None)
    version = str(getattr(meta, "ImplementationVersionName", "") or "").strip()
    return PHANTOM_SOURCE if version == PHANTOM_IMPLEMENTATION_VERSION else DICOM_SOURCE


def data_source(sources: Iterable[str]) -> str:
    """`synthetic:<names>`, `real:<names>` or `mixed:<names>` for a manifest's source_dataset.

    Empty when there are no rows: nothing to say about images that are not there.
    """
    names = sorted({str(s) for s in sources})
    if not names:
        return ""
    synthetic = [n for n in names if n == PHANTOM_SOURCE]
    kind = "synthetic" if len(synthetic) == len(names) else "mixed" if synthetic else "real"
    return f"{kind}:{','.join(names)}"
