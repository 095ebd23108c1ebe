"""Report generator speed on CPU: training and generation tokens/s, precomputed features, SmolLM2.

Run: .venv/bin/python bench/report.py [--steps 20] [--sizes 56,224] [--no-smollm2]
Prints figures; asserts nothing (tests assert behaviour).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from cxrflow.report.config import ReportConfig
from cxrflow.report.data import ReportDataset
from cxrflow.report.generate import encode_images, generate_reports
from cxrflow.report.model import build_report_model, load_lm, smollm2_gguf
from cxrflow.report.train import train_report_model
from tests.report.helpers import REPORTS, make_encoder, random_images, tiny_model

log = logging.getLogger("bench.report")


def _train(model, tokenizer, paths, steps: int, out: Path, batch: int) -> float:
    """Training tokens/s over `steps` optimiser steps."""
    reports = (REPORTS * (len(paths) // len(REPORTS) + 1))[: len(paths)]
    dataset = ReportDataset(
        paths,
        reports,
        tokenizer,
        model.image_preprocessing,
        model.image_seq_length,
        2048,
        cache_images=True,
    )
    config = ReportConfig.named(
        "tiny",
        max_steps=steps,
        global_batch_size=batch,
        per_device_batch_size=batch,
        save_steps=10_000,
        learning_rate=1e-3,
    )
    result = train_report_model(model, tokenizer, dataset, config, out, save_final=False)
    return result.tokens_per_second


def _generation(model, tokenizer, pixels: torch.Tensor, new_tokens: int) -> dict[str, float]:
    """Seconds per report with and without precomputed features, and generated tokens/s."""
    generate_reports(model, tokenizer, pixel_values=pixels[:1], max_new_tokens=2)  # warm-up
    model.generation_config.eos_token_id = None  # fixed length: time per token is comparable
    t0 = time.perf_counter()
    direct = generate_reports(model, tokenizer, pixel_values=pixels, max_new_tokens=new_tokens)
    t1 = time.perf_counter()
    features = encode_images(model, pixels)  # once, e.g. shared with the NN baseline
    t2 = time.perf_counter()
    cached = generate_reports(model, tokenizer, image_features=features, max_new_tokens=new_tokens)
    t3 = time.perf_counter()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    n = len(pixels)
    return {
        "s_per_report_pixels": (t1 - t0) / n,
        "s_per_report_precomputed": (t3 - t2) / n,
        "encode_s_per_image": (t2 - t1) / n,
        "speedup": (t1 - t0) / (t3 - t2),
        "gen_tokens_per_s": n * new_tokens / (t3 - t2),
        "same_text": float(direct == cached),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sizes", default="56,224,518")
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--no-smollm2", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    log.info("torch threads: %d", torch.get_num_threads())
    for size in (int(s) for s in args.sizes.split(",")):
        encoder_dir, _ = make_encoder(root / f"enc{size}", img_size=size)
        model, tokenizer = tiny_model(encoder_dir)
        paths = random_images(root / f"img{size}", 8, side=size)
        tps = _train(model, tokenizer, paths, args.steps, root / f"train{size}", batch=4)
        pixels = torch.stack([_pixels(model, p) for p in paths])
        gen = _generation(model.eval(), tokenizer, pixels, args.new_tokens)
        log.info(
            "tiny LLaVA, vit_tiny@%d (%d image tokens): train %.0f tok/s | generation %.0f tok/s;"
            " per report %.3fs from pixels vs %.3fs precomputed (x%.2f; encode %.3fs/image);"
            " same text: %s",
            size,
            model.image_seq_length,
            tps,
            gen["gen_tokens_per_s"],
            gen["s_per_report_pixels"],
            gen["s_per_report_precomputed"],
            gen["speedup"],
            gen["encode_s_per_image"],
            bool(gen["same_text"]),
        )
    if not args.no_smollm2:
        t0 = time.perf_counter()
        lm, tokenizer = load_lm(smollm2_gguf())
        load_s = time.perf_counter() - t0
        encoder_dir = root / "enc56"
        if not encoder_dir.is_dir():
            make_encoder(encoder_dir, img_size=56)
        model = build_report_model(encoder_dir, lm, tokenizer)
        paths = random_images(root / "img-smol", 2, side=56)
        tps = _train(model, tokenizer, paths, 2, root / "train-smol", batch=1)
        pixels = torch.stack([_pixels(model, p) for p in paths])
        gen = _generation(model.eval(), tokenizer, pixels, 16)
        log.info(
            "SmolLM2-135M (GGUF, %.0fM params): load %.1fs | train %.0f tok/s | generation %.1f"
            " tok/s; per report %.2fs from pixels vs %.2fs precomputed (x%.2f)",
            lm.num_parameters() / 1e6,
            load_s,
            tps,
            gen["gen_tokens_per_s"],
            gen["s_per_report_pixels"],
            gen["s_per_report_precomputed"],
            gen["speedup"],
        )


def _pixels(model, path: Path) -> torch.Tensor:
    from cxrflow.report.data import load_image

    return load_image(path, model.image_preprocessing)


if __name__ == "__main__":
    main()
