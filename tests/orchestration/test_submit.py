"""Typed pipeline parameters, the recurring-run request, and a clear error when KFP is down."""

from __future__ import annotations

import socket

import pytest

from cxrflow.cluster.config import ClusterConfigError
from cxrflow.orchestration.params import parse_params
from cxrflow.orchestration.schedule import load_recurring_run
from cxrflow.orchestration.submit import (
    KfpApiError,
    read_token,
    schedule_request,
    schedule_run,
    submit_run,
)
from tests.cluster.conftest import K8S, ROOT

PIPELINE = ROOT / "pipelines" / "training.yaml"
SPEC = K8S / "recurring-run.yaml"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_values_are_typed_by_the_compiled_pipeline():
    params = parse_params(
        [
            "inbox=/data/inbox",
            "data_dir=/data/dataset",
            "max_side=512",
            "train_ratio=0.8",
            "write_dicom=true",
            "clean_descriptors=No",
            "split_seed=42",
        ],
        PIPELINE,
    )
    assert params == {
        "inbox": "/data/inbox",
        "data_dir": "/data/dataset",
        "max_side": 512,
        "train_ratio": 0.8,
        "write_dicom": True,
        "clean_descriptors": False,
        "split_seed": "42",  # a STRING parameter stays a string
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["epochs=3"], r"^epochs: unknown pipeline parameter"),
        (["max_side=big"], r"^max_side: 'big' is not a valid integer"),
        (["max_side=1.5"], r"^max_side: '1.5' is not a valid integer"),
        (["train_ratio=most"], r"^train_ratio: 'most' is not a valid double"),
        (["write_dicom=maybe"], r"^write_dicom: 'maybe' is not a valid boolean"),
        (["inbox"], r"^'inbox': expected name=value"),
        (["inbox=a", "inbox=b"], r"^inbox: given twice"),
        (["source=chexpert"], r"^source: 'chexpert' is not NAME=DIR"),
        (["source=padchest=/d,nih=/e"], r"^source: unknown dataset 'nih'"),
        (["source=chexpert=/a,chexpert=/b"], r"^source: dataset 'chexpert' is given more"),
    ],
)
def test_bad_names_and_values_are_refused_by_name(items, message):
    with pytest.raises(ClusterConfigError, match=message):
        parse_params(items, PIPELINE)


def test_missing_required_parameters_are_named():
    with pytest.raises(ClusterConfigError, match=r"^data_dir: required"):
        parse_params(["inbox=/x"], PIPELINE, require_all=True)


def test_schedule_request_merges_overrides_and_types_them():
    spec = schedule_request(
        load_recurring_run(SPEC), PIPELINE, cron="0 30 3 * * *", params={"max_side": "768"}
    )
    assert spec.cron == "0 30 3 * * *"
    kwargs = spec.create_recurring_run_kwargs("e", "p", "v")
    # The spec's parameters (the production profile: tests/pipelines/test_profiles.py) + overrides.
    assert kwargs["params"] == {
        "inbox": "/data/inbox",
        "data_dir": "/data/dataset",
        "repo_root": "/data",
        "dvc_remote": "",
        "runs_dir": "/checkpoints/runs",
        "pretrain_preset": "paper",
        "pretrain_init": "champion",
        "heads_preset": "paper",
        "report_preset": "paper",
        "max_side": 768,
    }
    assert kwargs["cron_expression"] == "0 30 3 * * *" and kwargs["version_id"] == "v"
    with pytest.raises(ClusterConfigError, match=r"^cron:"):
        schedule_request(load_recurring_run(SPEC), PIPELINE, cron="0 3 * * *")
    with pytest.raises(ClusterConfigError, match=r"^pipeline:"):
        schedule_request(load_recurring_run(SPEC), PIPELINE, pipeline_name="other")


def test_token_comes_from_the_projected_token_file(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("eyJhbGciOi.sa-token\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    assert read_token() == "eyJhbGciOi.sa-token"
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(KfpApiError, match="token file not found"):
        read_token()


def test_submit_to_an_unreachable_api_names_the_host(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client may write ~/.config/kfp
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    host = f"http://127.0.0.1:{closed_port()}"
    params = {"inbox": "/data/inbox", "data_dir": "/data/dataset"}
    with pytest.raises(KfpApiError, match=f"KFP API at {host} is unreachable"):
        submit_run(host, params, experiment="cxrflow-test", pipeline_yaml=PIPELINE)
    with pytest.raises(KfpApiError, match=f"KFP API at {host} is unreachable"):
        schedule_run(host, spec_path=SPEC, pipeline_yaml=PIPELINE, version_name="v1")


def test_submit_refuses_bad_parameters_before_any_request():
    with pytest.raises(ClusterConfigError, match=r"^data_dir: required"):
        submit_run("http://127.0.0.1:9", {"inbox": "/x"}, experiment="e", pipeline_yaml=PIPELINE)


def test_submit_refuses_a_malformed_source_before_any_request():
    params = {"inbox": "/x", "data_dir": "/d", "source": "chexpert:/data/chexpert"}
    with pytest.raises(ClusterConfigError, match=r"^source: 'chexpert:/data/chexpert' is not"):
        submit_run("http://127.0.0.1:9", params, experiment="e", pipeline_yaml=PIPELINE)


def test_a_well_formed_source_passes_without_seeing_the_cluster_volumes():
    params = parse_params(["source=chexpert=/nowhere/chexpert,chestxray14=/nowhere/nih"], PIPELINE)
    assert params == {"source": "chexpert=/nowhere/chexpert,chestxray14=/nowhere/nih"}
