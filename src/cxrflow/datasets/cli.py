"""Public chest X-ray datasets as a data source: list the adapters, import one, or several.

An import writes what the DICOM ingest writes (images/<subject>/<image>.png, manifest.parquet,
quarantine, audit, state, run record) with keyed pseudonyms, so the split, pre-training and
every later stage read it unchanged. It prints a JSON summary on stdout: per dataset, images
listed = written + already imported + missing + unreadable + duplicates, the missing and
unreadable files by their path under the dataset's root, subjects and per-finding label counts
listed and imported, and what a release lacked (notes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from cxrflow.datasets.importer import (
    ImportConfig,
    ImportSummary,
    Source,
    check_images_found,
    import_dataset,
    import_datasets,
)
from cxrflow.datasets.multi_cxr import EVALUATION_DATASETS, MULTI_CXR
from cxrflow.datasets.registry import ADAPTERS
from cxrflow.ingest.commit import IngestLockedError
from cxrflow.keys import SecretKey, check_key_location, load_key, repository_root

log = logging.getLogger(__name__)


class _Group(TyperGroup):
    """User errors (ValueError, OSError) as one line on stderr, exit 1, also when run alone."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IngestLockedError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(75) from None  # EX_TEMPFAIL, as ingest: try again later
        except (ValueError, OSError) as exc:
            log.debug("traceback", exc_info=exc)
            message = " ".join(str(exc).split()) or type(exc).__name__
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None


# The module docstring, its paragraphs unwrapped: rich keeps a docstring's line breaks.
HELP = "\n\n".join(" ".join(p.split()) for p in (__doc__ or "").split("\n\n"))
app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, help=HELP)

KeyFile = Annotated[
    Path | None,
    typer.Option(
        help="File holding the de-identification secret (else $CXRFLOW_DEID_KEY_FILE or "
        "$CXRFLOW_DEID_KEY): the same key as ingest, so pseudonyms match."
    ),
]
Out = Annotated[Path, typer.Option("--out", help="Dataset directory to write or extend.")]
MaxSide = Annotated[int, typer.Option(min=16, help="Longest side of the written PNGs.")]
PngBits = Annotated[int, typer.Option(help="Bit depth of the written PNGs: 8 or 16.")]
Workers = Annotated[int, typer.Option(min=1, help="Worker processes that decode images.")]
Wait = Annotated[
    float,
    typer.Option(
        help="Seconds to wait for another writer of --out (0: fail at once, < 0: for ever)."
    ),
]
Progress = Annotated[bool, typer.Option(help="Show a progress bar on stderr.")]


def _echo(summary: ImportSummary) -> None:
    typer.echo(json.dumps(summary.to_dict(), indent=2))


def _option_value(text: str) -> Any:
    """A JSON value (numbers, true/false) when it parses as one, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(values: list[str] | None, param: str, what: str) -> list[tuple[str, str]]:
    """`A=B` items of a repeated option, refused by name when malformed."""
    out = []
    for item in values or []:
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise ValueError(f"{param} {item!r}: expected {what}")
        out.append((left.strip(), right.strip()))
    return out


def _adapter_options(values: list[str] | None, param: str = "--option") -> dict[str, Any]:
    return {k: _option_value(v) for k, v in _pairs(values, param, "KEY=VALUE")}


def _source(name: str, root: Path, options: dict[str, Any], param: str) -> Source:
    if name not in ADAPTERS:
        raise ValueError(
            f"{param}: unknown dataset {name!r}; known datasets: {', '.join(sorted(ADAPTERS))}"
        )
    if not root.is_dir():
        raise FileNotFoundError(f"{param} for {name}: {root} is not a directory")
    return Source(name, root, options)


def _config(
    out: Path, max_side: int, png_bits: int, workers: int, wait: float, progress: bool
) -> ImportConfig:
    if png_bits not in (8, 16):
        raise ValueError(f"--png-bits must be 8 or 16, got {png_bits}")
    return ImportConfig(
        output_dir=out,
        max_side=max_side,
        png_bits=png_bits,  # type: ignore[arg-type]
        workers=workers,
        lock_timeout_s=wait,
        show_progress=progress,
    )


def _key(key_file: Path | None, out: Path, roots: list[Path]) -> SecretKey:
    """The de-identification key, refused inside a dataset root, --out or the repository."""
    key = load_key(key_file)
    check_key_location(key_file, *roots, out, repository=repository_root())
    return key


@app.command("list")
def list_datasets() -> None:
    """The datasets that can be imported, as JSON: name -> description, masks, cohort prefix."""
    typer.echo(
        json.dumps(
            {
                n: {"description": a.description, "has_masks": a.has_masks, "cohort": a.namespace}
                for n, a in sorted(ADAPTERS.items())
            },
            indent=2,
        )
    )


@app.command("import")
def import_one(
    name: Annotated[str, typer.Argument(help=f"Dataset: {', '.join(sorted(ADAPTERS))}.")],
    root: Annotated[
        Path, typer.Option("--root", help="Folder of the release (its metadata and images).")
    ],
    out: Out,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Adapter option KEY=VALUE, repeatable (uncertain=positive, blank=negative, "
            "vote=majority, min_dice=0.7).",
        ),
    ] = None,
    key_file: KeyFile = None,
    max_side: MaxSide = 1024,
    png_bits: PngBits = 16,
    workers: Workers = 1,
    wait: Wait = 0,
    progress: Progress = True,
) -> None:
    """Import one public dataset into a dataset directory (pseudonymised, PNGs as ingest)."""
    source = _source(name, root, _adapter_options(option), "--root")
    config = _config(out, max_side, png_bits, workers, wait, progress)
    summary = import_dataset(source, config, _key(key_file, out, [root]))
    _echo(summary)
    check_images_found(summary, [source])


@app.command("import-multi")
def import_multi(
    root: Annotated[
        list[str],
        typer.Option(
            "--root",
            help="NAME=DIR of a dataset to import, repeatable: e.g. --root chexpert=/data/"
            "CheXpert-v1.0 --root padchest=/data/padchest.",
        ),
    ],
    out: Out,
    eval_root: Annotated[
        list[str] | None,
        typer.Option(
            "--eval-root",
            help="NAME=DIR of an evaluation dataset whose subjects are left out (only its "
            f"metadata is read), repeatable; the paper's: {', '.join(EVALUATION_DATASETS)}.",
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", help="Adapter option NAME.KEY=VALUE, repeatable (chexpert.uncertain=1)."
        ),
    ] = None,
    recipe: Annotated[
        bool,
        typer.Option(
            help="Filter the paper's sources by the Multi-CXR recipe ("
            + "; ".join(
                f"{s.dataset}: "
                + ("all views" if s.views is None else "/".join(s.views))
                + ("" if s.official_splits is None else f", {'/'.join(s.official_splits)} only")
                for s in MULTI_CXR
            )
            + "); --no-recipe keeps every image."
        ),
    ] = True,
    key_file: KeyFile = None,
    max_side: MaxSide = 1024,
    png_bits: PngBits = 16,
    workers: Workers = 1,
    wait: Wait = 0,
    progress: Progress = True,
) -> None:
    """Import several datasets into one pre-training set (the paper's Multi-CXR by default).

    Example, the paper's five public sources without the subjects of its evaluation sets:

    cxrflow datasets import-multi --root brax=B --root chexpert=C --root mimic_cxr=M --root chestxray14=N --root padchest=P --eval-root vindr_cxr=V --out data
    """  # noqa: E501
    per_dataset: dict[str, dict[str, Any]] = {}
    for dotted, value in _pairs(option, "--option", "NAME.KEY=VALUE"):
        ds, dot, opt = dotted.partition(".")
        if not dot or not opt:
            raise ValueError(f"--option {dotted}={value!r}: expected NAME.KEY=VALUE")
        per_dataset.setdefault(ds, {})[opt] = _option_value(value)
    sources = [
        _source(n, Path(d), per_dataset.pop(n, {}), "--root")
        for n, d in _pairs(root, "--root", "NAME=DIR")
    ]
    evaluation = [
        _source(n, Path(d), per_dataset.pop(n, {}), "--eval-root")
        for n, d in _pairs(eval_root, "--eval-root", "NAME=DIR")
    ]
    if per_dataset:
        raise ValueError(
            f"--option names datasets not given by --root/--eval-root: {', '.join(per_dataset)}"
        )
    config = _config(out, max_side, png_bits, workers, wait, progress)
    key = _key(key_file, out, [s.root for s in (*sources, *evaluation)])
    summary = import_datasets(
        sources, config, key, evaluation=evaluation, recipe=MULTI_CXR if recipe else None
    )
    _echo(summary)
    check_images_found(summary, sources)
