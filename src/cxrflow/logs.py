"""Logging set-up for the command line: rich output for people, plain lines in pipelines."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from rich.console import Console
from rich.logging import RichHandler
from tqdm import tqdm

T = TypeVar("T")

NOISY_LOGGERS = (
    "alembic",
    "urllib3",
    "dvc",
    "kfp",
    "git",
    "mlflow.store",
    "matplotlib",
    "openjpeg",
    "httpx",
)
REPORT_WIDTH = 160  # columns of a report printed to a pipe or a file
LOG_PROGRESS_EVERY_S = 60.0
PLAIN_PROGRESS = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]\n"


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once; `CXRFLOW_LOG_LEVEL` overrides the level.

    Logs are diagnostics: on stderr, so that stdout carries only what a command prints (its
    JSON included). On a terminal they are rich; elsewhere (a pipeline pod, a CI log, a file)
    they are plain one-line records, never wrapped at 80 columns.
    """
    level = os.environ.get("CXRFLOW_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    console = Console(stderr=True)
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    # Third-party chatter that says nothing to a user of this tool (openjpeg: one line per
    # encoded JPEG 2000 tile).
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if not console.is_terminal:
        quiet_library_bars()


def quiet_library_bars() -> None:
    """Turn off third-party progress bars in this process and the processes it starts.

    transformers' "Loading weights" bar (one per model load), the hub's bars and MLflow's
    "Downloading artifacts" bar redraw with carriage returns: in a log they are one line per
    frame. Read when those libraries are imported; a value already set is kept.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def report_console() -> Console:
    """A console for a command's human-readable output: as wide as its tables when not a TTY.

    Rich falls back to 80 columns when stdout is a pipe or a file, which cuts wide tables into
    ellipses; $COLUMNS still wins where it is set.
    """
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=REPORT_WIDTH)
    return console


def progress_bar(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm[T]:
    """A tqdm bar on stderr: live on a terminal, one plain line a minute elsewhere.

    Redrawn with carriage returns into a pod's log or a file, a bar becomes one line of
    hundreds of frames; there it prints a line per update, at most once a minute.
    """
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_PROGRESS_EVERY_S)
        kwargs.setdefault("maxinterval", LOG_PROGRESS_EVERY_S)
        kwargs.setdefault(
            "bar_format", "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]\n"
        )
    return tqdm(iterable, **kwargs)
