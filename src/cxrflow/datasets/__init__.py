"""Adapters from public chest X-ray datasets' published metadata to the manifest.

One module a dataset (`mimic_cxr`, `chexpert`, `chestxray14`, `padchest`, `brax`,
`vindr_cxr`, `vindr_ribcxr`, `rsna_pneumonia`, `candid_ptx`, `mimic_lung`), each with a
`load_<name>(root) -> DataFrame` in the manifest schema; `registry` names them, `masks` decodes
their masks on request, `multi_cxr` builds the paper's pre-training set. Conventions in
`common`. `importer` (`import_dataset`, `import_datasets`) turns them into a dataset directory
under the ingest stage's contracts (pseudonymised, PNGs, quarantine, reconciled counts), and
`cli` is its command line (`cxrflow datasets ...`); neither is imported here, so that reading
metadata does not load the image stack. PadChest's label tree is package data
(`padchest_tree.txt`).
"""

from cxrflow.datasets.common import DatasetFormatError, read_csv_checked
from cxrflow.datasets.masks import write_masks
from cxrflow.datasets.multi_cxr import MULTI_CXR, build_pretraining_manifest
from cxrflow.datasets.registry import ADAPTERS, Adapter, UnknownDatasetError, load_dataset

__all__ = [
    "ADAPTERS",
    "MULTI_CXR",
    "Adapter",
    "DatasetFormatError",
    "UnknownDatasetError",
    "build_pretraining_manifest",
    "load_dataset",
    "read_csv_checked",
    "write_masks",
]
