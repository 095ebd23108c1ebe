"""Stable, order-independent split assignment from a keyed hash of the subject id."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import pandas as pd

from cxrflow.split.config import SPLITS

_MANTISSA_BITS = 53


def bucket(subject_id: str, seed: str) -> float:
    """A uniform number in [0, 1) from sha256(seed, subject_id); the same on every run."""
    digest = hashlib.sha256(f"{seed}\x1f{subject_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _MANTISSA_BITS)) / float(1 << _MANTISSA_BITS)


def split_of_bucket(value: float, ratios: Sequence[float]) -> str:
    """The split whose cumulative-ratio interval holds `value`; test takes the remainder."""
    edge = 0.0
    for name, ratio in zip(SPLITS[:-1], ratios[:-1], strict=True):
        edge += ratio
        if value < edge:
            return name
    return SPLITS[-1]


def hash_split(subject_id: str, seed: str, ratios: Sequence[float]) -> str:
    """The split of one subject under hashing."""
    return split_of_bucket(bucket(subject_id, seed), ratios)


def hash_splits(subject_ids: Iterable[str], seed: str, ratios: Sequence[float]) -> pd.Series:
    """The split of each (unique) subject, as a Series indexed by subject_id."""
    ids = sorted(set(map(str, subject_ids)))
    return pd.Series(
        [hash_split(s, seed, ratios) for s in ids],
        index=pd.Index(ids, name="subject_id"),
        name="split",
        dtype="object",
    )
