"""Scoring a trained report generator on the test split beside two baselines (Table 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from cxrflow.report.baselines import most_frequent_report, nearest_neighbour_reports, pool_tokens
from cxrflow.report.config import ReportConfig
from cxrflow.report.data import ReportRows, findings_text, load_image
from cxrflow.report.generate import encode_images, generate_reports, load_pixels
from cxrflow.report.metrics import ReportMetrics, compute_metrics
from cxrflow.report.model import CxrLlavaForConditionalGeneration, num_prefix_tokens
from cxrflow.report.table import table_markdown

# The systems of Table 2 and the prefix of their metrics in MLflow.
METRIC_PREFIXES: dict[str, str] = {
    "LLaVA": "test_",
    "Most frequent report": "baseline_most_frequent_",
    "Nearest neighbour (mean patch, cosine)": "baseline_nearest_",
}


@dataclass(frozen=True)
class ScoredReports:
    """Metrics of the model and the baselines, the generated reports and Table 2."""

    metrics: dict[str, ReportMetrics]
    samples: pd.DataFrame
    table_markdown: str


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
    metrics = {
        "LLaVA": compute_metrics(generated, references, **options),
        "Most frequent report": compute_metrics(
            [frequent] * len(references), references, **options
        ),
        "Nearest neighbour (mean patch, cosine)": compute_metrics(nearest, references, **options),
    }
    md = table_markdown(
        metrics, model.image_preprocessing.image_size, model.image_seq_length, len(references)
    )
    samples = pd.DataFrame(
        {
            "image_id": test_rows.rows["image_id"],
            "reference": references,
            "generated": generated,
            "nearest_neighbour": nearest,
        }
    )
    return ScoredReports(metrics, samples, md)
