"""Export and import under the oldest, an intermediate and the pinned transformers.

Each version runs in a subprocess with that transformers first on PYTHONPATH
(tests/models/transformers_envs.py installs it once into .cache/transformers-compat/). It
exports tiny encoders (plain, registers, SwiGLU), loads them with its own `AutoModel`, and
imports directories written by itself and by the pinned version; this process then imports
that version's directories. Features are compared at the native size.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModel

from cxrflow.models import DinoViT, load_hf_dinov2, save_hf_dinov2
from tests.models.conftest import NATIVE, tiny_cfg
from tests.models.transformers_envs import ENVIRONMENTS, REPO, env_for, site_for

ATOL = 1e-5  # measured: 0.0 (bit-identical) in every direction on CPU
SCRIPT = Path(__file__).with_name("compat_check.py")
PINNED = "pinned"
VARIANTS = {
    "plain": {},
    "registers": {"num_register_tokens": 4},
    "swiglu": {"ffn": "swiglu"},
}


def pinned_version() -> str:
    """transformers' exact pin in pyproject.toml."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"transformers\s*==", d)]
    return pin.split("==")[1].strip()


def test_pinned_transformers_is_installed() -> None:
    # the "pinned" runs below test the newest claimed version only if the venv really has it
    assert transformers.__version__ == pinned_version()


def tokens(model: DinoViT, x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """Our features in HF's order: CLS, registers, patches."""
    with torch.no_grad():
        f = model.forward_features(x, masks)
    return torch.cat(
        [f["x_norm_clstoken"][:, None], f["x_norm_regtokens"], f["x_norm_patchtokens"]], 1
    )


def write_reference(work: Path) -> dict[str, dict]:
    """Random tiny encoders, their features, and their export by the pinned transformers."""
    reference = {}
    for i, (variant, overrides) in enumerate(VARIANTS.items()):
        torch.manual_seed(10 + i)
        cfg = tiny_cfg(layerscale_init=0.5, **overrides)
        model = DinoViT(cfg).eval()
        with torch.no_grad():
            model.mask_token.normal_()
        x = torch.randn(2, 3, NATIVE, NATIVE)
        masks = torch.rand(2, cfg.num_patches) > 0.5
        reference[variant] = {
            "cfg": cfg.to_dict(),
            "state_dict": model.state_dict(),
            "x": x,
            "masks": masks,
            "expected": [tokens(model, x, None), tokens(model, x, masks)],
        }
        save_hf_dinov2(
            model, work / "pinned" / variant, image_mean=0.5, image_std=0.25, image_size=NATIVE
        )
    torch.save(reference, work / "reference.pt")
    return reference


@pytest.fixture(scope="session", params=[*ENVIRONMENTS, PINNED])
def transformers_site(request: pytest.FixtureRequest) -> tuple[str, Path | None]:
    """(version, site directory); the pinned version is the venv's own (no directory)."""
    if request.param == PINNED:
        return transformers.__version__, None
    return request.param, site_for(request.param)


def test_round_trip_across_versions(
    transformers_site: tuple[str, Path | None], tmp_path: Path
) -> None:
    version, site = transformers_site
    reference = write_reference(tmp_path)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        env=env_for(site),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["transformers"] == version
    checks = report["checks"]
    assert len(checks) == 7 * len(VARIANTS)

    # and back in the pinned version: directories written by `version`
    for variant, ref in reference.items():
        out = tmp_path / "compat" / variant
        if not out.is_dir():
            continue  # the export failed: reported below
        x, masks, expected = ref["x"], ref["masks"], ref["expected"]
        got = [tokens(load_hf_dinov2(out), x, m) for m in (None, masks)]
        checks[f"{variant}: pinned load_hf_dinov2 imports compat-written"] = max(
            float((g - e).abs().max()) for g, e in zip(got, expected, strict=True)
        )
        hf_model = AutoModel.from_pretrained(out, local_files_only=True).eval()
        with torch.no_grad():
            got = [
                hf_model(x).last_hidden_state,
                hf_model(x, bool_masked_pos=masks).last_hidden_state,
            ]
        checks[f"{variant}: pinned AutoModel loads compat-written"] = max(
            float((g - e).abs().max()) for g, e in zip(got, expected, strict=True)
        )
    failed = {k: v[:300] if isinstance(v, str) else v for k, v in checks.items()}
    failed = {k: v for k, v in failed.items() if isinstance(v, str) or v > ATOL}
    print(f"transformers {version}: " + json.dumps(checks, indent=1))  # shown with -rA / -s
    assert not failed, f"transformers {version}: " + json.dumps(failed, indent=1)
