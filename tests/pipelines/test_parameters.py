"""Parameters are declared once: the pipeline, the components and the CLI agree with the stages.

Each stage's `Params` dataclass declares a knob's name, type, default and help text. KFP reads a
component's or pipeline's interface from its Python signature, so those signatures repeat the
names and defaults; these tests hold them to the declarations, so the KFP run form, the
components and `cxrflow ... --help` say the same thing.
"""

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
import typer.main
import yaml

from components.data_version import version_data
from components.evaluate import evaluate
from components.gate import data_gate
from components.heads import heads
from components.import_public import import_public
from components.ingest import ingest
from components.pretrain import pretrain
from components.publish import publish
from components.report import report
from components.shard import ingest_shard
from components.split import split
from cxrflow.cli import app
from cxrflow.cluster.dispatch import JobOptions
from cxrflow.stages import evaluate as evaluate_stage
from cxrflow.stages import gate as gate_stage
from cxrflow.stages import heads as heads_stage
from cxrflow.stages import import_public as import_stage
from cxrflow.stages import ingest as ingest_stage
from cxrflow.stages import pretrain as pretrain_stage
from cxrflow.stages import publish as publish_stage
from cxrflow.stages import report as report_stage
from cxrflow.stages import split as split_stage
from cxrflow.stages import version as version_stage
from cxrflow.stages.contract import help_of
from pipelines.parameters import DECLARED, PIPELINE_ONLY, declared_default, help_text
from pipelines.training import COMPILED, training_pipeline

# Component inputs that are the adapter's own: artifacts, where runs keep files, job settings.
ADAPTER_ONLY = {
    "runs_dir",
    "dataset",
    "heads_results",
    "report_results",
    "shard",
    "n_shards",
    "shard_dir",
}
JOB_SETTINGS = {
    "nodes": "nodes",
    "gpus_per_node": "gpus_per_node",
    "job_backend": "backend",
    "job_runtime": "runtime",
    "job_image": "image",
    "job_namespace": "namespace",
    "job_timeout_hours": "timeout_hours",
    "keep_job": "keep_job",
}
# Component input -> stage field where the names differ.
RENAMED = {("evaluate", "heads_results"): "heads_dir"}

COMPONENTS = [
    (ingest, ingest_stage.Params),
    (ingest_shard, ingest_stage.Params),
    (import_public, import_stage.Params),
    (split, split_stage.Params),
    (version_data, version_stage.Params),
    (data_gate, gate_stage.Params),
    (pretrain, pretrain_stage.Params),
    (heads, heads_stage.Params),
    (report, report_stage.Params),
    (evaluate, evaluate_stage.Params),
    (publish, publish_stage.Params),
]


def _kfp_default(value):
    """A stage default as KFP holds it: Path/None become strings ("" for none)."""
    if value is None:
        return ""
    return str(value) if isinstance(value, Path) else value


def _field(cls, name):
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)


def _kfp_type(cls, name):
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    # Path and one-string value types (a `parse` classmethod) cross KFP as str
    return str if base is Path or hasattr(base, "parse") else base


@pytest.mark.parametrize("component, params", COMPONENTS, ids=lambda c: getattr(c, "name", ""))
def test_component_inputs_are_the_stage_parameters(component, params):
    signature = inspect.signature(component.python_func)
    for name, p in signature.parameters.items():
        annotation = str(p.annotation)
        if "Output" in annotation or "Input" in annotation or name in ADAPTER_ONLY:
            continue
        cls, field_name = (
            (JobOptions, JOB_SETTINGS[name])
            if name in JOB_SETTINGS
            else (
                params,
                RENAMED.get((component.name, name), name),
            )
        )
        f = _field(cls, field_name)
        assert f is not None, f"{component.name}.{name} is not a field of {cls.__qualname__}"
        assert p.annotation is _kfp_type(cls, field_name), f"{component.name}.{name}: type"
        if p.default is not inspect.Parameter.empty and f.default is not dataclasses.MISSING:
            assert p.default == _kfp_default(f.default), f"{component.name}.{name}: default"


def test_pipeline_parameters_are_declared_with_their_defaults_and_help():
    signature = inspect.signature(training_pipeline.pipeline_func)
    assert set(signature.parameters) == set(DECLARED) | set(PIPELINE_ONLY)
    for name, p in signature.parameters.items():
        assert help_text(name), f"{name} has no help text"
        if name in PIPELINE_ONLY:
            continue
        cls, field_name = DECLARED[name]
        assert p.annotation is _kfp_type(cls, field_name), f"{name}: type"
        default = declared_default(name)
        if default is not None or p.default is not inspect.Parameter.empty:
            assert p.default == _kfp_default(default), f"{name}: default"


def test_the_run_form_shows_the_declared_help():
    spec = next(d for d in yaml.safe_load_all(COMPILED.read_text()) if d)
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name, definition in params.items():
        description = " ".join(definition.get("description", "").split())
        assert description == " ".join(help_text(name).split()), name


CLI_STAGES = {
    "pretrain": pretrain_stage.Params,
    "heads": heads_stage.Params,
    "report": report_stage.Params,
    "split": split_stage.Params,
}


@pytest.mark.parametrize("command", sorted(CLI_STAGES))
def test_cli_options_say_what_the_stage_declares(command):
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    helps = help_of(CLI_STAGES[command])
    for option in click_command.params:
        if option.name in helps:
            assert option.help == helps[option.name], f"cxrflow {command} --{option.name}"


def test_sharded_ingest_pipeline_parameters_are_the_ingest_stages():
    from pipelines.sharded_ingest import sharded_ingest_pipeline

    fields = {f.name: f for f in dataclasses.fields(ingest_stage.Params)}
    own = {"n_shards", "work_dir", "keep_shards"}
    signature = inspect.signature(sharded_ingest_pipeline.pipeline_func)
    for name, p in signature.parameters.items():
        if name in own:
            continue
        assert name in fields, f"sharded_ingest_pipeline.{name} is not an ingest parameter"
        if fields[name].default is not dataclasses.MISSING:
            assert p.default == _kfp_default(fields[name].default), name
