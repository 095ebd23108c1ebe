"""Other transformers versions beside the venv's: `pip install --target`, cached and locked.

Only transformers and the packages whose range differs from the venv's are installed (no
dependencies); torch, numpy, safetensors, regex, pyyaml, filelock, tqdm, packaging, requests,
typer come from the venv. Each environment is installed into a temporary directory and renamed
into place under a file lock, so pytest-xdist workers never see half an install, and reused
across runs until its requirement list changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "transformers-compat"
MARKER = "requirements.json"

# Oldest claimed (4.57.1: hub < 1.0, tokenizers 0.22) and the version whose names the
# old export hard-coded against (5.17.0: hub 1.x, which needs httpx; venv has hub 2.x).
ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "4.57.1": ("transformers==4.57.1", "huggingface-hub==0.36.2", "tokenizers==0.22.2"),
    "5.17.0": (
        "transformers==5.17.0",
        "huggingface-hub==1.33.0",
        "httpx==0.28.1",
        "httpcore==1.0.9",
    ),
}


def site_for(version: str) -> Path:
    """Directory to put first on PYTHONPATH for transformers `version`, installed if needed."""
    requirements = list(ENVIRONMENTS[version])
    target = CACHE / version
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / f"{version}.lock")):
        marker = target / MARKER
        if marker.is_file() and json.loads(marker.read_text()) == requirements:
            return target
        for leftover in CACHE.glob(f".{version}-*"):  # from an install that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=CACHE))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from other users of the checkout
        start = time.monotonic()
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        cmd += ["--no-deps", "--target", str(staging), *requirements]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"installing {requirements} failed:\n{done.stdout}\n{done.stderr}")
        (staging / MARKER).write_text(json.dumps(requirements))
        if target.exists():
            shutil.rmtree(target)  # an older requirement list
        os.replace(staging, target)
        log.warning(
            "installed %s in %.0f s into %s", requirements, time.monotonic() - start, target
        )
        return target


def env_for(site: Path | None) -> dict[str, str]:
    """Environment for a subprocess that imports transformers from `site` (None: the venv's)."""
    paths = [str(site)] if site else []
    paths.append(str(REPO / "src"))
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
        TQDM_DISABLE="1",
    )
    return env
