"""Steps run as a Kubernetes pod would run them, from what the compiled pipeline and k8s/ say.

A "pod" here is a subprocess that gets:
- the image's installed package only: the project built as a wheel and installed with
  `pip --target` into a directory first on PYTHONPATH (no checkout on the path, no
  editable install: `cxrflow.__file__` is checked to lie there);
- a fresh, empty working directory that it cannot write (mode 0555; as root, which ignores
  modes, anything left there afterwards fails the run), and its own HOME and TMPDIR;
- the environment that the compiled pipeline's kfp-kubernetes settings give its tasks: the
  ConfigMap keys mapped to env vars (values read from the ConfigMaps in k8s/, with the service
  addresses and mount paths of this simulation put in) and the Secret keys mapped to env vars;
  Secrets mounted as volumes become files; the PVCs (/data, /checkpoints) are directories
  ("shared volumes") that every pod sees.

Not modelled: the securityContext's user id (the interpreter of this machine's virtual
environment lies under /root, which other users cannot enter); per-task environments
(kfp.local runs every task with one environment, so the pipeline gets the union of what its
tasks get, checked for conflicts); resource limits, network policies, image pulls, and the
KFP driver/launcher containers: kfp.local executes the pipeline function, which is what the
compiled YAML was compiled from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S_BASE = REPO / "k8s" / "base"


def build_image_site(out: Path) -> Path:
    """The project wheel (no dependencies) installed into `out/site`, as the image installs it."""
    wheels, site = out / "wheels", out / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(wheels.glob("cxrflow-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    # A build directory left in the checkout would be a second copy of the source.
    shutil.rmtree(REPO / "build", ignore_errors=True)
    return site


def config_maps(base: Path = K8S_BASE) -> dict[str, dict[str, str]]:
    """Every ConfigMap defined in k8s/base: name -> data."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(base.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConfigMap":
                out[doc["metadata"]["name"]] = dict(doc.get("data") or {})
    return out


def executors(compiled: Path) -> dict[str, dict]:
    """The kfp-kubernetes settings of each executor of a compiled pipeline."""
    docs = list(yaml.safe_load_all(compiled.read_text()))
    platform = next((d for d in docs if d and "platforms" in d), None)
    if platform is None:
        raise AssertionError(f"{compiled} has no Kubernetes platform spec")
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@dataclass
class PodSpec:
    """What a pipeline's pods get: env vars, secret files, volume mounts, user."""

    env: dict[str, str] = field(default_factory=dict)
    secret_mounts: dict[str, str] = field(default_factory=dict)  # mount path -> secret name
    pvc_mounts: dict[str, str] = field(default_factory=dict)  # mount path -> claim name
    run_as: tuple[int, int] | None = None


def _set(env: dict[str, str], name: str, value: str, source: str) -> None:
    if name in env and env[name] != value:
        raise AssertionError(f"{source} sets {name}={value!r}, another task {env[name]!r}")
    env[name] = value


def pod_spec(
    compiled: Path,
    maps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]],
) -> PodSpec:
    """The union of the executors' settings, resolved against `maps` and `secrets`.

    A ConfigMap or key the pipeline names that `maps` lacks, or a Secret key `secrets` lacks, is
    an error here, as it is a CreateContainerConfigError on a cluster.
    """
    spec = PodSpec()
    for name, ex in executors(compiled).items():
        for ref in ex.get("configMapAsEnv", []):
            data = maps.get(ref["configMapName"])
            if data is None:
                raise AssertionError(f"{name}: ConfigMap {ref['configMapName']} not in k8s/")
            for kv in ref["keyToEnv"]:
                if kv["configMapKey"] not in data:
                    raise AssertionError(
                        f"{name}: key {kv['configMapKey']} not in ConfigMap {ref['configMapName']}"
                    )
                _set(spec.env, kv["envVar"], data[kv["configMapKey"]], name)
        for ref in ex.get("secretAsEnv", []):
            data = secrets.get(ref["secretName"])
            if data is None:
                raise AssertionError(f"{name}: Secret {ref['secretName']} not provided")
            for kv in ref["keyToEnv"]:
                _set(spec.env, kv["envVar"], data[kv["secretKey"]], name)
        for ref in ex.get("secretAsVolume", []):
            if ref["secretName"] not in secrets:
                raise AssertionError(f"{name}: Secret {ref['secretName']} not provided")
            spec.secret_mounts[ref["mountPath"]] = ref["secretName"]
        for ref in ex.get("pvcMount", []):
            claim = ref.get("constant") or ref.get("pvcNameParameter", {}).get(
                "runtimeValue", {}
            ).get("constant", "")
            spec.pvc_mounts[ref["mountPath"]] = claim
        ctx = ex.get("securityContext") or {}
        if "runAsUser" in ctx:
            spec.run_as = (int(ctx["runAsUser"]), int(ctx.get("runAsGroup", ctx["runAsUser"])))
    return spec


@dataclass
class Mounts:
    """Where each mount path of the pods lives on this machine."""

    paths: dict[str, Path]

    def host(self, path: str) -> str:
        """`path` as the pod sees it -> the same file on this machine."""
        for mount, host in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return str(host / os.path.relpath(path, mount))
        return path


@dataclass
class Pod:
    """Runs commands as the pipeline's pods: see the module docstring."""

    root: Path
    site: Path
    spec: PodSpec
    mounts: Mounts
    secrets: dict[str, dict[str, str]]

    def __post_init__(self) -> None:
        self.uid_gid: tuple[int, int] | None = None  # see the module docstring
        for mount, secret in self.spec.secret_mounts.items():
            folder = Path(self.mounts.host(mount))
            folder.mkdir(parents=True, exist_ok=True)
            for key, value in self.secrets[secret].items():
                (folder / key).write_text(value)
                (folder / key).chmod(0o400)  # readable by the pod's user only
        self.root.mkdir(parents=True, exist_ok=True)
        for path in (self.root, *self.mounts.paths.values()):
            self.own(path)

    def own(self, path: Path) -> None:
        """Give `path` (recursively) to the pod's user, as a volume's fsGroup would."""
        if self.uid_gid is None:
            return
        for p in [path, *path.rglob("*")]:
            os.chown(p, *self.uid_gid, follow_symlinks=False)

    def environment(self) -> dict[str, str]:
        """The pod's environment: the spec's env with mount paths on this machine."""
        home = self.root / "home"
        tmp = self.root / "tmp"
        for d in (home, tmp):
            d.mkdir(exist_ok=True)
            self.own(d)
        env = {k: self.mounts.host(v) for k, v in self.spec.env.items()}
        env.update(
            PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            HOME=str(home),
            TMPDIR=str(tmp),
            PYTHONPATH=str(self.site),
            PYTHONSAFEPATH="1",  # the working directory is never on sys.path
            PYTHONDONTWRITEBYTECODE="1",
            # Fail fast on a broken service instead of MLflow's 5-minute retry budget.
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
            MLFLOW_HTTP_REQUEST_TIMEOUT="60",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            OMP_NUM_THREADS="2",
        )
        return env

    def run(
        self, args: list[str], *, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run `args` in a fresh, empty, read-only working directory."""
        workdir = Path(self.root / "workdirs" / f"pod-{len(list(self.root.glob('workdirs/*')))}")
        workdir.mkdir(parents=True)
        self.own(workdir)
        workdir.chmod(0o555)
        result = subprocess.run(
            args,
            cwd=workdir,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.uid_gid[0] if self.uid_gid else None,
            group=self.uid_gid[1] if self.uid_gid else None,
            extra_groups=[] if self.uid_gid else None,
        )
        leftovers = list(workdir.iterdir())
        if leftovers:
            raise AssertionError(f"a pod wrote into its working directory: {leftovers}")
        if check and result.returncode != 0:
            raise AssertionError(
                f"{args[:4]} exited with {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
                f"\n--- stderr\n{result.stderr[-8000:]}"
            )
        return result

    def python(self, code: str, *args: str, timeout: float, check: bool = True):
        """`python -c code args...` in a pod."""
        return self.run([sys.executable, "-c", code, *args], timeout=timeout, check=check)

    def cxrflow(self, *args: str, timeout: float = 300, check: bool = True):
        """The `cxrflow` command line in a pod."""
        return self.python(
            "from cxrflow.cli import app; app()", *args, timeout=timeout, check=check
        )
