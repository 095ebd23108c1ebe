"""The de-identification secret: loading it safely and deriving keyed pseudonyms and UIDs.

The key never leaves this module as text: it is read from a file or an environment variable,
held as bytes, and only HMAC digests of it are ever written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

KEY_ENV_VAR = "CXRFLOW_DEID_KEY"
KEY_FILE_ENV_VAR = "CXRFLOW_DEID_KEY_FILE"
MIN_KEY_BYTES = 32
STRICT_PERMISSIONS_ENV_VAR = "CXRFLOW_STRICT_KEY_PERMISSIONS"
# Strength rule (`check_key_strength`): estimated entropy = length x the empirical Shannon
# entropy of the key's byte histogram. A random 32-byte key scores about 150 bits, a random
# 64-character hex key (what `create_key_file` writes) about 240; 32 zero bytes score 0.
MIN_KEY_BITS = 128.0
MIN_BITS_PER_BYTE = 3.0
# The repository's own state folder (git-ignored, never versioned by DVC): `make demo` keeps
# its key there, so it is the one place inside a repository where a key file is accepted.
STATE_DIR = ".cxrflow"


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


def _shannon_bits_per_byte(raw: bytes) -> float:
    n = len(raw)
    return -sum(c / n * math.log2(c / n) for c in Counter(raw).values()) if n else 0.0


def _period(raw: bytes) -> int:
    """The length of the shortest block whose repetition is `raw` (len(raw) if none)."""
    n = len(raw)
    for p in range(1, n // 2 + 1):
        if n % p == 0 and raw[:p] * (n // p) == raw:
            return p
    return n


def check_key_strength(raw: bytes, source: str = "the key") -> None:
    """Refuse a trivially weak key; messages name the rule and `source`, never the bytes.

    Rules: (1) not one block repeated (`00...`, `abab...`, `0123456789abcdef` twice);
    (2) at least MIN_BITS_PER_BYTE bits per byte of empirical Shannon entropy; (3) at least
    MIN_KEY_BITS bits in all (length x bits per byte). Random keys of 32 bytes and more, raw,
    hex or base64, always pass (tests/test_keys.py checks thousands).
    """
    if _period(raw) < len(raw):
        raise KeyError_(
            f"{source} is weak (rule: a short block repeated); make one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    per_byte = _shannon_bits_per_byte(raw)
    if per_byte < MIN_BITS_PER_BYTE or per_byte * len(raw) < MIN_KEY_BITS:
        raise KeyError_(
            f"{source} is weak (rule: at least {MIN_BITS_PER_BYTE:g} bits/byte and "
            f"{MIN_KEY_BITS:g} bits of estimated entropy); make one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`"
        )


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def repository_root(start: Path | None = None) -> Path | None:
    """The enclosing git working tree of `start` (default: the current directory), if any."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / ".git").exists():
            return d
    return None


def check_key_location(
    key_file: Path | None, *forbidden_roots: Path | None, repository: Path | None = None
) -> None:
    """Refuse a key file inside an input, output (data) or repository tree.

    A key inside the inbox is ingested or copied with it; inside the data directory it is
    versioned and pushed by the DVC step; inside a repository it can be committed. The one
    exception is the repository's git-ignored state folder `<repository>/.cxrflow/` (where
    `make demo` creates its key). Paths are compared after resolving links. Nothing to check
    when the key comes from $CXRFLOW_DEID_KEY (no file).
    """
    if key_file is None:
        if not os.environ.get(KEY_FILE_ENV_VAR):
            return
        key_file = Path(os.environ[KEY_FILE_ENV_VAR])
    path = Path(key_file).expanduser().resolve()
    for root in forbidden_roots:
        if root is not None and _is_within(path, Path(root).expanduser().resolve()):
            raise KeyError_(
                f"key file {key_file} lies inside {root} (rule: never inside the input or "
                "data directory, which are copied, versioned and pushed); move it elsewhere"
            )
    if repository is not None:
        repo = Path(repository).resolve()
        if _is_within(path, repo) and not _is_within(path, repo / STATE_DIR):
            raise KeyError_(
                f"key file {key_file} lies inside the repository {repository} (rule: only "
                f"its git-ignored {STATE_DIR}/ folder may hold a key); move it elsewhere"
            )


def check_key_permissions(path: Path, strict: bool | None = None) -> None:
    """Warn when a key file is readable by its group or others; refuse when strict.

    `strict` None reads $CXRFLOW_STRICT_KEY_PERMISSIONS (`1`: strict). POSIX only.
    """
    if os.name != "posix":
        return
    mode = path.stat().st_mode
    if not mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        return
    if strict is None:
        strict = os.environ.get(STRICT_PERMISSIONS_ENV_VAR, "") == "1"
    message = (
        f"key file {path} is readable or writable by group or others (mode "
        f"{stat.S_IMODE(mode):o}; rule: owner only, `chmod 600 {path}`)"
    )
    if strict:
        raise KeyError_(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def load_key(key_file: Path | None = None, *, strict_permissions: bool | None = None) -> SecretKey:
    """Load the key from `key_file`, else $CXRFLOW_DEID_KEY_FILE, else $CXRFLOW_DEID_KEY.

    A weak key is refused (`check_key_strength`); a file readable by others is warned about,
    or refused when strict (`check_key_permissions`).
    """
    path = key_file or (
        Path(os.environ[KEY_FILE_ENV_VAR]) if os.environ.get(KEY_FILE_ENV_VAR) else None
    )
    if path is not None:
        if not path.is_file():
            raise KeyError_(f"key file not found: {path}")
        check_key_permissions(path, strict_permissions)
        key = key_from_bytes(path.read_bytes())
        check_key_strength(key.value, f"key file {path}")
        return key
    env = os.environ.get(KEY_ENV_VAR)
    if env:
        key = key_from_bytes(env.encode("utf-8"))
        check_key_strength(key.value, f"${KEY_ENV_VAR}")
        return key
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
