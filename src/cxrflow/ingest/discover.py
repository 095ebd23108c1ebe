"""Finding the files of an inbox and telling DICOM from everything else, by content."""

from __future__ import annotations

import os
from pathlib import Path

DICM_OFFSET = 128
DICM_MAGIC = b"DICM"


def list_files(root: Path, exclude: frozenset[Path] = frozenset()) -> list[Path]:
    """Every regular file under `root` (any name, any suffix, any depth), sorted."""
    if not root.is_dir():
        raise NotADirectoryError(f"input directory not found: {root}")
    excluded = {p.resolve() for p in exclude}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink() and path.resolve() not in excluded:
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def has_dicm_preamble(head: bytes) -> bool:
    """True when the bytes start with a 128-byte preamble followed by `DICM` (PS3.10 7.1)."""
    return len(head) >= DICM_OFFSET + 4 and head[DICM_OFFSET : DICM_OFFSET + 4] == DICM_MAGIC
