"""The lineage tags every registered model version carries, as one typed, validated record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Final, Literal

from cxrflow.tags import (
    CANDIDATE,
    CHAMPION,
    ENCODER_MODEL,
    EVAL_RUN_TAG,
    METRIC_TAG_PREFIX,
    REPORT_MODEL,
    TAG_DATA_VERSION,
    TAG_DEID_OPTIONS,
    TAG_DEID_PROFILE,
    TAG_ENCODER_VERSION,
    TAG_GIT_COMMIT,
    TAG_MODEL_CARD,
    TAG_MODEL_KIND,
    TAG_PARENTS,
    TAG_PIPELINE_PARAMS,
    TAG_PIPELINE_RUN,
    TAG_SPLIT_DIGEST,
)

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "ENCODER_MODEL",
    "EVAL_RUN_TAG",
    "METRIC_TAG_PREFIX",
    "MODEL_KINDS",
    "REPORT_MODEL",
    "REQUIRED_TAGS",
    "TAG_MODEL_CARD",
    "LineageTags",
    "LineageTagsError",
    "ModelKind",
    "ParentModel",
    "missing_tags",
]

ModelKind = Literal["encoder", "head", "report_generator"]
MODEL_KINDS: Final = ("encoder", "head", "report_generator")


class LineageTagsError(ValueError):
    """A lineage record is incomplete or malformed (the message names the field)."""


@dataclass(frozen=True)
class ParentModel:
    """A registered model version this one was built on (e.g. the frozen encoder)."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    @classmethod
    def parse(cls, text: str) -> ParentModel:
        """`name:version` -> ParentModel."""
        name, sep, version = text.strip().rpartition(":")
        if not sep or not name or not version:
            raise LineageTagsError(f"parent model {text!r} is not of the form name:version")
        return cls(name, version)


@dataclass(frozen=True)
class LineageTags:
    """Where a model version came from: data, split, de-identification, code, run, parents."""

    kind: ModelKind
    data_version: str
    split_digest: str
    git_commit: str
    pipeline_run: str
    pipeline_params_digest: str
    deid_profile: str
    deid_options: dict[str, bool] = field(default_factory=dict)
    parents: tuple[ParentModel, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise LineageTagsError(f"kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and not value.strip():
                raise LineageTagsError(f"{f.name} is empty: every model version must carry it")
        if self.kind != "encoder" and not any(p.name == ENCODER_MODEL for p in self.parents):
            raise LineageTagsError(
                f"parents: a {self.kind} must name the {ENCODER_MODEL} version it was built on"
            )

    @property
    def encoder_version(self) -> str:
        """The parent encoder's version ("" for an encoder: its parent is its init)."""
        if self.kind == "encoder":
            return ""
        return next((p.version for p in self.parents if p.name == ENCODER_MODEL), "")

    def to_tags(self) -> dict[str, str]:
        """MLflow tags (strings only)."""
        tags = {
            TAG_MODEL_KIND: self.kind,
            TAG_DATA_VERSION: self.data_version,
            TAG_SPLIT_DIGEST: self.split_digest,
            TAG_GIT_COMMIT: self.git_commit,
            TAG_PIPELINE_RUN: self.pipeline_run,
            TAG_PIPELINE_PARAMS: self.pipeline_params_digest,
            TAG_DEID_PROFILE: self.deid_profile,
            TAG_DEID_OPTIONS: json.dumps(self.deid_options, sort_keys=True),
        }
        if self.parents:
            tags[TAG_PARENTS] = ",".join(str(p) for p in self.parents)
        if self.encoder_version:
            tags[TAG_ENCODER_VERSION] = self.encoder_version
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> LineageTags:
        """Read back what `to_tags` wrote; raises naming the first missing field."""
        required = {
            "kind": TAG_MODEL_KIND,
            "data_version": TAG_DATA_VERSION,
            "split_digest": TAG_SPLIT_DIGEST,
            "git_commit": TAG_GIT_COMMIT,
            "pipeline_run": TAG_PIPELINE_RUN,
            "pipeline_params_digest": TAG_PIPELINE_PARAMS,
            "deid_profile": TAG_DEID_PROFILE,
        }
        missing = [f"{name} ({tag})" for name, tag in required.items() if not tags.get(tag)]
        if missing:
            raise LineageTagsError(f"missing lineage tags: {', '.join(missing)}")
        parents = tuple(
            ParentModel.parse(p) for p in tags.get(TAG_PARENTS, "").split(",") if p.strip()
        )
        return cls(
            kind=tags[TAG_MODEL_KIND],  # type: ignore[arg-type]
            data_version=tags[TAG_DATA_VERSION],
            split_digest=tags[TAG_SPLIT_DIGEST],
            git_commit=tags[TAG_GIT_COMMIT],
            pipeline_run=tags[TAG_PIPELINE_RUN],
            pipeline_params_digest=tags[TAG_PIPELINE_PARAMS],
            deid_profile=tags[TAG_DEID_PROFILE],
            deid_options=json.loads(tags.get(TAG_DEID_OPTIONS) or "{}"),
            parents=parents,
        )


REQUIRED_TAGS: Final = (
    TAG_MODEL_KIND,
    TAG_DATA_VERSION,
    TAG_SPLIT_DIGEST,
    TAG_GIT_COMMIT,
    TAG_PIPELINE_RUN,
    TAG_PIPELINE_PARAMS,
    TAG_DEID_PROFILE,
    TAG_DEID_OPTIONS,
)


def missing_tags(tags: dict[str, str]) -> list[str]:
    """The required lineage tags absent (or empty) in `tags`; parents for non-encoders."""
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if tags.get(TAG_MODEL_KIND) in ("head", "report_generator"):
        missing += [t for t in (TAG_PARENTS, TAG_ENCODER_VERSION) if not tags.get(t)]
    return missing
