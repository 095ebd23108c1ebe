"""Run under another transformers version: export, AutoModel load, and import both ways.

Usage: python compat_check.py WORK_DIR. WORK_DIR holds `reference.pt` (per variant: the ViT
config, our weights, inputs and the expected features) and `pinned/<variant>/`, directories
written by the pinned transformers. Writes `compat/<variant>/` with this version and
`report.json`: {"transformers": version, "checks": {name: max abs difference or error}}.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoImageProcessor, AutoModel

from cxrflow.models import DinoViT, ViTConfig, load_hf_dinov2, save_hf_dinov2

torch.set_num_threads(2)
logging.basicConfig(level=logging.WARNING)


def hf_tokens(model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor) -> list[torch.Tensor]:
    """HF `last_hidden_state`, without and with masks."""
    with torch.no_grad():
        return [
            model(x).last_hidden_state,
            model(x, bool_masked_pos=masks).last_hidden_state,
        ]


def our_tokens(model: DinoViT, x: torch.Tensor, masks: torch.Tensor) -> list[torch.Tensor]:
    """Our features in HF's order (CLS, registers, patches), without and with masks."""
    out = []
    with torch.no_grad():
        for m in (None, masks):
            f = model.forward_features(x, m)
            parts = [f["x_norm_clstoken"][:, None], f["x_norm_regtokens"], f["x_norm_patchtokens"]]
            out.append(torch.cat(parts, 1))
    return out


def max_diff(got: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """Largest absolute difference over the pairs (inf on a shape mismatch)."""
    if [g.shape for g in got] != [e.shape for e in expected]:
        return float("inf")
    return max(float((g - e).abs().max()) for g, e in zip(got, expected, strict=True))


def attempt(checks: dict[str, float | str], name: str, fn: Callable[[], float]) -> None:
    """Record fn's result, or its error (the traceback goes to stderr)."""
    try:
        checks[name] = fn()
    except Exception as err:
        checks[name] = f"{type(err).__name__}: {err}"
        traceback.print_exc()


def check_variant(work: Path, variant: str, ref: dict, checks: dict[str, float | str]) -> None:
    """Export with this version; load both versions' directories with AutoModel and ours."""
    cfg = ViTConfig(**ref["cfg"])
    model = DinoViT(cfg).eval()
    model.load_state_dict(ref["state_dict"])
    x, masks, expected = ref["x"], ref["masks"], ref["expected"]
    pinned, ours = work / "pinned" / variant, work / "compat" / variant

    def export() -> float:
        save_hf_dinov2(model, ours, image_mean=0.5, image_std=0.25, image_size=cfg.img_size)
        return 0.0

    def automodel(path: Path) -> float:
        return max_diff(hf_tokens(AutoModel.from_pretrained(path).eval(), x, masks), expected)

    def ours_load(path: Path) -> float:
        return max_diff(our_tokens(load_hf_dinov2(path), x, masks), expected)

    def export_check() -> float:
        from cxrflow.models.hf import check_hf_export_compatible

        check_hf_export_compatible(cfg)
        return 0.0

    def processor(path: Path) -> float:
        white = np.full((80, 64, 3), 255, dtype=np.uint8)
        pixels = AutoImageProcessor.from_pretrained(path)(white, return_tensors="pt")
        pixels = pixels["pixel_values"]
        if tuple(pixels.shape) != (1, 3, cfg.img_size, cfg.img_size):
            return float("inf")
        return float((pixels - (1 - 0.5) / 0.25).abs().max())  # mean 0.5, std 0.25

    attempt(checks, f"{variant}: check_hf_export_compatible", export_check)
    attempt(checks, f"{variant}: export", export)
    for label, path in (("compat-written", ours), ("pinned-written", pinned)):
        attempt(checks, f"{variant}: AutoModel loads {label}", lambda p=path: automodel(p))
        attempt(checks, f"{variant}: load_hf_dinov2 imports {label}", lambda p=path: ours_load(p))
    attempt(
        checks, f"{variant}: AutoImageProcessor loads pinned-written", lambda: processor(pinned)
    )


def main(work: Path) -> None:
    """Every check of every variant; failures are recorded, not raised."""
    reference = torch.load(work / "reference.pt", weights_only=False)
    checks: dict[str, float | str] = {}
    for variant, ref in reference.items():
        check_variant(work, variant, ref, checks)
    report = {"transformers": transformers.__version__, "checks": checks}
    (work / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
