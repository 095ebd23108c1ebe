"""Interchange with Hugging Face `Dinov2Model` / `Dinov2WithRegistersModel` directories."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
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
from cxrflow.models.preprocessing import (
    EncoderPreprocessing,
    make_image_processor,
    read_preprocessing,
)
from cxrflow.models.vit import DinoViT

log = logging.getLogger(__name__)

# timm (and DINOv2) LayerNorm epsilon; HF configs carry theirs explicitly.
LAYER_NORM_EPS = 1e-6

# transformers <5 module names (still what `save_pretrained` writes to disk in 5.x) -> 5.x names.
_LEGACY_NAMES = (
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    ("mlp.weights_out.", "mlp.down_proj."),
)


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


def _rules(cfg: ViTConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(our key, HF keys) pairs; several HF keys are concatenated along dim 0."""
    rules = [
        ("patch_embed.proj.weight", ("embeddings.patch_embeddings.projection.weight",)),
        ("patch_embed.proj.bias", ("embeddings.patch_embeddings.projection.bias",)),
        ("mask_token", ("embeddings.mask_token",)),
        ("norm.weight", ("layernorm.weight",)),
        ("norm.bias", ("layernorm.bias",)),
    ]
    if cfg.num_register_tokens:
        rules.append(("reg_token", ("embeddings.register_tokens",)))
    params = ["weight", "bias"] if cfg.qkv_bias else ["weight"]
    for i in range(cfg.depth):
        ours, hf = f"blocks.{i}.", f"encoder.layer.{i}."
        for p in params:
            qkv = tuple(f"{hf}attention.{n}_proj.{p}" for n in "qkv")
            rules.append((f"{ours}attn.qkv.{p}", qkv))
        for p in ("weight", "bias"):
            rules += [
                (f"{ours}norm1.{p}", (f"{hf}norm1.{p}",)),
                (f"{ours}norm2.{p}", (f"{hf}norm2.{p}",)),
                (f"{ours}attn.proj.{p}", (f"{hf}attention.o_proj.{p}",)),
            ]
            if cfg.ffn == "swiglu":
                rules += [
                    (f"{ours}mlp.fc1.{p}", (f"{hf}mlp.gate_proj.{p}", f"{hf}mlp.up_proj.{p}")),
                    (f"{ours}mlp.fc2.{p}", (f"{hf}mlp.down_proj.{p}",)),
                ]
            else:
                rules += [
                    (f"{ours}mlp.fc1.{p}", (f"{hf}mlp.fc1.{p}",)),
                    (f"{ours}mlp.fc2.{p}", (f"{hf}mlp.fc2.{p}",)),
                ]
        rules += [
            (f"{ours}ls1.gamma", (f"{hf}layer_scale1.lambda1",)),
            (f"{ours}ls2.gamma", (f"{hf}layer_scale2.lambda1",)),
        ]
    return rules


def _modern_names(hf_sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename transformers<5 (on-disk) keys to 5.x module names; split packed SwiGLU."""
    out: dict[str, torch.Tensor] = {}
    for key, value in hf_sd.items():
        for old, new in _LEGACY_NAMES:
            key = key.replace(old, new)
        if ".mlp.weights_in." in key:
            gate, up = value.chunk(2, dim=0)
            out[key.replace("weights_in", "gate_proj")] = gate
            out[key.replace("weights_in", "up_proj")] = up
            continue
        out[key] = value
    return out


def hf_to_timm_state_dict(
    hf_sd: Mapping[str, torch.Tensor], cfg: ViTConfig
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Our state dict from HF weights, and the HF keys that were `missing` / `unexpected`."""
    hf = _modern_names(hf_sd)
    used: set[str] = set()
    missing: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for ours, sources in _rules(cfg):
        absent = [s for s in sources if s not in hf]
        if absent:
            missing.update(absent)
            continue
        used.update(sources)
        tensors = [hf[s] for s in sources]
        out[ours] = tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)
    cls_key, pos_key = "embeddings.cls_token", "embeddings.position_embeddings"
    absent = [k for k in (cls_key, pos_key) if k not in hf]
    missing.update(absent)
    if not absent:
        used.update((cls_key, pos_key))
        cls, pos = hf[cls_key], hf[pos_key]
        if cfg.num_register_tokens:
            # timm's register layout: CLS position folded into the token, none for registers
            out["cls_token"] = cls + pos[:, :1]
            out["pos_embed"] = pos[:, 1:]
        else:
            out["cls_token"], out["pos_embed"] = cls, pos
    return out, {"missing": sorted(missing), "unexpected": sorted(set(hf) - used)}


def timm_to_hf_state_dict(
    sd: Mapping[str, torch.Tensor], cfg: ViTConfig
) -> dict[str, torch.Tensor]:
    """HF (transformers 5 module names) weights from our state dict; every key is required."""
    problems = {
        "missing": sorted(({k for k, _ in _rules(cfg)} | {"cls_token", "pos_embed"}) - set(sd)),
    }
    out: dict[str, torch.Tensor] = {}
    used = {"cls_token", "pos_embed"}
    for ours, sources in _rules(cfg):
        if ours not in sd:
            continue
        used.add(ours)
        parts = sd[ours].chunk(len(sources), dim=0) if len(sources) > 1 else (sd[ours],)
        out.update(dict(zip(sources, parts, strict=True)))
    problems["unexpected"] = sorted(set(sd) - used)
    if problems["missing"] or problems["unexpected"]:
        raise CheckpointMismatchError("DinoViT state dict -> HF", problems)
    cls, pos = sd["cls_token"], sd["pos_embed"]
    if cfg.num_register_tokens:
        # the folded CLS already carries its position; HF adds position 0, so make it zero
        pos = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    out["embeddings.cls_token"], out["embeddings.position_embeddings"] = cls, pos
    return {k: v.contiguous() for k, v in out.items()}


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
    # transformers applies its own on-disk -> module renames (5.x: q/k/v/o_proj) here, so we
    # map from the names it produces; its loading report is our first strictness check.
    # Mis-shaped weights are reported (below) rather than raised by transformers, so that every
    # problem is named in one error.
    hf_model, info = _hf_model_class(hf_config).from_pretrained(
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
    sd, convert = hf_to_timm_state_dict(hf_model.state_dict(), cfg)
    problems = {**file_problems, "not mapped": set(convert["missing"]) | set(convert["unexpected"])}
    if not strict:
        # keep our own init (e.g. zero mask token) instead of HF's random fill for absent weights
        absent_hf = file_problems["missing from checkpoint"] | set(mismatched)
        drop = {ours for ours, sources in _rules(cfg) if absent_hf.intersection(sources)}
        if absent_hf & {"embeddings.cls_token", "embeddings.position_embeddings"}:
            drop |= {"cls_token", "pos_embed"}
        sd = {k: v for k, v in sd.items() if k not in drop}
    model = DinoViT(cfg)
    result = model.load_state_dict(sd, strict=False)
    problems["not loaded"] = set(result.missing_keys) | set(result.unexpected_keys)
    if any(problems.values()):
        if strict:
            raise CheckpointMismatchError(f"loading {path}", problems)
        log.warning("%s", CheckpointMismatchError(f"loading {path} (strict=False)", problems))
    log.info("loaded %s: %s", path, cfg)
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
    sd = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    hf_config = hf_config_from_vit(cfg)
    hf_model = _hf_model_class(hf_config)(hf_config)
    result = hf_model.load_state_dict(timm_to_hf_state_dict(sd, cfg), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointMismatchError(
            "DinoViT -> HF model",
            {"missing": result.missing_keys, "unexpected": result.unexpected_keys},
        )
    hf_model.save_pretrained(out_dir)
    make_image_processor(image_mean, image_std, image_size).save_pretrained(out_dir)
    log.info("saved HF DINOv2 encoder to %s", out_dir)
    return out_dir


def load_encoder(path: Path | str) -> tuple[DinoViT, EncoderPreprocessing]:
    """Encoder and its preprocessing from an HF directory, for downstream stages."""
    return load_hf_dinov2(path), read_preprocessing(path)
