"""Parameter profiles: typed, declared, applied by submit/schedule, equal to the recurring run."""

import inspect

import pytest
import yaml
from typer.testing import CliRunner

from cxrflow.cli import app
from cxrflow.orchestration import submit as submit_module
from cxrflow.orchestration.params import type_params
from cxrflow.orchestration.schedule import load_recurring_run
from pipelines.kubernetes import CHECKPOINT_MOUNT, DATA_MOUNT
from pipelines.parameters import PRODUCTION, PROFILES, check_profile, profile
from pipelines.training import COMPILED, training_pipeline
from tests.cluster.conftest import K8S

runner = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"})
SIGNATURE = inspect.signature(training_pipeline.pipeline_func)
RECURRING = K8S / "recurring-run.yaml"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_is_declared_typed_and_accepted_by_the_compiled_pipeline(name):
    check_profile(PROFILES[name], SIGNATURE)
    assert type_params(PROFILES[name], COMPILED) == dict(PROFILES[name])


def test_production_uses_the_paper_presets_continual_init_and_the_cluster_volumes():
    assert PRODUCTION["pretrain_preset"] == "paper"
    assert PRODUCTION["heads_preset"] == PRODUCTION["report_preset"] == "paper"
    assert PRODUCTION["pretrain_init"] == "champion"
    assert str(PRODUCTION["runs_dir"]).startswith(CHECKPOINT_MOUNT + "/")
    for name in ("inbox", "data_dir"):
        assert str(PRODUCTION[name]).startswith(DATA_MOUNT + "/"), name
    # The dataset lies inside the DVC project the versioning step keeps on the data volume.
    assert str(PRODUCTION["data_dir"]).startswith(str(PRODUCTION["repo_root"]) + "/")
    assert PRODUCTION["dvc_remote"] == ""  # the pods read it from cxrflow-pipeline-config
    assert PROFILES["demo"] == {}  # the pipeline's defaults


def test_the_recurring_run_sets_exactly_the_production_profile():
    raw = yaml.safe_load(RECURRING.read_text())["parameters"]
    assert raw == dict(PRODUCTION)
    spec = submit_module.schedule_request(load_recurring_run(RECURRING), COMPILED)
    assert dict(spec.parameters) == dict(PRODUCTION)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"no_such_param": 1}, r"^no_such_param: not a declared"),
        ({"pretrain_steps": "10"}, r"^pretrain_steps: '10' is not of type int"),
        ({"pretrain_steps": True}, r"^pretrain_steps: True is not of type int"),
        ({"write_dicom": 1}, r"^write_dicom: 1 is not of type bool"),
        ({"source": "chexpert"}, r"^source: 'chexpert' is not NAME=DIR"),
        ({"source": "nih=/data/nih"}, r"^source: unknown dataset 'nih'; known datasets: brax, "),
        ({"source": "chexpert=/a, chexpert=/b"}, r"^source: dataset 'chexpert' is given more"),
    ],
)
def test_bad_profile_values_are_refused_by_name(values, message):
    with pytest.raises(ValueError, match=message):
        check_profile(values, SIGNATURE)
    check_profile({"train_ratio": 1}, SIGNATURE)  # an int is a float
    # The roots are on the cluster's volumes: checked by the import step, not at submit time.
    check_profile({"source": "chexpert=/data/public/chexpert,padchest=/p"}, SIGNATURE)


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match=r"^profile: 'prod' is not a profile \(known: demo, "):
        profile("prod")


def test_submit_profile_production_sends_its_values_and_param_wins(monkeypatch):
    sent = {}

    def fake_submit_run(host, params, **kwargs):
        sent.update(params)
        return "run-1"

    monkeypatch.setattr(submit_module, "submit_run", fake_submit_run)
    result = runner.invoke(
        app,
        [
            "submit",
            "--host",
            "http://kfp.invalid",
            "--profile",
            "production",
            "--pipeline-yaml",
            str(COMPILED),
            "--param",
            "heads_preset=tiny",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sent == {**PRODUCTION, "heads_preset": "tiny"}
    bad = runner.invoke(app, ["submit", "--host", "h", "--profile", "x", "--pipeline-yaml", "p"])
    assert bad.exit_code != 0 and "profile: 'x' is not a profile" in bad.output


def test_schedule_applies_the_production_profile_under_the_spec_and_params(monkeypatch, tmp_path):
    spec = tmp_path / "run.yaml"
    data = yaml.safe_load(RECURRING.read_text())
    data["parameters"] = {"inbox": "/data/other-inbox", "data_dir": "/data/dataset"}
    spec.write_text(yaml.safe_dump(data))
    seen = {}

    def fake_schedule_run(host, cron=None, *, spec_path, pipeline_yaml, params, profile, **_):
        request = submit_module.schedule_request(
            load_recurring_run(spec_path), pipeline_yaml, cron=cron, params=params, profile=profile
        )
        seen.update(request.parameters)
        return "rr-1"

    monkeypatch.setattr(submit_module, "schedule_run", fake_schedule_run)
    args = ["schedule", "--host", "h", "--version-name", "v1", "--spec", str(spec)]
    args += ["--pipeline-yaml", str(COMPILED), "--param", "report_preset=tiny"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == {**PRODUCTION, "inbox": "/data/other-inbox", "report_preset": "tiny"}
