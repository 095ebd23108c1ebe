"""Evaluation component: the paper's tables, fairness and champion comparison for one run."""

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    data_dir: str,
    runs_dir: str,
    encoder_version: str,
    report_results: str,
    html: dsl.Output[dsl.HTML],
    tables: dsl.Output[dsl.Markdown],
    metrics: dsl.Output[dsl.Metrics],
    pipeline_run: str = "",
) -> str:
    """Gather the heads' and the report generator's results; returns the evaluation JSON path."""
    import shutil
    from pathlib import Path

    from cxrflow.evaluation.stage import run_evaluation_stage

    out = run_evaluation_stage(
        pipeline_run,
        Path(runs_dir) / f"evaluation-{encoder_version or 'local'}",
        manifest_path=Path(data_dir) / "manifest.parquet",
        report=report_results or None,
        model_version=encoder_version,
        record_on={"cxrflow-encoder": encoder_version} if encoder_version else None,
    )
    shutil.copyfile(out.html_path, html.path)
    shutil.copyfile(out.markdown_path, tables.path)
    for name, value in out.result.metrics.items():
        metrics.log_metric(name, value)
    return str(out.json_path)
