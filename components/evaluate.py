"""Evaluation component: the paper's tables, fairness and champion comparison for one run."""

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    data_dir: str,
    data_version: str,
    split_digest: str,
    runs_dir: str,
    encoder_version: str,
    report_results: str,
    heads_results: dsl.Input[dsl.Artifact],
    html: dsl.Output[dsl.HTML],
    tables: dsl.Output[dsl.Markdown],
    metrics: dsl.Output[dsl.Metrics],
    evaluation: dsl.Output[dsl.Artifact],
    pipeline_run: str = "",
) -> None:
    """Evaluate the heads' and the report generator's results; compare with the champion."""
    import shutil
    from pathlib import Path

    from cxrflow.stages import evaluate as stage

    params = stage.Params(
        out_dir=Path(runs_dir) / f"evaluation-{encoder_version or 'local'}",
        heads_dir=Path(heads_results.path),
        report_results=Path(report_results) if report_results else None,
        data_dir=Path(data_dir),
        data_version=data_version,
        split_digest=split_digest,
        encoder_version=encoder_version,
        pipeline_run=pipeline_run,
    )
    out = stage.run(params)
    shutil.copyfile(out.html_path, html.path)
    shutil.copyfile(out.markdown_path, tables.path)
    shutil.copyfile(out.json_path, evaluation.path)
    for name, value in out.result.metrics.items():
        metrics.log_metric(name, value)
