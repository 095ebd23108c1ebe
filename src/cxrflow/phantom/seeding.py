"""Deterministic randomness: every random stream and UID is derived from the seed and a path."""

from __future__ import annotations

import hashlib

import numpy as np

# A constant root so that phantom UIDs never collide with UIDs derived for other purposes.
_DOMAIN = b"cxrflow.phantom.v1"


def derive_bytes(seed: int, *path: object) -> bytes:
    """SHA-256 of the seed and a path of labels (e.g. ("subject", 3, "study", 1))."""
    h = hashlib.sha256(_DOMAIN)
    h.update(str(int(seed)).encode("ascii"))
    for part in path:
        h.update(b"\x1f")
        h.update(str(part).encode("utf-8"))
    return h.digest()


def rng_for(seed: int, *path: object) -> np.random.Generator:
    """An independent numpy generator for one purpose: streams never shift each other."""
    return np.random.default_rng(int.from_bytes(derive_bytes(seed, *path)[:16], "big"))


def derive_uid(seed: int, *path: object) -> str:
    """A repeatable `2.25.` UID (at most 44 characters) from the seed and a path."""
    return "2.25." + str(int.from_bytes(derive_bytes(seed, "uid", *path)[:16], "big"))


def derive_hex(seed: int, *path: object, length: int = 8) -> str:
    """An upper-case hexadecimal token, e.g. for folder names that look like a PACS dump."""
    return derive_bytes(seed, "hex", *path).hex()[:length].upper()
