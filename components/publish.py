"""Last stage: the promotion gate and the model card of the encoder."""

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def publish(
    encoder_version: str,
    evaluation: dsl.Input[dsl.Artifact],
    card: dsl.Output[dsl.Markdown],
    # A literal: KFP runs the function's source alone, without any module's globals.
    gate_config: str = (
        '{"metrics": [{"name": "cls.auprc.macro", "direction": "higher", "tolerance": 0.01}]}'
    ),
) -> str:
    """Gate the candidate encoder against the champion, write and attach its model card."""
    from pathlib import Path

    from cxrflow.stages import publish as stage
    from cxrflow.stages.contract import pick

    params = pick(stage.Params, locals(), evaluation=evaluation.path)
    out = stage.run(params)
    Path(card.path).write_text(out.card_markdown)
    return out.decision
