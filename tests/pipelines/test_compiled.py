import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.training import COMPILED
from tests.pipelines.compiled_spec import find_task

ROOT = Path(__file__).resolve().parents[2]


def _branches_of(spec, condition_dag: str) -> dict:
    """The DAG of the If/Else group that holds the condition component `condition_dag`."""
    for body in spec["components"].values():
        tasks = body.get("dag", {}).get("tasks", {}).values()
        if any(t["componentRef"]["name"] == condition_dag for t in tasks):
            return body["dag"]
    raise KeyError(condition_dag)


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
        "import-public",  # the first step instead of ingest when `source` is set
        "split",
        "split-2",  # the same component in the `source` branch
        "version-data-2",
        "version-data",
        "pretrain",
        "pretrain-2",  # the same component as the multi-node launcher
        "heads",
        "report",
        "report-2",  # the same component as the multi-node launcher
        "evaluate",
        "publish",
    }
    assert set(executors) == {f"exec-{s}" for s in stages}
    for name, ex in executors.items():
        container = ex["container"]
        cuda = ("exec-pretrain", "exec-pretrain-2", "exec-report", "exec-report-2")
        image = "cxrflow-cuda" if name in cuda else "cxrflow-cpu"
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
    keyed = {"exec-ingest", "exec-import-public"}  # the de-id key reaches ingestion and import
    assert all(executors[n].get("secretAsVolume") for n in keyed)
    assert not any(executors[n].get("secretAsVolume") for n in executors if n not in keyed)


def test_pretraining_is_in_pod_on_one_node_and_an_uncached_launcher_on_more():
    spec, platform = list(yaml.safe_load_all(COMPILED.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["pretrain_nodes"]["parameterType"] == "NUMBER_INTEGER"
    assert params["pretrain_nodes"]["defaultValue"] == 1
    assert params["training_backend"]["defaultValue"] == ""
    # The two tasks of the pretrain component sit in the If/Else branches on `pretrain_nodes`.
    in_pod_dag, in_pod = find_task(spec, "pretrain")
    launcher_dag, launcher = find_task(spec, "pretrain-2")
    branches = _branches_of(spec, in_pod_dag)
    conditions = {
        t["componentRef"]["name"]: t["triggerPolicy"]["condition"]
        for t in branches["tasks"].values()
    }
    nodes = "int(inputs.parameter_values['pipelinechannel--pretrain_nodes'])"
    assert conditions[in_pod_dag] == f"{nodes} <= 1"
    assert conditions[launcher_dag] == f"!({nodes} <= 1)"
    # Launcher steps never cache; the in-pod step caches on the data version as before.
    assert launcher["cachingOptions"].get("enableCache", False) is False
    assert in_pod["cachingOptions"]["enableCache"] is True
    inputs = launcher["inputs"]["parameters"]
    assert inputs["nodes"] == {"componentInputParameter": "pipelinechannel--pretrain_nodes"}
    assert inputs["job_image"]["runtimeValue"]["constant"].endswith("cxrflow-cuda:0.1.0")
    assert in_pod["inputs"]["parameters"]["nodes"]["componentInputParameter"].endswith(
        "pretrain_nodes"
    )
    # The launcher holds no GPU and is not pinned to the pool; it mounts the checkpoint volume
    # the job's nodes write the encoder to.
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    exec_launcher = spec["deploymentSpec"]["executors"]["exec-pretrain-2"]
    assert "accelerator" not in exec_launcher["container"].get("resources", {})
    assert not executors["exec-pretrain-2"].get("nodeSelector")
    mounts = {m["mountPath"]: m["constant"] for m in executors["exec-pretrain-2"]["pvcMount"]}
    assert mounts["/checkpoints"] == "cxrflow-checkpoints"
    # Downstream stages read the encoder of whichever branch ran.
    selectors = branches["outputs"]["parameters"]
    producers = {
        frozenset(s["producerSubtask"] for s in p["valueFromOneof"]["parameterSelectors"])
        for p in selectors.values()
    }
    # (Sets: condition numbers are a counter, and "condition-10" sorts before "condition-9".)
    assert producers == {frozenset(d.removeprefix("comp-") for d in (in_pod_dag, launcher_dag))}


def test_ingestion_tasks_have_a_memory_request_and_limit(tmp_path):
    from pipelines import sharded_ingest

    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    sharded_path = sharded_ingest.compile_pipeline(tmp_path / "sharded.yaml")
    sharded = next(yaml.safe_load_all(sharded_path.read_text()))
    for executors, names in (
        (spec["deploymentSpec"]["executors"], ["exec-ingest", "exec-import-public"]),
        (sharded["deploymentSpec"]["executors"], ["exec-ingest-shard", "exec-merge-ingest-shards"]),
    ):
        for name in names:
            resources = executors[name]["container"]["resources"]
            assert resources["resourceMemoryRequest"] == "2Gi", name
            assert resources["resourceMemoryLimit"] == "4Gi", name
    others = set(spec["deploymentSpec"]["executors"]) - {"exec-ingest", "exec-import-public"}
    for name in others:  # the other stages keep their own settings
        resources = spec["deploymentSpec"]["executors"][name]["container"].get("resources", {})
        assert resources.get("resourceMemoryLimit") != "4Gi", name


def _compiled_pipelines(tmp_path):
    """(name, IR spec, kubernetes executors) of the training and the sharded-ingest pipelines."""
    from pipelines import sharded_ingest

    out = []
    for name, path in (
        ("training", COMPILED),
        ("sharded", sharded_ingest.compile_pipeline(tmp_path / "sharded.yaml")),
    ):
        spec, platform = list(yaml.safe_load_all(path.read_text()))
        out.append((name, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]))
    return out


def _quantity(q: str) -> float:
    """A CPU or memory quantity as a number (m, Mi, Gi only)."""
    units = {"m": 1e-3, "Mi": 2**20, "Gi": 2**30}
    for unit, factor in units.items():
        if q.endswith(unit):
            return float(q.removesuffix(unit)) * factor
    return float(q)


def test_every_task_has_cpu_and_memory_requests_and_limits(tmp_path):
    for pipeline, spec, _ in _compiled_pipelines(tmp_path):
        for name, ex in spec["deploymentSpec"]["executors"].items():
            res = ex["container"].get("resources", {})
            where = f"{pipeline}/{name}"
            for kind in ("Cpu", "Memory"):
                request, limit = res[f"resource{kind}Request"], res[f"resource{kind}Limit"]
                assert 0 < _quantity(request) <= _quantity(limit), where
    executors = next(spec for p, spec, _ in _compiled_pipelines(tmp_path) if p == "training")[
        "deploymentSpec"
    ]["executors"]
    # The GPU steps get more than any CPU step.
    gpu = executors["exec-pretrain"]["container"]["resources"]
    cpu_steps = ("exec-ingest", "exec-import-public", "exec-split", "exec-version-data")
    for name in (*cpu_steps, "exec-pretrain-2"):
        cpu = executors[name]["container"]["resources"]
        assert _quantity(gpu["resourceMemoryLimit"]) > _quantity(cpu["resourceMemoryLimit"])
        assert _quantity(gpu["resourceCpuRequest"]) > _quantity(cpu["resourceCpuRequest"])
    assert executors["exec-report"]["container"]["resources"] == gpu


def test_every_task_runs_as_the_non_root_image_user(tmp_path):
    for pipeline, spec, k8s in _compiled_pipelines(tmp_path):
        for name in spec["deploymentSpec"]["executors"]:
            assert k8s[name]["securityContext"] == {
                "runAsUser": "1000",  # int64 in the proto: a JSON string
                "runAsGroup": "1000",
                "runAsNonRoot": True,
            }, f"{pipeline}/{name}"


def test_every_task_gets_the_dvc_remote_object_store_and_mlflow_credentials(tmp_path):
    for pipeline, spec, k8s in _compiled_pipelines(tmp_path):
        for name in spec["deploymentSpec"]["executors"]:
            where = f"{pipeline}/{name}"
            config = {
                (cm["configMapName"], e["configMapKey"]): e["envVar"]
                for cm in k8s[name]["configMapAsEnv"]
                for e in cm["keyToEnv"]
            }
            assert config[("cxrflow-mlflow-config", "tracking-uri")] == "MLFLOW_TRACKING_URI"
            assert config[("cxrflow-pipeline-config", "dvc-remote")] == "CXRFLOW_DVC_REMOTE"
            assert config[("cxrflow-pipeline-config", "s3-endpoint-url")] == "AWS_ENDPOINT_URL"
            secrets = {
                (s["secretName"], e["secretKey"]): e["envVar"]
                for s in k8s[name]["secretAsEnv"]
                for e in s["keyToEnv"]
            }
            assert secrets == {
                ("cxrflow-object-store", "access-key"): "AWS_ACCESS_KEY_ID",
                ("cxrflow-object-store", "secret-key"): "AWS_SECRET_ACCESS_KEY",
                ("cxrflow-mlflow-auth", "username"): "MLFLOW_TRACKING_USERNAME",
                ("cxrflow-mlflow-auth", "password"): "MLFLOW_TRACKING_PASSWORD",
            }, where
            assert all(not s.get("optional") for s in k8s[name]["secretAsEnv"]), where


def test_exactly_the_ingestion_tasks_carry_the_phi_label(tmp_path):
    phi = {
        "training": {"exec-ingest", "exec-import-public"},
        "sharded": {"exec-plan-ingest-shards", "exec-ingest-shard", "exec-merge-ingest-shards"},
    }
    for pipeline, spec, k8s in _compiled_pipelines(tmp_path):
        labelled = {
            name
            for name in spec["deploymentSpec"]["executors"]
            if k8s[name].get("podMetadata", {}).get("labels", {}).get("cxrflow.io/phi") == "true"
        }
        assert labelled == phi[pipeline], pipeline
        # Every pod that holds the de-id key is among them.
        with_key = {n for n in k8s if k8s[n].get("secretAsVolume")}
        assert with_key and with_key <= labelled, pipeline


def test_every_run_form_parameter_has_a_description():
    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params
    for name, definition in params.items():
        assert definition.get("description", "").strip(), f"{name} has no description"


def test_source_picks_the_inbox_or_the_public_datasets_and_training_reads_either():
    spec, platform = list(yaml.safe_load_all(COMPILED.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["source"]["parameterType"] == "STRING"
    assert params["source"]["defaultValue"] == ""  # the DICOM inbox, as before
    assert "NAME=DIR" in params["source"]["description"]
    # Each branch on `source`: its first step, then the split and the versioning of its dataset.
    ingest_dag, _ = find_task(spec, "ingest")
    import_dag, imported = find_task(spec, "import-public")
    branches = _branches_of(spec, ingest_dag)
    conditions = {
        t["componentRef"]["name"]: t["triggerPolicy"]["condition"]
        for t in branches["tasks"].values()
    }
    source = "inputs.parameter_values['pipelinechannel--source']"
    assert conditions == {ingest_dag: f"{source} == ''", import_dag: f"!({source} == '')"}
    for dag, first, split, version in (
        (ingest_dag, "ingest", "split", "version-data"),
        (import_dag, "import-public", "split-2", "version-data-2"),
    ):
        tasks = spec["components"][dag]["dag"]["tasks"]
        assert set(tasks) == {first, split, version}, dag
        reads = tasks[split]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]
        assert reads == {"outputArtifactKey": "dataset", "producerTask": first}
        reads = tasks[version]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]
        assert reads == {"outputArtifactKey": "split_dataset", "producerTask": split}
        # Nothing here is served from the cache: the inbox and releases change under one path.
        assert not any(t["cachingOptions"].get("enableCache", False) for t in tasks.values())
    inputs = imported["inputs"]["parameters"]
    assert inputs["source"] == {"componentInputParameter": "pipelinechannel--source"}
    assert inputs["data_dir"] == {"componentInputParameter": "pipelinechannel--data_dir"}
    assert inputs["workers"] == {"componentInputParameter": "pipelinechannel--ingest_workers"}
    # Training reads the data version of whichever branch ran (parameters: kfp.local joins no
    # artifacts with dsl.OneOf).
    gate = spec["root"]["dag"]["tasks"]["data-gate"]["inputs"]["parameters"]["data_version"]
    joined = gate["taskOutputParameter"]
    outputs = spec["components"][f"comp-{joined['producerTask']}"]["dag"]["outputs"]
    selectors = outputs["parameters"][joined["outputParameterKey"]]["valueFromOneof"]
    assert {
        (s["producerSubtask"], s["outputParameterKey"]) for s in selectors["parameterSelectors"]
    } == {
        (ingest_dag.removeprefix("comp-"), "pipelinechannel--version-data-data_version"),
        (import_dag.removeprefix("comp-"), "pipelinechannel--version-data-2-data_version"),
    }
    # The import step runs like ingestion: the key, the PHI label, the ingestion resources.
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-ingest", "exec-import-public"):
        assert executors[name]["secretAsVolume"][0]["secretName"] == "cxrflow-deid-key", name
    resources = spec["deploymentSpec"]["executors"]
    for a, b in (("exec-split", "exec-split-2"), ("exec-version-data", "exec-version-data-2")):
        assert resources[a]["container"]["resources"] == resources[b]["container"]["resources"]
        assert executors[a] == executors[b]
