"""Building a card from a registered version (+ its evaluation), attaching it, checking it."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cxrflow.data_terms import binding_terms
from cxrflow.evaluation.evaluate import EvaluationResult
from cxrflow.evaluation.tables import Table
from cxrflow.lineage.model import model_kind
from cxrflow.modelcard import facts
from cxrflow.modelcard.card import ModelCard, safe_hyperparameters
from cxrflow.modelcard.facts import (
    Architecture,
    Compute,
    InputSpec,
    License,
    Provenance,
)
from cxrflow.modelcard.monai import METADATA_NAME
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.runs import stage_runs
from cxrflow.registry.tags import LineageTagsError, ParentModel
from cxrflow.registry.versions import resolve_version, set_description, version_metrics
from cxrflow.tags import (
    ENTRY_STAGES,
    TAG_DATA_SOURCE,
    TAG_DATA_TERMS,
    TAG_DATA_VERSION,
    TAG_DEID_OPTIONS,
    TAG_DEID_PROFILE,
    TAG_DEVICE,
    TAG_ENCODER_VERSION,
    TAG_GIT_COMMIT,
    TAG_MODEL_CARD,
    TAG_PARENTS,
    TAG_PIPELINE_PARAMS,
    TAG_PIPELINE_RUN,
    TAG_SPLIT_DIGEST,
)

log = logging.getLogger(__name__)

CARD_DIR = "model_card"
MARKDOWN_NAME = "README.md"  # the name the Hugging Face Hub reads a card from
JSON_NAME = "model_card.json"
_FAIRNESS_KEYS = ("fairness",)
_COHORT_KEYS = ("table5_cohort",)
# Rendered by the card itself, with counts / majority rates beside the numbers.
_OWN_TABLES = ("table1_classification", "table5_demographics")
# Stages whose runs may record the data's provenance, most specific first.
_PROVENANCE_STAGES = ("data_version", *ENTRY_STAGES, "split", "pretrain")

DESCRIPTIONS = {
    "encoder": "A RAD-DINO-style chest X-ray image encoder trained by cxrflow.",
    "head": "A task head on a frozen cxrflow chest X-ray encoder.",
    "report_generator": "A LLaVA-style chest X-ray report generator (Findings section) on a "
    "frozen cxrflow encoder.",
}


def _evaluation_dict(evaluation: EvaluationResult | Mapping[str, Any] | None) -> dict[str, Any]:
    if evaluation is None:
        return {}
    if isinstance(evaluation, EvaluationResult):
        return json.loads(json.dumps(evaluation.to_dict(), default=str))
    return dict(evaluation)


def _tables(evaluation: Mapping[str, Any]) -> list[Table]:
    return [
        Table(
            t["key"],
            t["title"],
            tuple(t["columns"]),
            tuple(tuple(r) for r in t["rows"]),
            t.get("caption", ""),
        )
        for t in evaluation.get("tables", [])
    ]


def _provenance(declared: str, tags: Mapping[str, str], runs: Mapping[str, Any]) -> Provenance:
    """Synthetic or real, from the first place that records it (none: unknown)."""
    if declared:
        return Provenance.parse(declared, "declared when the card was built")
    if tags.get(TAG_DATA_SOURCE):
        return Provenance.parse(tags[TAG_DATA_SOURCE], f"the version's `{TAG_DATA_SOURCE}` tag")
    for stage in _PROVENANCE_STAGES:
        run = runs.get(stage)
        if run is None:
            continue
        value = run.data.tags.get(TAG_DATA_SOURCE) or run.data.params.get("data_source", "")
        if value:
            return Provenance.parse(value, f"the {stage} stage run's `{TAG_DATA_SOURCE}`")
    return Provenance("unknown")


def _inherited_terms(parents: Iterable[str], client: Any) -> set[str]:
    """The binding data sources recorded on parent versions (`name:version`): weights trained
    from a parent's weights stay bound by the terms of the parent's data."""
    from mlflow.exceptions import MlflowException

    out: set[str] = set()
    for parent in parents:
        try:
            p = ParentModel.parse(parent)
            recorded = client.get_model_version(p.name, p.version).tags.get(TAG_DATA_TERMS, "")
        except (LineageTagsError, MlflowException):
            log.warning("parent %s not in the registry: its data terms are not known", parent)
            continue
        out.update(s for s in recorded.split(",") if s.strip())
    return out


def count_parameters(cfg: Any) -> int:
    """Backbone parameters of a `ViTConfig`, built on the meta device (no memory, no weights)."""
    import torch

    from cxrflow.models.vit import DinoViT

    with torch.device("meta"):
        model = DinoViT(cfg)
    return sum(p.numel() for p in model.parameters())


def _named_size(embed_dim: int, depth: int, heads: int) -> str:
    from cxrflow.models.config import NAMED_SIZES

    dims = {"embed_dim": embed_dim, "depth": depth, "num_heads": heads}
    return next((n for n, d in NAMED_SIZES.items() if d == dims), f"vit_{embed_dim}x{depth}")


def _hf_export(name: str, version: str, dst: Path) -> Path | None:
    """The version's Hugging Face export configs (config + preprocessor), downloaded; or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    base = f"models:/{name}/{version}/artifacts"
    try:
        folders = [a.path for a in mlflow.artifacts.list_artifacts(artifact_uri=base) if a.is_dir]
        if not folders:
            return None
        for file in ("config.json", "preprocessor_config.json"):
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}/{folders[0]}/{file}", dst_path=str(dst)
            )
        return dst / folders[0]
    except (MlflowException, OSError) as exc:
        # a version registered from a plain folder has no pyfunc export: fall back to params
        log.info("no Hugging Face export readable in %s:%s (%s)", name, version, exc)
        return None


def _export_spec(name: str, version: str, dst: Path) -> tuple[Architecture, InputSpec] | None:
    """Architecture and input spec from the registered Hugging Face export, if it has one."""
    export = _hf_export(name, version, dst)
    if export is None:
        return None

    from transformers import AutoConfig

    from cxrflow.models.hf import vit_config_from_hf
    from cxrflow.models.preprocessing import read_preprocessing

    try:
        cfg = vit_config_from_hf(AutoConfig.from_pretrained(export))
        prep = read_preprocessing(export)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("the registered export's configs are unreadable: %s", exc)
    else:
        where = "the registered Hugging Face export (config.json, preprocessor_config.json)"
        return _architecture(cfg, where), InputSpec(
            prep.image_size, 3, prep.mean, prep.std, evidence=where
        )
    return None


def _encoder_spec(
    name: str, version: str, params: Mapping[str, str]
) -> tuple[Architecture | None, InputSpec | None]:
    """Architecture and input spec: from the registered export, else from the run's params."""
    from cxrflow.models.config import ViTConfig

    with tempfile.TemporaryDirectory(prefix="cxrflow-card-") as tmp:
        found = _export_spec(name, version, Path(tmp))
    if found is not None:
        return found
    if "model" not in params:
        return None, None
    try:
        cfg = ViTConfig.named(
            params["model"],
            img_size=int(params.get("image_size", 518)),
            patch_size=int(params.get("patch_size", 14)),
            num_register_tokens=int(params.get("num_register_tokens", 0)),
        )
    except (ValueError, TypeError) as exc:
        log.warning("architecture not derivable from the run's parameters: %s", exc)
        return None, None
    where = "the pre-training run's parameters (model, image_size, patch_size)"
    return _architecture(cfg, where), InputSpec(
        cfg.img_size,
        3,
        evidence=where + "; mean/std live in the export's preprocessor_config.json",
    )


def _architecture(cfg: Any, evidence: str) -> Architecture:
    return Architecture(
        name=_named_size(cfg.embed_dim, cfg.depth, cfg.num_heads),
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        num_register_tokens=cfg.num_register_tokens,
        parameters=count_parameters(cfg),
        evidence=evidence,
    )


def _compute(run: Any, params: Mapping[str, str]) -> Compute:
    """Device, steps, batch and the stage run's wall time, as the pre-training run recorded."""
    if run is None:
        return Compute()
    start, end = run.info.start_time, run.info.end_time
    wall = (end - start) / 1000 if start and end and end >= start else None

    def integer(key: str) -> int | None:
        try:
            return int(params[key])
        except (KeyError, ValueError):
            return None

    device = run.data.tags.get(TAG_DEVICE) or params.get("device") or "not recorded"
    return Compute(device, integer("steps"), integer("batch_size"), wall, params.get("amp", ""))


def build_model_card(
    name: str,
    ref: str,
    *,
    evaluation: EvaluationResult | Mapping[str, Any] | None = None,
    license: License | str | None = None,
    tags: Iterable[str] = ("chest-x-ray", "radiology", "dinov2", "rad-dino", "cxrflow"),
    limitations: Iterable[str] = (),
    data_source: str = "",
    client: Any = None,
) -> ModelCard:
    """A card for `name` at `ref` (`@alias` or `:version`) from its tags, runs and evaluation.

    `data_source` (`synthetic[:name]` / `real[:name]`) declares the data's provenance when no
    stage recorded it; otherwise the `cxrflow.data_source` tag of the pipeline's stages is read.
    `license` None: the project's, unless the data's terms bind the weights
    (`facts.weights_license`).
    """
    c = client or make_client()
    mv = resolve_version(name, ref, c)
    t = dict(mv.tags)
    params: dict[str, str] = {}
    run = None
    if mv.run_id:
        run = c.get_run(mv.run_id)
        params = dict(run.data.params)
        t = {**{k: v for k, v in run.data.tags.items() if k.startswith("cxrflow.")}, **t}
    runs = stage_runs(c, t[TAG_PIPELINE_RUN]) if t.get(TAG_PIPELINE_RUN) else {}
    ev = _evaluation_dict(evaluation)
    metrics = {k: float(v) for k, v in ev.get("metrics", {}).items()} or version_metrics(mv, c)
    tables = _tables(ev)
    cohort = next((x.to_dict() for x in tables if x.key in _COHORT_KEYS), None)
    classification = tuple(facts.classification_results(metrics))
    demographics = tuple(facts.demographic_probes(metrics, cohort))
    own = {
        k for k, present in zip(_OWN_TABLES, (classification, demographics), strict=True) if present
    }
    parents = [p for p in t.get(TAG_PARENTS, "").split(",") if p.strip()]
    if not parents and t.get(TAG_ENCODER_VERSION):
        parents = [f"cxrflow-encoder:{t[TAG_ENCODER_VERSION]}"]
    kind = model_kind(name, t)
    arch, spec = _encoder_spec(name, str(mv.version), params) if kind == "encoder" else (None, None)
    provenance = _provenance(data_source, t, runs)
    bound = set(binding_terms(provenance.sources)) | _inherited_terms(parents, c)
    data_terms = tuple(sorted(bound))
    return ModelCard(
        name=name,
        version=str(mv.version),
        kind=kind,
        description=DESCRIPTIONS.get(kind, "A cxrflow model."),
        license=license if license is not None else facts.weights_license(data_terms),
        tags=tuple(tags),
        data_version=t.get(TAG_DATA_VERSION, "unknown"),
        split_digest=t.get(TAG_SPLIT_DIGEST, "unknown"),
        deid_profile=t.get(TAG_DEID_PROFILE, "not recorded"),
        deid_options=json.loads(t.get(TAG_DEID_OPTIONS) or "{}"),
        git_commit=t.get(TAG_GIT_COMMIT, "unknown"),
        pipeline_run=t.get(TAG_PIPELINE_RUN, "unknown"),
        pipeline_params_digest=t.get(TAG_PIPELINE_PARAMS, "unknown"),
        parents=tuple(parents),
        aliases=tuple(getattr(mv, "aliases", []) or []),
        hyperparameters=safe_hyperparameters(params),
        metrics=metrics,
        tables=tuple(
            x for x in tables if x.key not in _FAIRNESS_KEYS + _COHORT_KEYS and x.key not in own
        ),
        fairness_tables=tuple(x for x in tables if x.key in _FAIRNESS_KEYS),
        cohort_tables=tuple(x for x in tables if x.key in _COHORT_KEYS),
        limitations=tuple(limitations),
        provenance=provenance,
        init=facts.initialisation(t) if kind == "encoder" else facts.Initialisation(),
        architecture=arch,
        input_spec=spec,
        compute=_compute(run, params) if kind == "encoder" else Compute(),
        classification=classification,
        demographics=demographics,
        report=tuple(facts.report_results(ev)),
        fairness=tuple(facts.fairness_results(ev)),
        evaluation_notes=tuple(str(n) for n in ev.get("notes", [])),
        data_terms=data_terms,
    )


def write_model_card(
    card: ModelCard,
    markdown_path: Path,
    json_path: Path | None = None,
    metadata_path: Path | None = None,
) -> Path:
    """Write the Markdown (e.g. to a KFP Markdown output's path) and, if asked, the JSONs."""
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(card.to_markdown(), encoding="utf-8")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(card.to_json(), encoding="utf-8")
    if metadata_path is not None:
        metadata_path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(card.monai_metadata(), indent=2, default=str) + "\n"
        metadata_path.write_text(text, encoding="utf-8")
    return markdown_path


def attach_model_card(card: ModelCard, *, client: Any = None) -> str:
    """Log the card (+ JSON, MONAI metadata) on the version's run; make it the description."""
    c = client or make_client()
    mv = c.get_model_version(card.name, card.version)
    if not mv.run_id:
        raise ValueError(f"{card.name}:{card.version} has no run to attach a card to")
    folder = f"{CARD_DIR}/{card.name}-v{card.version}"
    with tempfile.TemporaryDirectory() as tmp:
        files = (Path(tmp) / MARKDOWN_NAME, Path(tmp) / JSON_NAME, Path(tmp) / METADATA_NAME)
        write_model_card(card, *files)
        for path in files:
            c.log_artifact(mv.run_id, str(path), folder)
    uri = f"runs:/{mv.run_id}/{folder}/{MARKDOWN_NAME}"
    c.set_model_version_tag(card.name, card.version, TAG_MODEL_CARD, uri)
    if card.data_terms:  # what a model continued from this one inherits
        c.set_model_version_tag(card.name, card.version, TAG_DATA_TERMS, ",".join(card.data_terms))
    body = card.hf_card().text.strip() + "\n"  # without its YAML: what the registry UI shows
    set_description(card.name, card.version, body, full_text_uri=uri, client=c)
    log.info("model card of %s:%s attached at %s", card.name, card.version, uri)
    return uri


def find_phi(text: str, values: Iterable[str], min_length: int = 4) -> list[str]:
    """The identifying values (e.g. a phantom's `phi_values`) that occur in `text`.

    Values shorter than `min_length` are skipped: two-letter initials occur in any prose.
    """
    low = text.lower()
    return sorted({v for v in values if len(v) >= min_length and v.lower() in low})
