"""Segmentation decoders on a frozen encoder (E.3.2, Table 3): linear and UPerNet.

Both take the encoder's patch-token maps stacked as one tensor (B, L, D, h, w) and return
per-structure logits at the image size (B, K, S, S), one sigmoid channel a structure
(structures overlap: lung zones lie inside lungs). The linear head uses the last map only;
UPerNet turns four maps into a ViTDet simple feature pyramid (deconv x4, deconv x2,
identity, max-pool x0.5) and fuses it with a pyramid pooling module and an FPN.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cxrflow.findings import MASK_STRUCTURES
from cxrflow.heads.config import HeadsConfigError, SegmentationConfig
from cxrflow.heads.data import read_mask
from cxrflow.heads.metrics import DiceScore, dice_per_structure

log = logging.getLogger(__name__)

Batches = Callable[[torch.Generator], Iterator[tuple[torch.Tensor, torch.Tensor]]]


class LinearSegHead(nn.Module):
    """1x1 convolution on the last block's patch tokens, bilinear upsampling to the image."""

    def __init__(self, embed_dim: int, n_classes: int, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.conv = nn.Conv2d(embed_dim, n_classes, kernel_size=1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        logits = self.conv(maps[:, -1])
        return F.interpolate(
            logits, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    """Conv + BatchNorm + ReLU (mmseg's ConvModule)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class SimplePyramid(nn.Module):
    """ViTDet's simple feature pyramid from four same-scale maps: x4, x2, x1, x0.5.

    As in ViTDet, upsampling halves the width per x2 step (D/4, D/2, D, D channels).
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        d = embed_dim
        self.dims = (d // 4, d // 2, d, d)
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(d, d // 2, 2, stride=2),
            nn.BatchNorm2d(d // 2),
            nn.GELU(),
            nn.ConvTranspose2d(d // 2, d // 4, 2, stride=2),
        )
        self.up2 = nn.ConvTranspose2d(d, d // 2, 2, stride=2)
        self.down2 = nn.MaxPool2d(2)

    def forward(self, maps: torch.Tensor) -> list[torch.Tensor]:
        return [self.up4(maps[:, 0]), self.up2(maps[:, 1]), maps[:, 2], self.down2(maps[:, 3])]


class UPerNetHead(nn.Module):
    """Simple pyramid -> PPM on the coarsest level + FPN -> fused logits at the image size."""

    def __init__(
        self,
        embed_dim: int,
        n_classes: int,
        image_size: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.pyramid = SimplePyramid(embed_dim)
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv(embed_dim, channels, 1))
            for s in pool_scales
        )
        self.bottleneck = _conv(embed_dim + len(pool_scales) * channels, channels, 3)
        self.lateral = nn.ModuleList(_conv(d, channels, 1) for d in self.pyramid.dims[:3])
        self.fpn = nn.ModuleList(_conv(channels, channels, 3) for _ in range(3))
        self.fuse = _conv(4 * channels, channels, 3)
        self.classifier = nn.Conv2d(channels, n_classes, 1)

    @staticmethod
    def _resize(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        feats = self.pyramid(maps)
        top = feats[3]
        pooled = [self._resize(branch(top), top) for branch in self.ppm]
        levels = [lat(f) for lat, f in zip(self.lateral, feats[:3], strict=True)]
        levels.append(self.bottleneck(torch.cat([top, *pooled], dim=1)))
        for i in (2, 1, 0):  # top-down pathway
            levels[i] = levels[i] + self._resize(levels[i + 1], levels[i])
        outs = [fpn(lv) for fpn, lv in zip(self.fpn, levels[:3], strict=True)] + [levels[3]]
        fused = self.fuse(torch.cat([outs[0]] + [self._resize(o, outs[0]) for o in outs[1:]], 1))
        logits = self.classifier(fused)
        return F.interpolate(
            logits, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )


def make_decoder(
    name: str, embed_dim: int, n_classes: int, image_size: int, channels: int
) -> nn.Module:
    """A decoder by name: `linear` or `upernet`."""
    if name == "linear":
        return LinearSegHead(embed_dim, n_classes, image_size)
    if name == "upernet":
        return UPerNetHead(embed_dim, n_classes, image_size, channels)
    raise HeadsConfigError(f"unknown decoder {name!r}; known: linear, upernet")


def available_structures(data_dir, frame: pd.DataFrame) -> list[str]:
    """Structures with at least one foreground pixel in the frame's masks."""
    found = np.zeros(len(MASK_STRUCTURES), dtype=bool)
    for rel in frame["mask_path"].dropna():
        packed = read_mask(data_dir / rel, MASK_STRUCTURES)
        found |= packed.reshape(len(MASK_STRUCTURES), -1).any(axis=1)
    return [s for s, f in zip(MASK_STRUCTURES, found, strict=True) if f]


def choose_structures(data_dir, train: pd.DataFrame, cfg: SegmentationConfig) -> list[str]:
    """The structures to segment: the configured ones (each must have train pixels) or all."""
    masked = train[train["mask_path"].notna()]
    if masked.empty:
        raise HeadsConfigError(
            "no train image has a mask (mask_path is empty): disable segmentation "
            "or ingest a dataset with masks"
        )
    present = available_structures(data_dir, masked)
    if cfg.structures:
        absent = [s for s in cfg.structures if s not in present]
        if absent:
            raise HeadsConfigError(
                f"no train mask has pixels of {absent}; structures with masks: {present or 'none'}"
            )
        return list(cfg.structures)
    if not present:
        raise HeadsConfigError("the train masks are all empty: nothing to segment")
    return present


def map_batches(maps: torch.Tensor, masks: torch.Tensor, batch_size: int) -> Batches:
    """Shuffled mini-batches of cached maps and their masks."""

    def batches(gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(maps), generator=gen)
        for i in range(0, len(maps), batch_size):
            idx = order[i : i + batch_size]
            yield maps[idx], masks[idx]

    return batches


@dataclass
class SegRun:
    """A trained decoder and its loss history."""

    decoder: nn.Module
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


@torch.no_grad()
def _loss_on(decoder: nn.Module, maps: torch.Tensor, masks: torch.Tensor, bs: int) -> float:
    decoder.eval()
    total = 0.0
    for i in range(0, len(maps), bs):
        logits = decoder(maps[i : i + bs])
        total += float(
            F.binary_cross_entropy_with_logits(logits, masks[i : i + bs], reduction="sum")
        )
    return total / masks.numel()


def train_decoder(
    decoder: nn.Module,
    batches: Batches,
    cfg: SegmentationConfig,
    *,
    steps_per_epoch: int,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    max_steps: int = 0,
    lr: float | None = None,
) -> SegRun:
    """Adam (`lr`, default `cfg.lr`) + cosine over `cfg.epochs` (or `max_steps`).

    Keeps the decoder of minimum validation loss.
    """
    torch.manual_seed(seed)
    total = max_steps if max_steps else cfg.epochs * steps_per_epoch
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr if lr is None else lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    gen = torch.Generator().manual_seed(seed)
    run = SegRun(decoder)
    best = (math.inf, copy.deepcopy(decoder.state_dict()))
    step = 0
    while step < total:
        decoder.train()
        loss_sum, n = 0.0, 0
        for maps, masks in batches(gen):
            if len(maps) < 2 and any(isinstance(m, nn.BatchNorm2d) for m in decoder.modules()):
                continue  # BatchNorm cannot train on a single sample
            loss = F.binary_cross_entropy_with_logits(decoder(maps), masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum, n = loss_sum + float(loss.detach()) * len(maps), n + len(maps)
            step += 1
            if step >= total:
                break
        if n == 0:
            raise HeadsConfigError(
                "no training step ran: BatchNorm needs batches of >= 2 images "
                "(raise segmentation.batch_size)"
            )
        run.train_loss.append(loss_sum / max(n, 1))
        if val is not None:
            vl = _loss_on(decoder, val[0], val[1], 16)
            run.val_loss.append(vl)
            if vl < best[0]:
                best = (vl, copy.deepcopy(decoder.state_dict()))
    if cfg.selection == "val_loss" and val is not None:
        decoder.load_state_dict(best[1])
    run.decoder = decoder.eval()
    return run


@torch.no_grad()
def predict_masks(decoder: nn.Module, maps: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Sigmoid probabilities (N, K, S, S)."""
    decoder.eval()
    return torch.cat(
        [torch.sigmoid(decoder(maps[i : i + batch_size])) for i in range(0, len(maps), batch_size)]
    )


@dataclass
class SegmentationResult:
    """One decoder: Dice per structure on test, its loss history, test predictions."""

    decoder_name: str
    structures: list[str]
    dice: dict[str, DiceScore]
    run: SegRun
    test_probs: torch.Tensor
    trainable_params: int


def evaluate(
    name: str,
    run: SegRun,
    structures: list[str],
    test_maps: torch.Tensor,
    test_masks: torch.Tensor,
) -> SegmentationResult:
    """Dice per structure of a trained decoder on the test images (threshold 0.5)."""
    probs = predict_masks(run.decoder, test_maps)
    scores = dice_per_structure((probs > 0.5).numpy(), test_masks.bool().numpy(), structures)
    params = sum(p.numel() for p in run.decoder.parameters() if p.requires_grad)
    return SegmentationResult(name, structures, scores, run, probs, params)
