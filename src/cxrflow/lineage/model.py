"""Lineage of one model version: run -> pipeline run -> parameters -> data -> ingestion -> code."""

from __future__ import annotations

import logging
from typing import Any

from cxrflow.lineage.tree import LineageNode, NodeKind
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.runs import entry_run, ingest_runs_for_data_version, stage_runs
from cxrflow.registry.tags import ParentModel
from cxrflow.registry.versions import resolve_version
from cxrflow.tags import (
    ENCODER_MODEL,
    IMPORT_STAGE,
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
    TAG_STAGE,
)

log = logging.getLogger(__name__)

INGEST_METRICS = ("files_found", "files_written", "files_skipped_existing", "files_quarantined")
RESTORE_COMMAND = "cxrflow data checkout {md5}"
MAX_DEPTH = 4  # parents of parents: a guard against a tag cycle, far above real chains


def model_kind(name: str, tags: dict[str, str]) -> str:
    """encoder, head or report_generator: the tag when present, else from the name and tags."""
    if tags.get(TAG_MODEL_KIND):
        return tags[TAG_MODEL_KIND]
    if name == ENCODER_MODEL:
        return "encoder"
    if "report" in name:
        return "report_generator"
    return "head" if tags.get(TAG_ENCODER_VERSION) else "unknown"


def _get_run(c: Any, run_id: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return c.get_run(run_id)
    except MlflowException:
        return None


def _source_run_id(c: Any, mv: Any) -> str:
    """The run that produced the version (for a LoggedModel source, its source run)."""
    if mv.run_id:
        return str(mv.run_id)
    model_id = getattr(mv, "model_id", None)
    if model_id:
        try:
            return str(c.get_logged_model(model_id).source_run_id or "")
        except Exception:  # an older server without logged models: no run to follow
            return ""
    return ""


def _ingestion_nodes(c: Any, pipeline_run: str, data_version: str) -> list[LineageNode]:
    runs = []
    if pipeline_run:
        own = entry_run(stage_runs(c, pipeline_run))
        runs = [own] if own is not None else []
    if not runs and data_version:
        # the data version was made by an earlier pipeline run (nothing new arrived since)
        runs = ingest_runs_for_data_version(c, data_version)
    nodes = []
    for run in runs:
        metrics = {k: int(v) for k, v in run.data.metrics.items() if k in INGEST_METRICS}
        reasons = {
            k.removeprefix("quarantined_"): int(v)
            for k, v in run.data.metrics.items()
            if k.startswith("quarantined_")
        }
        params = run.data.params
        nodes.append(
            LineageNode(
                NodeKind.INGESTION,
                _entry_label(run),
                {
                    "mlflow_run": run.info.run_id,
                    "pipeline_run": run.data.tags.get(TAG_PIPELINE_RUN, ""),
                    **metrics,
                    **({"quarantine_reasons": reasons} if reasons else {}),
                    "deid_profile": params.get("deid_profile", ""),
                    **(
                        {"deid_options": params["deid_options"]} if "deid_options" in params else {}
                    ),
                    "key_fingerprint": params.get("key_fingerprint", ""),
                },
            )
        )
    if not nodes:
        nodes.append(LineageNode(NodeKind.NOTE, "no ingestion run found in MLflow"))
    return nodes


def _entry_label(run: Any) -> str:
    """`ingestion <run>` or `import <datasets> <run>`: how the images entered."""
    params = run.data.params
    ident = params.get("ingest_run", run.info.run_id)
    if run.data.tags.get(TAG_STAGE) == IMPORT_STAGE:
        return " ".join(filter(None, ("import", params.get("datasets"), ident)))
    return f"ingestion {ident}"


def _data_node(
    c: Any, tags: dict[str, str], pipeline_run: str, runs: dict[str, Any]
) -> LineageNode:
    md5 = tags.get(TAG_DATA_VERSION, "")
    if not md5:
        return LineageNode(NodeKind.NOTE, f"no data version ({TAG_DATA_VERSION} missing)")
    split = tags.get(TAG_SPLIT_DIGEST) or (
        runs["split"].data.tags.get(TAG_SPLIT_DIGEST, "") if "split" in runs else ""
    )
    split_attrs: dict[str, Any] = {"digest": split or "unknown"}
    if "split" in runs:
        split_attrs["mlflow_run"] = runs["split"].info.run_id
        split_attrs.update(
            {k: int(v) for k, v in runs["split"].data.metrics.items() if k.startswith("subjects_")}
        )
    attrs: dict[str, Any] = {"md5": md5, "restore": RESTORE_COMMAND.format(md5=md5)}
    if "data_version" in runs:
        dv = runs["data_version"]
        attrs.update({k: v for k, v in dv.data.params.items() if k in ("dvc_remote", "data_path")})
        attrs.update({k: int(v) for k, v in dv.data.metrics.items()})
    children = (
        LineageNode(NodeKind.SPLIT, f"split {split[:12] or 'unknown'}", split_attrs),
        *_ingestion_nodes(c, pipeline_run, md5),
    )
    return LineageNode(NodeKind.DATA_VERSION, f"data {md5[:12]}", attrs, children)


def _parents(tags: dict[str, str]) -> list[ParentModel]:
    parents = [ParentModel.parse(p) for p in tags.get(TAG_PARENTS, "").split(",") if p.strip()]
    if not parents and tags.get(TAG_ENCODER_VERSION):
        parents = [ParentModel(ENCODER_MODEL, tags[TAG_ENCODER_VERSION])]
    return parents


def version_node(c: Any, mv: Any, depth: int = 0) -> LineageNode:
    """The full lineage tree of one ModelVersion."""
    tags = {**_run_tags(c, mv), **dict(mv.tags)}
    run = _get_run(c, _source_run_id(c, mv))
    pipeline_run = tags.get(TAG_PIPELINE_RUN, "")
    runs = stage_runs(c, pipeline_run) if pipeline_run else {}
    params = dict(run.data.params) if run else {}
    pipeline = LineageNode(
        NodeKind.PIPELINE_RUN,
        f"KFP run {pipeline_run or 'unknown'}",
        {
            "kfp_run": pipeline_run or "unknown",
            "stages": {s: r.info.run_id for s, r in sorted(runs.items())},
        },
        (
            LineageNode(
                NodeKind.PARAMETERS,
                f"parameters {tags.get(TAG_PIPELINE_PARAMS, 'unknown')}",
                {"digest": tags.get(TAG_PIPELINE_PARAMS, "unknown"), "params": params},
            ),
            _data_node(c, tags, pipeline_run, runs),
        ),
    )
    run_node = LineageNode(
        NodeKind.MLFLOW_RUN,
        f"MLflow run {run.info.run_id}" if run else "MLflow run unknown",
        {"stage": run.data.tags.get(TAG_STAGE, "")} if run else {},
        (pipeline,),
    )
    commit = tags.get(TAG_GIT_COMMIT, "unknown")
    children: list[LineageNode] = [
        run_node,
        LineageNode(NodeKind.GIT_COMMIT, f"git {commit[:12]}", {"commit": commit}),
    ]
    for parent in _parents(tags):
        if depth >= MAX_DEPTH:
            children.append(LineageNode(NodeKind.NOTE, f"parent {parent} not followed (depth)"))
            continue
        try:
            pmv = c.get_model_version(parent.name, parent.version)
        except Exception:  # a deleted parent is reported, not fatal
            children.append(LineageNode(NodeKind.NOTE, f"parent {parent} not found"))
            continue
        children.append(version_node(c, pmv, depth + 1))
    attrs = {
        "name": mv.name,
        "version": str(mv.version),
        "kind": model_kind(mv.name, tags),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "source": mv.source,
        "deid_profile": tags.get(TAG_DEID_PROFILE, ""),
        "deid_options": tags.get(TAG_DEID_OPTIONS, ""),
        "model_card": tags.get(TAG_MODEL_CARD, ""),
    }
    return LineageNode(
        NodeKind.MODEL_VERSION,
        f"{mv.name}:{mv.version}",
        {k: v for k, v in attrs.items() if v not in ("", [])},
        tuple(children),
    )


def _run_tags(c: Any, mv: Any) -> dict[str, str]:
    """Lineage tags of the version's run: a fallback for versions registered with few tags."""
    run = _get_run(c, _source_run_id(c, mv))
    if run is None:
        return {}
    keep = (TAG_DATA_VERSION, TAG_GIT_COMMIT, TAG_PIPELINE_RUN, TAG_PIPELINE_PARAMS)
    return {k: v for k, v in run.data.tags.items() if k in keep}


def model_lineage(name: str, ref: str, *, client: Any = None) -> LineageNode:
    """Lineage of `name` at `ref` (`@alias` or `:version`) down to data, ingestion and code."""
    c = client or make_client()
    mv = resolve_version(name, ref, c)
    return version_node(c, mv)
