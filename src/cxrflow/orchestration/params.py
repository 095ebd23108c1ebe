"""Pipeline parameters from `name=value` strings, typed by the compiled pipeline's IR."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cxrflow.cluster.config import ClusterConfigError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def pipeline_parameters(pipeline_yaml: Path) -> dict[str, dict[str, Any]]:
    """name -> IR parameter definition (`parameterType`, `defaultValue`, `isOptional`)."""
    docs = [d for d in yaml.safe_load_all(Path(pipeline_yaml).read_text()) if d]
    if not docs or "root" not in docs[0]:
        raise ClusterConfigError(f"{pipeline_yaml}: not a compiled KFP pipeline (no 'root')")
    return dict(docs[0]["root"].get("inputDefinitions", {}).get("parameters", {}))


def pipeline_name(pipeline_yaml: Path) -> str:
    """The `pipelineInfo.name` of a compiled pipeline."""
    doc = next(d for d in yaml.safe_load_all(Path(pipeline_yaml).read_text()) if d)
    return str(doc["pipelineInfo"]["name"])


def coerce(name: str, kind: str, value: Any) -> Any:
    """`value` (a string from the command line, or a YAML value) as the IR type `kind`."""
    text = value if isinstance(value, str) else None
    try:
        if kind == "STRING":
            if isinstance(value, (dict, list)):
                raise ValueError("not a string")
            return str(value)
        if kind == "NUMBER_INTEGER":
            if isinstance(value, (bool, float)):
                raise ValueError("not an integer")
            return int(text.strip()) if text is not None else int(value)
        if kind == "NUMBER_DOUBLE":
            if isinstance(value, bool):
                raise ValueError("not a number")
            return float(text) if text is not None else float(value)
        if kind == "BOOLEAN":
            if isinstance(value, bool):
                return value
            if text is not None and text.strip().lower() in _TRUE | _FALSE:
                return text.strip().lower() in _TRUE
            raise ValueError("not a boolean")
        if kind in ("LIST", "STRUCT"):
            parsed = json.loads(text) if text is not None else value
            want = list if kind == "LIST" else dict
            if not isinstance(parsed, want):
                raise ValueError(f"not a JSON {want.__name__}")
            return parsed
    except (ValueError, TypeError, AttributeError) as exc:
        raise ClusterConfigError(
            f"{name}: {value!r} is not a valid {kind.lower().replace('number_', '')} ({exc})"
        ) from exc
    raise ClusterConfigError(f"{name}: unsupported parameter type {kind}")


def type_params(
    values: Mapping[str, Any], pipeline_yaml: Path, *, require_all: bool = False
) -> dict[str, Any]:
    """Type `values` by the pipeline's parameters; refuse unknown names (and missing required)."""
    defs = pipeline_parameters(pipeline_yaml)
    unknown = sorted(set(values) - set(defs))
    if unknown:
        raise ClusterConfigError(
            f"{unknown[0]}: unknown pipeline parameter (known: {', '.join(sorted(defs))})"
        )
    typed = {name: coerce(name, defs[name]["parameterType"], v) for name, v in values.items()}
    from pipelines.parameters import check_values

    try:  # what the submitting machine can check of the values (e.g. `source`'s NAME=DIR items)
        check_values(typed)
    except ValueError as exc:
        raise ClusterConfigError(str(exc)) from exc
    if require_all:
        missing = sorted(n for n, d in defs.items() if not d.get("isOptional") and n not in typed)
        if missing:
            raise ClusterConfigError(f"{missing[0]}: required pipeline parameter is not set")
    return typed


def parse_params(
    items: Iterable[str], pipeline_yaml: Path, *, require_all: bool = False
) -> dict[str, Any]:
    """`["name=value", ...]` -> typed pipeline arguments; errors name the parameter."""
    raw: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ClusterConfigError(f"{item!r}: expected name=value")
        if name in raw:
            raise ClusterConfigError(f"{name}: given twice")
        raw[name] = value
    return type_params(raw, pipeline_yaml, require_all=require_all)
