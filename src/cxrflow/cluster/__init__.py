"""Kubernetes objects for distributed training and their status: plain dicts, no KFP needed."""

from cxrflow.cluster.config import (
    ClusterConfigError,
    DistributedJobConfig,
    GpuPool,
    JobStorage,
)
from cxrflow.cluster.pytorchjob import build_pytorchjob
from cxrflow.cluster.status import JobPhase, JobState, job_state
from cxrflow.cluster.trainjob import build_trainjob

__all__ = [
    "ClusterConfigError",
    "DistributedJobConfig",
    "GpuPool",
    "JobPhase",
    "JobState",
    "JobStorage",
    "build_pytorchjob",
    "build_trainjob",
    "job_state",
]
