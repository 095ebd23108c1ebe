"""Import a pre-trained DINOv2 encoder from a Hugging Face, torch.hub or timm checkpoint.

Formats, detected from the path:

- `"hf"`: a local HF directory, `config.json` with `model_type` `dinov2` or
  `dinov2_with_registers` (e.g. RAD-DINO), read by the installed transformers.
- `"dinov2_hub"`: a facebookresearch/dinov2 torch.hub state dict (`dinov2_vitb14_pretrain.pth`,
  `dinov2_vitb14_reg4_pretrain.pth`, S/L/g alike; ViT-g's SwiGLU and chunked blocks included).
- `"timm"`: a timm `vit_*_patch14[_reg4]_dinov2` state dict (`.safetensors`, `.pth`, `.bin`;
  our own `DinoViT` state dicts too), or a timm hub directory (`config.json` with
  `"architecture"`, plus `model.safetensors` or `pytorch_model.bin`).

Without registers and with an MLP, upstream's and timm's layouts are the same keys: such a
file is labelled `dinov2_hub` when it carries upstream's `mask_token` and is a torch pickle
(`.pth`/`.pt`, as upstream ships), else `timm`; the weights load identically either way.

Head counts are in no tensor shape: they come from the HF config, a timm directory's
`model_args` or architecture, the `num_heads` argument, or else DINOv2's rule of 64-dim heads
(S/6, B/12, L/16, g/24), refusing widths that are not a multiple of 64.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from cxrflow.models.checkpoint_files import (
    TORCH_SUFFIXES,
    WEIGHT_SUFFIXES,
    CheckpointFormatError,
    hf_weight_files,
    read_state_dict,
    sha256_of,
)
from cxrflow.models.config import ViTConfig
from cxrflow.models.dinov2_hub import hub_to_timm, looks_like_hub
from cxrflow.models.hf import CheckpointMismatchError, load_hf_dinov2
from cxrflow.models.timm_checkpoint import config_from_state_dict, read_timm_directory
from cxrflow.models.vit import DinoViT

log = logging.getLogger(__name__)

SourceFormat = Literal["hf", "dinov2_hub", "timm"]
HF_MODEL_TYPES = ("dinov2", "dinov2_with_registers")
_EXPECTED = (
    "an HF DINOv2 directory (config.json with model_type dinov2/dinov2_with_registers), "
    "a timm directory (config.json with 'architecture'), or a DINOv2 state dict file "
    f"({', '.join(WEIGHT_SUFFIXES)}) in the torch.hub or timm layout"
)


@dataclass(frozen=True)
class ImportedEncoder:
    """An imported encoder and where it came from.

    `sha256` is the hex SHA-256 of the weight file, or for a directory of its weight files
    (`model*.safetensors`, else `pytorch_model*.bin`) concatenated in sorted name order, so a
    single-file directory hashes like its one file.
    """

    model: DinoViT  # eval mode, fp32, drop_path_rate 0
    config: ViTConfig  # == model.cfg
    source_format: SourceFormat
    path: Path
    sha256: str
    notes: tuple[str, ...] = ()  # how the architecture was inferred and what was filled in

    def __post_init__(self) -> None:
        if self.config != self.model.cfg:
            raise ValueError("ImportedEncoder.config must be model.cfg")

    def describe(self) -> dict[str, str]:
        """Flat strings for logging and run records (MLflow params/tags, model cards)."""
        out = {
            "source_format": self.source_format,
            "path": str(self.path),
            "sha256": self.sha256,
        }
        out.update({f"config.{k}": str(v) for k, v in self.config.to_dict().items()})
        if self.notes:
            out["notes"] = "; ".join(self.notes)
        return out


def import_encoder(path: Path | str, *, num_heads: int | None = None) -> ImportedEncoder:
    """Load a DINOv2 encoder from any supported checkpoint (see the module docstring).

    `num_heads` overrides the head count for state-dict files, whose shapes do not carry it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory; expected {_EXPECTED}")
    load = _import_directory if path.is_dir() else _import_file
    encoder = load(path, num_heads)
    log.info("imported %s encoder from %s: %s", encoder.source_format, path, encoder.config)
    return encoder


def _import_directory(path: Path, num_heads: int | None) -> ImportedEncoder:
    """An HF or timm hub-style directory."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointFormatError(f"{path}: directory without config.json; expected {_EXPECTED}")
    try:
        conf = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointFormatError(f"{config_file}: not valid JSON ({err})") from err
    if not isinstance(conf, dict):
        raise CheckpointFormatError(f"{config_file}: expected a JSON object")
    if conf.get("model_type") in HF_MODEL_TYPES:
        if num_heads is not None and num_heads != conf.get("num_attention_heads"):
            raise ValueError(f"{path}: num_heads={num_heads} contradicts its config.json")
        model = load_hf_dinov2(path)
        if model.cfg.drop_path_rate:
            model = _rebuilt(model.cfg, model.state_dict(), str(path))
        files = hf_weight_files(path)
        return ImportedEncoder(model, model.cfg, "hf", path, sha256_of(files))
    if "architecture" in conf:
        sd, heads, notes, files = read_timm_directory(path, num_heads=num_heads)
        return _from_timm_layout(sd, heads, "timm", path, sha256_of(files), notes)
    raise CheckpointFormatError(
        f"{config_file}: model_type={conf.get('model_type')!r} and no 'architecture'; "
        f"expected {_EXPECTED}"
    )


def _import_file(path: Path, num_heads: int | None) -> ImportedEncoder:
    """A torch.hub or timm state dict file."""
    sd = read_state_dict(path)
    keys = set(sd)
    digest = sha256_of([path])
    if "reg_token" in keys:  # timm's name for the registers (upstream: register_tokens)
        if looks_like_hub(keys):
            raise CheckpointFormatError(f"{path}: mixes timm's reg_token with upstream's layout")
        return _from_timm_layout(sd, num_heads, "timm", path, digest)
    if looks_like_hub(keys) or ("mask_token" in keys and path.suffix in TORCH_SUFFIXES):
        return _from_timm_layout(hub_to_timm(sd, str(path)), num_heads, "dinov2_hub", path, digest)
    return _from_timm_layout(sd, num_heads, "timm", path, digest)


def _from_timm_layout(
    sd: Mapping[str, torch.Tensor],
    num_heads: int | None,
    source_format: SourceFormat,
    path: Path,
    digest: str,
    notes: list[str] | None = None,
) -> ImportedEncoder:
    """A `DinoViT` from a state dict in our (timm) layout; a missing mask token becomes zeros."""
    notes = list(notes or [])
    cfg, inferred = config_from_state_dict(sd, num_heads=num_heads, where=str(path))
    notes += inferred
    sd = dict(sd)
    if "mask_token" not in sd:
        # timm drops DINOv2's mask token; zeros are DINOv2's own initialisation of it
        sd["mask_token"] = torch.zeros(1, cfg.embed_dim)
        notes.append("mask_token absent from the checkpoint: zeros")
    model = _rebuilt(cfg, sd, str(path))
    return ImportedEncoder(model, cfg, source_format, path, digest, tuple(notes))


def _rebuilt(cfg: ViTConfig, sd: Mapping[str, torch.Tensor], where: str) -> DinoViT:
    """A fresh eval-mode fp32 `DinoViT(cfg)` (drop path off) holding exactly `sd`."""
    cfg = cfg.replace(drop_path_rate=0.0)
    model = DinoViT(cfg)
    own = model.state_dict()
    problems = {
        "missing": sorted(set(own) - set(sd)),
        "unexpected": sorted(set(sd) - set(own)),
        "shape mismatch": sorted(
            f"{k}: {tuple(sd[k].shape)} vs {tuple(v.shape)}"
            for k, v in own.items()
            if k in sd and sd[k].shape != v.shape
        ),
    }
    if any(problems.values()):
        raise CheckpointMismatchError(f"importing {where} as {cfg}", problems)
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)
    return model.float().eval()
