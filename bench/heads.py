"""Benchmark of the heads: frozen-feature extraction and head-training steps on CPU.

Prints images/s of `DinoViT` beside `transformers`' `Dinov2Model` on the same weights and
images (batch inference, `torch.inference_mode`), and the time of one training step of the
linear probe and the UPerNet decoder with cached features versus encoding every step.
Figures only, no pass/fail: run `python bench/heads.py [--size vit_small --image 224]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Dinov2Model

from cxrflow.heads.classification import LinearProbe, masked_bce
from cxrflow.heads.features import default_layers, encode_batch
from cxrflow.heads.segmentation import UPerNetHead
from cxrflow.models import DinoViT, ViTConfig, save_hf_dinov2


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="vit_tiny", help="named ViT size")
    parser.add_argument("--image", type=int, default=224, help="input side in pixels")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = DinoViT(ViTConfig.named(args.size, img_size=args.image)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_hf_dinov2(
            ours, Path(tmp), image_mean=0.5, image_std=0.25, image_size=args.image
        )
        hf = Dinov2Model.from_pretrained(path).eval()
    x = torch.randn(args.batch, 3, args.image, args.image)
    print(f"{args.size} at {args.image} px, batch {args.batch}, {torch.get_num_threads()} threads")

    with torch.inference_mode():
        diff = (ours(x) - hf(x).last_hidden_state[:, 0]).abs().max().item()
        t_ours = timed(lambda: encode_batch(ours, x), args.repeats)
        t_hf = timed(lambda: hf(x).last_hidden_state, args.repeats)
    print(f"feature extraction  DinoViT      {args.batch / t_ours:8.1f} images/s")
    print(f"feature extraction  Dinov2Model  {args.batch / t_hf:8.1f} images/s")
    print(f"  ratio DinoViT/HF {t_hf / t_ours:.2f}x; max |CLS difference| {diff:.2e}")

    dim = ours.embed_dim
    layers = default_layers(ours.n_blocks)
    with torch.inference_mode():
        feats = encode_batch(ours, x, layers)
    cached_x, maps = feats["cls"].clone(), feats["layers"].clone()
    y = (torch.rand(args.batch, 7) > 0.7).float()
    probe = LinearProbe(dim, 7)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3)

    def probe_step(encode: bool) -> None:
        if encode:
            with torch.no_grad():
                inputs = encode_batch(ours, x)["cls"]
        else:
            inputs = cached_x
        loss = masked_bce(probe(inputs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    seg = UPerNetHead(dim, 2, args.image, channels=64)
    seg_opt = torch.optim.Adam(seg.parameters(), lr=1e-3)
    masks = (torch.rand(args.batch, 2, args.image, args.image) > 0.5).float()

    def seg_step(encode: bool) -> None:
        if encode:
            with torch.no_grad():
                inputs = encode_batch(ours, x, layers)["layers"]
        else:
            inputs = maps
        loss = torch.nn.functional.binary_cross_entropy_with_logits(seg(inputs), masks)
        seg_opt.zero_grad()
        loss.backward()
        seg_opt.step()

    for name, step in (("linear probe", probe_step), ("UPerNet (64 ch)", seg_step)):
        cached = timed(lambda step=step: step(False), args.repeats)
        encoded = timed(lambda step=step: step(True), args.repeats)
        print(
            f"train step {name:16s} cached {1e3 * cached:8.1f} ms   "
            f"encoding each step {1e3 * encoded:8.1f} ms   ({encoded / cached:.1f}x)"
        )


if __name__ == "__main__":
    main()
