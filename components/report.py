"""LLaVA-style report-generation fine-tuning component (a GPU stage on a cluster)."""

from typing import NamedTuple

from kfp import dsl

from components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def report(
    data_dir: str,
    data_version: str,
    encoder_dir: str,
    runs_dir: str,
    table: dsl.Output[dsl.Markdown],
    generator: dsl.Output[dsl.Model],
    encoder_version: str = "",
    preset: str = "tiny",
    lm_dir: str = "",
    steps: int = 0,
    pipeline_run: str = "",
) -> NamedTuple("ReportOutputs", [("results", str), ("report_version", str)]):
    """Fine-tune projector + LM on the frozen encoder; generate and score test reports.

    `lm_dir` is a local Hugging Face Llama-family directory or a .gguf file (empty: a small
    Llama built from config with a BPE tokenizer trained on the training reports); `steps`
    > 0 replaces the preset's length (epochs or steps).
    """
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from cxrflow.report.config import ReportConfig
    from cxrflow.report.stage import METRICS_FILE, run_report_stage

    out_dir = Path(runs_dir) / f"report-{data_version[:12]}-{encoder_version or 'local'}-{preset}"
    out = run_report_stage(
        Path(data_dir),
        Path(encoder_dir),
        lm_dir=Path(lm_dir) if lm_dir else None,
        data_version=data_version,
        encoder_version=encoder_version,
        config=ReportConfig.named(preset, **({"max_steps": steps} if steps > 0 else {})),
        out_dir=out_dir,
        pipeline_run=pipeline_run,
    )
    Path(table.path).write_text(out.table_markdown)
    shutil.copytree(out.model_dir, generator.path, dirs_exist_ok=True)
    generator.metadata.update({"registered_version": out.model_version})
    outputs = namedtuple("ReportOutputs", ["results", "report_version"])
    return outputs(str(out_dir / METRICS_FILE), out.model_version)
