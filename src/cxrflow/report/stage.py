"""The report-generation stage: fine-tune, generate on the test split, evaluate, register."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cxrflow.registry.versions import register_stage_model
from cxrflow.report.baselines import most_frequent_report, nearest_neighbour_reports, pool_tokens
from cxrflow.report.config import ReportConfig
from cxrflow.report.data import (
    ReportDataset,
    findings_text,
    load_image,
    prompt_text,
    read_report_rows,
)
from cxrflow.report.generate import encode_images, generate_reports, load_pixels
from cxrflow.report.metrics import ReportMetrics, compute_metrics
from cxrflow.report.model import (
    CxrLlavaForConditionalGeneration,
    build_report_model,
    load_lm,
    load_report_model,
    num_prefix_tokens,
)
from cxrflow.report.tokenizer import small_llama_for, train_bpe_tokenizer
from cxrflow.report.train import TrainResult, train_report_model
from cxrflow.tracking import (
    TAG_DATA_VERSION,
    TAG_ENCODER_VERSION,
    TAG_PIPELINE_RUN,
    params_digest,
    stage_run,
)

log = logging.getLogger(__name__)

REGISTERED_MODEL = "cxrflow-report-generator"
TABLE_FILE = "report_table.md"
METRICS_FILE = "report_metrics.json"
SAMPLES_FILE = "report_samples.parquet"


@dataclass(frozen=True)
class ReportStageOutput:
    """What the stage produced: metrics of the model and baselines, files, MLflow ids."""

    metrics: dict[str, ReportMetrics]
    train: TrainResult
    model_dir: Path
    table_markdown: str
    samples: pd.DataFrame
    mlflow_run_id: str
    model_uri: str
    model_version: str


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


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


def small_lm_for_reports(
    train_reports: list[str], config: ReportConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A random small Llama and a BPE tokenizer learnt on the training Findings texts.

    The prompt is in the tokenizer's corpus too, so that it compresses to few tokens.
    """
    texts = [findings_text(r) for r in train_reports] + [prompt_text()]
    tokenizer = train_bpe_tokenizer(texts, config.vocab_size)
    lm = small_llama_for(
        tokenizer,
        hidden_size=config.lm_hidden_size,
        layers=config.lm_layers,
        heads=config.lm_heads,
        max_position_embeddings=config.max_length,
    )
    return lm, tokenizer


def _status(score: object) -> str:
    """A metric's reason for not being computed, or "computed"."""
    return getattr(score, "reason", "computed")


def table_markdown(
    metrics: dict[str, ReportMetrics], image_size: int, image_tokens: int, n: int
) -> str:
    """Table 2-style Markdown: median [95% interval] over bootstrap resamples, 0-100."""
    lines = [
        f"# Report generation (test split, N = {n})",
        "",
        "| Model | Input resolution | # of tokens | ROUGE-L | BLEU-4 | RG_ER | Finding F1 "
        "(rule-based) | CheXbert Macro-F1-14 |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for name, m in metrics.items():
        size = f"{image_size} x {image_size}" if name == "LLaVA" else "-"
        tokens = str(image_tokens) if name == "LLaVA" else "-"
        lines.append(
            f"| {name} | {size} | {tokens} | {m.rouge_l} | {m.bleu4} | {m.radgraph} | "
            f"{m.finding_f1} | {m.chexbert_f1} |"
        )
    first = next(iter(metrics.values()))
    lines += [
        "",
        "Median and 95% interval over "
        f"{first.rouge_l.n_bootstrap} bootstrap resamples of the test reports. ROUGE-L: "
        "`rouge_score` F-measure; BLEU-4: `sacrebleu` corpus BLEU (13a, exp smoothing). "
        "Finding F1: macro-F1 of a rule-based labeler with negation over the findings "
        "present in the references, an offline stand-in for CheXbert (not comparable in value).",
        f"RG_ER: {_status(first.radgraph)}. CheXbert: {_status(first.chexbert_f1)}.",
    ]
    return "\n".join(lines) + "\n"


def run_report_stage(
    data_dir: Path,
    encoder_dir: Path,
    *,
    lm_dir: Path | None,
    data_version: str,
    encoder_version: str = "",
    config: ReportConfig,
    out_dir: Path,
    pipeline_run: str = "",
    chexbert_path: Path | None = None,
    radgraph_path: Path | None = None,
    registered_model: str = REGISTERED_MODEL,
) -> ReportStageOutput:
    """Train on the train split, generate for the test split, compare with baselines, log."""
    data_dir, encoder_dir, out_dir = Path(data_dir), Path(encoder_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_rows = read_report_rows(data_dir, "train", config.max_train_samples)
    test_rows = read_report_rows(data_dir, "test", config.max_eval_samples)
    if train_rows.rows.empty or test_rows.rows.empty:
        raise ValueError(f"{data_dir}: no frontal images with Findings in the train or test split")
    torch.manual_seed(config.seed)
    if lm_dir is not None:
        lm, tokenizer = load_lm(lm_dir)
    else:
        lm, tokenizer = small_lm_for_reports(list(train_rows.rows["report"]), config)
    model = build_report_model(encoder_dir, lm, tokenizer)
    train_set = ReportDataset.from_rows(
        data_dir,
        train_rows.rows,
        tokenizer,
        model.image_preprocessing,
        model.image_seq_length,
        config.max_length,
        config.cache_images,
    )
    tags = {
        TAG_DATA_VERSION: data_version,
        TAG_ENCODER_VERSION: encoder_version,
        TAG_PIPELINE_RUN: pipeline_run,
    }
    main = _is_main_process()
    run_ctx = stage_run("report", pipeline_run, tags=tags) if main else contextlib.nullcontext()
    with run_ctx as run:
        import mlflow

        if main:
            mlflow.log_params(
                {
                    **config.to_dict(),
                    "lm": str(lm_dir or "small-llama"),
                    "encoder": encoder_version,
                    "train_images": len(train_set),
                    "test_images": len(test_rows.rows),
                    "answers_truncated": train_set.truncated,
                    **{f"excluded_train_{k}": v for k, v in train_rows.excluded.items()},
                    **{f"excluded_test_{k}": v for k, v in test_rows.excluded.items()},
                }
            )
        result = train_report_model(model, tokenizer, train_set, config, out_dir)
        if not main:
            raise SystemExit(0)  # evaluation and registration happen on rank 0 only
        del model
        model, tokenizer = load_report_model(result.model_dir)  # what is registered is evaluated
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
            "Nearest neighbour (mean patch, cosine)": compute_metrics(
                nearest, references, **options
            ),
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
        prefixes = {
            "LLaVA": "test_",
            "Most frequent report": "baseline_most_frequent_",
            "Nearest neighbour (mean patch, cosine)": "baseline_nearest_",
        }
        for name, m in metrics.items():
            mlflow.log_metrics(m.flat(prefixes[name]))
        mlflow.log_metrics(
            {
                "train_tokens_per_second": result.tokens_per_second,
                "train_runtime_s": result.train_runtime,
            }
        )
        mlflow.log_table(samples.head(config.sample_table_rows), "report_samples.json")
        mlflow.log_text(md, TABLE_FILE)
        metrics_json = {k: v.to_dict() for k, v in metrics.items()}
        mlflow.log_dict(metrics_json, METRICS_FILE)
        model_uri, version = _log_and_register(result.model_dir, registered_model, tags, config)
        (out_dir / TABLE_FILE).write_text(md)
        (out_dir / METRICS_FILE).write_text(json.dumps(metrics_json, indent=2, default=str))
        samples.to_parquet(out_dir / SAMPLES_FILE, index=False)
        run_id = run.info.run_id
    log.info("report stage done:\n%s", md)
    return ReportStageOutput(
        metrics=metrics,
        train=result,
        model_dir=result.model_dir,
        table_markdown=md,
        samples=samples,
        mlflow_run_id=run_id,
        model_uri=model_uri,
        model_version=version,
    )


def _log_and_register(
    model_dir: Path, name: str, tags: dict[str, str], config: ReportConfig
) -> tuple[str, str]:
    """Log the saved model as an MLflow pyfunc and register a version tagged with lineage."""
    import mlflow

    from cxrflow.report.pyfunc import MODEL_ARTIFACT, ReportGeneratorModel

    info = mlflow.pyfunc.log_model(
        name="report_generator",
        python_model=ReportGeneratorModel(config.max_new_tokens, config.generation_batch_size),
        artifacts={MODEL_ARTIFACT: str(model_dir)},
        pip_requirements=["cxrflow"],  # the project image carries the exact pins
    )
    version = register_stage_model(
        info.model_uri,
        name,
        "report_generator",
        pipeline_run=tags.get(TAG_PIPELINE_RUN, ""),
        params_digest=params_digest(config.to_dict()),
        tags=tags,
    )
    return info.model_uri, version
