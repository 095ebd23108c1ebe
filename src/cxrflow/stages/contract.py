"""The stage contract: typed parameters in, a typed result out, both plain dataclasses.

Every stage module under `cxrflow.stages` exposes `Params` (a frozen dataclass whose fields are
the stage's knobs, each declared once with `param(default, help)`) and `run(params) -> Result`.
The adapters derive what they need from these declarations: command-line options for the
per-node entry point (`to_argv` / `from_argv`), JSON for results that cross a process boundary
(`to_json` / `from_json`), and the help text of the KFP run form and `--help` (`help_of`).

Field types are limited to what crosses every boundary unchanged: str, int, float, bool and
Path (optionally `| None`), plus dicts/lists of those in results; and value types written as
one string, which declare a `parse(str)` classmethod that `str()` inverts (e.g. the
pre-training `EncoderInit`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HELP = "help"


class ParamsError(ValueError):
    """A stage parameter is missing or malformed (the message names it)."""


def param(default: Any = dataclasses.MISSING, *, help: str) -> Any:
    """A stage parameter: its default and the one help text every adapter shows."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={HELP: help})
    return dataclasses.field(default=default, metadata={HELP: help})


def help_of(cls: type) -> dict[str, str]:
    """Field name -> help text of a Params dataclass."""
    return {f.name: f.metadata.get(HELP, "") for f in dataclasses.fields(cls)}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether None is allowed)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _convert(name: str, hint: Any, value: Any) -> Any:
    """`value` (from JSON or a command line) as the field's declared type."""
    base, optional = _base_type(hint)
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ParamsError(f"{name}: a value is required")
    try:
        if base is Path:
            return Path(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError("not a boolean")
        if isinstance(base, type) and isinstance(value, base):
            return value
        if callable(getattr(base, "parse", None)):
            return base.parse(str(value))
        if base in (int, float, str):
            if base is int and isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            return base(value)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{name}: {value!r} is not a valid {base.__name__} ({exc})") from exc
    return value  # dicts, lists and nested values of results: as JSON gave them


def from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """A dataclass from its `to_json` form; unknown keys are refused by name."""
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown field of {cls.__name__}")
    values = {k: _convert(k, hints[k], v) for k, v in data.items()}
    return cls(**values)


def pick(cls: type[T], values: Mapping[str, Any], **overrides: Any) -> T:
    """A dataclass from the entries of `values` that are its fields (e.g. a KFP component's
    `locals()`), typed like `from_json`; `overrides` win."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    chosen = {k: v for k, v in values.items() if k in known} | overrides
    return from_json(cls, chosen)


def _plain(value: Any) -> Any:
    if isinstance(value, Path) or callable(getattr(type(value), "parse", None)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(obj: Any) -> dict[str, Any]:
    """A dataclass as JSON-able values (paths as strings)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def to_argv(params: Any) -> tuple[str, ...]:
    """`--field value` for every field set (None is left out: the default applies)."""
    argv: list[str] = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None:
            continue
        argv += [f"--{f.name.replace('_', '-')}", str(value)]
    return tuple(argv)


def argument_parser(
    cls: type, prog: str, description: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with one option per field (required when it has no default)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for f in dataclasses.fields(cls):
        flag = f"--{f.name.replace('_', '-')}"
        has_default = f.default is not dataclasses.MISSING
        parser.add_argument(
            flag,
            dest=f.name,
            required=not has_default,
            default=f.default if has_default else None,
            help=f.metadata.get(HELP, ""),
        )
    return parser


def from_argv(cls: type[T], argv: Sequence[str] | None, prog: str) -> T:
    """The inverse of `to_argv`: values typed by the dataclass's fields."""
    parsed = vars(argument_parser(cls, prog, cls.__doc__).parse_args(argv))
    return from_json(cls, parsed)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically: a reader on a shared volume never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
