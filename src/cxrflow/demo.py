"""`make demo`: phantom DICOMs -> the pipeline on this machine -> a printed summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cxrflow.keys import KEY_FILE_ENV_VAR, create_key_file
from cxrflow.orchestration.local import LocalSettings, run_pipeline_locally
from cxrflow.tags import INGEST_STAGE, TAG_STAGE
from cxrflow.versioning import dvc_file_for, known_version, read_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """The embedded default: small enough for two CPU cores, big enough to learn from."""

    root: Path
    subjects: int = 100
    seed: int = 0
    max_side: int = 512
    workers: int = 2
    # Shorter than the tiny presets so that the whole demo stays within minutes on 2 cores.
    pretrain_steps: int = 80
    report_steps: int = 80
    # The second round: new images arrive and the pipeline retrains from the champion.
    new_subjects: int = 30

    @property
    def arrivals(self) -> Path:
        return self.inbox / "arrivals"

    @property
    def inbox(self) -> Path:
        return self.root / "demo" / "inbox"

    @property
    def ground_truth(self) -> Path:
        return self.root / "demo" / "ground_truth.parquet"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def key_file(self) -> Path:
        # Outside the data directory, so it is never versioned, logged or shipped with data.
        return self.root / ".cxrflow" / "demo.key"


def ensure_demo_key(config: DemoConfig, console: Console) -> Path:
    if not config.key_file.is_file():
        create_key_file(config.key_file)
        console.print(
            f"Created a local de-identification key for the demo at {config.key_file} "
            "(outside the data directory; real deployments bring their own key)."
        )
    return config.key_file


def ensure_phantom(config: DemoConfig, console: Console) -> None:
    from cxrflow.phantom import generate_phantom

    if config.ground_truth.is_file():
        console.print(f"Reusing the phantom DICOMs in {config.inbox}.")
        return
    phantom_dir = config.root / "demo" / "phantom"
    summary = generate_phantom(phantom_dir, config.subjects, config.seed, workers=config.workers)
    # The inbox holds only what a PACS export would; the ground truth sits beside it.
    config.inbox.parent.mkdir(parents=True, exist_ok=True)
    phantom_dir.rename(config.inbox)
    (config.inbox / summary.ground_truth_path.name).rename(config.ground_truth)
    console.print(
        f"Wrote {summary.n_images} phantom images of {summary.n_subjects} subjects "
        f"to {config.inbox}."
    )


def add_new_images(config: DemoConfig, console: Console) -> None:
    """New phantom subjects arrive in the inbox (a second PACS export), with their labels."""
    import pandas as pd

    from cxrflow.phantom import generate_phantom

    if config.arrivals.is_dir():
        console.print(f"Reusing the new arrivals in {config.arrivals}.")
        return
    staging = config.root / "demo" / "arrivals"
    # another seed: other subjects, other UIDs; no faulty files this time
    summary = generate_phantom(
        staging,
        config.new_subjects,
        config.seed + 1,
        include_faulty=False,
        workers=config.workers,
    )
    labels = pd.concat(
        [pd.read_parquet(config.ground_truth), pd.read_parquet(summary.ground_truth_path)],
        ignore_index=True,
    )
    summary.ground_truth_path.unlink()
    tmp = config.ground_truth.with_suffix(".tmp")
    labels.to_parquet(tmp, index=False)
    tmp.replace(config.ground_truth)
    staging.rename(config.arrivals)
    console.print(
        f"New arrivals: {summary.n_images} images of {summary.n_subjects} subjects "
        f"in {config.arrivals}."
    )


def set_aside_dangling_version(config: DemoConfig, console: Console) -> None:
    """Move aside a `.dvc` file naming a version that neither the DVC cache nor remote holds.

    Otherwise the demo's first version would record it as its parent, and `cxrflow data
    history` would name a version nobody can restore. The file is moved, not deleted.
    """
    dvc_file = dvc_file_for(config.root, config.data_dir)
    if not dvc_file.is_file():
        return
    md5 = read_version(dvc_file).md5
    if known_version(config.root, md5):
        return
    aside = config.root / ".cxrflow" / f"{dvc_file.name}.unknown-{md5[:12]}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    dvc_file.replace(aside)
    console.print(
        f"{dvc_file.name} named data version {md5}, which neither the DVC cache nor the "
        f"remote holds; moved it to {aside}, so the demo starts a new version history."
    )


def _pipeline_params(config: DemoConfig) -> dict[str, object]:
    return {
        "inbox": str(config.inbox),
        "data_dir": str(config.data_dir),
        "ground_truth": str(config.ground_truth),
        "max_side": config.max_side,
        "ingest_workers": config.workers,
        "pretrain_steps": config.pretrain_steps,
        "report_steps": config.report_steps,
    }


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, object]:
    """Run the pipeline, let new images arrive, run it again; return the second summary.

    The second run is scheduled retraining: its pre-training starts from the champion encoder
    the first run promoted (the pipeline's default `pretrain_init`), so the second encoder's
    lineage names the first.
    """
    import os

    console = console or Console()
    key_file = ensure_demo_key(config, console)
    os.environ[KEY_FILE_ENV_VAR] = str(key_file)
    ensure_phantom(config, console)
    set_aside_dangling_version(config, console)
    settings = LocalSettings.default(config.root)
    console.rule("run 1: the first data version")
    logs = [run_pipeline_locally(settings, _pipeline_params(config))]
    first = collect_summary(config, settings)
    print_summary(first, console)
    add_new_images(config, console)
    console.rule("run 2: new images arrived; retraining continues from the champion")
    logs.append(run_pipeline_locally(settings, _pipeline_params(config)))
    summary = collect_summary(config, settings)
    print_summary(summary, console)
    print_split_table(config.data_dir, console)
    files = print_results(summary, config, console)
    summary["encoder_chain"] = print_encoder_chain(settings, console)
    summary["pretraining"] = pretraining_losses(str(summary["mlflow_runs"]["pretrain"]))
    print_closing(summary, files | {"task logs": logs[-1]}, config.pretrain_steps, console)
    return summary


def print_encoder_chain(settings: LocalSettings, console: Console) -> list[dict[str, str]]:
    """Each registered encoder, what it started from and the data it saw."""
    import mlflow

    from cxrflow.tags import ENCODER_MODEL, TAG_DATA_VERSION, TAG_INIT_FROM, TAG_INIT_PREFIX

    client = mlflow.MlflowClient(settings.tracking_uri)
    table = Table(title=f"{ENCODER_MODEL}: continual training chain")
    for col in ("version", "data version", "init", "started from", "weights sha256"):
        table.add_column(col)
    chain = []
    versions = client.search_model_versions(f"name = '{ENCODER_MODEL}'")
    for mv in sorted(versions, key=lambda v: int(v.version)):
        row = {
            "version": str(mv.version),
            "data_version": mv.tags.get(TAG_DATA_VERSION, "")[:12],
            "init": mv.tags.get(TAG_INIT_FROM, ""),
            "started_from": mv.tags.get(f"{TAG_INIT_PREFIX}model")
            or mv.tags.get(f"{TAG_INIT_PREFIX}source", ""),
            "sha256": mv.tags.get(f"{TAG_INIT_PREFIX}sha256", "")[:16],
        }
        chain.append(row)
        table.add_row(*row.values())
    console.print(table)
    return chain


def collect_summary(config: DemoConfig, settings: LocalSettings) -> dict[str, object]:
    """Counts, data version and MLflow runs of the latest pipeline run."""
    import mlflow

    version = read_version(dvc_file_for(config.root, config.data_dir))
    mlflow.set_tracking_uri(settings.tracking_uri)
    runs = mlflow.search_runs(
        experiment_names=["cxrflow"], order_by=["attributes.start_time DESC"], max_results=50
    )
    ingest_runs = runs[runs[f"tags.{TAG_STAGE}"] == INGEST_STAGE]
    latest = ingest_runs.iloc[0]
    pipeline_run = latest["tags.cxrflow.pipeline_run"]
    stage_runs = runs[runs["tags.cxrflow.pipeline_run"] == pipeline_run]
    mlflow.set_registry_uri(settings.tracking_uri)
    metric = {
        k.removeprefix("metrics."): v
        for k, v in latest.items()
        if k.startswith("metrics.") and v == v
    }
    ingest = {
        "run_id": latest["params.ingest_run"],
        **{
            k: int(metric.get(f"files_{k}", 0))
            for k in ("found", "written", "skipped_existing", "quarantined")
        },
    }
    reasons = {
        k.removeprefix("quarantined_"): int(v)
        for k, v in sorted(metric.items())
        if k.startswith("quarantined_")
    }
    return {
        "pipeline_run": pipeline_run,
        "ingest": ingest,
        "quarantine_reasons": reasons,
        "data_version": version.md5,
        "data_files": version.files,
        "dvc_remote": version.remote or str(config.root / ".cxrflow" / "dvc-remote"),
        "mlflow_tracking_uri": settings.tracking_uri,
        "mlflow_runs": {
            str(r["tags.cxrflow.stage"]): str(r["run_id"]) for _, r in stage_runs.iterrows()
        },
    }


def print_split_table(data_dir: Path, console: Console) -> None:
    """Subjects, images and label prevalence per split."""
    from cxrflow.dataset import Dataset
    from cxrflow.findings import FINDINGS
    from cxrflow.split.report import split_report

    report = split_report(Dataset(data_dir).manifest())
    table = Table(title="split by subject (prevalence = positives / annotated images)")
    table.add_column("")
    for split in report.index:
        table.add_column(str(split), justify="right")
    table.add_row("subjects", *(str(int(v)) for v in report["subjects"]))
    table.add_row("images", *(str(int(v)) for v in report["images"]))
    for f in FINDINGS:
        table.add_row(f.replace("_", " "), *(f"{v:.3f}" for v in report[f"{f}_prevalence"]))
    console.print(table)


def _markdown_artifacts(run_id: str) -> list[str]:
    """The Markdown tables a stage logged (its Table 1/2/3/5 views)."""
    import mlflow

    client = mlflow.MlflowClient()
    found, stack = [], [""]
    while stack:
        for item in client.list_artifacts(run_id, stack.pop() or None):
            if item.is_dir:
                stack.append(item.path)
            elif item.path.endswith(".md"):
                found.append(mlflow.artifacts.load_text(f"runs:/{run_id}/{item.path}"))
    return found


def print_results(
    summary: dict[str, object], config: DemoConfig, console: Console
) -> dict[str, Path]:
    """The evaluation's tables and the registered versions; returns the files to look at."""
    import mlflow
    from rich.markdown import Markdown

    from cxrflow.stages.evaluate import HTML_FILE

    runs = summary["mlflow_runs"]
    assert isinstance(runs, dict)
    files: dict[str, Path] = {}
    # The evaluation gathers the heads' and the report's tables: print its copy only, once.
    shown = "evaluation" if "evaluation" in runs else None
    for stage in [shown] if shown else ["heads", "report"]:
        if stage in runs:
            for text in _markdown_artifacts(runs[stage]):
                console.print(Markdown(text))
    if shown:
        html = mlflow.artifacts.download_artifacts(
            f"runs:/{runs[shown]}/evaluation/{HTML_FILE}", dst_path=str(config.root / "demo")
        )
        files["evaluation (HTML)"] = Path(html)
    client = mlflow.MlflowClient()
    table = Table(title="registered models")
    for col in ("model", "version", "aliases", "data version", "gate"):
        table.add_column(col)
    card_uri = ""
    for rm in client.search_registered_models():
        for mv in client.search_model_versions(f"name = '{rm.name}'"):
            if mv.tags.get("cxrflow.pipeline_run") != summary["pipeline_run"]:
                continue
            aliases = ", ".join(a for a, v in rm.aliases.items() if str(v) == str(mv.version))
            table.add_row(
                rm.name,
                str(mv.version),
                aliases,
                mv.tags.get("cxrflow.data_version", "")[:12],
                mv.tags.get("cxrflow.gate.decision", ""),
            )
            card_uri = card_uri or mv.tags.get("cxrflow.model_card", "")
    console.print(table)
    if card_uri:
        card = mlflow.artifacts.download_artifacts(card_uri, dst_path=str(config.root / "demo"))
        files["model card"] = Path(card)
    return files


def pretraining_losses(run_id: str) -> dict[str, tuple[float, float]]:
    """(first, last) logged value of the pre-training run's loss terms."""
    import mlflow

    client = mlflow.MlflowClient()
    out = {}
    for key in ("loss", "dino_loss", "dino_teacher_entropy", "dino_kl", "ibot_loss"):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        if history:
            out[key] = (history[0].value, history[-1].value)
    return out


def explain_pretraining(losses: dict[str, tuple[float, float]], steps: int) -> str:
    """One sentence on the loss curve, computed from its numbers (the DINO loss is H + KL)."""
    if "loss" not in losses:
        return "pre-training logged no loss"
    l0, l1 = losses["loss"]
    text = f"loss {l0:.2f} -> {l1:.2f} over {steps} steps"
    if {"dino_loss", "dino_teacher_entropy", "dino_kl"} <= losses.keys():
        (d0, d1), (h0, h1), (k0, k1) = (
            losses["dino_loss"],
            losses["dino_teacher_entropy"],
            losses["dino_kl"],
        )
        text += (
            f"; DINO term {d0:.2f} -> {d1:.2f} = teacher entropy ({h0:.2f} -> {h1:.2f}) "
            f"+ KL(teacher || student) ({k0:.2f} -> {k1:.2f})"
        )
        if d1 > d0 and k1 < k0:
            text += (
                ": the rise is the teacher's targets changing entropy; the student got closer "
                "to them"
            )
        elif k1 >= k0:
            text += (
                ": the student has not caught up with its teacher in this short run "
                "(the demo trains for minutes; see the tiny preset's learning test)"
            )
    return text


def print_closing(
    summary: dict[str, object], files: dict[str, Path], steps: int, console: Console
) -> None:
    """Where to look next: the files, the MLflow UI, the lineage; the pre-training in words."""
    table = Table(title="what to look at next", show_header=False)
    table.add_column("what")
    table.add_column("where", overflow="fold")
    for name, path in files.items():
        table.add_row(name, str(path))
    table.add_row("MLflow UI", "cxrflow ui   (then open the 'cxrflow' experiment)")
    table.add_row("lineage", "cxrflow lineage model cxrflow-encoder @champion")
    losses = summary.get("pretraining")
    if isinstance(losses, dict):
        table.add_row("pre-training", explain_pretraining(losses, steps))
    console.print(table)


def print_summary(summary: dict[str, object], console: Console) -> None:
    table = Table(title=f"cxrflow demo: pipeline run {summary['pipeline_run']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    ingest = summary["ingest"]
    assert isinstance(ingest, dict)
    for k in ("found", "written", "skipped_existing", "quarantined"):
        table.add_row(f"files {k.replace('_', ' ')}", str(ingest[k]))
    reasons = summary["quarantine_reasons"]
    assert isinstance(reasons, dict)
    for k, v in reasons.items():
        table.add_row(f"  quarantined: {k}", str(v))
    table.add_row("data version (DVC md5)", str(summary["data_version"]))
    table.add_row("DVC remote", str(summary["dvc_remote"]))
    runs = summary["mlflow_runs"]
    assert isinstance(runs, dict)
    for stage, run_id in runs.items():
        table.add_row(f"MLflow run: {stage}", run_id)
    table.add_row("MLflow store", str(summary["mlflow_tracking_uri"]))
    console.print(table)
    console.print("Browse the runs with: cxrflow ui")
