"""Run a training stage where its node count says: in this pod, or as a multi-node job.

The pipeline's pre-training and report steps call `run_stage`: with `nodes` 1 the stage runs
here (through the same entry the job's nodes run, so the outcome is the same JSON either way);
with more, a launcher creates a TrainJob/PyTorchJob, follows it and returns what its rank 0
wrote (see `cxrflow.cluster.launcher`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxrflow.cluster import entry
from cxrflow.stages.contract import param, pick


@dataclass(frozen=True)
class JobOptions:
    """The pipeline's multi-node settings of one step (ignored with one node)."""

    nodes: int = param(1, help="Nodes: 1 trains in the pipeline's pod, more launch a job.")
    gpus_per_node: int = param(1, help="GPUs on each node of a multi-node job.")
    backend: str = param(
        "",
        help="Multi-node job kind: trainjob (Kubeflow Trainer) or pytorchjob (Training "
        "Operator); empty: the cxrflow-gpu-pool ConfigMap's, else trainjob.",
    )
    runtime: str = param("", help="Trainer runtime of a TrainJob; empty: the stage's default.")
    image: str = param("", help="Image of the job's nodes; empty: the ConfigMap's.")
    namespace: str = param("", help="Namespace of the job; empty: the pipeline pod's.")
    timeout_hours: float = param(0.0, help="Fail a multi-node job running longer; 0: no limit.")
    keep_job: bool = param(False, help="Keep the finished job and its pods (for debugging).")

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> JobOptions:
        """From a component's inputs: `nodes`, `gpus_per_node`, `keep_job`, `job_<field>`."""
        return pick(cls, {name.removeprefix("job_"): v for name, v in values.items()})

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes: {self.nodes} must be >= 1")
        if self.gpus_per_node < 1:
            raise ValueError(f"gpus_per_node: {self.gpus_per_node} must be >= 1")
        if self.timeout_hours < 0:
            raise ValueError(f"job_timeout_hours: {self.timeout_hours} must be >= 0")


def run_stage(stage: str, params: Any, options: JobOptions) -> dict[str, Any]:
    """The stage's outcome (its result as JSON; with a job, plus `job`: kind namespace/name)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if options.nodes == 1:
        outcome = entry.run(stage, params)
        assert outcome is not None  # one process: rank 0
        return outcome
    from cxrflow.cluster import launcher

    launcher.raise_on_sigterm()  # a cancelled run deletes its job
    settings = launcher.MultiNodeSettings(
        nodes=options.nodes,
        gpus_per_node=options.gpus_per_node,
        backend=options.backend,
        runtime=options.runtime,
        image=options.image,
        namespace=options.namespace,
        timeout_s=options.timeout_hours * 3600.0,
        keep_job=options.keep_job,
    )
    return launcher.launch(stage, params, settings)
