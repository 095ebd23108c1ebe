"""Split-by-subject component."""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def split(
    dataset: dsl.Input[dsl.Dataset],
    split_dataset: dsl.Output[dsl.Dataset],
    report: dsl.Output[dsl.Markdown],
    train_ratio: float = 0.7,
    val_ratio: float = 0.15,
    test_ratio: float = 0.15,
    seed: str = "cxrflow-split-v1",
    mode: str = "hash",
    pipeline_run: str = "",
) -> NamedTuple("SplitOutputs", [("split_digest", str), ("new_subjects", int)]):
    """Assign every subject of the ingested `dataset` to train/val/test; known subjects never move.

    `split_dataset` is the manifest with its split column, its metadata the dataset directory
    and the split digest.
    """
    import shutil
    from collections import namedtuple

    from cxrflow.stages import split as stage
    from cxrflow.stages.contract import pick

    params = pick(stage.Params, locals(), data_dir=dataset.metadata["data_dir"])
    out = stage.run(params)
    shutil.copyfile(out.dataset.manifest_path, split_dataset.path)
    split_dataset.metadata.update(
        {"data_dir": str(out.dataset.root), "split_digest": out.digest, **out.images}
    )
    with open(report.path, "w") as f:
        f.write(out.report_markdown)
    outputs = namedtuple("SplitOutputs", ["split_digest", "new_subjects"])
    return outputs(out.digest, out.new_subjects)
