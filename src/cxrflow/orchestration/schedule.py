"""The recurring-run definition (k8s/recurring-run.yaml) as a validated, typed spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxrflow.cluster.config import ClusterConfigError

_FIELDS = {
    "name",
    "description",
    "experiment",
    "pipeline",
    "cron",
    "max_concurrency",
    "no_catchup",
    "enabled",
    "service_account",
    "parameters",
}


@dataclass(frozen=True)
class RecurringRunSpec:
    """A KFP recurring run: which pipeline, when (6-field cron, seconds first), with what."""

    name: str
    experiment: str
    pipeline: str
    cron: str
    max_concurrency: int = 1
    no_catchup: bool = True
    enabled: bool = True
    service_account: str = ""
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate at the edge: every error names its field."""
        for name in ("name", "experiment", "pipeline"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ClusterConfigError(f"{name}: must be a non-empty string")
        if not isinstance(self.cron, str) or len(self.cron.split()) != 6:
            raise ClusterConfigError(
                f"cron: {self.cron!r} must have 6 fields (seconds minutes hours day month weekday)"
            )
        mc = self.max_concurrency
        if not isinstance(mc, int) or isinstance(mc, bool) or not 1 <= mc <= 10:
            raise ClusterConfigError(f"max_concurrency: {mc!r} must be an integer in 1..10")
        for name in ("no_catchup", "enabled"):
            if not isinstance(getattr(self, name), bool):
                raise ClusterConfigError(f"{name}: must be true or false")
        if not isinstance(self.parameters, Mapping):
            raise ClusterConfigError("parameters: must be a mapping of pipeline parameters")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecurringRunSpec:
        """Build from the YAML mapping, refusing unknown keys."""
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise ClusterConfigError(f"{unknown[0]}: unknown field (known: {sorted(_FIELDS)})")
        return cls(**dict(data))

    def create_recurring_run_kwargs(
        self, experiment_id: str, pipeline_id: str, version_id: str
    ) -> dict[str, Any]:
        """Keyword arguments of `kfp.Client().create_recurring_run`, bound to a pipeline version."""
        kwargs: dict[str, Any] = {
            "experiment_id": experiment_id,
            "job_name": self.name,
            "description": self.description or None,
            "cron_expression": self.cron,
            "max_concurrency": self.max_concurrency,
            "no_catchup": self.no_catchup,
            "enabled": self.enabled,
            "params": dict(self.parameters),
            "pipeline_id": pipeline_id,
            "version_id": version_id,
        }
        if self.service_account:
            kwargs["service_account"] = self.service_account
        return kwargs


def load_recurring_run(path: Path) -> RecurringRunSpec:
    """Read and validate a recurring-run YAML file."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ClusterConfigError(f"{path}: must hold a YAML mapping")
    return RecurringRunSpec.from_dict(data)
