"""Multi-node training jobs: the per-node entry, the Kubernetes objects, the launcher.

No KFP here: the pipeline's steps call `cxrflow.cluster.dispatch.run_stage`, which runs a stage
in the step's pod or as a TrainJob/PyTorchJob whose every node runs `cxrflow.cluster.entry`.
"""

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
