"""The paper's training augmentations for the heads (E.3.1, E.3.2), on [0, 1] grey pixels."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from cxrflow.heads.data import Augment

# Structures whose meaning flips with a horizontal flip: no flip when any is a target (E.3.2).
LATERAL_STRUCTURES = frozenset(
    {
        "left_lung",
        "right_lung",
        "zone_right_upper",
        "zone_right_middle",
        "zone_right_lower",
        "zone_left_upper",
        "zone_left_middle",
        "zone_left_lower",
    }
)
# v2.Compose passes one input through unwrapped and several as a tuple: mirror that.
_Out = torch.Tensor | tuple[torch.Tensor, ...]


class _Noise(torch.nn.Module):
    """Additive Gaussian noise with probability p, clipped to [0, 1] (images only)."""

    def __init__(self, sigma: float = 0.02, p: float = 0.5) -> None:
        super().__init__()
        self.sigma, self.p = sigma, p

    def forward(self, img: torch.Tensor, *rest: torch.Tensor) -> _Out:
        if torch.rand(()) < self.p:
            img = tv_tensors.wrap((img + self.sigma * torch.randn_like(img)).clamp(0, 1), like=img)
        return (img, *rest) if rest else img


class _Gamma(torch.nn.Module):
    """Random gamma in [lo, hi] with probability p (images only)."""

    def __init__(self, lo: float = 0.8, hi: float = 1.25, p: float = 0.5) -> None:
        super().__init__()
        self.lo, self.hi, self.p = lo, hi, p

    def forward(self, img: torch.Tensor, *rest: torch.Tensor) -> _Out:
        if torch.rand(()) < self.p:
            gamma = float(torch.empty(()).uniform_(self.lo, self.hi))
            img = tv_tensors.wrap(img.clamp(0, 1) ** gamma, like=img)
        return (img, *rest) if rest else img


def _run(pipeline: v2.Compose) -> Augment:
    """Apply a joint image/mask pipeline to (image, masks-or-None)."""

    def apply(x: torch.Tensor, m: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        img = tv_tensors.Image(x)
        if m is None:
            out = pipeline(img)
            return out.as_subclass(torch.Tensor).clamp(0, 1), None
        out_img, out_m = pipeline(img, tv_tensors.Mask(m.to(torch.uint8)))
        return out_img.as_subclass(torch.Tensor).clamp(0, 1), out_m.as_subclass(torch.Tensor) > 0

    return apply


def classification_augment(size: int) -> Augment:
    """Flip, random crop, affine, intensity jitter, Gaussian noise (E.3.1)."""
    return _run(
        v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.9, 1.1), antialias=True),
                v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
                v2.ColorJitter(brightness=0.2, contrast=0.2),
                _Noise(),
            ]
        )
    )


def segmentation_augment(structures: tuple[str, ...]) -> Augment:
    """Affine, elastic, brightness/contrast, gamma; flip only without left/right targets."""
    steps: list[torch.nn.Module] = []
    if not LATERAL_STRUCTURES.intersection(structures):
        steps.append(v2.RandomHorizontalFlip())
    steps += [
        v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
        v2.RandomApply([v2.ElasticTransform(alpha=20.0, sigma=5.0)], p=0.3),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
        _Gamma(),
    ]
    return _run(v2.Compose(steps))
