"""The split stage as the pipeline runs it: assign, check leakage, write, log to MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest
from cxrflow.split.assignment import (
    SPLIT_COLUMN,
    SPLITS_FILE,
    assign_splits,
    read_splits,
    write_splits,
)
from cxrflow.split.config import SPLITS, SplitConfig
from cxrflow.split.leakage import check_leakage
from cxrflow.split.report import report_markdown, split_digest
from cxrflow.tracking import TAG_DATA_VERSION, stage_run

log = logging.getLogger(__name__)

TAG_SPLIT_DIGEST = "cxrflow.split_digest"
REPORT_ARTIFACT = "split_report.md"


@dataclass(frozen=True)
class SplitStageOutput:
    """What the split stage produced: the digest, counts, report and where it wrote."""

    digest: str
    subjects: dict[str, int]
    images: dict[str, int]
    new_subjects: int
    report_markdown: str
    manifest_path: Path
    splits_path: Path
    mlflow_run_id: str


def run_split_stage(
    data_dir: Path,
    config: SplitConfig,
    *,
    data_version: str = "",
    pipeline_run: str = "",
    report_out: Path | None = None,
) -> SplitStageOutput:
    """Split `data_dir`'s manifest by subject, keeping the frozen assignment; log to MLflow."""
    manifest_path = data_dir / MANIFEST_FILE
    splits_path = data_dir / SPLITS_FILE
    tags = {TAG_DATA_VERSION: data_version} if data_version else {}
    with stage_run("split", pipeline_run, tags=tags) as run:
        import mlflow

        mlflow.log_params(
            {"ratios": config.ratios_text(), "seed": config.seed, "mode": config.mode}
        )
        manifest = read_manifest(manifest_path)
        frozen = read_splits(splits_path) if splits_path.is_file() else None
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

        write_splits(updated, splits_path)
        write_manifest(assigned, manifest_path)
        log.info("split %s: subjects %s, images %s, digest %s", data_dir, subjects, images, digest)

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
    if report_out is not None:
        report_out.parent.mkdir(parents=True, exist_ok=True)
        report_out.write_text(md)
    return SplitStageOutput(
        digest=digest,
        subjects=subjects,
        images=images,
        new_subjects=new_subjects,
        report_markdown=md,
        manifest_path=manifest_path,
        splits_path=splits_path,
        mlflow_run_id=run.info.run_id,
    )
