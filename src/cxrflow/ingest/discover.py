"""Finding the files of an inbox and telling DICOM from everything else, by content."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

DICM_OFFSET = 128
DICM_MAGIC = b"DICM"

NOT_REGULAR_CLASS = "not_a_regular_file"
NOT_REGULAR_REASON = "not a regular file (a symbolic link, FIFO, socket or device): never read"


def _entries(root: Path) -> Iterator[Path]:
    """Every entry under `root` that is not a directory; symbolic links are never followed."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:  # an unreadable or vanished directory: nothing in it can be listed
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            else:
                yield Path(entry.path)


def list_files(root: Path, exclude: frozenset[Path] = frozenset()) -> list[Path]:
    """Every non-directory entry under `root` (any name, any suffix, any depth), sorted.

    Regular files and everything else (symbolic links, FIFOs, sockets, devices): the caller
    counts the others and quarantines them (`is_regular_file`) without opening them.
    """
    if not root.is_dir():
        raise NotADirectoryError(f"input directory not found: {root}")
    excluded = {p.resolve() for p in exclude} | {Path(os.path.abspath(p)) for p in exclude}
    found = [p for p in _entries(root) if p.parent.resolve() / p.name not in excluded]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def is_regular_file(path: Path) -> bool:
    """True unless `path` is a symbolic link, FIFO, socket or device (never followed).

    A path that vanished counts as regular: reading it fails, and the caller quarantines it.
    """
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return True


def has_dicm_preamble(head: bytes) -> bool:
    """True when the bytes start with a 128-byte preamble followed by `DICM` (PS3.10 7.1)."""
    return len(head) >= DICM_OFFSET + 4 and head[DICM_OFFSET : DICM_OFFSET + 4] == DICM_MAGIC
