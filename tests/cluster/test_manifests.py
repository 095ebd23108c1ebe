"""Render every kustomization offline and check it against the Kubernetes schema and our rules."""

from __future__ import annotations

import re
import runpy
from typing import Any

import kubernetes_validate
import pytest

from cxrflow.cluster import GpuPool
from tests.cluster.conftest import (
    K8S,
    KUSTOMIZATIONS,
    ROOT,
    containers,
    find,
    pod_specs,
    render,
)

# Bundled schemas of kubernetes-validate: the oldest Kubernetes release we support and the newest.
SCHEMA_VERSIONS = ("1.30.0", "1.37.0")
# Kinds from the core API groups (validated); CRDs would need their own schemas.
CORE_GROUPS = {"v1", "apps/v1", "batch/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"}
SECRETS = {
    "cxrflow-deid-key",
    "cxrflow-mlflow-db",
    "cxrflow-object-store",
    "cxrflow-mlflow-auth",
    "cxrflow-mlflow-auth-config",
}
THIRD_PARTY = {"postgres", "quay.io/minio/minio"}
# A YAML key naming a credential with a literal value on the same line.
CREDENTIAL = re.compile(
    r"(?im)^[ \t-]*[\w.-]*(password|passwd|secret[-_]?key|token)[\w.-]*:[ \t]*"
    r"(?!(true|false)\s*$)['\"]?[^\s'\"]{4,}"
)


def _all() -> list[tuple[str, dict[str, Any]]]:
    return [(k, obj) for k in KUSTOMIZATIONS for obj in render(k)]


def _images_defaults(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """components/images.py evaluated with the default registry and tag."""
    monkeypatch.delenv("CXRFLOW_IMAGE_REGISTRY", raising=False)
    monkeypatch.delenv("CXRFLOW_IMAGE_TAG", raising=False)
    return runpy.run_path(str(ROOT / "components" / "images.py"))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomization_renders_into_the_cxrflow_namespace(kustomization):
    objs = render(kustomization)
    assert objs, kustomization
    for obj in objs:
        assert {"apiVersion", "kind", "metadata"} <= set(obj)
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "cxrflow"
        else:
            assert obj["metadata"]["namespace"] == "cxrflow", obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cxrflow"
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names)), "duplicate objects"


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_validates_against_the_kubernetes_schema(kustomization, version):
    for obj in render(kustomization):
        assert obj["apiVersion"] in CORE_GROUPS, f"unexpected API {obj['apiVersion']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:  # pragma: no cover - message on failure
            pytest.fail(f"{kustomization} {obj['kind']}/{obj['metadata']['name']}: {e.message}")


def test_no_secret_values_are_committed():
    for kustomization, obj in _all():
        if obj["kind"] == "Secret":
            assert not obj.get("data") and not obj.get("stringData"), kustomization
    # Nothing that looks like a credential in any manifest, in any form.
    for path in K8S.rglob("*.yaml"):
        text = path.read_text()
        assert not CREDENTIAL.search(text), path
        assert "kind: Secret" not in text, f"{path}: create Secrets with kubectl (k8s/README.md)"


def test_secrets_are_referenced_by_documented_names_only():
    readme = (K8S / "README.md").read_text()
    used: set[str] = set()
    for _, obj in _all():
        for pod in pod_specs(obj):
            for vol in pod.get("volumes", []):
                if "secret" in vol:
                    used.add(vol["secret"]["secretName"])
            for c in containers(pod):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        used.add(ref["name"])
    assert used == SECRETS
    for name in SECRETS:
        assert f"kubectl -n cxrflow create secret generic {name}" in readme, name


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_container_has_requests_limits_and_runs_as_non_root(kustomization):
    workloads = [o for o in render(kustomization) if pod_specs(o)]
    assert workloads
    for obj in workloads:
        for pod in pod_specs(obj):
            pod_sc = pod.get("securityContext", {})
            assert pod_sc.get("runAsNonRoot") is True, obj["metadata"]["name"]
            assert pod_sc.get("runAsUser", 0) > 0, obj["metadata"]["name"]
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
            for c in containers(pod):
                where = f"{obj['metadata']['name']}/{c['name']}"
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c.get("resources", {}).get(part, {})), where
                sc = c.get("securityContext", {})
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
                assert sc.get("runAsUser", 1) != 0 and not sc.get("privileged"), where


def test_images_come_from_the_one_configurable_registry_and_tag(monkeypatch):
    defaults = _images_defaults(monkeypatch)
    expected = {"cxrflow-cpu": defaults["CPU_IMAGE"], "cxrflow-cuda": defaults["CUDA_IMAGE"]}
    seen: set[str] = set()
    for kustomization, obj in _all():
        for pod in pod_specs(obj):
            for c in containers(pod):
                image = c["image"]
                seen.add(image)
                repo, _, tag = image.rpartition(":")
                assert repo and tag and tag != "latest", f"{kustomization}: unpinned {image}"
                if "cxrflow-" in repo:
                    assert image in expected.values(), f"{kustomization}: {image}"
                else:
                    assert repo in THIRD_PARTY, f"{kustomization}: unexpected image {image}"
    assert expected["cxrflow-cpu"] in seen and expected["cxrflow-cuda"] in seen
    pool = find(render("overlays/gpu-node-pool"), "ConfigMap", "cxrflow-gpu-pool")
    assert pool["data"]["image"] == expected["cxrflow-cuda"]


def test_network_policies_deny_ingress_and_open_only_the_mlflow_paths():
    objs = render("base")
    deny = find(objs, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}

    def sources(name: str) -> list[dict[str, Any]]:
        (rule,) = find(objs, "NetworkPolicy", name)["spec"]["ingress"]
        return rule["from"]

    mlflow = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cxrflow-mlflow"}}}
    assert sources("allow-postgres-from-mlflow") == [mlflow]
    pipeline = {"matchLabels": {"pipelines.kubeflow.org/v2_component": "true"}}
    # MinIO: MLflow, and pipeline pods (the DVC remote) here or in MLflow-access namespaces.
    access = {"matchLabels": {"cxrflow.io/mlflow-access": "true"}}
    assert sources("allow-minio-from-mlflow") == [
        mlflow,
        {"podSelector": pipeline},
        {"namespaceSelector": access, "podSelector": pipeline},
    ]
    assert any(s.get("podSelector") == pipeline for s in sources("allow-mlflow-from-pipelines"))
    # Every pod that talks to MLflow carries a label the policy admits.
    watcher = find(objs, "CronJob", "cxrflow-watcher")
    labels = watcher["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["cxrflow.io/mlflow-client"] == "true"


def test_mlflow_server_uses_postgres_and_s3_with_credentials_from_secrets_only():
    objs = render("base")
    pod = find(objs, "Deployment", "cxrflow-mlflow")["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["command"] == ["mlflow"] and server["args"][0] == "server"
    assert "--artifacts-destination=$(MLFLOW_ARTIFACTS_DESTINATION)" in server["args"]
    assert not any("postgresql" in a or "@" in a for a in server["args"])
    env = {e["name"]: e for e in server["env"]}
    for name, (secret, key) in {
        "MLFLOW_BACKEND_STORE_URI": ("cxrflow-mlflow-db", "backend-store-uri"),
        "AWS_ACCESS_KEY_ID": ("cxrflow-object-store", "access-key"),
        "AWS_SECRET_ACCESS_KEY": ("cxrflow-object-store", "secret-key"),
    }.items():
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
    config = find(objs, "ConfigMap", "cxrflow-mlflow-config")["data"]
    assert config["artifacts-destination"].startswith("s3://")
    assert config["s3-endpoint-url"] == "http://cxrflow-minio:9000"
    readme = (K8S / "README.md").read_text()
    assert 'backend-store-uri="postgresql+psycopg2://' in readme
    postgres = find(objs, "StatefulSet", "cxrflow-postgres")
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]


def test_rbac_is_least_privilege():
    objs = render("base")
    for obj in objs:
        if obj["kind"] == "Role":
            for rule in obj["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert obj["kind"] not in ("ClusterRole", "ClusterRoleBinding")
    launcher_rules = find(objs, "Role", "cxrflow-launcher")["rules"]
    launcher = {
        (group, res): set(r["verbs"])
        for r in launcher_rules
        for group in r["apiGroups"]
        for res in r["resources"]
    }
    job_verbs = {"create", "get", "list", "watch", "delete"}
    assert launcher == {
        ("trainer.kubeflow.org", "trainjobs"): job_verbs,
        ("kubeflow.org", "pytorchjobs"): job_verbs,
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},
        ("", "configmaps"): {"get"},
    }
    (pool,) = [r for r in launcher_rules if r["resources"] == ["configmaps"]]
    assert pool["resourceNames"] == ["cxrflow-gpu-pool"]
    watcher = find(objs, "Role", "cxrflow-watcher")["rules"]
    assert {"create"} & set(watcher[0]["verbs"]) and watcher[0]["resources"] == ["runs"]
    (own_config,) = [r for r in watcher if r["apiGroups"] == [""]]
    assert own_config == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["cxrflow-watcher-config"],
        "verbs": ["get"],
    }
    for name in ("cxrflow-watcher", "cxrflow-launcher"):
        binding = find(objs, "RoleBinding", name)
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": "cxrflow"}
        ]


def test_watcher_cronjob_runs_watch_once_with_the_deid_key_from_the_secret():
    cron = find(render("base"), "CronJob", "cxrflow-watcher")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "cxrflow-watcher"
    (c,) = pod["containers"]
    assert c["image"].split("/")[-1].startswith("cxrflow-cpu:")
    assert c["args"] == ["watch", "--inbox", "$(CXRFLOW_INBOX)", "--once"]
    env = {e["name"]: e for e in c["env"]}
    key_file = env["CXRFLOW_DEID_KEY_FILE"]["value"]
    assert "CXRFLOW_DEID_KEY" not in env  # the key itself never travels in an env var
    mount = next(m for m in c["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "cxrflow-deid-key"
    assert volume["secret"]["defaultMode"] == 0o400


def test_gpu_overlay_describes_the_pool_consistently():
    objs = render("overlays/gpu-node-pool")
    data = find(objs, "ConfigMap", "cxrflow-gpu-pool")["data"]
    pool = GpuPool.from_configmap(data)
    check = find(objs, "CronJob", "cxrflow-gpu-check")
    assert check["spec"]["suspend"] is True
    pod = check["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == pool.node_selector()
    assert pool.tolerations()[0] in pod["tolerations"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits[pool.gpu_resource] == "1"
    assert data["backend"] in ("trainjob", "pytorchjob")
    assert data["trainer-runtime"] in ("torch-distributed", "deepspeed-distributed")


def test_dev_overlay_is_single_replica_small_and_gpu_free():
    objs = render("overlays/dev-single-node")
    for obj in objs:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            assert obj["spec"]["replicas"] == 1, obj["metadata"]["name"]
        if obj["kind"] == "PersistentVolumeClaim":
            assert obj["spec"]["accessModes"] == ["ReadWriteOnce"]
            assert _gi(obj["spec"]["resources"]["requests"]["storage"]) <= 5
        for pod in pod_specs(obj):
            assert "nodeSelector" not in pod and "tolerations" not in pod
            for c in containers(pod):
                for part in ("requests", "limits"):
                    assert not any("gpu" in r for r in c["resources"][part])
    postgres = find(objs, "StatefulSet", "cxrflow-postgres")
    assert (
        _gi(postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"])
        <= 5
    )


def _gi(quantity: str) -> float:
    """A storage quantity in GiB (Mi/Gi/Ti only)."""
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi|Ti)", quantity).groups()
    return int(number) * {"Mi": 1 / 1024, "Gi": 1, "Ti": 1024}[unit]


def _ns(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def test_phi_pods_may_reach_only_dns_mlflow_minio_kfp_and_the_api_server():
    from pipelines.kubernetes import PHI_LABEL, PHI_LABEL_VALUE

    policy = find(render("base"), "NetworkPolicy", "cxrflow-phi-egress")["spec"]
    assert policy["podSelector"] == {"matchLabels": {PHI_LABEL: PHI_LABEL_VALUE}}
    assert policy["policyTypes"] == ["Egress"]

    def ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
        return {(p["protocol"], p["port"]) for p in rule["ports"]}

    allowed = [(rule["to"], ports(rule)) for rule in policy["egress"]]
    assert all(rule.get("ports") for rule in policy["egress"]), "every rule names its ports"

    def pod(name: str) -> dict[str, Any]:
        return {"matchLabels": {"app.kubernetes.io/name": name}}

    assert allowed == [
        (
            [
                {
                    "namespaceSelector": _ns("kube-system"),
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            {("UDP", 53), ("TCP", 53)},
        ),
        (
            [{"namespaceSelector": _ns("cxrflow"), "podSelector": pod("cxrflow-mlflow")}],
            {("TCP", 5000)},
        ),
        (
            [{"namespaceSelector": _ns("cxrflow"), "podSelector": pod("cxrflow-minio")}],
            {("TCP", 9000)},
        ),
        (
            [{"namespaceSelector": _ns("kubeflow")}],
            {("TCP", 8887), ("TCP", 8888), ("TCP", 8080), ("TCP", 9000), ("TCP", 8333)},
        ),
        ([{"ipBlock": {"cidr": "192.0.2.1/32"}}], {("TCP", 443), ("TCP", 6443)}),
    ]
    # The API server's address is the operator's to set: the README says how.
    assert "192.0.2.1/32" in (K8S / "README.md").read_text()


def test_pipeline_config_holds_the_keys_the_tasks_read():
    from pipelines import kubernetes as k

    data = find(render("base"), "ConfigMap", k.PIPELINE_CONFIG_MAP)["data"]
    assert set(data) == {k.DEID_KEY_FILE_KEY, k.DVC_REMOTE_KEY, k.S3_ENDPOINT_KEY}
    assert data[k.DEID_KEY_FILE_KEY] == f"{k.DEID_KEY_MOUNT}/key"
    assert data[k.DVC_REMOTE_KEY].startswith("s3://")
    # Fully qualified: the pipeline's pods may run in a profile namespace.
    assert data[k.S3_ENDPOINT_KEY] == "http://cxrflow-minio.cxrflow.svc.cluster.local:9000"


def test_mlflow_runs_basic_auth_with_its_config_from_a_secret_file():
    pod = find(render("base"), "Deployment", "cxrflow-mlflow")["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert "--app-name=basic-auth" in server["args"]
    env = {e["name"]: e for e in server["env"]}
    config_path = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "cxrflow-mlflow-auth-config",
        "key": "flask-secret-key",
    }
    mount = next(m for m in server["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "cxrflow-mlflow-auth-config"
    assert volume["secret"]["items"] == [{"key": "basic_auth.ini", "path": "basic_auth.ini"}]
    assert config_path.endswith("/basic_auth.ini")
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    # No admin or user credential in the manifests (test_no_secret_values_are_committed), and the
    # README says how to create the server's config and the users.
    readme = (K8S / "README.md").read_text()
    for text in ("default_permission = READ", "database_uri = postgresql", "admin_password"):
        assert text in readme, text


def test_every_mlflow_client_in_k8s_authenticates_from_the_pipeline_user_secret():
    for kustomization in KUSTOMIZATIONS:
        for obj in render(kustomization):
            for pod in pod_specs(obj):
                for c in containers(pod):
                    env = {e["name"]: e for e in c.get("env", [])}
                    if "MLFLOW_TRACKING_URI" not in env:
                        continue
                    where = f"{kustomization} {obj['metadata']['name']}/{c['name']}"
                    for var, key in (
                        ("MLFLOW_TRACKING_USERNAME", "username"),
                        ("MLFLOW_TRACKING_PASSWORD", "password"),
                    ):
                        ref = env[var]["valueFrom"]["secretKeyRef"]
                        assert ref == {"name": "cxrflow-mlflow-auth", "key": key}, where
