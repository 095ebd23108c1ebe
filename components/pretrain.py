"""DINOv2 continual pre-training component (a GPU stage on a cluster)."""

from typing import NamedTuple

from kfp import dsl

from components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def pretrain(
    data_dir: str,
    data_version: str,
    runs_dir: str,
    encoder: dsl.Output[dsl.Model],
    preset: str = "tiny",
    steps: int = 0,
    batch_size: int = 0,
    seed: int = 0,
    init_from: str = "",
    dvc_remote: str = "",
    pipeline_run: str = "",
) -> NamedTuple("PretrainOutputs", [("encoder_dir", str), ("encoder_version", str)]):
    """Continue DINOv2 pre-training of a ViT on the train split of data version `data_version`.

    `steps`/`batch_size` of 0 keep the preset's values; `init_from` is a local Hugging Face
    DINOv2 directory (empty: random init). Checkpoints live under `runs_dir`, keyed by the
    data version and the settings, so a retried step resumes where it stopped.
    """
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from cxrflow.ssl.presets import preset as named_preset
    from cxrflow.stages.pretrain import run_pretrain_stage, work_dir_for

    changes = {k: v for k, v in {"steps": steps, "batch_size": batch_size}.items() if v}
    config = named_preset(preset, seed=seed, **changes)
    out = run_pretrain_stage(
        Path(data_dir),
        work_dir_for(Path(runs_dir), data_version, config, init_from),
        config,
        data_version=data_version,
        init_from=Path(init_from) if init_from else None,
        pipeline_run=pipeline_run,
        dvc_remote=dvc_remote,
    )
    shutil.copytree(out.encoder_dir, encoder.path, dirs_exist_ok=True)
    encoder.metadata.update(
        {"data_version": data_version, "registered_version": out.encoder_version}
    )
    outputs = namedtuple("PretrainOutputs", ["encoder_dir", "encoder_version"])
    return outputs(str(out.encoder_dir), out.encoder_version)
