"""The gate stage: decide whether this data version needs training (the champion's data?)."""

from __future__ import annotations

from dataclasses import dataclass

from cxrflow.stages.contract import param
from cxrflow.tags import ENCODER_MODEL
from cxrflow.versioning.gate import compare_with_champion


@dataclass(frozen=True)
class Params:
    """Train only when the data differs from what the champion encoder was trained on."""

    data_version: str = param(help="The data version this run would train on.")
    champion_model: str = param(ENCODER_MODEL, help="Registered model whose champion is checked.")
    force: bool = param(False, help="Train even when the champion was trained on this data.")


@dataclass(frozen=True)
class Result:
    """The decision and what it was based on."""

    train: bool
    champion_data_version: str | None  # None: no champion yet


def run(params: Params) -> Result:
    """Decide; raises ValueError naming `data_version` when it is empty."""
    changed, trained_on = compare_with_champion(params.data_version, params.champion_model)
    return Result(train=params.force or changed, champion_data_version=trained_on)
