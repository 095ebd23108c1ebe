"""The de-identification secret: loading it safely and deriving keyed pseudonyms and UIDs.

The key never leaves this module as text: it is read from a file or an environment variable,
held as bytes, and only HMAC digests of it are ever written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

KEY_ENV_VAR = "CXRFLOW_DEID_KEY"
KEY_FILE_ENV_VAR = "CXRFLOW_DEID_KEY_FILE"
MIN_KEY_BYTES = 32


class KeyError_(ValueError):
    """Raised when no usable de-identification key is available."""


@dataclass(frozen=True)
class SecretKey:
    """A secret of at least 32 bytes; its repr never shows the value."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) < MIN_KEY_BYTES:
            raise KeyError_(
                f"the de-identification key must hold at least {MIN_KEY_BYTES} bytes "
                f"(got {len(self.value)})"
            )

    def __repr__(self) -> str:
        return "SecretKey(<hidden>)"

    def digest(self, domain: str, value: str | bytes) -> bytes:
        """HMAC-SHA256 of `value`, separated by `domain` so that pseudonym kinds never collide."""
        data = value.encode("utf-8") if isinstance(value, str) else value
        return hmac.new(
            self.value, domain.encode("ascii") + b"\x00" + data, hashlib.sha256
        ).digest()

    def pseudonym(self, domain: str, value: str, length: int = 16) -> str:
        """A stable hexadecimal pseudonym of `value` (e.g. a PatientID) in `domain`."""
        return self.digest(domain, value).hex()[:length]

    def uid(self, original_uid: str) -> str:
        """A keyed `2.25.` UID: the same input UID always maps to the same output UID."""
        return "2.25." + str(int.from_bytes(self.digest("uid", original_uid.strip())[:16], "big"))

    def fingerprint(self) -> str:
        """A short public identifier of the key (safe to log): which key made a dataset."""
        return self.digest("fingerprint", b"cxrflow").hex()[:12]


def key_from_bytes(raw: bytes) -> SecretKey:
    """Build a key from file or variable contents; one trailing newline is ignored."""
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    return SecretKey(raw)


def load_key(key_file: Path | None = None) -> SecretKey:
    """Load the key from `key_file`, else $CXRFLOW_DEID_KEY_FILE, else $CXRFLOW_DEID_KEY."""
    path = key_file or (
        Path(os.environ[KEY_FILE_ENV_VAR]) if os.environ.get(KEY_FILE_ENV_VAR) else None
    )
    if path is not None:
        if not path.is_file():
            raise KeyError_(f"key file not found: {path}")
        return key_from_bytes(path.read_bytes())
    env = os.environ.get(KEY_ENV_VAR)
    if env:
        return key_from_bytes(env.encode("utf-8"))
    raise KeyError_(
        "no de-identification key: pass --key-file FILE (a file holding at least "
        f"{MIN_KEY_BYTES} secret bytes) or set {KEY_FILE_ENV_VAR} or {KEY_ENV_VAR}"
    )


def create_key_file(path: Path) -> SecretKey:
    """Create a new random key file readable only by its owner (used by `make demo`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = os.urandom(32).hex().encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw + b"\n")
    return SecretKey(raw)
