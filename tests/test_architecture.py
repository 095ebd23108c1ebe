"""The layers of ARCHITECTURE.md hold: import-linter's contracts (pyproject.toml) all pass."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed (it is in the dev extra)"
    return subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_import_contracts_are_kept_and_a_violation_is_caught():
    done = _lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout

    # The check can fail: a domain module that imports kfp is reported by name. (One test, so
    # that no other check runs while the probe module exists.)
    probe = ROOT / "src" / "cxrflow" / "split" / "_architecture_probe.py"
    probe.write_text("import kfp  # deliberately against the layers\n")
    try:
        broken = _lint_imports()
    finally:
        probe.unlink()
    assert broken.returncode != 0
    assert "cxrflow.split._architecture_probe -> kfp" in broken.stdout
