"""The stage contract: Params from a command line, JSON or a component's inputs, and back."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from cxrflow.stages import pretrain, report
from cxrflow.stages.contract import (
    ParamsError,
    from_argv,
    from_json,
    help_of,
    param,
    pick,
    to_argv,
    to_json,
)


@dataclass(frozen=True)
class Knobs:
    """A stage's knobs, for the test."""

    data_dir: Path = param(help="Where the data are.")
    steps: int = param(0, help="Steps.")
    rate: float = param(0.5, help="A rate.")
    fast: bool = param(False, help="Go fast.")
    init_from: Path | None = param(None, help="Optional start.")
    name: str = param("x", help="A name.")


def test_argv_round_trip_types_every_field():
    knobs = Knobs(Path("/d"), steps=3, rate=0.25, fast=True, init_from=Path("/w"), name="n")
    assert from_argv(Knobs, to_argv(knobs), prog="t") == knobs
    plain = Knobs(Path("/d"))
    assert "--init-from" not in to_argv(plain)  # None is left out: the default applies
    assert from_argv(Knobs, to_argv(plain), prog="t") == plain


def test_json_round_trip_and_empty_optional_paths():
    knobs = Knobs(Path("/d"), init_from=Path("/w"))
    assert to_json(knobs)["init_from"] == "/w"
    assert from_json(Knobs, to_json(knobs)) == knobs
    assert from_json(Knobs, {"data_dir": "/d", "init_from": ""}).init_from is None


def test_bad_values_and_unknown_fields_are_refused_by_name():
    with pytest.raises(ParamsError, match="steps: 'many' is not a valid int"):
        from_json(Knobs, {"data_dir": "/d", "steps": "many"})
    with pytest.raises(ParamsError, match="fast: 'maybe' is not a valid bool"):
        from_json(Knobs, {"data_dir": "/d", "fast": "maybe"})
    with pytest.raises(ParamsError, match="stepz: unknown field of Knobs"):
        from_json(Knobs, {"data_dir": "/d", "stepz": 1})
    with pytest.raises(ParamsError, match="data_dir: a value is required"):
        from_json(Knobs, {"data_dir": None})
    with pytest.raises(SystemExit):  # argparse names the missing --data-dir
        from_argv(Knobs, ["--steps", "1"], prog="t")


def test_pick_takes_the_fields_of_a_components_inputs():
    inputs = {"data_dir": "/d", "steps": 2, "runs_dir": "/r", "nodes": 4, "init_from": ""}
    assert pick(Knobs, inputs, name="y") == Knobs(Path("/d"), steps=2, name="y")


def test_every_stage_parameter_has_help():
    for cls in (Knobs, pretrain.Params, report.Params):
        assert all(help_of(cls).values()), cls


def test_run_folders_are_keyed_by_data_and_settings():
    a = pretrain.Params.in_runs_dir(Path("/runs"), data_dir="/d", data_version="v1", steps=5)
    assert str(a.out_dir).startswith("/runs/pretrain-v1-") and a.data_dir == Path("/d")
    same = pretrain.Params.in_runs_dir(
        Path("/runs"), {"data_dir": "/d", "data_version": "v1"}, steps=5
    )
    assert same.out_dir == a.out_dir
    other = pretrain.Params.in_runs_dir(Path("/runs"), data_dir="/d", data_version="v1", steps=6)
    assert other.out_dir != a.out_dir
    r = report.Params.in_runs_dir(
        Path("/runs"), data_dir="/d", encoder_dir="/e", data_version="0123456789abcdef"
    )
    assert r.out_dir == Path("/runs/report-0123456789ab-local-tiny") and r.lm_dir is None
