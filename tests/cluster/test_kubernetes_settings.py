"""GPU-pool and common task settings, checked in the compiled IR (kfp.local ignores them)."""

import pytest
import yaml
from kfp import compiler, dsl

from cxrflow.cluster.config import ClusterConfigError, GpuPool
from cxrflow.keys import KEY_FILE_ENV_VAR
from pipelines.kubernetes import (
    DEID_KEY_MOUNT,
    MLFLOW_AUTH_SECRET,
    OBJECT_STORE_SECRET,
    TaskResources,
    apply_common_settings,
    apply_gpu_settings,
)


@dsl.component(base_image="python:3.11-slim")
def cpu_step(x: str) -> str:
    """A CPU step."""
    return x


@dsl.component(base_image="python:3.11-slim")
def gpu_step(x: str) -> str:
    """A GPU step."""
    return x


POOL = GpuPool(taint_key="cxrflow.io/gpu", taint_value="present")


@dsl.pipeline(name="settings-check")
def settings_pipeline(x: str = "a") -> None:
    """One CPU task with the key, one GPU task on the pool."""
    cpu = cpu_step(x=x)
    apply_common_settings(cpu, deid_key=True)
    gpu = gpu_step(x=cpu.output)
    apply_common_settings(gpu)
    apply_gpu_settings(
        gpu,
        POOL,
        gpus=4,
        shm_size="16Gi",
        data_pvc="cxrflow-data",
        checkpoint_pvc="cxrflow-checkpoints",
    )


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / "p.yaml"
    compiler.Compiler().compile(settings_pipeline, str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_gpu_task_is_scheduled_on_the_pool_with_gpus_and_shm(ir):
    spec, k8s = ir
    gpu = k8s["exec-gpu-step"]
    assert gpu["nodeSelector"]["labels"] == {"cxrflow.io/node-pool": "gpu"}
    tolerations = {
        (t["key"], t["operator"], t.get("value"), t["effect"]) for t in gpu["tolerations"]
    }
    assert ("cxrflow.io/gpu", "Equal", "present", "NoSchedule") in tolerations
    assert ("nvidia.com/gpu", "Exists", None, "NoSchedule") in tolerations
    accel = spec["deploymentSpec"]["executors"]["exec-gpu-step"]["container"]["resources"][
        "accelerator"
    ]
    assert accel["resourceType"] == "nvidia.com/gpu" and accel["resourceCount"] == "4"
    assert gpu["emptyDirMounts"] == [
        {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "16Gi", "volumeName": "dshm"}
    ]
    mounts = {m["mountPath"]: m["constant"] for m in gpu["pvcMount"]}
    # The data PVC from both settings is mounted once.
    assert mounts == {"/data": "cxrflow-data", "/checkpoints": "cxrflow-checkpoints"}
    assert len(gpu["pvcMount"]) == 2


def test_cpu_task_gets_no_gpu_settings(ir):
    spec, k8s = ir
    cpu = k8s["exec-cpu-step"]
    assert not {"nodeSelector", "tolerations", "emptyDirMounts"} & set(cpu)
    resources = spec["deploymentSpec"]["executors"]["exec-cpu-step"]["container"].get(
        "resources", {}
    )
    assert "accelerator" not in resources


def test_every_task_reads_mlflow_from_the_configmap(ir):
    _, k8s = ir
    for name in ("exec-cpu-step", "exec-gpu-step"):
        cm = k8s[name]["configMapAsEnv"][0]
        assert cm["configMapName"] == "cxrflow-mlflow-config"
        assert cm["keyToEnv"] == [{"configMapKey": "tracking-uri", "envVar": "MLFLOW_TRACKING_URI"}]


def test_key_secret_is_a_file_on_the_ingest_task_only(ir):
    spec, k8s = ir
    (secret,) = k8s["exec-cpu-step"]["secretAsVolume"]
    assert (secret["secretName"], secret["mountPath"]) == ("cxrflow-deid-key", DEID_KEY_MOUNT)
    key_file = [
        (cm["configMapName"], e["configMapKey"])
        for cm in k8s["exec-cpu-step"]["configMapAsEnv"]
        for e in cm["keyToEnv"]
        if e["envVar"] == KEY_FILE_ENV_VAR
    ]
    assert key_file == [("cxrflow-pipeline-config", "deid-key-file")]
    # No plain env var: kfp.local would apply it and point local runs at the cluster mount.
    container = spec["deploymentSpec"]["executors"]["exec-cpu-step"]["container"]
    assert KEY_FILE_ENV_VAR not in str(container.get("env", []))
    assert "secretAsVolume" not in k8s["exec-gpu-step"]
    # Secrets as env vars are credentials of services, never the de-id key.
    for name in ("exec-cpu-step", "exec-gpu-step"):
        assert {e["secretName"] for e in k8s[name]["secretAsEnv"]} == {
            OBJECT_STORE_SECRET,
            MLFLOW_AUTH_SECRET,
        }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"gpus": 0}, "gpus"), ({"gpus": True}, "gpus"), ({"shm_size": "lots"}, "shm_size")],
)
def test_bad_gpu_settings_are_refused_by_name(kwargs, field):
    args = {"gpus": 1, "shm_size": "1Gi", "data_pvc": None, "checkpoint_pvc": None, **kwargs}
    with pytest.raises(ClusterConfigError, match=f"^{field}:"):

        @dsl.pipeline(name="bad")
        def bad() -> None:
            apply_gpu_settings(gpu_step(x="a"), POOL, **args)


@pytest.mark.parametrize("field", ["cpu_request", "cpu_limit", "memory_request", "memory_limit"])
def test_bad_task_resources_are_refused_by_name(field):
    values = {"cpu_request": "1", "cpu_limit": "2", "memory_request": "1Gi", "memory_limit": "2Gi"}
    with pytest.raises(ClusterConfigError, match=f"^{field}:"):
        TaskResources(**{**values, field: "lots"})
