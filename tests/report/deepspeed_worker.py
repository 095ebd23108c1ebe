"""Run a few DeepSpeed ZeRO steps of the tiny LLaVA per stage in a fresh process.

Usage: python -m tests.report.deepspeed_worker WORKDIR zero2 [zero3 ...]; prints one
"RESULT {json}" line per stage. A separate process because DeepSpeed initialises its
accelerator and a (gloo) process group once per process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(workdir: Path, stages: list[str]) -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from cxrflow.report.config import ReportConfig
    from cxrflow.report.data import ReportDataset
    from cxrflow.report.train import train_report_model
    from tests.report.helpers import REPORTS, make_encoder, random_images, tiny_model

    encoder_dir, _ = make_encoder(workdir / "enc")
    paths = random_images(workdir / "images", 4)
    for stage in stages:
        model, tokenizer = tiny_model(encoder_dir)
        dataset = ReportDataset(
            paths, REPORTS[:4], tokenizer, model.image_preprocessing, model.image_seq_length, 512
        )
        config = ReportConfig.named(
            "tiny",
            deepspeed=stage,
            max_steps=3,
            learning_rate=1e-3,
            warmup_ratio=0.0,
            global_batch_size=4,
            per_device_batch_size=2,
            save_steps=100,
        )
        result = train_report_model(model, tokenizer, dataset, config, workdir / stage)
        reloaded = (result.model_dir / "model.safetensors").is_file()
        print("RESULT " + json.dumps({"stage": stage, "losses": result.losses, "saved": reloaded}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
