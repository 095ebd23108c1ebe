"""The split stage: assign every subject to train/val/test, check leakage, write, log to MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cxrflow.dataset import Dataset
from cxrflow.manifest import write_manifest
from cxrflow.split.assignment import SPLIT_COLUMN, assign_splits, read_splits, write_splits
from cxrflow.split.config import SPLITS, SplitConfig
from cxrflow.split.leakage import check_leakage
from cxrflow.split.report import report_markdown, split_digest
from cxrflow.stages.contract import param
from cxrflow.tags import TAG_DATA_VERSION, TAG_SPLIT_DIGEST
from cxrflow.tracking import stage_run

log = logging.getLogger(__name__)

REPORT_ARTIFACT = "split_report.md"


@dataclass(frozen=True)
class Params:
    """Split a dataset by subject; subjects split before keep their split."""

    data_dir: Path = param(help="Dataset directory (manifest.parquet, splits.parquet).")
    train_ratio: float = param(0.7, help="Share of subjects in the train split.")
    val_ratio: float = param(0.15, help="Share of subjects in the validation split.")
    test_ratio: float = param(0.15, help="Share of subjects in the test split.")
    seed: str = param("cxrflow-split-v1", help="Salt of the keyed subject hash.")
    mode: str = param("hash", help="hash, stratified (by findings) or official.")
    data_version: str = param("", help="Data version recorded on the MLflow run (optional).")
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")

    def config(self) -> SplitConfig:
        """The validated split configuration."""
        return SplitConfig(
            ratios=(self.train_ratio, self.val_ratio, self.test_ratio),
            seed=self.seed,
            mode=self.mode,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Result:
    """What the split stage produced: the digest, counts, report and where it wrote."""

    dataset: Dataset
    digest: str
    subjects: dict[str, int]
    images: dict[str, int]
    new_subjects: int
    report_markdown: str
    mlflow_run_id: str

    @property
    def manifest_path(self) -> Path:
        return self.dataset.manifest_path

    @property
    def splits_path(self) -> Path:
        return self.dataset.splits_path


def run(params: Params) -> Result:
    """Split the dataset's manifest by subject, keeping the frozen assignment; log to MLflow."""
    config = params.config()
    dataset = Dataset(params.data_dir)
    tags = {TAG_DATA_VERSION: params.data_version} if params.data_version else {}
    with stage_run("split", params.pipeline_run, tags=tags) as mlflow_run:
        import mlflow

        mlflow.log_params(
            {"ratios": config.ratios_text(), "seed": config.seed, "mode": config.mode}
        )
        manifest = dataset.manifest()
        frozen = read_splits(dataset.splits_path) if dataset.splits_path.is_file() else None
        n_frozen = 0 if frozen is None else len(frozen)
        assigned, updated = assign_splits(manifest, config, frozen)
        check_leakage(assigned)
        if assigned[SPLIT_COLUMN].isna().any():  # assign_splits gives every row a split
            raise RuntimeError("some manifest rows were left without a split")
        new_subjects = len(updated) - n_frozen
        digest = split_digest(assigned)
        by_split = assigned.groupby(SPLIT_COLUMN)
        subjects = {s: int(by_split["subject_id"].nunique().get(s, 0)) for s in SPLITS}
        images = {s: int(by_split.size().get(s, 0)) for s in SPLITS}
        md = report_markdown(assigned, config=config, digest=digest, new_subjects=new_subjects)
        write_splits(updated, dataset.splits_path)
        write_manifest(assigned, dataset.manifest_path)
        log.info(
            "split %s: subjects %s, images %s, digest %s", dataset.root, subjects, images, digest
        )
        mlflow.log_metrics(
            {
                **{f"subjects_{s}": v for s, v in subjects.items()},
                **{f"images_{s}": v for s, v in images.items()},
                "subjects_new": new_subjects,
                "subjects_total": sum(subjects.values()),
            }
        )
        mlflow.set_tag(TAG_SPLIT_DIGEST, digest)
        mlflow.log_text(md, REPORT_ARTIFACT)
    return Result(
        dataset=dataset,
        digest=digest,
        subjects=subjects,
        images=images,
        new_subjects=new_subjects,
        report_markdown=md,
        mlflow_run_id=mlflow_run.info.run_id,
    )
