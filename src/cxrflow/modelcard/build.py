"""Building a card from a registered version (+ its evaluation), attaching it, checking it."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cxrflow.evaluation.evaluate import EvaluationResult
from cxrflow.evaluation.tables import Table
from cxrflow.lineage.model import model_kind
from cxrflow.modelcard.card import ModelCard, safe_hyperparameters
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.versions import resolve_version, version_metrics
from cxrflow.tags import (
    TAG_DATA_VERSION,
    TAG_DEID_OPTIONS,
    TAG_DEID_PROFILE,
    TAG_ENCODER_VERSION,
    TAG_GIT_COMMIT,
    TAG_INIT_FROM,
    TAG_INIT_PREFIX,
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

DESCRIPTIONS = {
    "encoder": "A RAD-DINO-style chest X-ray image encoder (ViT, DINOv2 continual "
    "self-supervised pre-training) trained by cxrflow.",
    "head": "A task head on a frozen cxrflow chest X-ray encoder.",
    "report_generator": "A LLaVA-style chest X-ray report generator (Findings section) on a "
    "frozen cxrflow encoder.",
}


def _tables(evaluation: EvaluationResult | dict | None) -> tuple[list[Table], dict[str, float]]:
    if evaluation is None:
        return [], {}
    if isinstance(evaluation, EvaluationResult):
        return list(evaluation.tables), dict(evaluation.metrics)
    tables = [
        Table(
            t["key"],
            t["title"],
            tuple(t["columns"]),
            tuple(tuple(r) for r in t["rows"]),
            t.get("caption", ""),
        )
        for t in evaluation.get("tables", [])
    ]
    return tables, {k: float(v) for k, v in evaluation.get("metrics", {}).items()}


def build_model_card(
    name: str,
    ref: str,
    *,
    evaluation: EvaluationResult | dict | None = None,
    license: str = "other",
    tags: Iterable[str] = ("chest-x-ray", "radiology", "dinov2", "rad-dino", "cxrflow"),
    limitations: Iterable[str] = (),
    client: Any = None,
) -> ModelCard:
    """A card for `name` at `ref` (`@alias` or `:version`) from its tags, run and evaluation."""
    c = client or make_client()
    mv = resolve_version(name, ref, c)
    t = dict(mv.tags)
    params: dict[str, str] = {}
    if mv.run_id:
        run = c.get_run(mv.run_id)
        params = dict(run.data.params)
        t = {**{k: v for k, v in run.data.tags.items() if k.startswith("cxrflow.")}, **t}
    tables, eval_metrics = _tables(evaluation)
    parents = [p for p in t.get(TAG_PARENTS, "").split(",") if p.strip()]
    if not parents and t.get(TAG_ENCODER_VERSION):
        parents = [f"cxrflow-encoder:{t[TAG_ENCODER_VERSION]}"]
    kind = model_kind(name, t)
    return ModelCard(
        name=name,
        version=str(mv.version),
        kind=kind,
        description=DESCRIPTIONS.get(kind, "A cxrflow model."),
        license=license,
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
        metrics=eval_metrics or version_metrics(mv, c),
        tables=tuple(x for x in tables if x.key not in _FAIRNESS_KEYS + _COHORT_KEYS),
        fairness_tables=tuple(x for x in tables if x.key in _FAIRNESS_KEYS),
        cohort_tables=tuple(x for x in tables if x.key in _COHORT_KEYS),
        limitations=tuple(limitations),
        initialisation=_initialisation(t) if kind == "encoder" else {},
    )


def _initialisation(tags: dict[str, str]) -> dict[str, str]:
    """The encoder's start as recorded by the pre-training stage (no file names or paths)."""
    out = {"init": tags[TAG_INIT_FROM]} if TAG_INIT_FROM in tags else {}
    for key, value in tags.items():
        name = key.removeprefix(TAG_INIT_PREFIX)
        if key.startswith(TAG_INIT_PREFIX) and name != "file" and "/" not in value:
            out[name] = value
    return out


def write_model_card(card: ModelCard, markdown_path: Path, json_path: Path | None = None) -> Path:
    """Write the Markdown (e.g. to a KFP Markdown output's path) and, if asked, the JSON."""
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(card.to_markdown(), encoding="utf-8")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(card.to_json(), encoding="utf-8")
    return markdown_path


def attach_model_card(card: ModelCard, *, client: Any = None) -> str:
    """Log the card on the version's run and tag the version with its artifact URI."""
    c = client or make_client()
    mv = c.get_model_version(card.name, card.version)
    if not mv.run_id:
        raise ValueError(f"{card.name}:{card.version} has no run to attach a card to")
    with tempfile.TemporaryDirectory() as tmp:
        md = write_model_card(card, Path(tmp) / MARKDOWN_NAME, Path(tmp) / JSON_NAME)
        folder = f"{CARD_DIR}/{card.name}-v{card.version}"
        c.log_artifact(mv.run_id, str(md), folder)
        c.log_artifact(mv.run_id, str(Path(tmp) / JSON_NAME), folder)
    uri = f"runs:/{mv.run_id}/{folder}/{MARKDOWN_NAME}"
    c.set_model_version_tag(card.name, card.version, TAG_MODEL_CARD, uri)
    log.info("model card of %s:%s attached at %s", card.name, card.version, uri)
    return uri


def find_phi(text: str, values: Iterable[str], min_length: int = 4) -> list[str]:
    """The identifying values (e.g. a phantom's `phi_values`) that occur in `text`.

    Values shorter than `min_length` are skipped: two-letter initials occur in any prose.
    """
    low = text.lower()
    return sorted({v for v in values if len(v) >= min_length and v.lower() in low})
