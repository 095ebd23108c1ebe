"""Where pre-training starts: the `init` a user names, resolved, applied and recorded.

RAD-DINO is continual pre-training: its encoder starts from DINOv2's ViT-B/14 and that start
is worth +6.9 macro AUPRC over random init (Table B.1). So the start is a first-class input:

- `random`: the preset's architecture at its random initialisation;
- a path: a Hugging Face DINOv2 directory, an upstream torch.hub `.pth` or a timm checkpoint
  (see `cxrflow.models.importers`);
- `models:/<name>@<alias>` or `models:/<name>/<version>`: a registered cxrflow encoder;
- `champion`: the current champion encoder if there is one, else the preset's default
  (scheduled retraining: run N+1 continues run N).

The checkpoint decides the architecture (its weights fix width, depth, patch size, registers
and the position grid); every other setting stays the preset's (drop path, crops, schedules),
and each architecture field where the checkpoint differs from the preset is a *departure*,
logged and recorded with the run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from filelock import FileLock

from cxrflow.models.config import NAMED_SIZES, ViTConfig
from cxrflow.models.importers import ImportedEncoder, import_encoder
from cxrflow.models.vit import DinoViT
from cxrflow.registry.tags import ParentModel
from cxrflow.ssl.presets import PretrainConfig
from cxrflow.tags import CHAMPION, ENCODER_MODEL, TAG_INIT_FROM, TAG_INIT_PREFIX

log = logging.getLogger(__name__)

InitKind = Literal["random", "champion", "registry", "path"]

RANDOM: Final = "random"
CHAMPION_INIT: Final = "champion"
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w\-]+)|/(?P<version>\d+))$")
# ViTConfig fields a checkpoint fixes; drop path and LayerScale's *initial* value are training
# settings (the LayerScale values themselves come with the weights).
ARCHITECTURE_FIELDS: Final = (
    "embed_dim",
    "depth",
    "num_heads",
    "patch_size",
    "img_size",
    "num_register_tokens",
    "mlp_ratio",
    "qkv_bias",
    "ffn",
    "in_chans",
)
INIT_OPTIONS: Final = (
    "a Hugging Face DINOv2 directory, an upstream torch.hub checkpoint "
    "(e.g. dinov2_vitb14_pretrain.pth), a timm DINOv2 checkpoint, "
    f"models:/{ENCODER_MODEL}@{CHAMPION} (or models:/<name>/<version>), "
    f"'{CHAMPION_INIT}' (the champion if there is one) or '{RANDOM}'"
)


class InitError(ValueError):
    """The requested start cannot be used (the message names it and the options)."""


@dataclass(frozen=True)
class EncoderInit:
    """What a run starts from, as the user named it (`parse` / `str` round-trip)."""

    kind: InitKind
    path: Path | None = None
    model: str = ""  # registry: the registered model's name
    ref: str = ""  # registry: "@alias" or a version number

    @classmethod
    def parse(cls, text: str | Path) -> EncoderInit:
        """`random`, `champion`, `models:/<name>@<alias>`, `models:/<name>/<n>` or a path."""
        value = str(text).strip()
        if not value:
            raise InitError(f"init: empty; give one of {INIT_OPTIONS}")
        if value == RANDOM:
            return cls("random")
        if value == CHAMPION_INIT:
            return cls("champion", model=ENCODER_MODEL, ref=f"@{CHAMPION}")
        if value.startswith("models:"):
            match = _REGISTRY_URI.match(value)
            if not match:
                raise InitError(
                    f"init: {value!r} is not a registry URI of the form "
                    "models:/<name>@<alias> or models:/<name>/<version>"
                )
            ref = f"@{match['alias']}" if match["alias"] else match["version"]
            return cls("registry", model=match["name"], ref=ref)
        return cls("path", path=Path(value))

    def __str__(self) -> str:
        if self.kind == "path":
            return str(self.path)
        if self.kind == "registry":
            sep = "" if self.ref.startswith("@") else "/"
            return f"models:/{self.model}{sep}{self.ref}"
        return self.kind

    @property
    def local_path(self) -> Path | None:
        """The file or directory a `path` init reads (what cluster jobs must mount)."""
        return self.path if self.kind == "path" else None


@dataclass(frozen=True)
class InitSource:
    """What a run actually started from: the import, its registered parent, the departures."""

    requested: EncoderInit
    imported: ImportedEncoder | None = None
    parent: ParentModel | None = None
    note: str = ""
    departures: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def is_random(self) -> bool:
        return self.imported is None

    def record(self) -> dict[str, str]:
        """Flat, path-free facts for MLflow params/tags and the model card."""
        out = {"init": str(self.requested) if self.requested.kind != "path" else "path"}
        if self.imported is None:
            out["init_source"] = RANDOM
        else:
            out["init_source"] = self.imported.source_format
            out["init_sha256"] = self.imported.sha256
            out["init_file"] = self.imported.path.name
        if self.parent is not None:
            out["init_model"] = str(self.parent)
        if self.note:
            out["init_note"] = self.note
        for name, (preset_value, used) in sorted(self.departures.items()):
            out[f"init_departure.{name}"] = f"{preset_value} -> {used}"
        return out

    def tags(self) -> dict[str, str]:
        """The record as MLflow tags (`cxrflow.init_from` and `cxrflow.init.*`)."""
        record = self.record()
        tags = {TAG_INIT_FROM: record.pop("init")}
        tags.update({f"{TAG_INIT_PREFIX}{k.removeprefix('init_')}": v for k, v in record.items()})
        return tags

    def describe(self) -> str:
        """One line for logs and the model card."""
        if self.imported is None:
            return f"random initialisation ({self.note or 'requested'})"
        what = f"{self.parent} " if self.parent else ""
        return (
            f"continual from {what}({self.imported.source_format} checkpoint "
            f"{self.imported.path.name}, sha256 {self.imported.sha256[:16]})"
        )


def require_init(config: PretrainConfig, init: EncoderInit | None, preset: str) -> EncoderInit:
    """The init to use: `init`, or `random` where the preset allows starting from scratch."""
    if init is not None:
        return init
    if config.init_required:
        raise InitError(
            f"preset {preset!r} is continual pre-training (RAD-DINO starts from DINOv2; "
            f"random init loses 6.9 macro AUPRC, Table B.1) and needs init: {INIT_OPTIONS}"
        )
    return EncoderInit("random")


def _download_registered(name: str, ref: str, cache: Path, client: Any) -> tuple[Path, str]:
    """A registered encoder's HF directory, downloaded once under `cache`; and its version."""
    import mlflow

    from cxrflow.registry.versions import resolve_version

    mv = resolve_version(name, ref, client)
    dst = cache / f"{name}-v{mv.version}"
    cache.mkdir(parents=True, exist_ok=True)
    # every rank of a distributed run resolves the init; one downloads, the others wait
    with FileLock(str(cache / f".{dst.name}.lock")):
        if not (dst / ".complete").is_file():
            dst.mkdir(parents=True, exist_ok=True)
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dst)
            )
            (dst / ".complete").write_text(f"{name}:{mv.version}\n")
    # An encoder is registered as a pyfunc whose artifact is the HF directory.
    configs = sorted(dst.rglob("config.json"))
    if not configs:
        raise InitError(f"init: {name}:{mv.version} holds no Hugging Face encoder (config.json)")
    return configs[0].parent, str(mv.version)


def resolve_init(init: EncoderInit, cache: Path, client: Any = None) -> InitSource:
    """Import the checkpoint `init` names (registry versions are downloaded under `cache`)."""
    if init.kind == "random":
        return InitSource(init)
    if init.kind == "path":
        assert init.path is not None
        if not init.path.exists():
            raise InitError(f"init: {init.path} does not exist; give one of {INIT_OPTIONS}")
        return InitSource(init, import_encoder(init.path))
    from cxrflow.registry.runs import client as make_client

    c = client or make_client()
    if init.kind == "champion":
        from cxrflow.registry.versions import version_by_alias

        if version_by_alias(init.model, CHAMPION, c) is None:
            return InitSource(init, note=f"no {init.model}@{CHAMPION} yet")
    try:
        directory, version = _download_registered(init.model, init.ref, cache, c)
    except InitError:
        raise
    except Exception as exc:  # MLflow raises its own types for unknown names/aliases
        raise InitError(f"init: cannot resolve {init}: {exc}") from exc
    return InitSource(init, import_encoder(directory), ParentModel(init.model, version))


def _named_size(cfg: ViTConfig) -> str:
    """The named size with the checkpoint's width, depth and heads."""
    dims = {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads}
    for name, named in NAMED_SIZES.items():
        if named == dims:
            return name
    raise InitError(
        f"init: a ViT of width {cfg.embed_dim}, depth {cfg.depth} and {cfg.num_heads} heads is "
        f"none of the named sizes {sorted(NAMED_SIZES)}"
    )


def continual_config(
    config: PretrainConfig, source: InitSource
) -> tuple[PretrainConfig, InitSource]:
    """The preset with the checkpoint's architecture, and the source with its departures."""
    if source.imported is None:
        return config, source
    ours, theirs = config.vit_config(), source.imported.config
    departures = {
        name: (getattr(ours, name), getattr(theirs, name))
        for name in ARCHITECTURE_FIELDS
        if getattr(ours, name) != getattr(theirs, name)
    }
    for name, (preset_value, used) in departures.items():
        log.warning(
            "init departs from the preset: %s %r -> %r (the checkpoint's architecture)",
            name,
            preset_value,
            used,
        )
    try:
        adapted = config.with_(
            model=_named_size(theirs),
            image_size=theirs.img_size,
            patch_size=theirs.patch_size,
            num_register_tokens=theirs.num_register_tokens,
        )
    except ValueError as exc:
        raise InitError(f"init: the checkpoint does not fit the preset: {exc}") from exc
    return adapted, InitSource(
        source.requested, source.imported, source.parent, source.note, departures
    )


def initial_backbone(config: PretrainConfig, source: InitSource) -> DinoViT | None:
    """The student's starting backbone: the checkpoint's weights with the preset's drop path."""
    if source.imported is None:
        return None
    cfg = source.imported.config.replace(drop_path_rate=config.drop_path_rate)
    backbone = DinoViT(cfg)
    backbone.load_state_dict(source.imported.model.state_dict(), strict=True)
    log.info("pre-training starts from %s", source.describe())
    return backbone
