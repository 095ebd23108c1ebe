import json

import pytest

from cxrflow.registry import (
    CANDIDATE,
    CHAMPION,
    ENCODER_MODEL,
    GateConfig,
    GateConfigError,
    LineageTags,
    LineageTagsError,
    MetricRule,
    ParentModel,
    check_tags,
    lineage_for,
    record_metrics,
    register_candidate,
    run_gate,
)
from cxrflow.registry.gate import TAG_DECISION, TAG_DETAILS, TAG_REASON
from tests.registry.helpers import PROFILE, model_run, upstream
from tests.registry.ui_checks import missing_on_page, version_page_expectations

MD5 = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SPLIT = "5p1itd1gest0001"


def _encoder(tracking, pipeline_run="kfp-1", md5=MD5, split=SPLIT):
    upstream(pipeline_run, md5, split)
    run_id = model_run("pretrain", pipeline_run, md5)
    lineage = lineage_for(pipeline_run, "encoder", params_digest="p" * 16, client=tracking)
    return register_candidate(f"runs:/{run_id}/model", ENCODER_MODEL, lineage, client=tracking)


def test_versions_carry_every_lineage_tag_and_become_candidates(tracking):
    enc = _encoder(tracking)
    assert check_tags(enc) == []
    assert enc.tags["cxrflow.data_version"] == MD5
    assert enc.tags["cxrflow.split_digest"] == SPLIT
    assert enc.tags["cxrflow.pipeline_run"] == "kfp-1"
    assert enc.tags["cxrflow.deid_profile"] == PROFILE
    assert json.loads(enc.tags["cxrflow.deid_options"]) == {
        "retain_patient_characteristics": True,
        "retain_longitudinal_modified_dates": True,
        "clean_descriptors": True,
    }
    assert CANDIDATE in enc.aliases

    head_run = model_run("heads", "kfp-1", MD5)
    lineage = lineage_for(
        "kfp-1",
        "head",
        params_digest="p" * 16,
        parents=[ParentModel(ENCODER_MODEL, str(enc.version))],
        client=tracking,
    )
    head = register_candidate(
        f"runs:/{head_run}/model", "cxrflow-head-seg", lineage, client=tracking
    )
    assert check_tags(head) == []
    assert head.tags["cxrflow.encoder_version"] == str(enc.version)
    assert head.tags["cxrflow.parent_models"] == f"{ENCODER_MODEL}:{enc.version}"
    assert LineageTags.from_tags(dict(head.tags)) == lineage


def test_lineage_records_refuse_missing_fields(tracking):
    with pytest.raises(LineageTagsError, match="parents"):
        lineage_for(
            "kfp-x",
            "head",
            params_digest="d",
            data_version="m",
            split_digest="s",
            deid_profile="p",
            client=tracking,
        )
    with pytest.raises(LineageTagsError, match="data_version"):
        lineage_for("kfp-nothing", "encoder", params_digest="d", client=tracking)
    with pytest.raises(LineageTagsError, match="missing lineage tags: kind"):
        LineageTags.from_tags({})


def _gate() -> GateConfig:
    return GateConfig(
        metrics=(MetricRule("cls.auprc.macro", "higher", 0.01), MetricRule("loss", "lower", 0.0))
    )


def test_gate_promotes_first_then_refuses_worse_and_accepts_better(tracking):
    v1 = _encoder(tracking, "kfp-1")
    record_metrics(
        ENCODER_MODEL, v1.version, {"cls.auprc.macro": 0.50, "loss": 1.0}, client=tracking
    )
    first = run_gate(ENCODER_MODEL, _gate(), client=tracking)
    assert first.promoted and first.reason == "no champion yet"
    assert tracking.get_model_version_by_alias(ENCODER_MODEL, CHAMPION).version == v1.version

    v2 = _encoder(tracking, "kfp-2")
    record_metrics(
        ENCODER_MODEL, v2.version, {"cls.auprc.macro": 0.45, "loss": 0.9}, client=tracking
    )
    worse = run_gate(ENCODER_MODEL, _gate(), client=tracking)
    assert worse.decision == "rejected" and "cls.auprc.macro" in worse.reason
    assert tracking.get_model_version_by_alias(ENCODER_MODEL, CHAMPION).version == v1.version
    tags = tracking.get_model_version(ENCODER_MODEL, v2.version).tags
    assert tags[TAG_DECISION] == "rejected"
    details = {d["name"]: d for d in json.loads(tags[TAG_DETAILS])}
    assert details["cls.auprc.macro"]["candidate"] == 0.45
    assert details["cls.auprc.macro"]["champion"] == 0.50
    assert details["loss"]["passed"] is True

    v3 = _encoder(tracking, "kfp-3")  # within tolerance on AUPRC, better loss
    record_metrics(
        ENCODER_MODEL, v3.version, {"cls.auprc.macro": 0.495, "loss": 0.8}, client=tracking
    )
    better = run_gate(ENCODER_MODEL, _gate(), client=tracking)
    assert better.promoted and better.champion == str(v1.version)
    assert tracking.get_model_version_by_alias(ENCODER_MODEL, CHAMPION).version == v3.version
    assert tracking.get_model_version(ENCODER_MODEL, v3.version).tags[TAG_DECISION] == "promoted"


def test_gate_refuses_to_compare_across_test_splits(tracking):
    v1 = _encoder(tracking, "kfp-1")
    record_metrics(
        ENCODER_MODEL, v1.version, {"cls.auprc.macro": 0.5, "loss": 1.0}, client=tracking
    )
    run_gate(ENCODER_MODEL, _gate(), client=tracking)
    v2 = _encoder(tracking, "kfp-2", split="another-split")
    record_metrics(
        ENCODER_MODEL, v2.version, {"cls.auprc.macro": 0.9, "loss": 0.1}, client=tracking
    )
    decision = run_gate(ENCODER_MODEL, _gate(), client=tracking)
    assert decision.decision == "refused" and not decision.comparisons
    assert "not the same test split" in decision.reason and "split digest" in decision.reason
    assert tracking.get_model_version_by_alias(ENCODER_MODEL, CHAMPION).version == v1.version
    tags = tracking.get_model_version(ENCODER_MODEL, v2.version).tags
    assert tags[TAG_DECISION] == "refused" and "refusing to compare" in tags[TAG_REASON]

    v3 = _encoder(tracking, "kfp-3", md5="f" * 32)
    record_metrics(
        ENCODER_MODEL, v3.version, {"cls.auprc.macro": 0.9, "loss": 0.1}, client=tracking
    )
    assert "data version" in run_gate(ENCODER_MODEL, _gate(), client=tracking).reason


def test_gate_rejects_when_a_metric_is_missing(tracking):
    v1 = _encoder(tracking, "kfp-1")
    record_metrics(
        ENCODER_MODEL, v1.version, {"cls.auprc.macro": 0.5, "loss": 1.0}, client=tracking
    )
    run_gate(ENCODER_MODEL, _gate(), client=tracking)
    _encoder(tracking, "kfp-2")
    decision = run_gate(ENCODER_MODEL, _gate(), client=tracking)
    assert decision.decision == "rejected" and "missing" in decision.reason


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"metrics": []}, "metrics"),
        ({"metrics": [{"name": "a", "tolerance": -1}]}, "tolerance"),
        ({"metrics": [{"name": "a", "direction": "up"}]}, "direction"),
        ({"metrics": [{"name": "a"}, {"name": "a"}]}, "more than once"),
        ({"metrics": [{"name": "a"}], "typo": 1}, "typo"),
        ({"metrics": [{"name": "a", "bogus": 1}]}, "bogus"),
    ],
)
def test_gate_config_errors_name_the_field(config, field):
    with pytest.raises(GateConfigError, match=field):
        GateConfig.from_dict(config)


def test_ui_expectations_list_tags_and_aliases(tracking):
    enc = _encoder(tracking)
    exp = version_page_expectations("http://localhost:5000/", enc)
    assert exp.url == f"http://localhost:5000/#/models/{ENCODER_MODEL}/versions/{enc.version}"
    assert "cxrflow.data_version" in exp.tag_keys and CANDIDATE in exp.aliases
    page = " ".join([*exp.tag_keys, *exp.tag_values, *exp.aliases])
    assert missing_on_page(page, exp) == []
    assert missing_on_page("nothing", exp)


def test_logged_mlflow_model_registers_with_tags(tracking):
    import mlflow

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    upstream("kfp-1", MD5, SPLIT)
    mlflow.set_experiment("cxrflow")
    with mlflow.start_run(tags={"cxrflow.stage": "pretrain", "cxrflow.pipeline_run": "kfp-1"}):
        info = mlflow.pyfunc.log_model(name="encoder", python_model=Echo())
    lineage = lineage_for("kfp-1", "encoder", params_digest="d" * 16, client=tracking)
    mv = register_candidate(info.model_uri, ENCODER_MODEL, lineage, client=tracking)
    assert check_tags(mv) == [] and mv.run_id
