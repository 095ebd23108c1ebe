"""The publish stage: gate the candidate encoder against the champion, attach its model card.

The card is built from recorded facts only (`cxrflow.modelcard`); it is logged on the run that
registered the encoder (README.md, model_card.json, MONAI metadata.json) and becomes the
registered version's description.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from cxrflow.modelcard import attach_model_card, build_model_card
from cxrflow.modelcard.card import ModelCard
from cxrflow.registry.gate import GateConfig, GateDecision, run_gate
from cxrflow.stages.contract import param
from cxrflow.tags import ENCODER_MODEL

log = logging.getLogger(__name__)

DEFAULT_GATE = (
    '{"metrics": [{"name": "cls.auprc.macro", "direction": "higher", "tolerance": 0.01}]}'
)


@dataclass(frozen=True)
class Params:
    """Promote the encoder if it passes the gate; write and attach its model card."""

    encoder_version: str = param(help="Registered encoder version to gate and document.")
    evaluation: Path = param(help="The evaluation stage's evaluation.json.")
    gate_config: str = param(
        DEFAULT_GATE,
        help="Promotion gate as JSON: the metrics that decide, their direction and tolerance.",
    )

    def gate(self) -> GateConfig:
        """The validated gate configuration (refused naming the field that is wrong)."""
        try:
            raw = json.loads(self.gate_config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"gate_config: not valid JSON ({exc})") from exc
        return GateConfig.from_dict(raw)


@dataclass(frozen=True)
class Result:
    """The gate's decision, the model card and where it was logged."""

    gate: GateDecision
    card: ModelCard
    card_uri: str = ""

    @property
    def decision(self) -> str:
        return self.gate.decision

    @property
    def card_markdown(self) -> str:
        return self.card.to_markdown()


def run(params: Params) -> Result:
    """Gate, then build the card from the registry and the evaluation, and attach it."""
    decision = run_gate(ENCODER_MODEL, params.gate(), version=params.encoder_version)
    evaluation = json.loads(Path(params.evaluation).read_text())
    # built after the gate, so that the card lists the aliases the gate has just moved
    card = build_model_card(ENCODER_MODEL, f":{params.encoder_version}", evaluation=evaluation)
    uri = attach_model_card(card)
    log.info("model card of %s:%s: %s", ENCODER_MODEL, params.encoder_version, uri)
    return Result(decision, card, uri)
