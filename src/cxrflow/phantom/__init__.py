"""Phantom generator: synthetic chest radiographs written as a realistic PACS export.

`generate_phantom(out_dir, subjects, seed)` writes CR/DX DICOM files (varied transfer syntaxes,
photometrics, bit depths, rescale and window settings) with fake PHI in the places real exports
carry it, plus a few files that an ingestion stage must quarantine, and one ground-truth table
`out_dir/ground_truth.parquet` with one row per written file. The output is byte-identical for
the same arguments (all randomness and UIDs are derived from the seed).

Ground-truth columns (beyond those named in the brief):

- `sop_class`: "CR" or "DX" for images; "SC" (secondary capture) or "DX_FOR_PROCESSING" for
  those faulty files; `sop_class_uid` holds the full SOP Class UID.
- `voi_lut`: the file has a VOI LUT Sequence instead of a window (`window_*` are then null).
- `referenced_frontal_uid`: for a lateral, the SOPInstanceUID of the study's frontal image that
  its ReferencedImageSequence points at (null otherwise).
- `cardiothoracic_ratio`: the CTR the frontal image was drawn with (> 0.5 iff cardiomegaly).
- `transfer_syntax` is the UID of the written file; null for non-DICOM faulty files, which also
  have null DICOM fields and an empty `phi_values`. Faulty files have all labels 0, no report
  and no mask.

Masks (`mask_png`, frontal images only): a 16-bit PNG at the stored size; bit i is
`cxrflow.findings.MASK_STRUCTURES[i]`. Lung masks cover the aerated lung fields: a pneumothorax
(dark) lies inside its lung mask, while pleural fluid and pleural thickening (bright) are
excluded. Zones split each lung mask in thirds of its own height (image rows).
`phi_values` lists every identifying string written into the file, in every form (name
variants and name parts, IDs, dates, times, UIDs, addresses); short values such as times and
first names occur there, so compare them with element values rather than raw file bytes.
"""

from cxrflow.phantom.config import PhantomConfig, PhantomSummary
from cxrflow.phantom.generate import generate_phantom
from cxrflow.phantom.ground_truth import GROUND_TRUTH_NAME, png_to_mask

__all__ = [
    "GROUND_TRUTH_NAME",
    "PhantomConfig",
    "PhantomSummary",
    "generate_phantom",
    "png_to_mask",
]
