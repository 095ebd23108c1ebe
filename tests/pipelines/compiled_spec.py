"""Reading the compiled pipeline spec (pipelines/training.yaml) in tests."""

from __future__ import annotations

from typing import Any


def find_task(spec: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The task of that name in whichever DAG holds it, with its DAG's component name."""
    for component, body in spec["components"].items():
        tasks = body.get("dag", {}).get("tasks", {})
        if name in tasks:
            return component, tasks[name]
    raise KeyError(name)
