"""The report-generation stage: fine-tune, generate on the test split, evaluate, register.

Every process of a distributed run calls `run` with the same parameters (alone, under torchrun,
or under mpirun as the Trainer's DeepSpeed runtime starts it): all ranks train through the
Hugging Face Trainer; rank 0 also generates, scores, logs and registers, and returns the
`Result` (other ranks return None once training is done).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cxrflow.dataset import Dataset
from cxrflow.evaluation.report_results import REPORT_TASK, not_run_json
from cxrflow.registry.versions import register_stage_model
from cxrflow.report.config import ReportConfig
from cxrflow.report.data import ReportDataset, read_report_rows
from cxrflow.report.metrics import ReportMetrics
from cxrflow.report.model import build_report_model, load_lm, load_report_model
from cxrflow.report.scoring import METRIC_PREFIXES, score_on_test_split
from cxrflow.report.small_lm import small_lm_for_reports
from cxrflow.report.train import TrainResult, train_report_model
from cxrflow.stages.contract import param, pick, write_json_atomic
from cxrflow.tags import (
    REPORT_MODEL,
    TAG_DATA_VERSION,
    TAG_ENCODER_VERSION,
    TAG_NOT_RUN_PREFIX,
    TAG_PIPELINE_RUN,
)
from cxrflow.tracking import params_digest, stage_run

log = logging.getLogger(__name__)

NO_REPORTS = "no frontal image in the train or test split has Findings text"

REGISTERED_MODEL = REPORT_MODEL
TABLE_FILE = "report_table.md"
METRICS_FILE = "report_metrics.json"
SAMPLES_FILE = "report_samples.parquet"


@dataclass(frozen=True)
class Params:
    """Fine-tune a LLaVA-style report generator (projector + LM) on the frozen encoder."""

    data_dir: Path = param(help="Dataset directory with reports and a split.")
    encoder_dir: Path = param(help="Hugging Face DINOv2 directory: the frozen vision tower.")
    out_dir: Path = param(help="Where the model, metrics and samples go.")
    data_version: str = param("", help="Data version (DVC md5) for lineage.")
    encoder_version: str = param("", help="Registered encoder version, for lineage.")
    preset: str = param("tiny", help="Report preset: tiny or paper.")
    lm_dir: Path | None = param(
        None,
        help="Local Llama-family Hugging Face directory or .gguf file (empty: a small Llama "
        "built from config with a tokenizer trained on the training reports).",
    )
    steps: int = param(0, help="Training steps; 0 keeps the preset's length.")
    deepspeed: str = param(
        "", help="DeepSpeed ZeRO config: zero2, zero3 or a JSON path (empty: the preset's)."
    )
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")

    def config(self) -> ReportConfig:
        """The preset, `steps` > 0 as max_steps, `deepspeed` if set."""
        overrides: dict[str, Any] = {}
        if self.steps > 0:
            overrides["max_steps"] = self.steps
        if self.deepspeed:
            overrides["deepspeed"] = self.deepspeed
        return ReportConfig.named(self.preset, **overrides)

    @classmethod
    def in_runs_dir(
        cls, runs_dir: Path, values: Mapping[str, Any] | None = None, /, **more: Any
    ) -> Params:
        """The parameters with `out_dir` the run's folder under `runs_dir` (data version,
        encoder version, preset)."""
        params = pick(cls, {**(values or {}), **more}, out_dir=".")  # typed, validated
        name = (
            f"report-{params.data_version[:12]}-{params.encoder_version or 'local'}-{params.preset}"
        )
        return replace(params, out_dir=Path(runs_dir) / name)


@dataclass(frozen=True)
class Result:
    """What the stage produced: metrics of the model and baselines, files, MLflow ids."""

    metrics: dict[str, ReportMetrics]
    train: TrainResult
    model_dir: Path
    table_markdown: str
    samples: pd.DataFrame
    mlflow_run_id: str
    model_uri: str
    model_version: str
    results: Path  # report_metrics.json: what the evaluation stage reads (with per-image scores)

    def to_json(self) -> dict[str, Any]:
        """The parts another process needs (the launcher reads them from the shared volume)."""
        return {
            "model_dir": str(self.model_dir),
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "mlflow_run_id": self.mlflow_run_id,
            "results": str(self.results),
            "table_markdown": self.table_markdown,
        }


@dataclass(frozen=True)
class NotRun:
    """The stage had nothing to train on: why, its MLflow run, and the results file that says
    so to the evaluation."""

    reason: str
    mlflow_run_id: str
    results: Path

    @property
    def table_markdown(self) -> str:
        return f"# Report generation\n\nNot trained: {self.reason}.\n"

    def to_json(self) -> dict[str, Any]:
        """The same keys as `Result.to_json`, with no model."""
        return {
            "model_dir": "",
            "model_version": "",
            "model_uri": "",
            "mlflow_run_id": self.mlflow_run_id,
            "results": str(self.results),
            "table_markdown": self.table_markdown,
            "not_run": self.reason,
        }


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run(
    params: Params,
    *,
    config: ReportConfig | None = None,
    chexbert_path: Path | None = None,
    radgraph_path: Path | None = None,
) -> Result | NotRun | None:
    """Train on the train split, generate for the test split, compare with baselines, log.

    `config` replaces the preset's (tests and benchmarks size it themselves). Ranks > 0 return
    None after training. Data without any report text (most public releases) are not an
    error: the stage records why it did not train and returns `NotRun`.
    """
    config = config or params.config()
    dataset = Dataset(params.data_dir)
    data_dir, out_dir = dataset.root, Path(params.out_dir)
    lm_dir = Path(params.lm_dir) if params.lm_dir else None
    out_dir.mkdir(parents=True, exist_ok=True)
    train_rows = read_report_rows(data_dir, "train", config.max_train_samples)
    test_rows = read_report_rows(data_dir, "test", config.max_eval_samples)
    if train_rows.rows.empty and test_rows.rows.empty:
        return _not_run(params, out_dir, NO_REPORTS, train_rows.excluded, test_rows.excluded)
    for split, rows in (("train", train_rows), ("test", test_rows)):
        if rows.rows.empty:  # some reports, but not where training or testing needs them
            raise ValueError(
                f"{data_dir}: no frontal image with Findings text in the {split} split "
                f"(excluded: {rows.excluded}); report generation needs both train and test"
            )
    torch.manual_seed(config.seed)
    if lm_dir is not None:
        lm, tokenizer = load_lm(lm_dir)
    else:
        lm, tokenizer = small_lm_for_reports(list(train_rows.rows["report"]), config)
    model = build_report_model(Path(params.encoder_dir), lm, tokenizer)
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
        TAG_DATA_VERSION: params.data_version,
        TAG_ENCODER_VERSION: params.encoder_version,
        TAG_PIPELINE_RUN: params.pipeline_run,
    }
    main = _is_main_process()
    run_ctx = (
        stage_run("report", params.pipeline_run, tags=tags) if main else contextlib.nullcontext()
    )
    with run_ctx as mlflow_run:
        import mlflow

        if main:
            mlflow.log_params(
                {
                    **config.to_dict(),
                    "lm": str(lm_dir or "small-llama"),
                    "encoder": params.encoder_version,
                    "train_images": len(train_set),
                    "test_images": len(test_rows.rows),
                    "answers_truncated": train_set.truncated,
                    **{f"excluded_train_{k}": v for k, v in train_rows.excluded.items()},
                    **{f"excluded_test_{k}": v for k, v in test_rows.excluded.items()},
                }
            )
        result = train_report_model(model, tokenizer, train_set, config, out_dir)
        if not main:
            return None  # evaluation and registration happen on rank 0 only
        del model
        model, tokenizer = load_report_model(result.model_dir)  # what is registered is evaluated
        scored = score_on_test_split(
            model,
            tokenizer,
            data_dir,
            train_rows,
            test_rows,
            config,
            chexbert_path=chexbert_path,
            radgraph_path=radgraph_path,
        )
        md = scored.table_markdown
        for name, m in scored.metrics.items():
            mlflow.log_metrics(m.flat(METRIC_PREFIXES[name]))
        mlflow.log_metrics(
            {
                "train_tokens_per_second": result.tokens_per_second,
                "train_runtime_s": result.train_runtime,
            }
        )
        mlflow.log_table(scored.samples.head(config.sample_table_rows), "report_samples.json")
        mlflow.log_text(md, TABLE_FILE)
        # Table 2's systems plus what the evaluation's fairness section needs: the per-image
        # scores of every test image and a bounded number of de-identified samples.
        metrics_json = scored.results_json(config.sample_table_rows)
        mlflow.log_dict(metrics_json, METRICS_FILE)
        model_uri, version = _log_and_register(result.model_dir, REGISTERED_MODEL, tags, config)
        (out_dir / TABLE_FILE).write_text(md)
        (out_dir / METRICS_FILE).write_text(json.dumps(metrics_json, indent=2, default=str))
        scored.samples.to_parquet(out_dir / SAMPLES_FILE, index=False)
        run_id = mlflow_run.info.run_id
    log.info("report stage done:\n%s", md)
    return Result(
        metrics=scored.metrics,
        train=result,
        model_dir=result.model_dir,
        table_markdown=md,
        samples=scored.samples,
        mlflow_run_id=run_id,
        model_uri=model_uri,
        model_version=version,
        results=out_dir / METRICS_FILE,
    )


def _not_run(
    params: Params,
    out_dir: Path,
    reason: str,
    train_excluded: Mapping[str, int],
    test_excluded: Mapping[str, int],
) -> NotRun | None:
    """Record (rank 0) that the stage did not train and why, for MLflow and the evaluation."""
    import mlflow

    log.warning("report generation not trained: %s", reason)
    if not _is_main_process():
        return None
    tags = {
        TAG_DATA_VERSION: params.data_version,
        TAG_ENCODER_VERSION: params.encoder_version,
        TAG_PIPELINE_RUN: params.pipeline_run,
        f"{TAG_NOT_RUN_PREFIX}{REPORT_TASK}": reason,
    }
    results = out_dir / METRICS_FILE
    with stage_run("report", params.pipeline_run, tags=tags) as mlflow_run:
        mlflow.log_params(
            {
                **{f"excluded_train_{k}": v for k, v in train_excluded.items()},
                **{f"excluded_test_{k}": v for k, v in test_excluded.items()},
            }
        )
        write_json_atomic(results, not_run_json(reason))
        outcome = NotRun(reason, mlflow_run.info.run_id, results)
        (out_dir / TABLE_FILE).write_text(outcome.table_markdown)
        mlflow.log_text(outcome.table_markdown, TABLE_FILE)
    return outcome


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
