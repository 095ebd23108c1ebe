"""A dataset as a value: the directory that holds its manifest, split table and images.

Stages pass a `Dataset` instead of re-deriving file names from a directory string; the files
inside keep the names of the data contracts (`manifest.parquet`, `splits.parquet`, images under
the root by the manifest's relative `image_path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrflow.manifest import MANIFEST_FILE, read_manifest
from cxrflow.split.assignment import SPLITS_FILE


@dataclass(frozen=True)
class Dataset:
    """A de-identified dataset directory (ingested, or imported from a public dataset)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def splits_path(self) -> Path:
        return self.root / SPLITS_FILE

    @property
    def image_root(self) -> Path:
        """Where the manifest's relative `image_path` values start."""
        return self.root

    def manifest(self) -> pd.DataFrame:
        """The manifest, schema-checked."""
        return read_manifest(self.manifest_path)

    def image(self, relative: str | Path) -> Path:
        """The file of one manifest `image_path`."""
        return self.image_root / relative
