"""Registering model versions with complete lineage tags, aliases and recorded metrics."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from cxrflow.registry.runs import client as make_client
from cxrflow.registry.runs import pipeline_context
from cxrflow.registry.tags import (
    LineageTags,
    LineageTagsError,
    ModelKind,
    ParentModel,
    missing_tags,
)
from cxrflow.tags import (
    CANDIDATE,
    ENCODER_MODEL,
    EVAL_RUN_TAG,
    METRIC_TAG_PREFIX,
    TAG_ENCODER_VERSION,
    TAG_PARENTS,
)
from cxrflow.tracking import git_commit as current_git_commit

log = logging.getLogger(__name__)

_REF = re.compile(r"^(?:@(?P<alias>[A-Za-z0-9_\-]+)|:?(?P<version>\d+))$")
# MLflow's SQL registry stores a version's description in a VARCHAR(5000) column
# (model_versions.description, MLflow 3.17): PostgreSQL and MySQL refuse longer text.
MAX_DESCRIPTION = 5000


def lineage_for(
    pipeline_run: str,
    kind: ModelKind,
    *,
    params_digest: str,
    parents: Iterable[ParentModel] = (),
    git_commit: str | None = None,
    client: Any = None,
    **overrides: Any,
) -> LineageTags:
    """Lineage of a model made in `pipeline_run`, filled from its upstream stages' MLflow runs.

    `overrides` (data_version, split_digest, deid_profile, deid_options) win over what the
    runs say; a field that stays unknown raises `LineageTagsError` naming it.
    """
    ctx = pipeline_context(client or make_client(), pipeline_run)
    values: dict[str, Any] = {
        "data_version": ctx.data_version,
        "split_digest": ctx.split_digest,
        "deid_profile": ctx.deid_profile,
        "deid_options": ctx.deid_options or {},
    }
    unknown = set(overrides) - set(values)
    if unknown:
        raise LineageTagsError(f"unknown lineage fields: {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v})
    return LineageTags(
        kind=kind,
        pipeline_run=pipeline_run,
        pipeline_params_digest=params_digest,
        git_commit=git_commit or current_git_commit(),
        parents=tuple(parents),
        **values,
    )


def resolve_version(name: str, ref: str, client: Any = None) -> Any:
    """The ModelVersion `ref` names: `@alias`, `:version` or a bare version number."""
    c = client or make_client()
    m = _REF.match(ref.strip())
    if m is None:
        raise ValueError(f"model reference {ref!r}: use @alias (e.g. @champion) or :version")
    if m["alias"]:
        return c.get_model_version_by_alias(name, m["alias"])
    return c.get_model_version(name, m["version"])


def version_by_alias(name: str, alias: str, client: Any = None) -> Any | None:
    """The version holding `alias`, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return (client or make_client()).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _register(c: Any, model_uri: str, name: str, tags: dict[str, str]) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.register_model(model_uri, name, tags=tags)
    except MlflowException:
        if not model_uri.startswith("runs:/"):
            raise
    # A plain artifact folder (e.g. a Hugging Face export) has no MLflow model to resolve:
    # register the folder itself as the version's source.
    run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name)
    return c.create_model_version(name, model_uri, run_id=run_id, tags=tags)


def register_candidate(
    model_uri: str,
    name: str,
    lineage: LineageTags,
    *,
    client: Any = None,
    extra_tags: dict[str, str] | None = None,
) -> Any:
    """Register `model_uri` as a new version of `name` with lineage tags and alias `candidate`."""
    c = client or make_client()
    mv = _register(c, model_uri, name, {**(extra_tags or {}), **lineage.to_tags()})
    c.set_registered_model_alias(name, CANDIDATE, str(mv.version))
    log.info("registered %s version %s as %s", name, mv.version, CANDIDATE)
    return c.get_model_version(name, str(mv.version))


def check_tags(mv: Any) -> list[str]:
    """The lineage tags a model version lacks (empty when complete)."""
    return missing_tags(dict(mv.tags))


def record_metrics(
    name: str,
    version: str,
    metrics: dict[str, float],
    *,
    evaluation_run: str = "",
    client: Any = None,
) -> None:
    """Store evaluation metrics on a version as `cxrflow.metric.<name>` tags (for the gate)."""
    c = client or make_client()
    for key, value in metrics.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # undefined metrics are left out, never stored as 0
        c.set_model_version_tag(name, str(version), METRIC_TAG_PREFIX + key, repr(float(value)))
    if evaluation_run:
        c.set_model_version_tag(name, str(version), EVAL_RUN_TAG, evaluation_run)


def version_metrics(mv: Any, client: Any = None) -> dict[str, float]:
    """A version's metrics: recorded `cxrflow.metric.*` tags, else its run's logged metrics."""
    out = {
        k.removeprefix(METRIC_TAG_PREFIX): float(v)
        for k, v in dict(mv.tags).items()
        if k.startswith(METRIC_TAG_PREFIX)
    }
    if mv.run_id:
        from mlflow.exceptions import MlflowException

        try:
            run_metrics = (client or make_client()).get_run(mv.run_id).data.metrics
        except MlflowException:
            run_metrics = {}
        for k, v in run_metrics.items():
            out.setdefault(k, float(v))
    return out


def register_stage_model(
    model_uri: str,
    name: str,
    kind: ModelKind,
    *,
    pipeline_run: str,
    params_digest: str,
    tags: dict[str, str] | None = None,
    parents: Iterable[ParentModel] = (),
    client: Any = None,
) -> str:
    """Register a stage's model as the new `candidate`, with full lineage when it is known.

    Inside a pipeline run the lineage (data version, split digest, de-id profile, ...) comes
    from the upstream stages' MLflow runs; a head or report generator names as parent the
    encoder version in its `cxrflow.encoder_version` tag, an encoder the registered encoder it
    continued from (`parents`). A stage run by hand (no pipeline run, or upstream stages not
    recorded) still registers, with the tags and parents it was given.
    """
    c = client or make_client()
    extra = {k: v for k, v in (tags or {}).items() if v}
    encoder_version = extra.get(TAG_ENCODER_VERSION, "")
    parents = list(parents)
    if kind != "encoder" and encoder_version:
        parents.append(ParentModel(ENCODER_MODEL, encoder_version))
    if pipeline_run:
        try:
            lineage = lineage_for(
                pipeline_run, kind, params_digest=params_digest, parents=parents, client=c
            )
            return str(
                register_candidate(model_uri, name, lineage, client=c, extra_tags=extra).version
            )
        except LineageTagsError as exc:
            log.warning("registering %s with partial lineage: %s", name, exc)
    if parents:
        extra[TAG_PARENTS] = ",".join(str(p) for p in parents)
    mv = _register(c, model_uri, name, extra)
    c.set_registered_model_alias(name, CANDIDATE, str(mv.version))
    return str(mv.version)


def shorten_description(text: str, full_text_uri: str = "", limit: int = MAX_DESCRIPTION) -> str:
    """`text` if it fits in `limit`, else its leading whole sections and a pointer to the rest.

    Cut at a Markdown heading so that no table or code block is left open.
    """
    if len(text) <= limit:
        return text
    where = f"`{full_text_uri}`" if full_text_uri else "the version's run artifacts"
    pointer = (
        f"\n\n---\n*Shortened to MLflow's {limit}-character description limit: the full card "
        f"({len(text)} characters) is {where}.*\n"
    )
    room = limit - len(pointer)
    cut = max(text.rfind("\n## ", 0, room), text.rfind("\n### ", 0, room))
    head = text[:cut] if cut > 0 else text[:room]
    return head.rstrip() + pointer


def set_description(
    name: str,
    version: str,
    text: str,
    *,
    full_text_uri: str = "",
    client: Any = None,
) -> str:
    """Make `text` (shortened to MLflow's limit, see `shorten_description`) the description."""
    c = client or make_client()
    description = shorten_description(text, full_text_uri)
    c.update_model_version(name, str(version), description=description)
    if len(description) < len(text):
        log.info("description of %s:%s shortened to %d characters", name, version, len(description))
    return description
