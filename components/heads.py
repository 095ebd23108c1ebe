"""Head-training component: probes, segmentation decoders and demographics on the frozen encoder."""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def heads(
    data_dir: str,
    data_version: str,
    encoder_dir: str,
    runs_dir: str,
    tables: dsl.Output[dsl.Markdown],
    metrics: dsl.Output[dsl.Metrics],
    classification: dsl.Output[dsl.ClassificationMetrics],
    exported: dsl.Output[dsl.Model],
    results: dsl.Output[dsl.Artifact],
    encoder_version: str = "",
    preset: str = "tiny",
    pipeline_run: str = "",
) -> NamedTuple("HeadsOutputs", [("heads_dir", str), ("macro_auprc", float)]):
    """Train the heads of `preset` on the train split, select on val, report on test.

    `results` holds what the evaluation reads: the metrics, curves, per-image Dice and overlays.
    """
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from cxrflow.evaluation.gather import evaluation_files
    from cxrflow.stages import heads as stage

    params = stage.Params.in_runs_dir(runs_dir, locals())
    out = stage.run(params)
    Path(tables.path).write_text(out.result.markdown)
    values = out.result.metrics()
    for name, value in values.items():
        metrics.log_metric(name, value)
    res = out.result.classification
    if res is not None:
        # A ClassificationMetrics artifact holds one curve: the first finding that has one
        # (every finding's PR and ROC curves are in MLflow and in the Markdown tables).
        for curve in res.curves:
            if curve.get("roc", {}).get("fpr"):
                classification.log_roc_curve(**curve["roc"])
                classification.log_confusion_matrix(curve["categories"], curve["confusion_matrix"])
                break
    if out.export_dir.is_dir():
        shutil.copytree(out.export_dir, exported.path, dirs_exist_ok=True)
    exported.metadata.update({"registered": out.registered, "data_version": data_version})
    Path(results.path).mkdir(parents=True, exist_ok=True)
    for path in evaluation_files(out.out_dir):
        shutil.copyfile(path, Path(results.path) / path.name)
    macro = float(values.get("cls.auprc.macro", float("nan")))
    outputs = namedtuple("HeadsOutputs", ["heads_dir", "macro_auprc"])
    return outputs(str(out.out_dir), macro)
