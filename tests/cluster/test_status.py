"""Job phase from `.status` dicts shaped like the Trainer v2 and Training Operator v1 APIs."""

from __future__ import annotations

import pytest

from cxrflow.cluster import JobPhase, JobState, job_state
from cxrflow.cluster.status import pytorchjob_state, trainjob_state

T0 = "2026-01-05T02:00:00Z"


def _cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T0,
    }


def _jobs(active=0, ready=0, succeeded=0, failed=0) -> list[dict]:
    return [
        {
            "name": "node",
            "active": active,
            "ready": ready,
            "succeeded": succeeded,
            "failed": failed,
            "suspended": 0,
        }
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, JobState(JobPhase.PENDING, "NoStatus")),
        ({}, JobState(JobPhase.PENDING, "NoStatus")),
        ({"jobsStatus": _jobs()}, JobState(JobPhase.PENDING, "Created")),
        ({"jobsStatus": _jobs(active=2, ready=2)}, JobState(JobPhase.RUNNING, "JobsActive")),
        (
            {"conditions": [_cond("Complete", reason="JobsCompleted", message="done")]},
            JobState(JobPhase.SUCCEEDED, "JobsCompleted", "done"),
        ),
        (
            {
                "conditions": [_cond("Failed", reason="JobsFailed", message="node-0 OOMKilled")],
                "jobsStatus": _jobs(failed=1),
            },
            JobState(JobPhase.FAILED, "JobsFailed", "node-0 OOMKilled"),
        ),
        (
            {"conditions": [_cond("Failed", reason="DeadlineExceeded")]},
            JobState(JobPhase.FAILED, "DeadlineExceeded"),
        ),
        (
            {"conditions": [_cond("Suspended", reason="Suspended")]},
            JobState(JobPhase.SUSPENDED, "Suspended"),
        ),
        (
            {
                "conditions": [
                    _cond("Suspended", "False", reason="Resumed"),
                    _cond("Complete", "False"),
                ],
                "jobsStatus": _jobs(active=1),
            },
            JobState(JobPhase.RUNNING, "JobsActive"),
        ),
    ],
)
def test_trainjob_state(status, expected):
    assert trainjob_state(status) == expected
    assert job_state({"kind": "TrainJob", "status": status}) == expected


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], JobState(JobPhase.PENDING, "NoStatus")),
        (
            [_cond("Created", reason="PyTorchJobCreated", message="created")],
            JobState(JobPhase.PENDING, "PyTorchJobCreated", "created"),
        ),
        (
            [_cond("Created", "False"), _cond("Running", reason="PyTorchJobRunning")],
            JobState(JobPhase.RUNNING, "PyTorchJobRunning"),
        ),
        (
            [
                _cond("Running", "False"),
                _cond("Restarting", reason="PyTorchJobRestarting", message="worker-1 restarted"),
            ],
            JobState(JobPhase.RUNNING, "PyTorchJobRestarting", "worker-1 restarted"),
        ),
        (
            [_cond("Running", "False"), _cond("Succeeded", reason="PyTorchJobSucceeded")],
            JobState(JobPhase.SUCCEEDED, "PyTorchJobSucceeded"),
        ),
        (
            [_cond("Running", "False"), _cond("Failed", reason="PyTorchJobFailed", message="x")],
            JobState(JobPhase.FAILED, "PyTorchJobFailed", "x"),
        ),
        (
            [_cond("Suspended", reason="PyTorchJobSuspended")],
            JobState(JobPhase.SUSPENDED, "PyTorchJobSuspended"),
        ),
    ],
)
def test_pytorchjob_state(conditions, expected):
    status = {
        "conditions": conditions,
        "replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 1}},
        "startTime": T0,
    }
    assert pytorchjob_state(status) == expected
    assert job_state({"kind": "PyTorchJob", "status": status}) == expected


def test_terminal_phases_and_unknown_kinds():
    assert JobPhase.SUCCEEDED.terminal and JobPhase.FAILED.terminal
    assert not JobPhase.RUNNING.terminal and not JobPhase.SUSPENDED.terminal
    with pytest.raises(ValueError, match=r"^kind:"):
        job_state({"kind": "Job", "status": {}})
