"""The public-dataset import stage: a pipeline run that starts from public datasets, not an inbox.

`source` names the releases to import, as comma-separated `NAME=DIR` items (e.g.
`chexpert=/data/public/chexpert,padchest=/data/public/padchest`): one dataset is imported
whole (`import_dataset`), several are combined into one pre-training set by the paper's
Multi-CXR recipe (`import_datasets`). What lands in `data_dir` is what the ingest stage writes
(images, manifest, quarantine, audit, state, run record), so the split stage and everything
after it read it unchanged; the split stage's `official` mode keeps each dataset's published
split. The key comes from the environment (`cxrflow.keys`), never from a parameter, as for
ingest: the pseudonyms of a subject are the same in every import.

This is the one stage that imports `cxrflow.datasets` (the import-linter contract in
pyproject.toml names it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cxrflow.dataset import Dataset
from cxrflow.datasets.importer import (
    IMPORT_DEID_PROFILE,
    ImportConfig,
    ImportSummary,
    Source,
    check_images_found,
    import_dataset,
    import_datasets,
)
from cxrflow.datasets.registry import ADAPTERS
from cxrflow.keys import SecretKey, check_key_location, load_key, repository_root
from cxrflow.stages.contract import ParamsError, param
from cxrflow.tags import IMPORT_STAGE
from cxrflow.tracking import stage_run

SOURCE_PARAM = "source"
SUMMARY_ARTIFACT = "import_summary.md"
RESULT_ARTIFACT = "import_summary.json"
EXAMPLE = "chexpert=/data/public/chexpert,padchest=/data/public/padchest"


@dataclass(frozen=True)
class Params:
    """Import public chest X-ray datasets into a dataset directory (as ingest writes one)."""

    source: str = param(
        help="Public datasets to start from instead of the DICOM inbox: comma-separated "
        f"NAME=DIR roots of their releases, e.g. {EXAMPLE} (several are combined into one "
        "pre-training set by the Multi-CXR recipe; split_mode official keeps each dataset's "
        "published split). Empty: ingest the DICOM inbox. Datasets: "
        f"{', '.join(sorted(ADAPTERS))}."
    )
    data_dir: Path = param(help="Dataset directory the de-identified images and tables go to.")
    max_side: int = param(1024, help="Longest side of the written PNGs, in pixels.")
    png_bits: int = param(16, help="Bit depth of the written PNGs (8 or 16).")
    workers: int = param(1, help="Worker processes that read and decode files.")
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")

    def sources(self) -> list[Source]:
        """The datasets of `source`, validated (ParamsError naming `source` otherwise)."""
        return [Source(name, root) for name, root in parse_source(self.source)]

    def config(self, *, show_progress: bool = True) -> ImportConfig:
        """The validated import configuration."""
        try:
            return ImportConfig(
                output_dir=Path(self.data_dir),
                max_side=self.max_side,
                png_bits=self.png_bits,  # type: ignore[arg-type]
                workers=self.workers,
                show_progress=show_progress,
            )
        except ValueError as exc:
            raise ParamsError(str(exc)) from exc


def parse_source(text: str, *, check_roots: bool = True) -> list[tuple[str, Path]]:
    """(dataset, root) of each `NAME=DIR` item of `source`, in order.

    Refused with a ParamsError that names the parameter: an empty value, an item without `=`,
    an unknown dataset name, a dataset given twice, and (with `check_roots`, at run time: a
    submitting machine cannot see the cluster's volumes) a root that is not a directory.
    """
    if not text or not text.strip():
        raise ParamsError(
            f"{SOURCE_PARAM}: no dataset given; expected NAME=DIR[,NAME=DIR...], e.g. {EXAMPLE}"
        )
    out: list[tuple[str, Path]] = []
    for item in text.split(","):
        name, sep, root = (part.strip() for part in item.partition("="))
        if not sep or not name or not root:
            raise ParamsError(
                f"{SOURCE_PARAM}: {item.strip()!r} is not NAME=DIR "
                f"(expected NAME=DIR[,NAME=DIR...], e.g. {EXAMPLE})"
            )
        if name not in ADAPTERS:
            raise ParamsError(
                f"{SOURCE_PARAM}: unknown dataset {name!r}; known datasets: "
                f"{', '.join(sorted(ADAPTERS))}"
            )
        if any(name == seen for seen, _ in out):
            raise ParamsError(f"{SOURCE_PARAM}: dataset {name!r} is given more than once")
        out.append((name, Path(root)))
    if check_roots:
        for name, root in out:
            if not root.is_dir():
                raise ParamsError(f"{SOURCE_PARAM}: root of {name}, {root}, is not a directory")
    return out


@dataclass(frozen=True)
class Result:
    """The import's summary, the dataset it wrote to and its Markdown summary."""

    summary: ImportSummary
    mlflow_run_id: str
    dataset: Dataset
    summary_markdown: str

    @property
    def run_id(self) -> str:
        """The import's run id (the manifest's `ingest_run` of the images it wrote)."""
        return self.summary.run_id

    @property
    def listed(self) -> int:
        return sum(d.listed for d in self.summary.datasets)

    @property
    def written(self) -> int:
        return sum(d.written for d in self.summary.datasets)

    @property
    def images(self) -> int:
        """Images of the sources in the dataset: written now or imported before."""
        return sum(d.imported for d in self.summary.datasets)

    @property
    def quarantined(self) -> int:
        """Listed images that did not enter the dataset (missing, unreadable, duplicates)."""
        return self.listed - self.images

    def to_json(self) -> str:
        return json.dumps(self.summary.to_dict())


def metrics(summary: ImportSummary) -> dict[str, float]:
    """The summary's counts as MLflow metrics: totals (named as ingest's), then per dataset."""
    ds = summary.datasets
    imported = sum(d.imported for d in ds)
    listed = sum(d.listed for d in ds)
    out: dict[str, float] = {
        "files_found": listed,
        "files_written": sum(d.written for d in ds),
        "files_skipped_existing": sum(d.skipped_existing for d in ds),
        "files_quarantined": listed - imported,
        "quarantined_missing": sum(len(d.missing) for d in ds),
        "quarantined_unreadable": sum(len(d.unreadable) for d in ds),
        "quarantined_duplicate": sum(d.duplicates for d in ds),
    }
    for d in ds:
        out |= {
            f"{d.dataset}/metadata_rows": d.metadata_rows,
            f"{d.dataset}/excluded": d.excluded,
            f"{d.dataset}/listed": d.listed,
            f"{d.dataset}/written": d.written,
            f"{d.dataset}/skipped_existing": d.skipped_existing,
            f"{d.dataset}/missing": len(d.missing),
            f"{d.dataset}/unreadable": len(d.unreadable),
            f"{d.dataset}/duplicates": d.duplicates,
            f"{d.dataset}/subjects_listed": d.subjects_listed,
            f"{d.dataset}/subjects_imported": d.subjects_imported,
        }
    out |= {f"subjects_{split}": n for split, n in summary.subjects_by_official_split.items()}
    return out


def summary_markdown(summary: ImportSummary) -> str:
    """A Markdown summary of an import (KFP UI and MLflow): counts per dataset, and notes."""
    lines = [
        f"# Import {summary.run_id}",
        "",
        "| dataset | listed | written | already imported | missing | unreadable | duplicates "
        "| excluded | subjects |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {d.dataset} | {d.listed} | {d.written} | {d.skipped_existing} | {len(d.missing)} "
        f"| {len(d.unreadable)} | {d.duplicates} | {d.excluded} "
        f"| {d.subjects_imported} of {d.subjects_listed} |"
        for d in summary.datasets
    ]
    lines += [
        "",
        f"Counts reconcile: **{'yes' if summary.reconciles else 'NO'}** "
        "(listed = written + already imported + missing + unreadable + duplicates).",
        "",
        f"Key fingerprint `{summary.key_fingerprint}`.",
    ]
    splits = summary.subjects_by_official_split
    if splits:
        lines += ["", "| official split | subjects |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in splits.items()]
    notes = [n for d in summary.datasets for n in d.notes]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _record(summary: ImportSummary) -> str:
    """Log the import's counts, summary and result to the active MLflow run."""
    import mlflow

    mlflow.log_params(
        {
            "ingest_run": summary.run_id,
            "key_fingerprint": summary.key_fingerprint,
            "deid_profile": IMPORT_DEID_PROFILE,
            "datasets": ",".join(d.dataset for d in summary.datasets)[:500],
        }
    )
    mlflow.log_metrics(metrics(summary))
    md = summary_markdown(summary)
    mlflow.log_text(md, SUMMARY_ARTIFACT)
    mlflow.log_dict(summary.to_dict(), RESULT_ARTIFACT)
    return md


def _import_key(params: Params, sources: list[Source]) -> SecretKey:
    """The key from the environment, refused inside a dataset root, the data or repository."""
    key = load_key()
    check_key_location(
        None, *(s.root for s in sources), params.data_dir, repository=repository_root()
    )
    return key


def run(params: Params) -> Result:
    """Import the `source` datasets into `data_dir` with the key from the environment; log it."""
    sources = params.sources()
    config = params.config()
    key = _import_key(params, sources)
    with stage_run(IMPORT_STAGE, params.pipeline_run) as mlflow_run:
        if len(sources) == 1:
            summary = import_dataset(sources[0], config, key)
        else:
            summary = import_datasets(sources, config, key)
        md = _record(summary)
        check_images_found(summary, sources)  # after the counts are logged: the run shows them
    return Result(summary, mlflow_run.info.run_id, Dataset(config.output_dir), md)
