"""The retraining gate: train only when the data differs from the champion encoder's."""

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def data_gate(
    data_version: str, champion_model: str = "cxrflow-encoder", force: bool = False
) -> bool:
    """True when `data_version` is not the champion's training data (or no champion exists)."""
    from cxrflow.stages import gate as stage
    from cxrflow.stages.contract import pick

    return stage.run(pick(stage.Params, locals())).train
