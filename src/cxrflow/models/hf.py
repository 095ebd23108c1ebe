"""Interchange with Hugging Face `Dinov2Model` / `Dinov2WithRegistersModel` directories.

Weight names are never hard-coded for one transformers version: the installed version's model
is built on the meta device, and each of its state-dict keys is given a role (`hf_keys`), with
transformers' own load-time renames as a fallback. Export loads our weights into that model
strictly and lets its `save_pretrained` choose the on-disk names; import lets its
`from_pretrained` apply its renames and maps the result back by role.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoConfig,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    PretrainedConfig,
    PreTrainedModel,
)

from cxrflow.models.config import ViTConfig
from cxrflow.models.hf_keys import CLS, POS, Alias, Part, conversion_aliases, role_of
from cxrflow.models.preprocessing import (
    EncoderPreprocessing,
    make_image_processor,
    read_preprocessing,
)
from cxrflow.models.vit import DinoViT

log = logging.getLogger(__name__)

# timm (and DINOv2) LayerNorm epsilon; HF configs carry theirs explicitly.
LAYER_NORM_EPS = 1e-6


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys do not match the model's, exactly."""

    def __init__(self, where: str, problems: Mapping[str, Iterable[str]]) -> None:
        self.problems = {kind: sorted(keys) for kind, keys in problems.items() if keys}
        lines = [f"{kind} ({len(keys)}): {', '.join(keys)}" for kind, keys in self.problems.items()]
        super().__init__(f"{where}: keys do not match\n  " + "\n  ".join(lines))


# ---------------------------------------------------------------- configs


def _square(value: Any, field: str) -> int:
    """An int from an int or a square (h, w) pair."""
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"HF config {field}={value!r}: only square sizes are supported")
        value = value[0]
    return int(value)


def vit_config_from_hf(hf_config: PretrainedConfig) -> ViTConfig:
    """`ViTConfig` of a `Dinov2Config` / `Dinov2WithRegistersConfig`; unsupported options raise."""
    if hf_config.model_type not in ("dinov2", "dinov2_with_registers"):
        raise ValueError(f"HF config model_type={hf_config.model_type!r} is not a DINOv2 model")
    swiglu = bool(getattr(hf_config, "use_swiglu_ffn", False))
    # Options timm's blocks do not reproduce: refuse them rather than load a different network.
    unsupported = {
        "hidden_act": (hf_config.hidden_act, "gelu", swiglu),  # SwiGLU ignores hidden_act
        "layer_norm_eps": (hf_config.layer_norm_eps, LAYER_NORM_EPS, False),
        "hidden_dropout_prob": (hf_config.hidden_dropout_prob, 0.0, False),
        "attention_probs_dropout_prob": (hf_config.attention_probs_dropout_prob, 0.0, False),
    }
    for field, (value, wanted, ignored) in unsupported.items():
        if not ignored and value != wanted:
            raise ValueError(f"HF config {field}={value!r} is not supported (only {wanted!r})")
    return ViTConfig(
        img_size=_square(hf_config.image_size, "image_size"),
        patch_size=_square(hf_config.patch_size, "patch_size"),
        embed_dim=hf_config.hidden_size,
        depth=hf_config.num_hidden_layers,
        num_heads=hf_config.num_attention_heads,
        mlp_ratio=float(hf_config.mlp_ratio),
        num_register_tokens=int(getattr(hf_config, "num_register_tokens", 0)),
        layerscale_init=float(hf_config.layerscale_value),
        drop_path_rate=float(hf_config.drop_path_rate),
        qkv_bias=bool(hf_config.qkv_bias),
        ffn="swiglu" if swiglu else "mlp",
        in_chans=hf_config.num_channels,
    )


def hf_config_from_vit(cfg: ViTConfig) -> Dinov2Config | Dinov2WithRegistersConfig:
    """HF config for `cfg`: `Dinov2WithRegistersConfig` when it has registers."""
    if cfg.mlp_ratio != int(cfg.mlp_ratio):
        # transformers 5 types Dinov2Config.mlp_ratio as int (strict dataclass)
        raise ValueError(f"ViTConfig.mlp_ratio={cfg.mlp_ratio} cannot be exported: HF needs an int")
    common: dict[str, Any] = {
        "hidden_size": cfg.embed_dim,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.num_heads,
        "mlp_ratio": int(cfg.mlp_ratio),
        "hidden_act": "gelu",
        "layer_norm_eps": LAYER_NORM_EPS,
        "image_size": cfg.img_size,
        "patch_size": cfg.patch_size,
        "num_channels": cfg.in_chans,
        "qkv_bias": cfg.qkv_bias,
        "layerscale_value": cfg.layerscale_init,
        "drop_path_rate": cfg.drop_path_rate,
        "use_swiglu_ffn": cfg.ffn == "swiglu",
    }
    if cfg.num_register_tokens:
        return Dinov2WithRegistersConfig(num_register_tokens=cfg.num_register_tokens, **common)
    return Dinov2Config(use_mask_token=True, **common)


def _hf_model_class(hf_config: PretrainedConfig) -> type[PreTrainedModel]:
    """Model class for a DINOv2 config."""
    if hf_config.model_type == "dinov2_with_registers":
        return Dinov2WithRegistersModel
    if hf_config.model_type == "dinov2":
        return Dinov2Model
    raise ValueError(f"HF config model_type={hf_config.model_type!r} is not a DINOv2 model")


# ---------------------------------------------------------------- weights


@dataclass(frozen=True)
class HfLayout:
    """How the installed transformers names the weights of one DINOv2 config, by role."""

    model_class: type[PreTrainedModel]
    roles: Mapping[str, Part]  # installed state-dict key -> which of our tensors it is
    aliases: tuple[Alias, ...]  # transformers' own load-time renames (5.x), for unknown spellings


def _where(model_class: type) -> str:
    """`transformers 5.23.0 Dinov2Model`, for error messages."""
    return f"transformers {transformers.__version__} {model_class.__name__}"


def hf_layout(cfg: ViTConfig) -> HfLayout:
    """Key roles of the installed transformers' model for `cfg`; raises if any key has none.

    Both models are built on the meta device (no memory, milliseconds even for ViT-L) and
    their empty weights are converted both ways, so a mismatch is found before any training.
    """
    hf_config = hf_config_from_vit(cfg)
    model_class = _hf_model_class(hf_config)
    with torch.device("meta"):
        hf_model = model_class(hf_config)
        ours = DinoViT(cfg)
    hf_sd, our_sd = hf_model.state_dict(), ours.state_dict()
    aliases = conversion_aliases(hf_model)
    roles = {key: role_of(key, aliases) for key in hf_sd}
    unknown = [key for key, role in roles.items() if role is None]
    if unknown:
        raise CheckpointMismatchError(
            _where(model_class), {"installed keys with no known role": unknown}
        )
    layout = HfLayout(model_class, {k: r for k, r in roles.items() if r is not None}, aliases)
    to_hf = _timm_to_hf(our_sd, cfg, layout)
    back, problems = _hf_to_timm(hf_sd, cfg, layout)
    problems["shape mismatch"] = [
        f"{k}: {tuple(a.shape)} vs {tuple(b[k].shape)}"
        for a_sd, b in ((to_hf, hf_sd), (back, our_sd))
        for k, a in a_sd.items()
        if k in b and a.shape != b[k].shape
    ]
    if any(problems.values()):
        raise CheckpointMismatchError(f"{_where(model_class)} <-> DinoViT", problems)
    return layout


def check_hf_export_compatible(cfg: ViTConfig) -> None:
    """Raise `CheckpointMismatchError` now (not after training) unless export of `cfg` works."""
    layout = hf_layout(cfg)
    log.info("%s can hold %s exactly", _where(layout.model_class), cfg)


def _join(pieces: Mapping[tuple[int, int], torch.Tensor]) -> torch.Tensor | None:
    """Our tensor from its dim-0 chunks {(index, count): tensor}; None if incomplete or mixed."""
    if set(pieces) == {(0, 1)}:
        return pieces[(0, 1)]
    counts = {count for _, count in pieces}
    if len(counts) != 1:
        return None
    (count,) = counts
    if set(pieces) != {(i, count) for i in range(count)}:
        return None
    return torch.cat([pieces[(i, count)] for i in range(count)], dim=0)


def _hf_to_timm(
    hf_sd: Mapping[str, torch.Tensor], cfg: ViTConfig, layout: HfLayout
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Our state dict from HF weights in any known spelling, and the HF keys left over."""
    pieces: dict[str, dict[tuple[int, int], torch.Tensor]] = {}
    sources: dict[str, list[str]] = {}
    unexpected: list[str] = []
    for key, value in hf_sd.items():
        part = role_of(key, layout.aliases)
        slot = pieces.setdefault(part.ours, {}) if part is not None else {}
        if part is None or (part.index, part.count) in slot:
            unexpected.append(key)  # unknown, or a second spelling of a tensor already seen
            continue
        slot[(part.index, part.count)] = value
        sources.setdefault(part.ours, []).append(key)
    wanted = {part.ours for part in layout.roles.values()}
    out: dict[str, torch.Tensor] = {}
    for ours, slot in pieces.items():
        tensor = _join(slot)
        if ours not in wanted:
            unexpected += sources.get(ours, [])  # e.g. register tokens for a model without
        elif tensor is not None:
            out[ours] = tensor
    missing = [
        key
        for key, part in layout.roles.items()
        if part.ours not in out and (part.index, part.count) not in pieces.get(part.ours, {})
    ]
    if CLS in out and POS in out:
        cls, pos = out.pop(CLS), out.pop(POS)
        if cfg.num_register_tokens:
            # timm's register layout: CLS position folded into the token, none for registers
            out["cls_token"], out["pos_embed"] = cls + pos[:, :1], pos[:, 1:]
        else:
            out["cls_token"], out["pos_embed"] = cls, pos
    else:
        for half in (CLS, POS):  # one without the other cannot be converted: reported missing
            out.pop(half, None)
    return out, {"missing": sorted(missing), "unexpected": sorted(unexpected)}


def _timm_to_hf(
    sd: Mapping[str, torch.Tensor], cfg: ViTConfig, layout: HfLayout
) -> dict[str, torch.Tensor]:
    """The installed model's state dict from ours; every key on both sides is required."""
    needed = {part.ours for part in layout.roles.values()} - {CLS, POS}
    needed |= {"cls_token", "pos_embed"}
    problems = {"missing": sorted(needed - set(sd)), "unexpected": sorted(set(sd) - needed)}
    if any(problems.values()):
        raise CheckpointMismatchError(
            f"DinoViT state dict -> {_where(layout.model_class)}", problems
        )
    out: dict[str, torch.Tensor] = {}
    for key, part in layout.roles.items():
        if part.ours == CLS:
            tensor = sd["cls_token"]
        elif part.ours == POS:
            tensor = sd["pos_embed"]
            if cfg.num_register_tokens:
                # the folded CLS already carries its position; HF adds position 0: make it zero
                tensor = torch.cat([torch.zeros_like(tensor[:, :1]), tensor], dim=1)
        else:
            tensor = sd[part.ours]
            if part.count > 1:
                tensor = tensor.chunk(part.count, dim=0)[part.index]
        out[key] = tensor.contiguous()
    return out


def hf_to_timm_state_dict(
    hf_sd: Mapping[str, torch.Tensor], cfg: ViTConfig
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Our state dict from HF weights (on-disk or in-memory names of any transformers version).

    Also returns the installed model's keys that were `missing` and the given keys that were
    `unexpected` (unknown, duplicated or not part of `cfg`).
    """
    return _hf_to_timm(hf_sd, cfg, hf_layout(cfg))


def timm_to_hf_state_dict(
    sd: Mapping[str, torch.Tensor], cfg: ViTConfig
) -> dict[str, torch.Tensor]:
    """The installed transformers' state dict for our weights; every key is required."""
    return _timm_to_hf(sd, cfg, hf_layout(cfg))


# ---------------------------------------------------------------- load / save


def load_hf_dinov2(path: Path | str, *, strict: bool = True) -> DinoViT:
    """`DinoViT` (eval mode, fp32) from a local HF `save_pretrained` directory.

    With `strict`, any missing, unexpected or mis-shaped key is a `CheckpointMismatchError`
    naming them; otherwise they are logged and missing weights keep their initialisation.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"not a model directory: {path}")
    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    cfg = vit_config_from_hf(hf_config)
    layout = hf_layout(cfg)
    # The installed transformers applies its own on-disk -> module renames here (5.x: q/k/v/o_proj;
    # none before), and we map whatever names it produces by role. Its loading report is our
    # first strictness check; mis-shaped weights are reported (below) rather than raised by
    # transformers, so that every problem is named in one error.
    hf_model, info = layout.model_class.from_pretrained(
        path,
        local_files_only=True,
        output_loading_info=True,
        ignore_mismatched_sizes=True,
        dtype=torch.float32,
    )
    mismatched = {k[0] if isinstance(k, tuple) else k: k for k in info.get("mismatched_keys", ())}
    file_problems = {
        "missing from checkpoint": set(info.get("missing_keys", ())),
        "unexpected in checkpoint": set(info.get("unexpected_keys", ())),
        "shape mismatch": {str(v) for v in mismatched.values()},
        "load errors": set(map(str, info.get("error_msgs", ()))),
    }
    sd, convert = _hf_to_timm(hf_model.state_dict(), cfg, layout)
    problems = {**file_problems, "not mapped": set(convert["missing"]) | set(convert["unexpected"])}
    if not strict:
        # keep our own init (e.g. zero mask token) instead of HF's random fill for absent weights
        absent = file_problems["missing from checkpoint"] | set(mismatched)
        drop = {layout.roles[k].ours for k in absent if k in layout.roles}
        if drop & {CLS, POS}:
            drop |= {"cls_token", "pos_embed"}
        sd = {k: v for k, v in sd.items() if k not in drop}
    model = DinoViT(cfg)
    result = model.load_state_dict(sd, strict=False)
    problems["not loaded"] = set(result.missing_keys) | set(result.unexpected_keys)
    if any(problems.values()):
        if strict:
            raise CheckpointMismatchError(f"loading {path}", problems)
        log.warning("%s", CheckpointMismatchError(f"loading {path} (strict=False)", problems))
    log.info("loaded %s with %s: %s", path, _where(layout.model_class), cfg)
    return model.eval()


def save_hf_dinov2(
    model: DinoViT,
    out_dir: Path | str,
    *,
    image_mean: float,
    image_std: float,
    image_size: int,
) -> Path:
    """Write a directory that `AutoModel` / `AutoImageProcessor` load without cxrflow."""
    if not (math.isfinite(image_mean) and math.isfinite(image_std) and image_std > 0):
        raise ValueError(f"image_mean/std must be finite, std > 0; got {image_mean}/{image_std}")
    model.patch_grid(image_size)  # raises unless a positive multiple of the patch size
    if image_size != model.cfg.img_size:
        log.warning(
            "processor image_size %d differs from the native size %d (positions interpolated)",
            image_size,
            model.cfg.img_size,
        )
    out_dir = Path(out_dir)
    cfg = model.cfg
    layout = hf_layout(cfg)  # names come from the installed transformers, checked before writing
    sd = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    hf_sd = _timm_to_hf(sd, cfg, layout)
    hf_model = layout.model_class(hf_config_from_vit(cfg))
    result = hf_model.load_state_dict(hf_sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointMismatchError(
            f"DinoViT -> {_where(layout.model_class)}",
            {"missing": result.missing_keys, "unexpected": result.unexpected_keys},
        )
    hf_model.save_pretrained(out_dir)
    make_image_processor(image_mean, image_std, image_size).save_pretrained(out_dir)
    log.info("saved HF DINOv2 encoder to %s", out_dir)
    return out_dir


def load_encoder(path: Path | str) -> tuple[DinoViT, EncoderPreprocessing]:
    """Encoder and its preprocessing from an HF directory, for downstream stages."""
    return load_hf_dinov2(path), read_preprocessing(path)
