"""The image registry and tag are a compile-time setting: `cxrflow compile --registry --tag`."""

import pytest
import yaml
from typer.testing import CliRunner

from components import images
from cxrflow.cli import app
from pipelines.training import rebind_images

runner = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"})
REGISTRY = "registry.example.org/team"


def _strings(node):
    """Every string in a parsed YAML tree."""
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _job_images(spec):
    """The `job_image` constants the launcher tasks pass on to their job's nodes."""
    for component in spec["components"].values():
        for task in component.get("dag", {}).get("tasks", {}).values():
            value = task.get("inputs", {}).get("parameters", {}).get("job_image")
            if value:
                yield value["runtimeValue"]["constant"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "training.yaml"
    result = runner.invoke(
        app, ["compile", "--registry", REGISTRY, "--tag", "1.2.3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(out.read_text()))


def test_compile_registry_rebinds_every_executor_and_job_image(compiled):
    spec = compiled[0]
    wanted = {f"{REGISTRY}/cxrflow-cpu:1.2.3", f"{REGISTRY}/cxrflow-cuda:1.2.3"}
    executors = spec["deploymentSpec"]["executors"]
    assert {ex["container"]["image"] for ex in executors.values()} == wanted
    cuda = {"exec-pretrain", "exec-pretrain-2", "exec-report", "exec-report-2"}
    for name, ex in executors.items():
        image = ex["container"]["image"]
        assert image.split("/")[-1].startswith("cxrflow-cuda" if name in cuda else "cxrflow-cpu")
    job_images = list(_job_images(spec))
    assert job_images and set(job_images) == {f"{REGISTRY}/cxrflow-cuda:1.2.3"}
    assert not [s for doc in compiled for s in _strings(doc) if "ghcr.io/cxrflow" in s]


def test_the_rebound_pipeline_keeps_everything_else(compiled):
    from pipelines.training import COMPILED

    # The committed YAML (default images) with only its images moved is the --registry output.
    committed = list(yaml.safe_load_all(COMPILED.read_text()))
    assert rebind_images(committed, REGISTRY, "1.2.3") == compiled
    assert compiled[1] == committed[1]  # the platform spec names no image


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--registry", ""], "--registry"),
        (["--registry", "https://registry.example.org/team"], "--registry"),
        (["--registry", "registry.example.org/team/"], "--registry"),
        (["--registry", "Registry.Example.org"], "--registry"),
        (["--registry", "registry.example.org/team:1.0"], "--registry"),
        (["--tag", "1.2.3 beta"], "--tag"),
        (["--tag", ".hidden"], "--tag"),
    ],
)
def test_bad_registry_or_tag_is_refused_naming_the_option(args, option, tmp_path):
    out = tmp_path / "training.yaml"
    result = runner.invoke(app, ["compile", *args, "--out", str(out)])
    assert result.exit_code != 0
    assert f"Invalid value for {option}" in result.output
    assert not out.exists()


@pytest.mark.parametrize("registry", ["localhost:5000", "registry.example.org", "a.b/c/d-e_f"])
def test_valid_registries_are_accepted(registry):
    assert images.image("cxrflow-cpu", registry, "0.1.0") == f"{registry}/cxrflow-cpu:0.1.0"


def test_an_image_left_unbound_is_an_error():
    spec = {"deploymentSpec": {"executors": {"exec-x": {"container": {"image": "other:1"}}}}}
    with pytest.raises(ValueError, match=r"^exec-x: image 'other:1' was not rebound"):
        rebind_images([spec], REGISTRY, "1.2.3")
