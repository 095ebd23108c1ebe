"""Comparison with the current champion, only on the same test split."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cxrflow.evaluation.tables import Table, num
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.versions import version_by_alias, version_metrics
from cxrflow.tags import CHAMPION, TAG_DATA_VERSION, TAG_SPLIT_DIGEST


@dataclass(frozen=True)
class ChampionComparison:
    """The champion's numbers beside ours, or why there are none."""

    model: str
    champion_version: str
    comparable: bool
    reason: str
    rows: tuple[tuple[str, float, float], ...] = ()  # metric, ours, champion

    def table(self) -> Table:
        rows = tuple(
            (m, num(ours), num(theirs), num(ours - theirs)) for m, ours, theirs in self.rows
        )
        return Table(
            "champion_comparison",
            f"Comparison with {self.model} champion (version {self.champion_version or '-'})",
            ("metric", "this run", "champion", "difference"),
            rows,
            self.reason,
        )

    def metrics(self) -> dict[str, float]:
        return {f"vs_champion.{m}": ours - theirs for m, ours, theirs in self.rows}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_with_champion(
    metrics: Mapping[str, float],
    model: str,
    *,
    data_version: str,
    split_digest: str,
    exclude_version: str = "",
    client: Any = None,
) -> ChampionComparison:
    """Our metrics against the champion's when it was tested on the same data and split."""
    c = client or make_client()
    champ = version_by_alias(model, CHAMPION, c)
    if champ is None:
        return ChampionComparison(model, "", False, "no champion yet")
    version = str(champ.version)
    if version == exclude_version:
        return ChampionComparison(model, version, False, "this model is the champion")
    theirs_dv = champ.tags.get(TAG_DATA_VERSION, "")
    theirs_split = champ.tags.get(TAG_SPLIT_DIGEST, "")
    if (theirs_dv, theirs_split) != (data_version, split_digest):
        return ChampionComparison(
            model,
            version,
            False,
            f"not compared: the champion was tested on data {theirs_dv[:12] or '?'} / split "
            f"{theirs_split[:12] or '?'}, this run on data {data_version[:12]} / split "
            f"{split_digest[:12]}: different test sets",
        )
    theirs = version_metrics(champ, c)
    rows = tuple(
        (m, float(v), float(theirs[m]))
        for m, v in sorted(metrics.items())
        if m in theirs and not math.isnan(v) and not math.isnan(theirs[m])
    )
    return ChampionComparison(
        model, version, True, f"same data version and split; {len(rows)} shared metrics", rows
    )
