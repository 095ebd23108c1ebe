import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.training import COMPILED

ROOT = Path(__file__).resolve().parents[2]


def test_committed_pipeline_yaml_is_up_to_date(tmp_path):
    # Compile in a fresh interpreter with the default image setting, as `make pipeline` does.
    out = tmp_path / "training.yaml"
    code = (
        f"import pathlib, pipelines.training as t; t.compile_pipeline(pathlib.Path({str(out)!r}))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CXRFLOW_IMAGE")}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
    assert list(yaml.safe_load_all(out.read_text())) == list(
        yaml.safe_load_all(COMPILED.read_text())
    ), "pipelines/training.yaml is stale: run `make pipeline` and commit it"


def test_compiled_pipeline_runs_components_from_the_project_image():
    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    stages = {
        "data-gate",
        "ingest",
        "split",
        "version-data",
        "pretrain",
        "heads",
        "report",
        "evaluate",
        "publish",
    }
    assert set(executors) == {f"exec-{s}" for s in stages}
    for name, ex in executors.items():
        container = ex["container"]
        image = "cxrflow-cuda" if name in ("exec-pretrain", "exec-report") else "cxrflow-cpu"
        assert container["image"].endswith(":0.1.0") and image in container["image"]
        assert "pip install" not in " ".join(container.get("command", []))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["max_side"]["parameterType"] == "NUMBER_INTEGER"
    assert params["retain_patient_characteristics"]["defaultValue"] is True
    assert not any("key" in name for name in params)  # the de-id key is never a parameter


def test_gpu_settings_are_on_exactly_the_gpu_stages():
    spec, platform = list(yaml.safe_load_all(COMPILED.read_text()))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu = {"exec-pretrain", "exec-report"}
    for name, ex in spec["deploymentSpec"]["executors"].items():
        k8s = executors.get(name, {})
        has_gpu = "accelerator" in ex["container"].get("resources", {})
        assert has_gpu == (name in gpu), name
        assert bool(k8s.get("nodeSelector")) == (name in gpu), name
        assert bool(k8s.get("tolerations")) == (name in gpu), name
        shm = [v for v in k8s.get("emptyDirMounts", []) if v.get("mountPath") == "/dev/shm"]
        assert bool(shm) == (name in gpu), name
        assert any(
            c.get("configMapName") == "cxrflow-mlflow-config" for c in k8s.get("configMapAsEnv", [])
        ), name
    assert executors["exec-ingest"].get("secretAsVolume"), "the de-id key reaches ingestion only"
    assert not any(executors[n].get("secretAsVolume") for n in executors if n != "exec-ingest")
