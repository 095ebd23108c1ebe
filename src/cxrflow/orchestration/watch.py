"""The new-image watcher: notice new or changed inbox files and trigger one pipeline run a batch.

A file is new when its (keyed file key, keyed content digest) pair is neither in the dataset's
`ingest_state.parquet` nor in a batch already triggered and still pending. The pipeline run
ingests and versions the data itself; the watcher only decides and triggers. Its own state
(a JSON file of file keys and digests, never paths) caches digests by size and mtime and
remembers pending batches, so a second pass with nothing new triggers nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrflow.ingest.shards import list_inbox, read_state
from cxrflow.keys import SecretKey, load_key
from cxrflow.orchestration.submit import submit_run

log = logging.getLogger(__name__)

STATE_VERSION = 1
DEFAULT_PENDING_TTL_S = 6 * 3600


@dataclass(frozen=True)
class Batch:
    """New files found in one pass: file key -> content digest; `id` is a digest of them."""

    files: Mapping[str, str]
    id: str = field(init=False)

    def __post_init__(self) -> None:
        """Derive the id from the content."""
        lines = "\n".join(f"{k}:{v}" for k, v in sorted(self.files.items()))
        object.__setattr__(self, "id", hashlib.sha256(lines.encode()).hexdigest()[:16])


Trigger = Callable[[Batch], str]  # starts one pipeline run for a batch; returns its run id


@dataclass(frozen=True)
class WatchResult:
    """What one pass found and did."""

    files: int
    new_files: int
    batch: Batch | None = None
    run_id: str | None = None

    @property
    def triggered(self) -> bool:
        """True when this pass started a run."""
        return self.run_id is not None


@contextmanager
def _locked(state_file: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the state file (one watcher pass at a time)."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with open(state_file.with_name(state_file.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load(state_file: Path) -> dict[str, Any]:
    """The watcher state (empty when missing)."""
    if not state_file.is_file():
        return {"version": STATE_VERSION, "seen": {}, "pending": {}}
    state = json.loads(state_file.read_text())
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{state_file}: unknown watcher state version {state.get('version')!r}")
    return state


def _save(state_file: Path, state: dict[str, Any]) -> None:
    """Write the state atomically."""
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True) + "\n")
    tmp.replace(state_file)


def _digests(
    inbox: Path, key: SecretKey, exclude: Iterable[Path], seen: dict[str, list[Any]]
) -> dict[str, str]:
    """file key -> content digest of every inbox file; unchanged files (size, mtime) are cached."""
    out: dict[str, str] = {}
    for f in list_inbox(inbox, key, exclude):
        st = (inbox / f.rel).stat()
        cached = seen.get(f.file_key)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            out[f.file_key] = cached[2]
            continue
        digest = key.digest("content", (inbox / f.rel).read_bytes()).hex()
        seen[f.file_key] = [st.st_size, st.st_mtime_ns, digest]
        out[f.file_key] = digest
    for gone in set(seen) - set(out):
        del seen[gone]
    return out


def _prune(
    pending: dict[str, Any], ingested: Mapping[str, str], now: float, ttl_s: float
) -> dict[str, Any]:
    """Drop batches whose files are all ingested, or that waited longer than `ttl_s` (retry)."""
    keep = {}
    for bid, b in pending.items():
        done = all(ingested.get(fk) == d for fk, d in b["files"].items())
        if done:
            log.info("batch %s (run %s) is ingested", bid, b["run_id"])
        elif now - b["at"] > ttl_s:
            log.warning(
                "batch %s (run %s) not ingested after %ds: retrying", bid, b["run_id"], ttl_s
            )
        else:
            keep[bid] = b
    return keep


def watch_once(
    inbox: Path,
    *,
    data_dir: Path,
    repo_root: Path,
    state_file: Path,
    trigger: Trigger,
    key: SecretKey | None = None,
    exclude: Iterable[Path] = (),
    pending_ttl_s: float = DEFAULT_PENDING_TTL_S,
    now: float | None = None,
) -> WatchResult:
    """One pass: trigger exactly one run when the inbox holds files not ingested nor pending."""
    inbox, data_dir, state_file = (repo_root / p for p in (inbox, data_dir, state_file))
    key = key or load_key()
    now = time.time() if now is None else now
    with _locked(state_file):
        state = _load(state_file)
        current = _digests(inbox, key, [repo_root / p for p in exclude], state["seen"])
        ingested = read_state(data_dir)
        state["pending"] = _prune(state["pending"], ingested, now, pending_ttl_s)
        pending = {fk: d for b in state["pending"].values() for fk, d in b["files"].items()}
        new = {fk: d for fk, d in current.items() if ingested.get(fk) != d and pending.get(fk) != d}
        if not new:
            _save(state_file, state)
            log.info("%d files in the inbox, nothing new", len(current))
            return WatchResult(len(current), 0)
        batch = Batch(new)
        log.info("%d new files (batch %s): triggering a run", len(new), batch.id)
        try:
            run_id = trigger(batch)
        finally:
            _save(state_file, state)  # the digest cache, even when the trigger failed
        state["pending"][batch.id] = {"run_id": run_id, "at": now, "files": dict(new)}
        _save(state_file, state)
        log.info("batch %s: run %s", batch.id, run_id)
        return WatchResult(len(current), len(new), batch, run_id)


def watch(interval_s: float, *, max_passes: int | None = None, **kwargs: Any) -> list[WatchResult]:
    """Run `watch_once(**kwargs)` every `interval_s` seconds; a failed pass is logged, not fatal."""
    results: list[WatchResult] = []
    passes = 0
    while max_passes is None or passes < max_passes:
        passes += 1
        try:
            results.append(watch_once(**kwargs))
        except Exception:
            log.exception("watcher pass failed; retrying in %ss", interval_s)
        if max_passes is None or passes < max_passes:
            time.sleep(interval_s)
    return results


@dataclass
class RemoteTrigger:
    """Submit the compiled pipeline to the KFP API (SA token) for each batch."""

    host: str
    pipeline_yaml: Path
    params: Mapping[str, Any]
    experiment: str = "cxrflow-new-images"
    token_path: Path | None = None
    namespace: str | None = None
    service_account: str | None = None

    def __call__(self, batch: Batch) -> str:
        """Start one run; its name carries the batch id."""
        return submit_run(
            self.host,
            self.params,
            experiment=self.experiment,
            pipeline_yaml=self.pipeline_yaml,
            token_path=self.token_path,
            namespace=self.namespace,
            run_name=f"cxrflow-new-images-{batch.id}",
            service_account=self.service_account,
        )


@dataclass
class LocalTrigger:
    """Run a pipeline with kfp.local for each batch (default: the training pipeline)."""

    settings: Any  # cxrflow.orchestration.local.LocalSettings
    params: Mapping[str, Any]
    pipeline: Callable[..., Any] | None = None
    runs: list[str] = field(default_factory=list)

    def __call__(self, batch: Batch) -> str:
        """Run to completion (raises when a task fails); returns the local run's directory name."""
        from cxrflow.orchestration.local import run_pipeline_locally

        root = Path(self.settings.pipeline_root)
        before = set(os.listdir(root)) if root.is_dir() else set()
        if self.pipeline is None:
            run_pipeline_locally(self.settings, dict(self.params))
        else:
            _init_local(self.settings)
            self.pipeline(**self.params)
        new = sorted(set(os.listdir(root)) - before)
        run_id = new[-1] if new else f"local-{batch.id}"
        self.runs.append(run_id)
        return run_id


def _init_local(settings: Any) -> None:
    """kfp.local in this environment, set up as `cxrflow.orchestration.local` does."""
    from kfp import local

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    Path(settings.pipeline_root).mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(settings.pipeline_root),
        raise_on_error=True,
    )
