"""Roles of Hugging Face DINOv2 weight names, recognised across transformers' spellings.

transformers renames DINOv2's modules between versions (4.x and 5.0-5.17:
`attention.attention.query`, `attention.output.dense`, `mlp.weights_in`; 5.23: `attention.q_proj`,
`attention.o_proj`, `mlp.gate_proj`/`up_proj`/`down_proj`) and writes older names to disk than
it uses in memory. Instead of one version's names, every key is given a role: which of our
(timm-layout) tensors it is, and which dim-0 chunk of it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Pseudo keys for the two HF tensors that combine into our `cls_token` and `pos_embed`.
CLS = "<embeddings.cls_token>"
POS = "<embeddings.position_embeddings>"


@dataclass(frozen=True)
class Part:
    """An HF tensor is chunk `index` of `count` equal dim-0 chunks of our tensor `ours`."""

    ours: str
    index: int = 0
    count: int = 1


# Whole-model tensors: HF module path -> our key prefix ("" = the tensor itself).
_GLOBAL: tuple[tuple[str, str], ...] = (
    (r"embeddings\.patch_embeddings\.(?:projection|proj)\.(weight|bias)", "patch_embed.proj.{}"),
    (r"embeddings\.mask_token", "mask_token"),
    (r"embeddings\.register_tokens", "reg_token"),
    (r"(?:layernorm|norm|final_layernorm|post_layernorm)\.(weight|bias)", "norm.{}"),
)

_LAYER = re.compile(
    r"(?:encoder\.)?(?:layer|layers|blocks)\.(\d+)\.(.+)\.(weight|bias|lambda1|gamma)"
)

_ATTN = r"(?:attention|self_attn|attn)(?:\.(?:attention|self))?\."
_MLP = r"(?:mlp|ffn|feed_forward)\."
# Per-layer module paths (every spelling seen in transformers or the DINOv2 family) -> role.
_LAYER_ROLES: tuple[tuple[str, str, int, int], ...] = (
    (r"norm1|layernorm_before|layer_norm1|input_layernorm", "norm1.{}", 0, 1),
    (r"norm2|layernorm_after|layer_norm2|post_attention_layernorm", "norm2.{}", 0, 1),
    (_ATTN + r"(?:query|q_proj|q)", "attn.qkv.{}", 0, 3),
    (_ATTN + r"(?:key|k_proj|k)", "attn.qkv.{}", 1, 3),
    (_ATTN + r"(?:value|v_proj|v)", "attn.qkv.{}", 2, 3),
    (_ATTN + r"(?:qkv|qkv_proj|query_key_value)", "attn.qkv.{}", 0, 1),
    (r"(?:attention|self_attn|attn)\.(?:output\.dense|o_proj|out_proj|proj)", "attn.proj.{}", 0, 1),
    (r"layer_scale1|ls1", "ls1.gamma", 0, 1),
    (r"layer_scale2|ls2", "ls2.gamma", 0, 1),
    (_MLP + r"fc1|intermediate\.dense", "mlp.fc1.{}", 0, 1),
    (_MLP + r"fc2|output\.dense", "mlp.fc2.{}", 0, 1),
    # SwiGLU: packed [gate; up] (4.x `weights_in`, DINOv2 `w12`) or split (5.x gate/up_proj)
    (_MLP + r"(?:weights_in|w12|gate_up_proj)", "mlp.fc1.{}", 0, 1),
    (_MLP + r"(?:gate_proj|w1)", "mlp.fc1.{}", 0, 2),
    (_MLP + r"(?:up_proj|w2)", "mlp.fc1.{}", 1, 2),
    (_MLP + r"(?:weights_out|down_proj|w3)", "mlp.fc2.{}", 0, 1),
)
_COMPILED = [(re.compile(p), ours, i, n) for p, ours, i, n in _LAYER_ROLES]
_GLOBAL_COMPILED = [(re.compile(p), ours) for p, ours in _GLOBAL]


@dataclass(frozen=True)
class Alias:
    """transformers' own rename: `installed` (in memory) is chunk `index`/`count` of `known`."""

    installed: str
    known: str
    index: int = 0
    count: int = 1


def role_of(key: str, aliases: tuple[Alias, ...] = ()) -> Part | None:
    """The role of an HF DINOv2 key (any known spelling, else via `aliases`); None if unknown."""
    part = _direct_role(key)
    if part is not None:
        return part
    for alias in aliases:
        if alias.installed not in key:
            continue
        known = _direct_role(key.replace(alias.installed, alias.known))
        if known is not None:
            return Part(
                known.ours,
                known.index * alias.count + alias.index,
                known.count * alias.count,
            )
    return None


def _direct_role(key: str) -> Part | None:
    """Role from the spellings listed above."""
    if key == "embeddings.cls_token":
        return Part(CLS)
    if key == "embeddings.position_embeddings":
        return Part(POS)
    for pattern, ours in _GLOBAL_COMPILED:
        m = pattern.fullmatch(key)
        if m:
            return Part(ours.format(*m.groups()))
    m = _LAYER.fullmatch(key)
    if m is None:
        return None
    layer, module, param = m.groups()
    for pattern, ours, index, count in _COMPILED:
        if not pattern.fullmatch(module):
            continue
        is_scale = ours.endswith(".gamma")
        if is_scale != (param in ("lambda1", "gamma")):
            return None  # e.g. `layer_scale1.weight`: not a shape we know
        return Part(f"blocks.{layer}." + ours.format(param), index, count)
    return None


_REGEX_META = re.compile(r"[\\^$*+?()\[\]{}|]")


def _literal(pattern: str) -> str | None:
    """A plain substring from a rename pattern (`\\.` unescaped), or None for real regexes."""
    text = pattern.replace(r"\.", ".")
    return None if _REGEX_META.search(text) else text


def conversion_aliases(hf_model: Any) -> tuple[Alias, ...]:
    """Renames the installed transformers applies when loading `hf_model` (none before 5.x).

    Read from `transformers.conversion_mapping` (5.x) and a class's `_checkpoint_conversion_mapping`
    (late 4.x); only literal renames and dim-0 chunking are understood, the rest is skipped.
    """
    aliases: list[Alias] = []
    for source, target in (getattr(hf_model, "_checkpoint_conversion_mapping", None) or {}).items():
        known, installed = _literal(source), _literal(target)
        if known and installed:
            aliases.append(Alias(installed, known))
    try:
        from transformers import conversion_mapping
    except ImportError:
        return tuple(aliases)
    try:
        get = conversion_mapping.get_checkpoint_conversion_mapping
        transforms = get(type(hf_model).__name__) or get(hf_model.config.model_type) or []
    except Exception as err:  # internal API: never let its changes break loading
        log.debug("transformers conversion mapping unreadable: %s", err)
        return tuple(aliases)
    for transform in transforms:
        sources = getattr(transform, "_original_source_patterns", None)
        targets = getattr(transform, "_original_target_patterns", None)
        sources = list(sources or getattr(transform, "source_patterns", []) or [])
        targets = list(targets or getattr(transform, "target_patterns", []) or [])
        ops = [type(op).__name__ for op in getattr(transform, "operations", []) or []]
        if len(sources) != 1 or not targets:
            continue
        known = _literal(sources[0])
        if known is None:
            continue
        if len(targets) == 1 and not ops:
            installed = _literal(targets[0])
            if installed:
                aliases.append(Alias(installed, known))
        elif ops == ["Chunk"]:
            for index, target in enumerate(targets):
                installed = _literal(target)
                if installed:
                    aliases.append(Alias(installed, known, index, len(targets)))
    return tuple(aliases)
