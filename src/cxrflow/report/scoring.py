"""Scoring a trained report generator on the test split beside two baselines (Table 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from cxrflow.evaluation.report_results import report_results_json
from cxrflow.models.preprocessing import load_image
from cxrflow.report.baselines import most_frequent_report, nearest_neighbour_reports, pool_tokens
from cxrflow.report.config import ReportConfig
from cxrflow.report.data import ReportRows, findings_text
from cxrflow.report.generate import encode_images, generate_reports, load_pixels
from cxrflow.report.metrics import (
    PerReportScores,
    ReportMetrics,
    compute_metrics,
    metrics_from_scores,
    per_report_scores,
)
from cxrflow.report.model import CxrLlavaForConditionalGeneration, num_prefix_tokens
from cxrflow.report.table import table_markdown

# The systems of Table 2 and the prefix of their metrics in MLflow.
METRIC_PREFIXES: dict[str, str] = {
    "LLaVA": "test_",
    "Most frequent report": "baseline_most_frequent_",
    "Nearest neighbour (mean patch, cosine)": "baseline_nearest_",
}
# Per-image columns of the samples table, scored against the reference like Table 2.
PER_IMAGE_COLUMNS = ("rouge_l", "bleu4_sentence")
FINDINGS_SEPARATOR = "; "


@dataclass(frozen=True)
class ScoredReports:
    """Metrics of the model and the baselines, the generated reports and Table 2.

    `samples` has a row per test image: image_id, reference, generated, nearest_neighbour, the
    model's rouge_l (0-100, Table 2's definition) and bleu4_sentence, and the findings the
    labeler reads in each (generated_findings, reference_findings: "; "-joined).
    """

    metrics: dict[str, ReportMetrics]
    samples: pd.DataFrame
    table_markdown: str

    def results_json(self, max_samples: int) -> dict[str, Any]:
        """`report_metrics.json`: Table 2's systems, per-image scores and `max_samples` samples."""
        return results_json(self.metrics, self.samples, max_samples)


def samples_frame(
    image_ids: list[str],
    references: list[str],
    generated: list[str],
    nearest: list[str],
    scores: PerReportScores,
) -> pd.DataFrame:
    """The samples table: texts and the model's per-image scores and findings."""
    generated_findings, reference_findings = scores.positive_findings()
    return pd.DataFrame(
        {
            "image_id": [str(i) for i in image_ids],
            "reference": references,
            "generated": generated,
            "nearest_neighbour": nearest,
            "rouge_l": scores.rouge_l,
            "bleu4_sentence": scores.sentence_bleu(),
            "generated_findings": [FINDINGS_SEPARATOR.join(f) for f in generated_findings],
            "reference_findings": [FINDINGS_SEPARATOR.join(f) for f in reference_findings],
        }
    )


def results_json(
    metrics: dict[str, ReportMetrics], samples: pd.DataFrame, max_samples: int
) -> dict[str, Any]:
    """Table 2's systems (the model first) with the model's per-image scores of every test
    image, its finding labels and the first `max_samples` generated-vs-reference samples.

    The samples are de-identified data only: the pseudonymous image id, the de-identified
    reference's Findings text and the generated text (no path, subject or study).
    """
    ids = samples["image_id"].astype(str)
    per_image = {
        c: dict(zip(ids, samples[c].astype(float), strict=True))
        for c in PER_IMAGE_COLUMNS
        if c in samples
    }
    labels = {
        side: {
            i: [f for f in str(v).split(FINDINGS_SEPARATOR) if f]
            for i, v in zip(ids, samples[f"{side}_findings"], strict=True)
        }
        for side in ("generated", "reference")
        if f"{side}_findings" in samples
    }
    columns = ["image_id", "reference", "generated", "reference_findings", "generated_findings"]
    head = samples.head(max_samples)
    shown = [
        {k: str(v) for k, v in row.items()}
        for row in head[[c for c in columns if c in head]].to_dict("records")
    ]
    return report_results_json(
        {name: m.to_dict() for name, m in metrics.items()},
        samples=shown,
        per_image=per_image,
        finding_labels=labels,
    )


@torch.no_grad()
def _embeddings(
    model: CxrLlavaForConditionalGeneration, paths: list[Path], batch_size: int
) -> torch.Tensor:
    """Mean-patch embeddings of images (for the nearest-neighbour baseline), streamed."""
    out = []
    for start in range(0, len(paths), batch_size):
        pixels = torch.stack(
            [load_image(p, model.image_preprocessing) for p in paths[start : start + batch_size]]
        )
        tokens = model.model.vision_features(pixels.to(model.device), strategy="full")
        out.append(pool_tokens(tokens, "mean", num_prefix_tokens(model.config.vision_config)).cpu())
    return torch.cat(out)


def score_on_test_split(
    model: CxrLlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: Path,
    train_rows: ReportRows,
    test_rows: ReportRows,
    config: ReportConfig,
    *,
    chexbert_path: Path | None = None,
    radgraph_path: Path | None = None,
) -> ScoredReports:
    """Generate a report for every test image; score it and the two baselines."""
    paths = [data_dir / p for p in test_rows.rows["image_path"]]
    references = [findings_text(r) for r in test_rows.rows["report"]]
    pixels = load_pixels(model, paths)
    if config.precompute_image_features:
        features = encode_images(model, pixels, config.generation_batch_size)
        generated = generate_reports(
            model,
            tokenizer,
            image_features=features,
            batch_size=config.generation_batch_size,
            max_new_tokens=config.max_new_tokens,
        )
        test_embeddings = features.mean(dim=1)  # mean of the patch tokens, as _embeddings
    else:
        generated = generate_reports(
            model,
            tokenizer,
            pixel_values=pixels,
            batch_size=config.generation_batch_size,
            max_new_tokens=config.max_new_tokens,
        )
        test_embeddings = _embeddings(model, paths, config.generation_batch_size)
    train_reports = list(train_rows.rows["report"])
    train_embeddings = _embeddings(
        model,
        [data_dir / p for p in train_rows.rows["image_path"]],
        config.generation_batch_size,
    )
    frequent = most_frequent_report(train_reports)
    nearest = nearest_neighbour_reports(test_embeddings, train_embeddings, train_reports)
    options = {
        "n_bootstrap": config.n_bootstrap,
        "seed": config.seed,
        "chexbert_path": chexbert_path,
        "radgraph_path": radgraph_path,
    }
    scores = per_report_scores(generated, references)
    metrics = {
        "LLaVA": metrics_from_scores(scores, **options),
        "Most frequent report": compute_metrics(
            [frequent] * len(references), references, **options
        ),
        "Nearest neighbour (mean patch, cosine)": compute_metrics(nearest, references, **options),
    }
    md = table_markdown(
        metrics, model.image_preprocessing.image_size, model.image_seq_length, len(references)
    )
    samples = samples_frame(
        list(test_rows.rows["image_id"]), references, generated, nearest, scores
    )
    return ScoredReports(metrics, samples, md)
