"""The recurring-run definition in k8s/recurring-run.yaml."""

from __future__ import annotations

import pytest
import yaml

from cxrflow.cluster.config import ClusterConfigError
from cxrflow.orchestration.schedule import RecurringRunSpec, load_recurring_run
from tests.cluster.conftest import K8S, ROOT, render

SPEC = K8S / "recurring-run.yaml"


def test_committed_recurring_run_is_valid_and_bound_to_the_pipeline():
    spec = load_recurring_run(SPEC)
    assert len(spec.cron.split()) == 6
    assert spec.max_concurrency == 1 and spec.no_catchup is True
    compiled = next(yaml.safe_load_all((ROOT / "pipelines" / "training.yaml").read_text()))
    assert spec.pipeline == compiled["pipelineInfo"]["name"]
    params = compiled["root"]["inputDefinitions"]["parameters"]
    assert set(spec.parameters) <= set(params)
    required = {name for name, p in params.items() if not p.get("isOptional")}
    assert required <= set(spec.parameters), "every required pipeline parameter is set"
    accounts = {o["metadata"]["name"] for o in render("base") if o["kind"] == "ServiceAccount"}
    assert spec.service_account in accounts


def test_kwargs_for_create_recurring_run():
    kwargs = load_recurring_run(SPEC).create_recurring_run_kwargs("exp-1", "pipe-1", "ver-1")
    assert kwargs["cron_expression"] == "0 0 2 * * *"
    assert kwargs["max_concurrency"] == 1 and kwargs["no_catchup"] is True
    assert (kwargs["experiment_id"], kwargs["pipeline_id"], kwargs["version_id"]) == (
        "exp-1",
        "pipe-1",
        "ver-1",
    )
    assert kwargs["params"]["inbox"] == "/data/inbox"


def test_create_recurring_run_accepts_the_kwargs():
    kfp = pytest.importorskip("kfp")
    import inspect

    accepted = set(inspect.signature(kfp.Client.create_recurring_run).parameters)
    kwargs = load_recurring_run(SPEC).create_recurring_run_kwargs("e", "p", "v")
    assert set(kwargs) <= accepted


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "0 2 * * *"}, "cron"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"no_catchup": "yes"}, "no_catchup"),
        ({"name": ""}, "name"),
        ({"parameters": ["inbox"]}, "parameters"),
        ({"schedule": "daily"}, "schedule"),
    ],
)
def test_invalid_recurring_runs_are_refused_naming_the_field(change, field):
    data = {**yaml.safe_load(SPEC.read_text()), **change}
    with pytest.raises(ClusterConfigError, match=rf"^{field}:"):
        RecurringRunSpec.from_dict(data)
