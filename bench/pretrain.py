"""Pre-training step time, images/s and peak memory, beside the floor measured in the same run.

The floor is what any ViT training pays on the same crops: the bare student backbone's
forward and backward on the global (masked) and local crops, plus the teacher backbone's
forward on its global views. The full SSL step adds the DINO/iBOT heads, the three losses,
centring, clipping, AdamW and the EMA update (target: within 1.3x of the floor).

    python bench/pretrain.py                 # tiny preset on CPU
    python bench/pretrain.py --preset paper  # on a GPU: bf16, xformers vs SDPA, and MFU
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from cxrflow.ssl.augment import collate_multicrop
from cxrflow.ssl.meta_arch import SSLMetaArch
from cxrflow.ssl.optim import apply_schedules, build_optimizer, param_groups
from cxrflow.ssl.presets import preset
from cxrflow.ssl.train import build_augmentation

# Dense bf16 peak of the accelerators we are lent (FLOP/s).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def make_batch(cfg, batch: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    aug = build_augmentation(cfg, mean=0.5, std=0.25)
    images = [torch.rand(1, cfg.image_size, cfg.image_size, generator=g) for _ in range(batch)]
    out = collate_multicrop(
        [aug(im, generator=g) for im in images],
        patch_size=cfg.patch_size,
        mask_ratio_min_max=cfg.mask_ratio,
        mask_probability=cfg.mask_probability,
    )
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in out.items()}


def vit_flops(model, batch: dict) -> float:
    """Analytic training FLOPs of one step (forward 2NP + attention; backward 2x forward)."""
    bb = model.student["backbone"]
    d, depth = bb.embed_dim, bb.n_blocks
    params = sum(p.numel() for p in bb.blocks.parameters())

    def fwd(x: torch.Tensor) -> float:
        b, _, h, w = x.shape
        n = 1 + bb.num_register_tokens + (h // bb.patch_size) * (w // bb.patch_size)
        return b * (2 * params * n + 4 * depth * n * n * d)

    student = fwd(batch["global_crops"]) + fwd(batch["local_crops"])
    teacher = fwd(batch["global_crops_teacher"])
    return 3 * student + teacher


def timed(fn, steps: int, device: torch.device) -> float:
    for _ in range(2):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def measure(cfg, batch_size: int, steps: int, device: torch.device, bf16: bool) -> dict[str, float]:
    torch.manual_seed(0)
    model = SSLMetaArch(cfg).to(device)
    batch = make_batch(cfg, batch_size, device)
    opt = build_optimizer(
        param_groups(model.student, cfg.layer_decay, cfg.patch_embed_lr_mult), device
    )
    apply_schedules(opt, 1e-4, 0.04, 1e-4)

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def ssl_step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            model.forward_backward(batch, 0.04)
        for m in model.student.values():
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.clip_grad)
        opt.step()
        model.update_teacher(0.996)

    backbone, teacher = model.student["backbone"], model.teacher["backbone"]

    def floor_step() -> None:
        backbone.zero_grad(set_to_none=True)
        with autocast():
            with torch.no_grad():
                teacher.forward_features(batch["global_crops_teacher"])
            g = backbone.forward_features(batch["global_crops"], masks=batch["masks"])
            loc = backbone.forward_features(batch["local_crops"])
            loss = g["x_norm_clstoken"].float().sum() + loc["x_norm_clstoken"].float().sum()
            loss = loss + g["x_norm_patchtokens"].float().mean()
        loss.backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    floor = timed(floor_step, steps, device)
    ssl = timed(ssl_step, steps, device)
    out = {
        "ssl_step_s": ssl,
        "floor_step_s": floor,
        "ratio": ssl / floor,
        "images_per_s": batch_size / ssl,
        "peak_mem_gb": (
            torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        ),
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        if peak:
            out["mfu"] = vit_flops(model, batch) / ssl / peak
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=0, help="per-device batch (0: tiny 32, paper 40)")
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    cfg = preset(args.preset)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (40 if args.preset == "paper" else 32)
    print(
        f"preset {args.preset}: {cfg.model} {cfg.global_size}px global, {cfg.n_local_crops} x "
        f"{cfg.local_size}px local, batch {batch}, device {device}, "
        f"threads {torch.get_num_threads()}"
    )
    runs = [("fp32", False, "auto")]
    if device.type == "cuda":
        runs = [
            ("bf16+xformers", True, "auto"),
            ("bf16+sdpa", True, "sdpa"),
            ("fp32+sdpa", False, "sdpa"),
        ]
    for label, bf16, attention in runs:
        os.environ["CXRFLOW_ATTENTION"] = attention
        r = measure(cfg, batch, args.steps, device, bf16)
        extra = f"  MFU {r['mfu']:.1%}" if "mfu" in r else ""
        print(
            f"{label:<14} SSL step {r['ssl_step_s']:.3f}s  floor {r['floor_step_s']:.3f}s  "
            f"ratio {r['ratio']:.2f}x (target <= 1.3x)  {r['images_per_s']:.1f} img/s  "
            f"peak {r['peak_mem_gb']:.2f} GB{extra}"
        )


if __name__ == "__main__":
    main()
