"""The `cxrflow` command line: the human entry point for everything that is not a pipeline run."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from cxrflow import __version__
from cxrflow.datasets.cli import app as datasets_app
from cxrflow.logs import report_console, setup_logging


def _user_error(exc: BaseException) -> bool:
    """An error the person at the keyboard can fix (a wrong path, a bad value, a refused
    request): one line on stderr. Anything else is a bug and keeps its traceback."""
    if isinstance(exc, OSError | ValueError):
        return True
    from cxrflow.versioning.dvc import VersioningError

    if isinstance(exc, VersioningError):
        return True
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")  # only if MLflow was imported
    return mlflow_exceptions is not None and isinstance(exc, mlflow_exceptions.MlflowException)


class _Cli(TyperGroup):
    """Every command's user errors become one line, `error: <message>`, on stderr, exit 1.

    Usage errors (a missing option, a path that does not exist) stay click's, exit 2.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not _user_error(exc):
                raise
            log.debug("traceback", exc_info=exc)  # shown with --verbose
            message = " ".join(str(exc).split()) or type(exc).__name__
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Cli, add_completion=False, no_args_is_help=True, help=__doc__)
console = report_console()
app.add_typer(datasets_app, name="datasets")
log = logging.getLogger("cxrflow")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


def _echo_json(doc: Any) -> None:
    """Plain JSON on stdout: never through rich, which wraps long strings at the console width
    (a wrapped string is no longer JSON for whatever reads the pipe)."""
    typer.echo(json.dumps(doc, indent=2, default=str))


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """cxrflow: train and ship RAD-DINO-style chest X-ray encoders."""
    setup_logging(verbose)


@app.command()
def phantom(
    out: Annotated[
        Path, typer.Option(help="Directory to write the DICOM files and ground truth to.")
    ],
    subjects: Annotated[int, typer.Option(min=1, help="Number of synthetic subjects.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives byte-identical files.")] = 0,
    min_side: Annotated[int, typer.Option(min=64, help="Smallest image side in pixels.")] = 384,
    max_side: Annotated[int, typer.Option(min=64, help="Largest image side in pixels.")] = 896,
    faulty: Annotated[
        bool, typer.Option(help="Also write files that ingestion must quarantine.")
    ] = True,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Write synthetic chest radiographs as a PACS-like DICOM export, with ground truth."""
    from cxrflow.phantom import generate_phantom

    if min_side > max_side:
        raise typer.BadParameter(f"--min-side {min_side} is larger than --max-side {max_side}")
    summary = generate_phantom(
        out,
        subjects,
        seed,
        min_side=min_side,
        max_side=max_side,
        include_faulty=faulty,
        workers=workers,
    )
    _echo_json(summary.to_dict())


@app.command()
def ingest(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            exists=True,
            file_okay=False,
            help="Inbox: a directory of DICOM files, any layout.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", help="Dataset directory to write or extend.")],
    key_file: Annotated[
        Path | None, typer.Option(help="File holding the de-identification secret (>= 32 bytes).")
    ] = None,
    ground_truth: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Side-car Parquet with labels/masks/reports by SOP UID.",
        ),
    ] = None,
    max_side: Annotated[
        int, typer.Option(min=16, help="Longest side of the written images.")
    ] = 1024,
    png_bits: Annotated[int, typer.Option(help="Bit depth of the written PNGs: 8 or 16.")] = 16,
    write_dicom: Annotated[
        bool, typer.Option(help="Also write the de-identified DICOM files.")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    locate: Annotated[
        list[str] | None, typer.Option(help="Print the input path of these file keys and exit.")
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            help="When another ingestion holds the output directory: seconds to wait for it "
            "(0: fail at once with exit code 75, negative: wait for ever)."
        ),
    ] = 0,
) -> None:
    """De-identify and normalise the DICOM images of an inbox into a dataset directory."""
    from cxrflow.ingest import IngestConfig, locate_files, run_ingest
    from cxrflow.ingest.commit import IngestLockedError
    from cxrflow.keys import KeyError_, check_key_location, load_key, repository_root

    try:
        key = load_key(key_file)
        check_key_location(key_file, input, output, repository=repository_root())
    except KeyError_ as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-file") from exc
    if locate:
        for fk, path in sorted(locate_files(input, key, set(locate)).items()):
            typer.echo(f"{fk}\t{path}")
        return
    if png_bits not in (8, 16):
        raise typer.BadParameter(f"must be 8 or 16, got {png_bits}", param_hint="--png-bits")
    config = IngestConfig(
        input_dir=input,
        output_dir=output,
        ground_truth=ground_truth,
        max_side=max_side,
        png_bits=png_bits,  # type: ignore[arg-type]
        write_dicom=write_dicom,
        workers=workers,
    )
    try:
        result = run_ingest(config, key, lock_timeout_s=wait)
    except IngestLockedError as exc:
        typer.echo(f"ingest: {exc}", err=True)
        raise typer.Exit(75) from None  # EX_TEMPFAIL: try again later
    _echo_json(result.to_dict())


@app.command()
def run(
    inbox: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="Inbox of DICOM files to ingest.")
    ],
    data_dir: Annotated[Path, typer.Option(help="The DVC-tracked dataset directory.")] = Path(
        "data"
    ),
    local: Annotated[
        bool, typer.Option("--local", help="Run with kfp.local on this machine.")
    ] = False,
    ground_truth: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Side-car Parquet (labels, masks, reports)."
        ),
    ] = None,
    max_side: Annotated[
        int, typer.Option(min=16, help="Longest side of the ingested images.")
    ] = 1024,
    workers: Annotated[int, typer.Option(min=1, help="Ingestion worker processes.")] = 1,
    key_file: Annotated[Path | None, typer.Option(help="De-identification key file.")] = None,
) -> None:
    """Run the training pipeline (locally with --local; `cxrflow submit` targets a cluster)."""
    import os

    from cxrflow.keys import KEY_FILE_ENV_VAR, KeyError_, load_key
    from cxrflow.orchestration.local import LocalSettings, run_pipeline_locally

    if not local:
        raise typer.BadParameter("only --local is available in this version", param_hint="--local")
    try:
        load_key(key_file)
    except KeyError_ as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-file") from exc
    if key_file is not None:
        os.environ[KEY_FILE_ENV_VAR] = str(key_file.resolve())
    settings = LocalSettings.default(Path.cwd())
    run_pipeline_locally(
        settings,
        {
            "inbox": str(inbox.resolve()),
            "data_dir": str(data_dir.resolve()),
            "ground_truth": str(ground_truth.resolve()) if ground_truth else "",
            "max_side": max_side,
            "ingest_workers": workers,
        },
    )


@app.command()
def demo(
    subjects: Annotated[int, typer.Option(min=4, help="Phantom subjects to generate.")] = 100,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    pretrain_steps: Annotated[int, typer.Option(min=0, help="0: the tiny preset's.")] = 80,
    report_steps: Annotated[int, typer.Option(min=0, help="0: the tiny preset's.")] = 80,
) -> None:
    """The whole pipeline on generated DICOMs, locally, with a printed summary."""
    from cxrflow.demo import DemoConfig, run_demo

    config = DemoConfig(
        root=Path.cwd(),
        subjects=subjects,
        workers=workers,
        pretrain_steps=pretrain_steps,
        report_steps=report_steps,
    )
    run_demo(config, console)


@app.command()
def compile(
    out: Annotated[Path | None, typer.Option(help="Where to write the pipeline YAML.")] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            help="Image registry of the pipeline's images, e.g. registry.example.org/team "
            "(default: $CXRFLOW_IMAGE_REGISTRY, else ghcr.io/cxrflow)."
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(help="Image tag (default: $CXRFLOW_IMAGE_TAG, else the package version)."),
    ] = None,
) -> None:
    """Compile the training pipeline to KFP IR YAML (pipelines/training.yaml by default)."""
    from components.images import check_registry, check_tag
    from pipelines.training import COMPILED, compile_pipeline

    # Checked here as well as in compile_pipeline, so the error names the option.
    for option, value, check in (
        ("--registry", registry, check_registry),
        ("--tag", tag, check_tag),
    ):
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint=option) from exc
    typer.echo(str(compile_pipeline(out or COMPILED, registry=registry, tag=tag)))


@app.command("split")
def split_cmd(
    data_dir: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Dataset directory (manifest.parquet, splits.parquet).",
        ),
    ],
    ratios: Annotated[
        str, typer.Option(help="train/val/test, e.g. 70/15/15 or 0.6,0.2,0.2.")
    ] = "70/15/15",
    seed: Annotated[str, typer.Option(help="Salt of the keyed subject hash.")] = "cxrflow-split-v1",
    mode: Annotated[str, typer.Option(help="hash, stratified (by findings) or official.")] = "hash",
) -> None:
    """Assign subjects to train/val/test (known subjects never move) and print the report."""
    from cxrflow.split import parse_ratios
    from cxrflow.stages import split as split_stage

    try:
        train, val, test = parse_ratios(ratios)
        params = split_stage.Params(
            data_dir=data_dir,
            train_ratio=train,
            val_ratio=val,
            test_ratio=test,
            seed=seed,
            mode=mode,
        )
        params.config()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    out = split_stage.run(params)
    typer.echo(out.report_markdown)


data_app = typer.Typer(help="Versioned data (DVC).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("checkout")
def data_checkout(
    version: Annotated[
        str,
        typer.Argument(help="Data version: the DVC md5 of the directory (or a unique prefix)."),
    ],
    data_dir: Annotated[Path, typer.Option(help="The DVC-tracked dataset directory.")] = Path(
        "data"
    ),
    force: Annotated[
        bool, typer.Option(help="Replace files that no data version records (they are lost).")
    ] = False,
) -> None:
    """Restore the dataset directory to a data version; on any error it stays as it was."""
    from cxrflow.versioning import checkout_version, dvc_project_for

    # A data directory outside the working directory (a volume) has its project beside it.
    # A VersioningError (nothing was changed) is one stderr line, exit 1 (`_Cli`).
    project = dvc_project_for(Path.cwd(), data_dir)
    v = checkout_version(project, version, data_dir, force=force)
    console.print(
        f"{data_dir} is now at data version {v.md5} ({v.files} files)", markup=False, soft_wrap=True
    )


@data_app.command("history")
def data_history(
    data_dir: Annotated[Path, typer.Option(help="The DVC-tracked dataset directory.")] = Path(
        "data"
    ),
) -> None:
    """Print the chain of data versions from the current one back to the first."""
    from cxrflow.versioning import dvc_file_for, dvc_project_for, read_version, version_history

    project = dvc_project_for(Path.cwd(), data_dir)
    current = read_version(dvc_file_for(project, data_dir))
    history = version_history(project, current.md5)
    for i, md5 in enumerate(history):
        console.print(("* " if i == 0 else "  ") + md5, markup=False)
    if history.missing is not None:
        # A recorded parent nobody holds (e.g. a version never pushed): the known chain ends.
        console.print(
            f"  parent {history.missing.md5} is not in the cache or the remote "
            f"(recorded by {history.missing.recorded_by})",
            markup=False,
            soft_wrap=True,
        )


@app.command("pretrain")
def pretrain_cmd(
    data_dir: Annotated[
        Path,
        typer.Option(exists=True, file_okay=False, help="Dataset directory with a split manifest."),
    ],
    out_dir: Annotated[
        Path, typer.Option(help="Run directory: checkpoints and the exported encoder.")
    ],
    preset: Annotated[str, typer.Option(help="Pre-training preset: tiny or paper.")] = "tiny",
    steps: Annotated[int, typer.Option(min=0, help="Training steps; 0 keeps the preset's.")] = 0,
    batch_size: Annotated[
        int, typer.Option(min=0, help="Global batch over all GPUs; 0 keeps the preset's.")
    ] = 0,
    init: Annotated[
        str,
        typer.Option(
            help="Where training starts: a Hugging Face DINOv2 directory, an upstream "
            "torch.hub .pth, a timm checkpoint, models:/<name>@<alias> or "
            "models:/<name>/<version>, 'champion' (the champion encoder if there is one) or "
            "'random'. Empty: the preset's default (tiny: random; paper refuses to start "
            "without one)."
        ),
    ] = "",
    data_version: Annotated[
        str, typer.Option(help="Data version (DVC md5) the run trains on, for lineage.")
    ] = "",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """DINOv2 continual pre-training; runs unchanged under `torchrun` (one process per GPU)."""
    from cxrflow.ssl.initialisation import EncoderInit, require_init
    from cxrflow.stages import pretrain as stage

    try:
        params = stage.Params(
            data_dir=data_dir,
            out_dir=out_dir,
            data_version=data_version,
            preset=preset,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            init=EncoderInit.parse(init) if init else None,
        )
        require_init(params.config(), params.init, preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    out = stage.run(params)
    if out is not None:  # rank 0
        typer.echo(f"encoder: {out.encoder_dir} (registered version {out.encoder_version})")


@app.command("heads")
def heads_cmd(
    data_dir: Annotated[
        Path,
        typer.Option(exists=True, file_okay=False, help="Dataset directory with a split manifest."),
    ],
    encoder_dir: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Hugging Face DINOv2 directory (the pre-training export).",
        ),
    ],
    out_dir: Annotated[Path, typer.Option(help="Where heads, plots and tables go.")],
    preset: Annotated[str, typer.Option(help="Heads preset: tiny or paper.")] = "tiny",
    data_version: Annotated[str, typer.Option(help="Data version (DVC md5) for lineage.")] = "",
    encoder_version: Annotated[
        str, typer.Option(help="Registered encoder version, for lineage.")
    ] = "",
) -> None:
    """Train classification probes, segmentation decoders and demographics probes; print tables."""
    from cxrflow.stages import heads as stage

    params = stage.Params(
        data_dir=data_dir,
        encoder_dir=encoder_dir,
        out_dir=out_dir,
        data_version=data_version,
        encoder_version=encoder_version,
        preset=preset,
    )
    try:
        params.config()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from exc
    out = stage.run(params)
    typer.echo(out.result.markdown)


@app.command("report")
def report_cmd(
    data_dir: Annotated[
        Path,
        typer.Option(
            exists=True, file_okay=False, help="Dataset directory with reports and a split."
        ),
    ],
    encoder_dir: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Hugging Face DINOv2 directory: the frozen vision tower.",
        ),
    ],
    out_dir: Annotated[Path, typer.Option(help="Where the model, metrics and samples go.")],
    preset: Annotated[str, typer.Option(help="Report preset: tiny or paper.")] = "tiny",
    lm_dir: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            help="Local Llama-family Hugging Face directory or .gguf file (empty: a small Llama "
            "built from config with a tokenizer trained on the training reports).",
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option(min=0, help="Training steps; 0 keeps the preset's length.")
    ] = 0,
    data_version: Annotated[str, typer.Option(help="Data version (DVC md5) for lineage.")] = "",
    encoder_version: Annotated[
        str, typer.Option(help="Registered encoder version, for lineage.")
    ] = "",
) -> None:
    """Fine-tune a LLaVA-style report generator on the frozen encoder; print Table 2."""
    from cxrflow.stages import report as stage

    params = stage.Params(
        data_dir=data_dir,
        encoder_dir=encoder_dir,
        out_dir=out_dir,
        data_version=data_version,
        encoder_version=encoder_version,
        preset=preset,
        lm_dir=lm_dir,
        steps=steps,
    )
    try:
        params.config()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from exc
    out = stage.run(params)
    if out is not None:  # rank 0
        typer.echo(out.table_markdown)


lineage_app = typer.Typer(
    help="Audit lineage: models, data versions, subjects.", no_args_is_help=True
)
app.add_typer(lineage_app, name="lineage")
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _print_tree(build: Callable[[], Any], as_json: bool) -> None:
    """Build a lineage tree and print it; a missing model or version is a clear error."""
    from mlflow.exceptions import MlflowException

    try:
        tree = build()
    except (MlflowException, ValueError) as exc:
        Console(stderr=True).print(f"lineage: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    if as_json:
        # Not through rich: it wraps long strings at the console width, and a wrapped string
        # is no longer JSON for whatever reads the pipe.
        typer.echo(tree.to_json())
        return
    console.print(tree.to_text(), markup=False)


@lineage_app.command("model")
def lineage_model(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. cxrflow-encoder.")],
    ref: Annotated[str, typer.Argument(help="@alias or :version.")] = "@champion",
    as_json: JsonFlag = False,
) -> None:
    """The chain from a model version back to its data, code and ingestion."""
    from cxrflow.lineage import model_lineage

    _print_tree(lambda: model_lineage(name, ref), as_json)


@lineage_app.command("data")
def lineage_data(
    version: Annotated[
        str,
        typer.Argument(
            help="Data version: its DVC md5, or a unique prefix of at least 12 hex digits (the "
            "short form lineage prints)."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Every model version trained on a data version."""
    from cxrflow.lineage import data_lineage

    _print_tree(lambda: data_lineage(version), as_json)


@lineage_app.command("subject")
def lineage_subject(
    pseudonym: Annotated[str, typer.Argument(help="Subject pseudonym (manifest subject_id).")],
    data_dir: Annotated[Path, typer.Option(help="The DVC-tracked dataset directory.")] = Path(
        "data"
    ),
    as_json: JsonFlag = False,
) -> None:
    """Data versions holding a subject's images, and the models trained on them."""
    from cxrflow.lineage import SubjectQuery, subject_lineage

    _print_tree(
        lambda: subject_lineage(pseudonym, SubjectQuery(Path.cwd(), data_dir=data_dir)), as_json
    )


@lineage_app.command("patient")
def lineage_patient(
    key_file: Annotated[Path | None, typer.Option(help="De-identification key file.")] = None,
    data_dir: Annotated[Path, typer.Option(help="The DVC-tracked dataset directory.")] = Path(
        "data"
    ),
    as_json: JsonFlag = False,
) -> None:
    """Like `subject`, from a PatientID (asked at a prompt, never stored or shown)."""
    from cxrflow.keys import KeyError_, load_key
    from cxrflow.lineage import SubjectQuery, patient_lineage

    try:
        key = load_key(key_file)
    except KeyError_ as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-file") from exc
    patient_id = typer.prompt("PatientID", hide_input=True)
    query = SubjectQuery(Path.cwd(), data_dir=data_dir)
    _print_tree(lambda: patient_lineage(patient_id, key, query), as_json)


HostOpt = Annotated[str, typer.Option(envvar="KF_PIPELINES_ENDPOINT", help="KFP API address.")]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter k=v.")
]
TokenOpt = Annotated[
    Path | None, typer.Option(envvar="KF_PIPELINES_SA_TOKEN_PATH", help="Service-account token.")
]


def _pipeline_yaml(path: Path | None) -> Path:
    """The compiled pipeline: the given file, else compiled now (the wheel ships no YAML)."""
    if path is not None:
        return path
    import tempfile

    from pipelines.training import compile_pipeline

    return compile_pipeline(Path(tempfile.mkdtemp(prefix="cxrflow-")) / "training.yaml")


def _cluster_errors() -> tuple[type[Exception], ...]:
    from cxrflow.cluster.config import ClusterConfigError
    from cxrflow.orchestration.submit import KfpApiError

    return (ClusterConfigError, KfpApiError, ValueError)


@app.command()
def submit(
    host: HostOpt,
    param: ParamOpt = None,
    profile: Annotated[
        str,
        typer.Option(
            help="Parameter profile: demo (the pipeline's defaults) or production (paper "
            "presets, continual init, paths on the cluster volumes); --param wins over it."
        ),
    ] = "demo",
    experiment: Annotated[str, typer.Option(help="KFP experiment.")] = "cxrflow",
    pipeline_yaml: Annotated[Path | None, typer.Option(help="Compiled pipeline.")] = None,
    token_path: TokenOpt = None,
    namespace: Annotated[str | None, typer.Option(help="KFP namespace (multi-user).")] = None,
) -> None:
    """Compile and submit a training run to Kubeflow Pipelines."""
    from cxrflow.orchestration.params import parse_params
    from cxrflow.orchestration.submit import submit_run
    from pipelines.parameters import profile as profile_values

    try:
        yaml_path = _pipeline_yaml(pipeline_yaml)
        run_id = submit_run(
            host,
            {**profile_values(profile), **parse_params(param or [], yaml_path)},
            experiment=experiment,
            pipeline_yaml=yaml_path,
            token_path=token_path,
            namespace=namespace,
        )
    except _cluster_errors() as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"submitted run {run_id}")


@app.command()
def schedule(
    host: HostOpt,
    version_name: Annotated[str, typer.Option(help="Pipeline version, e.g. the git commit.")],
    cron: Annotated[str | None, typer.Option(help="6-field cron (seconds first).")] = None,
    spec: Annotated[Path, typer.Option(help="Recurring-run spec.")] = Path(
        "k8s/recurring-run.yaml"
    ),
    param: ParamOpt = None,
    profile: Annotated[
        str,
        typer.Option(help="Parameter profile under the spec's parameters and --param."),
    ] = "production",
    pipeline_yaml: Annotated[Path | None, typer.Option(help="Compiled pipeline.")] = None,
    token_path: TokenOpt = None,
    namespace: Annotated[str | None, typer.Option(help="KFP namespace (multi-user).")] = None,
) -> None:
    """Upload the pipeline version and create a recurring run bound to it."""
    from cxrflow.orchestration.params import parse_params
    from cxrflow.orchestration.submit import schedule_run
    from pipelines.parameters import profile as profile_values

    try:
        yaml_path = _pipeline_yaml(pipeline_yaml)
        run_id = schedule_run(
            host,
            cron,
            spec_path=spec,
            pipeline_yaml=yaml_path,
            version_name=version_name,
            params=parse_params(param or [], yaml_path),
            profile=profile_values(profile),
            token_path=token_path,
            namespace=namespace,
        )
    except _cluster_errors() as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"recurring run {run_id}")


@app.command()
def watch(
    inbox: Annotated[
        Path,
        typer.Option(exists=True, file_okay=False, help="Folder where new DICOM files arrive."),
    ],
    data_dir: Annotated[Path, typer.Option(help="The DVC-tracked dataset directory.")] = Path(
        "data"
    ),
    state_file: Annotated[Path, typer.Option(help="Watcher state.")] = Path(
        ".cxrflow/watch-state.json"
    ),
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 900.0,
    local: Annotated[
        bool, typer.Option("--local", help="Run triggered pipelines with kfp.local.")
    ] = False,
    host: Annotated[
        str, typer.Option(envvar="KF_PIPELINES_ENDPOINT", help="KFP API address.")
    ] = "",
    param: ParamOpt = None,
    ground_truth: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Side-car Parquet to pass on."),
    ] = None,
    pipeline_yaml: Annotated[Path | None, typer.Option(help="Compiled pipeline.")] = None,
    token_path: TokenOpt = None,
    namespace: Annotated[str | None, typer.Option(help="KFP namespace (multi-user).")] = None,
) -> None:
    """Detect new images in an inbox and trigger one pipeline run per new batch."""
    from cxrflow.orchestration.local import LocalSettings
    from cxrflow.orchestration.params import parse_params
    from cxrflow.orchestration.watch import LocalTrigger, RemoteTrigger, watch_once
    from cxrflow.orchestration.watch import watch as watch_loop

    if not local and not host:
        raise typer.BadParameter("give --local or a KFP host (--host / KF_PIPELINES_ENDPOINT)")
    try:
        yaml_path = _pipeline_yaml(pipeline_yaml)
        params = {
            "inbox": str(inbox.resolve()),
            "data_dir": str(data_dir.resolve()),
            "ground_truth": str(ground_truth.resolve()) if ground_truth else "",
            **parse_params(param or [], yaml_path),
        }
        trigger = (
            LocalTrigger(LocalSettings.default(Path.cwd()), params)
            if local
            else RemoteTrigger(
                host, yaml_path, params, "cxrflow-new-images", token_path, namespace, None
            )
        )
        kwargs = {
            "data_dir": data_dir,
            "repo_root": Path.cwd(),
            "state_file": state_file,
            "trigger": trigger,
            "exclude": [ground_truth] if ground_truth else [],
        }
        results = (
            [watch_once(inbox, **kwargs)] if once else watch_loop(interval, inbox=inbox, **kwargs)
        )
    except _cluster_errors() as exc:
        raise typer.BadParameter(str(exc)) from exc
    for r in results:
        typer.echo(
            f"{r.files} files, {r.new_files} new" + (f": run {r.run_id}" if r.triggered else "")
        )


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Serve the MLflow UI on the local tracking store (MLFLOW_TRACKING_URI or ./mlflow.db)."""
    import os
    import subprocess
    import sys

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    typer.echo(f"MLflow UI for {uri} on http://127.0.0.1:{port}")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    subprocess.run([*cmd, "--host", "127.0.0.1", "--port", str(port)], check=False)


@app.command()
def version() -> None:
    """Print the version (as `cxrflow --version`)."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
