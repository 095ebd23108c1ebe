"""Logging set-up for the command line: rich output for people, plain lines in pipelines."""

from __future__ import annotations

import logging
import os

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once; `CXRFLOW_LOG_LEVEL` overrides the level."""
    level = os.environ.get("CXRFLOW_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        # Logs are diagnostics: on stderr, so that stdout carries only what a command prints
        # (its JSON included).
        handlers=[
            RichHandler(
                console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
            )
        ],
        force=True,
    )
    # Third-party chatter that says nothing to a user of this tool.
    for noisy in ("alembic", "urllib3", "dvc", "kfp", "git", "mlflow.store", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
