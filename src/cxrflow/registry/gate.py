"""The promotion gate: `champion` moves only to a candidate at least as good on the same split."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from cxrflow.registry.runs import client as make_client
from cxrflow.registry.versions import version_by_alias, version_metrics
from cxrflow.tags import CANDIDATE, CHAMPION, TAG_DATA_VERSION, TAG_SPLIT_DIGEST

log = logging.getLogger(__name__)

TAG_DECISION: Final = "cxrflow.gate.decision"
TAG_REASON: Final = "cxrflow.gate.reason"
TAG_AGAINST: Final = "cxrflow.gate.champion_version"
TAG_DETAILS: Final = "cxrflow.gate.details"
TAG_TIME: Final = "cxrflow.gate.decided_at"

Decision = Literal["promoted", "rejected", "refused"]


class GateConfigError(ValueError):
    """A gate configuration is invalid (the message names the field)."""


@dataclass(frozen=True)
class MetricRule:
    """One metric the candidate must not lose on: `higher` or `lower` is better."""

    name: str
    direction: Literal["higher", "lower"] = "higher"
    tolerance: float = 0.0  # how much worse than the champion is still acceptable (absolute)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise GateConfigError("metrics[].name is empty")
        if self.direction not in ("higher", "lower"):
            raise GateConfigError(
                f"metrics[{self.name}].direction must be 'higher' or 'lower', "
                f"got {self.direction!r}"
            )
        if not (isinstance(self.tolerance, int | float) and math.isfinite(self.tolerance)):
            raise GateConfigError(f"metrics[{self.name}].tolerance must be a finite number")
        if self.tolerance < 0:
            raise GateConfigError(f"metrics[{self.name}].tolerance must be >= 0")

    def passes(self, candidate: float, champion: float) -> bool:
        """At least as good as the champion, within the tolerance."""
        if self.direction == "higher":
            return candidate >= champion - self.tolerance
        return candidate <= champion + self.tolerance


@dataclass(frozen=True)
class GateConfig:
    """Which metrics decide, and what happens without a champion."""

    metrics: tuple[MetricRule, ...]
    promote_without_champion: bool = True  # the first candidate becomes the champion
    candidate_alias: str = CANDIDATE
    champion_alias: str = CHAMPION

    def __post_init__(self) -> None:
        if not self.metrics:
            raise GateConfigError("metrics is empty: the gate needs at least one metric rule")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise GateConfigError(f"metrics lists {', '.join(dupes)} more than once")
        if self.candidate_alias == self.champion_alias:
            raise GateConfigError("candidate_alias and champion_alias must differ")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateConfig:
        """From plain data (YAML/JSON/pipeline parameter)."""
        unknown = set(d) - {
            "metrics",
            "promote_without_champion",
            "candidate_alias",
            "champion_alias",
        }
        if unknown:
            raise GateConfigError(f"unknown gate fields: {', '.join(sorted(unknown))}")
        rules = d.get("metrics")
        if not isinstance(rules, list):
            raise GateConfigError("metrics must be a list of {name, direction, tolerance}")
        try:
            parsed = tuple(MetricRule(**r) for r in rules)
        except TypeError as exc:
            raise GateConfigError(f"metrics: {exc}") from exc
        return cls(metrics=parsed, **{k: v for k, v in d.items() if k != "metrics"})


@dataclass(frozen=True)
class MetricComparison:
    """One rule applied: the two values and the verdict."""

    name: str
    direction: str
    tolerance: float
    candidate: float | None
    champion: float | None
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one candidate, and why."""

    model: str
    candidate: str
    champion: str | None
    decision: Decision
    reason: str
    comparisons: tuple[MetricComparison, ...] = field(default_factory=tuple)

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _same_test_split(candidate: Any, champion: Any) -> str:
    """Why the two versions were not evaluated on the same test split ("" when they were)."""
    problems = []
    for tag, label in ((TAG_DATA_VERSION, "data version"), (TAG_SPLIT_DIGEST, "split digest")):
        a, b = candidate.tags.get(tag, ""), champion.tags.get(tag, "")
        if not a or not b:
            problems.append(f"{label} unknown ({tag} missing)")
        elif a != b:
            problems.append(f"{label} {a[:12]} vs {b[:12]}")
    return "; ".join(problems)


def decide(
    config: GateConfig, candidate: Any, champion: Any | None, client: Any = None
) -> GateDecision:
    """Compare two model versions under `config` (no side effects)."""
    name, cand_v = candidate.name, str(candidate.version)
    if champion is None:
        if config.promote_without_champion:
            return GateDecision(name, cand_v, None, "promoted", "no champion yet")
        return GateDecision(name, cand_v, None, "rejected", "no champion to compare with")
    champ_v = str(champion.version)
    if champ_v == cand_v:
        return GateDecision(name, cand_v, champ_v, "rejected", "the candidate is the champion")
    mismatch = _same_test_split(candidate, champion)
    if mismatch:
        return GateDecision(
            name,
            cand_v,
            champ_v,
            "refused",
            f"not the same test split ({mismatch}): refusing to compare; re-evaluate the "
            "champion on the candidate's data version and split, or promote by hand",
        )
    c_metrics, h_metrics = version_metrics(candidate, client), version_metrics(champion, client)
    comparisons = []
    for rule in config.metrics:
        c, h = c_metrics.get(rule.name), h_metrics.get(rule.name)
        ok = c is not None and h is not None and rule.passes(c, h)
        comparisons.append(MetricComparison(rule.name, rule.direction, rule.tolerance, c, h, ok))
    missing = [m.name for m in comparisons if m.candidate is None or m.champion is None]
    failed = [m.name for m in comparisons if not m.passed and m.name not in missing]
    if missing:
        reason = f"metrics missing on candidate or champion: {', '.join(missing)}"
    elif failed:
        reason = f"worse than champion {champ_v} beyond tolerance on: {', '.join(failed)}"
    else:
        reason = f"at least as good as champion {champ_v} on every gate metric"
    decision: Decision = "rejected" if missing or failed else "promoted"
    return GateDecision(name, cand_v, champ_v, decision, reason, tuple(comparisons))


def record_decision(decision: GateDecision, client: Any = None) -> None:
    """Write the decision and its numbers on the candidate version as tags."""
    c = client or make_client()
    details = json.dumps([asdict(m) for m in decision.comparisons], sort_keys=True)
    tags = {
        TAG_DECISION: decision.decision,
        TAG_REASON: decision.reason[:4000],
        TAG_AGAINST: decision.champion or "",
        TAG_DETAILS: details[:7000],
        TAG_TIME: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for key, value in tags.items():
        c.set_model_version_tag(decision.model, decision.candidate, key, value)


def run_gate(
    name: str, config: GateConfig, *, version: str | None = None, client: Any = None
) -> GateDecision:
    """Gate `version` (default: the `candidate` alias) of `name`; move `champion` if it passes."""
    c = client or make_client()
    candidate = (
        c.get_model_version(name, str(version))
        if version is not None
        else version_by_alias(name, config.candidate_alias, c)
    )
    if candidate is None:
        raise LookupError(f"{name} has no version with alias {config.candidate_alias!r}")
    champion = version_by_alias(name, config.champion_alias, c)
    decision = decide(config, candidate, champion, c)
    record_decision(decision, c)
    if decision.promoted:
        c.set_registered_model_alias(name, config.champion_alias, decision.candidate)
    log.info("gate %s v%s: %s (%s)", name, decision.candidate, decision.decision, decision.reason)
    return decision
