"""Last stage: the promotion gate and the model card of the encoder."""

from kfp import dsl

from components.images import CPU_IMAGE

DEFAULT_GATE = (
    '{"metrics": [{"name": "cls.auprc.macro", "direction": "higher", "tolerance": 0.01}]}'
)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def publish(
    encoder_version: str,
    evaluation_json: str,
    card: dsl.Output[dsl.Markdown],
    # A literal: KFP runs the function's source alone, without this module's globals.
    gate_config: str = (
        '{"metrics": [{"name": "cls.auprc.macro", "direction": "higher", "tolerance": 0.01}]}'
    ),
) -> str:
    """Gate the candidate encoder against the champion, write and attach its model card."""
    import json
    from pathlib import Path

    from cxrflow.modelcard import attach_model_card, build_model_card, write_model_card
    from cxrflow.registry import ENCODER_MODEL, GateConfig, run_gate

    decision = run_gate(
        ENCODER_MODEL, GateConfig.from_dict(json.loads(gate_config)), version=encoder_version
    )
    evaluation = json.loads(Path(evaluation_json).read_text())
    model_card = build_model_card(ENCODER_MODEL, f":{encoder_version}", evaluation=evaluation)
    attach_model_card(model_card)
    write_model_card(model_card, Path(card.path))
    return decision.decision
