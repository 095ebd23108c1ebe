"""Report generator speed on CPU: training and generation tokens/s, and where generation time goes.

Run: .venv/bin/python bench/report.py [--sizes 56,112,224,518] [--threads 1] [--no-smollm2]

The model is the tiny preset's, built as the stage builds it (BPE tokenizer and small Llama
learnt on phantom training reports), on a random vit_tiny encoder at each input size (112 px
is the tiny pre-training preset's; 518 px the paper's). For each size it prints:

- training tokens/s (image tokens included) over `--steps` optimiser steps;
- one generation batch (the preset's `generation_batch_size`) profiled: encoder, projector,
  LM prefill and decode steps, per report, each the fastest of `--repeats` interleaved rounds;
- generation per report from pixels and from precomputed encoder features, and the measured
  ratio (of the fastest rounds, and the median of the per-round ratios); beside it the most
  precomputing can give, 1 / (1 - encoder share of the from-pixels time);
- checks: the tower runs once per batch, the LM decodes with the KV cache (prefill, then one
  token per call), and both ways give the same text.

Every report is generated to a fixed length (EOS ignored): the mean tokenised length of the
training answers, unless `--new-tokens` is given. On a machine shared with other jobs,
multi-threaded torch waits for descheduled threads at every parallel op: `--threads 1` gives
steadier figures there. Prints figures; asserts nothing (tests assert behaviour).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.report.helpers

from cxrflow.report.config import ReportConfig
from cxrflow.report.data import (
    ReportDataset,
    encode_prompt,
    findings_text,
    read_report_rows,
)
from cxrflow.report.generate import (
    _embeds,
    encode_images,
    generate_reports,
    load_pixels,
)
from cxrflow.report.model import (
    CxrLlavaForConditionalGeneration,
    build_report_model,
    image_seq_length,
    load_lm,
    smollm2_gguf,
)
from cxrflow.report.small_lm import small_lm_for_reports
from cxrflow.report.train import train_report_model
from tests.report.helpers import make_encoder, make_phantom_dataset

log = logging.getLogger("bench.report")


def _train(model, tokenizer, data: Path, rows, config: ReportConfig, out: Path) -> float:
    """Training tokens/s of the stage's trainer over `config.max_steps` steps."""
    dataset = ReportDataset.from_rows(
        data,
        rows,
        tokenizer,
        model.image_preprocessing,
        model.image_seq_length,
        config.max_length,
        cache_images=True,
    )
    result = train_report_model(model, tokenizer, dataset, config, out, save_final=False)
    return result.tokens_per_second


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _call_counts(
    model: CxrLlavaForConditionalGeneration, tokenizer, pixels: torch.Tensor, new_tokens: int
) -> tuple[int, list[int]]:
    """Tower forwards and LM input lengths during one from-pixels generation of one batch."""
    tower_calls: list[int] = []
    lm_lengths: list[int] = []
    hooks = [
        model.model.vision_tower.register_forward_hook(lambda *a: tower_calls.append(1)),
        model.model.language_model.register_forward_hook(
            lambda m, args, kwargs, out: lm_lengths.append(kwargs["inputs_embeds"].shape[1]),
            with_kwargs=True,
        ),
    ]
    try:
        generate_reports(
            model,
            tokenizer,
            pixel_values=pixels,
            batch_size=len(pixels),
            max_new_tokens=new_tokens,
            stop_at_eos=False,
        )
    finally:
        for hook in hooks:
            hook.remove()
    return len(tower_calls), lm_lengths


@torch.no_grad()
def profile_generation(
    model: CxrLlavaForConditionalGeneration,
    tokenizer,
    pixels: torch.Tensor,
    new_tokens: int,
    repeats: int,
) -> dict[str, float]:
    """Seconds per report of each part of generating one batch (`pixels`), and both ways whole.

    Rounds interleave every measurement, so that load from other jobs hits them alike; each
    figure is the fastest round, and `ratio_median` the median of the per-round ratios.
    """
    model.eval()
    n = len(pixels)
    ids = torch.tensor(encode_prompt(tokenizer, model.image_seq_length)).expand(n, -1)
    features = encode_images(model, pixels, batch_size=n)
    embeds = _embeds(model, ids, features)

    def generate(new: int, **inputs: torch.Tensor) -> list[str]:
        return generate_reports(
            model, tokenizer, batch_size=n, max_new_tokens=new, stop_at_eos=False, **inputs
        )

    parts: dict[str, Callable[[], object]] = {
        "encoder": lambda: encode_images(model, pixels, batch_size=n),
        "projector": lambda: model.model.multi_modal_projector(features),
        "prefill": lambda: model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1),
        "precomputed_1_token": lambda: generate(1, image_features=features),
        "pixels": lambda: generate(new_tokens, pixel_values=pixels),
        "precomputed": lambda: generate(new_tokens, image_features=features),
    }
    for fn in parts.values():  # warm-up
        fn()
    rounds = [{name: _timed(fn) / n for name, fn in parts.items()} for _ in range(repeats)]
    best = {name: min(r[name] for r in rounds) for name in parts}
    decode_step = max(best["precomputed"] - best["precomputed_1_token"], 0.0) / max(
        new_tokens - 1, 1
    )
    tower_calls, lm_lengths = _call_counts(model, tokenizer, pixels, new_tokens)
    same = generate(new_tokens, pixel_values=pixels) == generate(
        new_tokens, image_features=features
    )
    share = best["encoder"] / best["pixels"]
    return {
        **best,
        "decode": decode_step * (new_tokens - 1),
        "decode_step_per_batch": decode_step * n,
        "ratio": best["pixels"] / best["precomputed"],
        "ratio_median": statistics.median(r["pixels"] / r["precomputed"] for r in rounds),
        "encoder_share": share,
        "ratio_bound": 1 / (1 - share) if share < 1 else float("inf"),
        "gen_tokens_per_s_pixels": new_tokens / best["pixels"],
        "gen_tokens_per_s_precomputed": new_tokens / best["precomputed"],
        "prompt_tokens": ids.shape[1],
        "tower_calls": tower_calls,
        "lm_calls": len(lm_lengths),
        "lm_prefill_tokens": lm_lengths[0],
        "lm_decode_tokens_max": max(lm_lengths[1:], default=0),
        "same_text": same,
    }


def _print_profile(title: str, p: dict[str, float], batch: int, new_tokens: int) -> None:
    ms = {k: 1e3 * v for k, v in p.items() if isinstance(v, float)}
    log.info(
        "%s\n"
        "  generation, batch %d, %d new tokens, prompt %d tokens: per report %.1f ms from pixels"
        " vs %.1f ms precomputed: measured ratio x%.2f (median of rounds x%.2f);"
        " %.0f vs %.0f generated tokens/s\n"
        "  profile per report: encoder %.1f ms (%.0f%% of from-pixels time: precomputing can"
        " give at most x%.2f) | projector %.2f ms | LM prefill %.1f ms | decode %.1f ms"
        " (%.2f ms per step for the batch)\n"
        "  checks: tower runs per batch %d; LM calls %d (prefill %d tokens, then %d token per"
        " call: KV cache %s); same text both ways: %s",
        title,
        batch,
        new_tokens,
        p["prompt_tokens"],
        ms["pixels"],
        ms["precomputed"],
        p["ratio"],
        p["ratio_median"],
        p["gen_tokens_per_s_pixels"],
        p["gen_tokens_per_s_precomputed"],
        ms["encoder"],
        100 * p["encoder_share"],
        p["ratio_bound"],
        ms["projector"],
        ms["prefill"],
        ms["decode"],
        ms["decode_step_per_batch"],
        p["tower_calls"],
        p["lm_calls"],
        p["lm_prefill_tokens"],
        p["lm_decode_tokens_max"],
        "used" if p["lm_decode_tokens_max"] == 1 else "NOT used",
        p["same_text"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per size")
    parser.add_argument("--sizes", default="56,112,224,518", help="encoder input sizes (px)")
    parser.add_argument("--new-tokens", type=int, default=0, help="0: mean answer length")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--subjects", type=int, default=40, help="phantom subjects")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--no-smollm2", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    data = make_phantom_dataset(root / "phantom", args.subjects)
    train_rows = read_report_rows(data, "train").rows
    test_rows = read_report_rows(data, "test").rows
    config = ReportConfig.named("tiny", max_steps=args.steps, save_steps=10_000)
    batch = config.generation_batch_size
    lm, tokenizer = small_lm_for_reports(list(train_rows["report"]), config)
    answers = [
        len(tokenizer(" " + findings_text(r))["input_ids"]) + 1 for r in train_rows["report"]
    ]
    new_tokens = args.new_tokens or round(statistics.mean(answers))
    log.info(
        "torch threads %d; tiny preset: LM %d x %d, vocabulary %d, generation batch %d;"
        " %d training reports, answers %.0f tokens on average (max %d): %d new tokens per report",
        torch.get_num_threads(),
        config.lm_layers,
        config.lm_hidden_size,
        len(tokenizer),
        batch,
        len(train_rows),
        statistics.mean(answers),
        max(answers),
        new_tokens,
    )
    test_paths = [data / p for p in test_rows["image_path"]]
    test_paths = (test_paths * (batch // len(test_paths) + 1))[:batch]
    for size in (int(s) for s in args.sizes.split(",")):
        encoder_dir, _ = make_encoder(root / f"enc{size}", img_size=size)
        # Room for the image tokens: the preset's 512 is sized for its 112 px encoder.
        sized = config.with_(max_length=max(config.max_length, image_seq_length(encoder_dir) + 512))
        torch.manual_seed(0)
        lm, tokenizer = small_lm_for_reports(list(train_rows["report"]), sized)
        model = build_report_model(encoder_dir, lm, tokenizer)
        tps = _train(model, tokenizer, data, train_rows, sized, root / f"train{size}")
        pixels = load_pixels(model, test_paths)
        p = profile_generation(model, tokenizer, pixels, new_tokens, args.repeats)
        _print_profile(
            f"tiny LLaVA, vit_tiny@{size} ({model.image_seq_length} image tokens):"
            f" train {tps:.0f} tokens/s",
            p,
            batch,
            new_tokens,
        )
    if not args.no_smollm2:
        t0 = time.perf_counter()
        lm, tokenizer = load_lm(smollm2_gguf())
        load_s = time.perf_counter() - t0
        encoder_dir = root / "enc56"
        if not encoder_dir.is_dir():
            make_encoder(encoder_dir, img_size=56)
        model = build_report_model(encoder_dir, lm, tokenizer)
        smol = config.with_(
            max_steps=2, global_batch_size=1, per_device_batch_size=1, max_length=1024
        )
        tps = _train(model, tokenizer, data, train_rows.head(4), smol, root / "train-smol")
        pixels = load_pixels(model, test_paths[:2])
        p = profile_generation(model, tokenizer, pixels, 16, max(args.repeats // 2, 1))
        _print_profile(
            f"SmolLM2-135M (GGUF, {lm.num_parameters() / 1e6:.0f}M parameters), vit_tiny@56:"
            f" load {load_s:.1f}s, train {tps:.0f} tokens/s",
            p,
            2,
            16,
        )


if __name__ == "__main__":
    main()
