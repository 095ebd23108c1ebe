"""Decide a training job's phase from the `.status` the Kubernetes API returns (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class JobPhase(StrEnum):
    """Where a TrainJob or PyTorchJob stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        """True when the job will not change any more."""
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED)


@dataclass(frozen=True)
class JobState:
    """A phase with the condition reason and message that decided it."""

    phase: JobPhase
    reason: str = ""
    message: str = ""


def _true_conditions(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Conditions whose status is "True", by type (the last one of a type wins)."""
    conditions: Sequence[Mapping[str, Any]] = (status or {}).get("conditions") or []
    return {str(c.get("type")): c for c in conditions if str(c.get("status")) == "True"}


def _state(phase: JobPhase, condition: Mapping[str, Any] | None, default: str) -> JobState:
    """A JobState carrying a condition's reason and message."""
    condition = condition or {}
    return JobState(
        phase, str(condition.get("reason") or default), str(condition.get("message") or "")
    )


def trainjob_state(status: Mapping[str, Any] | None) -> JobState:
    """Trainer v2 TrainJob: conditions Complete / Failed / Suspended, child JobSet job counts."""
    true = _true_conditions(status)
    if "Failed" in true:
        return _state(JobPhase.FAILED, true["Failed"], "Failed")
    if "Complete" in true:
        return _state(JobPhase.SUCCEEDED, true["Complete"], "Complete")
    if "Suspended" in true:
        return _state(JobPhase.SUSPENDED, true["Suspended"], "Suspended")
    jobs: Sequence[Mapping[str, Any]] = (status or {}).get("jobsStatus") or []
    if any(int(j.get("failed") or 0) > 0 for j in jobs):
        failed = ", ".join(str(j.get("name")) for j in jobs if int(j.get("failed") or 0) > 0)
        return JobState(JobPhase.RUNNING, "JobsFailing", f"failed child jobs: {failed}")
    if any(int(j.get("active") or 0) + int(j.get("ready") or 0) > 0 for j in jobs):
        return JobState(JobPhase.RUNNING, "JobsActive")
    return JobState(JobPhase.PENDING, "Created" if jobs else "NoStatus")


def pytorchjob_state(status: Mapping[str, Any] | None) -> JobState:
    """Training Operator v1 PyTorchJob: Created / Running / Restarting / Succeeded / Failed."""
    true = _true_conditions(status)
    if "Failed" in true:
        return _state(JobPhase.FAILED, true["Failed"], "Failed")
    if "Succeeded" in true:
        return _state(JobPhase.SUCCEEDED, true["Succeeded"], "Succeeded")
    if "Suspended" in true:
        return _state(JobPhase.SUSPENDED, true["Suspended"], "Suspended")
    if "Restarting" in true:
        return _state(JobPhase.RUNNING, true["Restarting"], "Restarting")
    if "Running" in true:
        return _state(JobPhase.RUNNING, true["Running"], "Running")
    return _state(JobPhase.PENDING, true.get("Created"), "Created" if true else "NoStatus")


def job_state(job: Mapping[str, Any]) -> JobState:
    """The state of a TrainJob or PyTorchJob as `get_namespaced_custom_object` returns it."""
    kind = job.get("kind")
    if kind == "TrainJob":
        return trainjob_state(job.get("status"))
    if kind == "PyTorchJob":
        return pytorchjob_state(job.get("status"))
    raise ValueError(f"kind: {kind!r} is neither TrainJob nor PyTorchJob")
