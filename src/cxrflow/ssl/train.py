"""The DINOv2 continual pre-training loop: single process or `torchrun` data-parallel.

One code path for both: under torchrun each rank reads its slice of the same global batch,
gradients are averaged across ranks after the backward pass (an all-reduce of one flat buffer
per step; exact, and simple enough to audit), and every rank applies the same update, so the
teacher EMA needs no communication. The iBOT masks of a step are drawn for the global batch
and sliced per rank. KoLeo, as upstream, sees each rank's own batch; without it, a two-process
run computes what one process computes with the same global batch.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from cxrflow.logs import progress_bar
from cxrflow.models.hf import save_hf_dinov2
from cxrflow.models.vit import DinoViT
from cxrflow.ssl.augment import MultiCropAugmentation, collate_multicrop
from cxrflow.ssl.checkpoint import (
    LATEST,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from cxrflow.ssl.data import (
    MultiCropDataset,
    StepSampler,
    intensity_statistics,
    sample_seed,
    train_images,
)
from cxrflow.ssl.losses.ibot import masks_weight_from
from cxrflow.ssl.masking import MaskingGenerator, collate_masks
from cxrflow.ssl.meta_arch import SSLMetaArch
from cxrflow.ssl.optim import apply_schedules, build_optimizer, param_groups
from cxrflow.ssl.presets import PretrainConfig
from cxrflow.ssl.schedules import ScheduleConfig, Schedules

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
HEAD_FILE = "dino_head.safetensors"
CHECKPOINT_DIR = "checkpoints"

MetricsCallback = Callable[[int, dict[str, float]], None]


@dataclass
class PretrainResult:
    """What a pre-training run produced."""

    steps: int
    start_step: int
    out_dir: Path
    encoder_dir: Path | None
    image_mean: float
    image_std: float
    last_metrics: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0
    device: str = "cpu"  # what trained it, for the model card: "cpu", "4 x NVIDIA H200", ...


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_env() -> DistEnv:
    """Rank and world size from torchrun's environment (single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return DistEnv(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def default_device(env: DistEnv) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")


def build_augmentation(cfg: PretrainConfig, mean: float, std: float) -> MultiCropAugmentation:
    """The multi-crop augmentation of `cfg` for data with pixel statistics mean/std."""
    return MultiCropAugmentation(
        global_size=cfg.global_size,
        local_size=cfg.local_size,
        global_scale=cfg.global_scale,
        local_scale=cfg.local_scale,
        global_blur_p=cfg.global_blur_p,
        local_blur_p=cfg.local_blur_p,
        teacher_blur_p=cfg.teacher_blur_p,
        solarize_p=cfg.solarize_p,
        n_local=cfg.n_local_crops,
        patch_size=cfg.patch_size,
        mean=mean,
        std=std,
    )


def _schedules(cfg: PretrainConfig, steps_per_epoch: int) -> Schedules:
    freeze = steps_per_epoch if cfg.freeze_last_layer_steps < 0 else cfg.freeze_last_layer_steps
    # Durations are given in iterations: build with one iteration per "epoch".
    sched = ScheduleConfig(
        base_lr=cfg.base_lr,
        min_lr=cfg.min_lr,
        warmup_epochs=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        weight_decay_end=cfg.weight_decay_end,
        momentum_teacher=cfg.momentum_teacher,
        final_momentum_teacher=cfg.momentum_teacher_end,
        warmup_teacher_temp=cfg.warmup_teacher_temp,
        teacher_temp=cfg.teacher_temp,
        warmup_teacher_temp_epochs=cfg.warmup_teacher_temp_steps,
        freeze_last_layer_epochs=min(freeze, cfg.steps),
    )
    return Schedules.build(cfg.steps, 1, cfg.batch_size, sched)


def _stack_crops(samples: list[dict[str, Any]]) -> dict[str, Any]:
    # Masks are drawn per step for the global batch in the loop, not per worker here.
    return collate_multicrop(samples, mask_probability=0.0)


def _step_masks(
    cfg: PretrainConfig,
    env: DistEnv,
    micro_batch: int,
    step: int,
    micro: int,
    generator: MaskingGenerator,
) -> dict[str, torch.Tensor]:
    """The iBOT masks of this rank's micro-batch, cut from the global micro-batch's masks."""
    global_micro = micro_batch * env.world_size
    drawn = collate_masks(
        global_micro,
        2,
        generator.input_size,
        mask_ratio_min_max=cfg.mask_ratio,
        mask_probability=cfg.mask_probability,
        generator=random.Random(sample_seed(cfg.seed, step, -1 - micro)),
        mask_generator=generator,
    )
    rows = [
        c * global_micro + env.rank * micro_batch + i for c in range(2) for i in range(micro_batch)
    ]
    masks = drawn["masks"][rows]
    return {
        "masks": masks,
        "mask_indices_list": masks.flatten().nonzero().flatten(),
        "n_masked_patches": masks.sum().reshape(1),
        "masks_weight": masks_weight_from(masks),
    }


def _all_reduce_gradients(model: SSLMetaArch, world_size: int) -> None:
    """Average the student's gradients over ranks, as one process would have computed them.

    A parameter can have a gradient on one rank and none on another (the mask token when a
    rank's slice holds no masked image): every rank sends a buffer of the same layout, with
    zeros and a presence flag, and a parameter no rank touched keeps no gradient (so AdamW
    skips it, exactly as in a single process).
    """
    if world_size == 1:
        return
    params = [p for p in model.student.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    present = torch.tensor([float(p.grad is not None) for p in params], device=grads[0].device)
    flat = torch.cat([torch._utils._flatten_dense_tensors(grads), present])
    dist.all_reduce(flat)
    n = flat.numel() - len(params)
    synced = torch._utils._unflatten_dense_tensors(flat[:n] / world_size, grads)
    for p, g, flag in zip(params, synced, flat[n:].tolist(), strict=True):
        p.grad = g.clone() if flag > 0 else None


def device_name(device: torch.device, world_size: int = 1) -> str:
    """The accelerator's name ("cpu" for the CPU), prefixed with the process count if > 1."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"{world_size} x {name}" if world_size > 1 else name


def _autocast(cfg: PretrainConfig, device: torch.device):
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def export_encoder(
    model: SSLMetaArch, out_dir: Path, cfg: PretrainConfig, mean: float, std: float
) -> Path:
    """The teacher backbone in Hugging Face Dinov2Model format, the DINO head beside it."""
    encoder_dir = out_dir / ENCODER_DIR
    teacher = model.teacher["backbone"]
    save_hf_dinov2(teacher, encoder_dir, image_mean=mean, image_std=std, image_size=cfg.image_size)
    head = {
        k: v.detach().cpu().contiguous() for k, v in model.teacher["dino_head"].state_dict().items()
    }
    save_file(head, str(encoder_dir / HEAD_FILE))
    (encoder_dir / "dino_head_config.json").write_text(
        json.dumps(
            {
                "in_dim": teacher.embed_dim,
                "out_dim": cfg.prototypes,
                "hidden_dim": cfg.head_hidden_dim,
                "bottleneck_dim": cfg.head_bottleneck_dim,
            },
            indent=2,
        )
        + "\n"
    )
    return encoder_dir


def pretrain(
    cfg: PretrainConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    init: DinoViT | None = None,
    stop_after: int | None = None,
    on_metrics: MetricsCallback | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> PretrainResult:
    """Train (or resume from `out_dir/checkpoints/latest.pt`) and export the teacher encoder.

    `init` is the student's starting backbone (architecture and weights, e.g. from
    `cxrflow.ssl.initialisation`); None starts from a random `cfg.vit_config()`. A resumed run
    takes its weights from the checkpoint instead. `stop_after` ends the run after that global
    step without exporting, as a kill would.
    """
    env = distributed_env()
    device = device or default_device(env)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    rows = train_images(data_dir)
    paths = [data_dir / p for p in rows["image_path"]]
    ckpt_path = latest_checkpoint(out_dir / CHECKPOINT_DIR)
    ckpt = load_checkpoint(ckpt_path) if ckpt_path else None
    if ckpt is not None:
        mean, std = ckpt["image_mean"], ckpt["image_std"]
    else:
        mean, std = intensity_statistics(paths)
    augmentation = build_augmentation(cfg, mean, std)
    dataset = MultiCropDataset(data_dir, rows, augmentation)

    model = SSLMetaArch(cfg, init).to(device)
    if cfg.compile:
        model.student["backbone"] = torch.compile(model.student["backbone"])  # type: ignore[assignment]
    optimizer = build_optimizer(
        param_groups(model.student, cfg.layer_decay, cfg.patch_embed_lr_mult), device
    )

    steps_per_epoch = cfg.steps_per_epoch or max(1, len(dataset) // cfg.batch_size)
    schedules = _schedules(cfg, steps_per_epoch)
    start = 0
    if ckpt is not None:
        model.student.load_state_dict(ckpt["student"])
        model.teacher.load_state_dict(ckpt["teacher"])
        model.dino_loss.load_state_dict(ckpt["dino_loss"])
        model.ibot_loss.load_state_dict(ckpt["ibot_loss"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        start = int(ckpt["step"])
        log.info("resuming pre-training at step %d from %s", start, ckpt_path)

    micro = cfg.batch_size // (env.world_size * cfg.grad_accum_steps)
    sampler = StepSampler(
        len(dataset),
        cfg.batch_size,
        seed=cfg.seed,
        start_step=start,
        steps=cfg.steps,
        rank=env.rank,
        world_size=env.world_size,
        accum=cfg.grad_accum_steps,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=_stack_crops,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    grid = cfg.global_size // cfg.patch_size
    mask_generator = MaskingGenerator((grid, grid))

    step, accumulated = start, 0
    window_start, window_images = time.perf_counter(), 0
    result = PretrainResult(
        cfg.steps, start, out_dir, None, mean, std, device=device_name(device, env.world_size)
    )
    bar = progress_bar(
        total=cfg.steps,
        initial=start,
        desc="pretrain",
        unit="step",
        disable=not (progress and env.is_main),
    )
    model.train()
    for samples in loader:
        if accumulated == 0:
            values = schedules.at(step)
            apply_schedules(
                optimizer, values["lr"], values["weight_decay"], values["last_layer_lr"]
            )
            optimizer.zero_grad(set_to_none=True)
            terms: dict[str, float] = {}
        batch = {
            k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in samples.items()
        }
        batch.update(
            {
                k: v.to(device)
                for k, v in _step_masks(cfg, env, micro, step, accumulated, mask_generator).items()
            }
        )
        with _autocast(cfg, device):
            losses = model.forward_backward(
                batch, values["teacher_temp"], 1.0 / cfg.grad_accum_steps
            )
        for k, v in losses.items():
            terms[k] = terms.get(k, 0.0) + v / cfg.grad_accum_steps
        accumulated += 1
        if accumulated < cfg.grad_accum_steps:
            continue

        _all_reduce_gradients(model, env.world_size)
        # The last layer's freeze is its learning rate of 0 (`last_layer_lr`), as upstream:
        # its gradients stay, so AdamW's moments build up and clipping counts them.
        norms = {}
        for name, module in model.student.items():
            norms[f"grad_norm_{name}"] = float(
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_grad)
            )
        optimizer.step()
        model.update_teacher(values["momentum"])
        accumulated = 0
        step += 1
        window_images += cfg.batch_size
        bar.update(1)

        if step % cfg.log_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - window_start
            metrics = {
                **terms,
                **values,
                **norms,
                "images_per_s": window_images / max(elapsed, 1e-9),
            }
            if device.type == "cuda":
                metrics["gpu_max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            result.last_metrics, result.images_per_s = metrics, metrics["images_per_s"]
            bar.set_postfix(loss=f"{terms['loss']:.3f}")
            if on_metrics is not None and env.is_main:
                on_metrics(step, metrics)
            window_start, window_images = time.perf_counter(), 0
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or step == stop_after:
            model.dino_loss.apply_center_update()
            model.ibot_loss.apply_center_update()
            if env.is_main:
                save_checkpoint(
                    out_dir / CHECKPOINT_DIR / LATEST,
                    {
                        "step": step,
                        "student": model.student.state_dict(),
                        "teacher": model.teacher.state_dict(),
                        "dino_loss": model.dino_loss.state_dict(),
                        "ibot_loss": model.ibot_loss.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "image_mean": mean,
                        "image_std": std,
                        "config": cfg.to_dict(),
                    },
                )
            if env.world_size > 1:
                dist.barrier()
        if stop_after is not None and step >= stop_after:
            bar.close()
            return result
    bar.close()
    if env.is_main:
        result.encoder_dir = export_encoder(model, out_dir, cfg, mean, std)
    return result
