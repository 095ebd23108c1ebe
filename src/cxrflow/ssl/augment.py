"""Multi-crop augmentation for chest X-rays (RAD-DINO) and the batch collation with iBOT masks.

Views and sizes. From one image (RAD-DINO: 518 px) we draw 2 global crops of side
U(0.5, 1.0) x the shorter side (259..518 px) resized to ``global_size`` (518), and ``n_local``
local crops of side U(104/518, 0.5) x the shorter side (104..259 px) resized to ``local_size``
(196). ``global_scale``/``local_scale`` are fractions of the shorter image side (square crops,
side uniform as in the paper), not torchvision's area fractions, so presets scale them freely
(e.g. ``tiny``: 112 px global, 56 px local).

Teacher views (decision). Upstream DINOv2 feeds the teacher the student's global crops, and
its ``GaussianBlur(p)`` wraps ``RandomApply(1 - p)``: global crop 1 is never blurred and crop
2 is blurred 90% of the time, the reverse of DINO's intent. RAD-DINO describes a weaker blur
on the teacher branch, because findings live in fine texture that the targets should keep.
Here each global view is one geometric crop (box, resize, flip) and one intensity jitter
(brightness, contrast, gamma), shared by student and teacher so that iBOT patch targets line
up with the student's patches; then the two branches blur independently with probabilities
that mean what they say (``global_blur_p`` = (1.0, 0.1) for the student, as DINO intended;
``teacher_blur_p`` = (0.5, 0.1) with half the sigma range), and only the student's view 2 is
solarised (p 0.2, DINOv2's setting; kept because inverted-polarity exports exist in CXR
archives). The teacher never sees solarisation. Local crops: blur p 0.5, no solarisation.

Grayscale. Photometric changes are grayscale-aware: brightness/contrast jitter and gamma, no
hue/saturation/grayscale. The single channel is normalised with the training data's mean/std
(required: compute them with ``intensity_stats``; ImageNet statistics do not fit X-rays) and
replicated to 3 equal channels at the end. Horizontal flip defaults to off: laterality (heart
side, L/R markers) is information in chest X-rays.

Blur sigmas are in pixels of the output crop; the kernel spans +-3 sigma (upstream: fixed 9).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from cxrflow.models.preprocessing import pil_to_unit_float
from cxrflow.ssl.masking import MaskingGenerator, collate_masks

RAD_DINO_INPUT = 518
N_GLOBAL_CROPS = 2
ImageLike = Image.Image | torch.Tensor | np.ndarray


def to_gray_float(image: ImageLike) -> torch.Tensor:
    """A (1, H, W) float32 image in [0, 1] from PIL (L, I;16, I, F, RGB), array or tensor.

    PIL images are read by the shared `pil_to_unit_float`, the reader of the served encoder too
    (16-bit modes / 65535, 8-bit / 255; a mode-I value over 16 bits or an F pixel outside [0, 1]
    is refused). uint16/int tensors are read as full-range 16-bit (/ 65535).
    """
    if isinstance(image, Image.Image):
        tensor = torch.from_numpy(pil_to_unit_float(image).copy())
    else:
        tensor = torch.as_tensor(image)
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 255.0
        elif tensor.dtype in (torch.uint16, torch.int16, torch.int32):
            tensor = tensor.float() / 65535.0
        else:
            tensor = tensor.float()
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3 and tensor.shape[-1] in (3, 4) and tensor.shape[0] not in (1, 3, 4):
        tensor = tensor.permute(2, 0, 1)  # HWC array
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected a (H, W), (1|3|4, H, W) image, got {tuple(tensor.shape)}")
    if tensor.shape[0] > 1:
        tensor = tensor[:3].mean(dim=0, keepdim=True)
    return tensor.clamp(0.0, 1.0).contiguous()


def intensity_stats(images: Iterable[ImageLike]) -> tuple[float, float]:
    """Pooled pixel mean and std in [0, 1] over images (float64 running sums)."""
    total, total_sq, count = 0.0, 0.0, 0
    for image in images:
        x = to_gray_float(image).double()
        total += float(x.sum())
        total_sq += float((x * x).sum())
        count += x.numel()
    if count == 0:
        raise ValueError("intensity_stats needs at least one image")
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0))


def _pair(name: str, value: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not lo <= pair[0] <= pair[1] <= hi:
        raise ValueError(
            f"{name} must be (min, max) with {lo} <= min <= max <= {hi}, got {value!r}"
        )
    return pair[0], pair[1]


def _probs(name: str, value: Sequence[float]) -> tuple[float, float]:
    probs = tuple(float(v) for v in value)
    if len(probs) != N_GLOBAL_CROPS or not all(0.0 <= p <= 1.0 for p in probs):
        raise ValueError(f"{name} must be {N_GLOBAL_CROPS} probabilities in [0, 1], got {value!r}")
    return probs[0], probs[1]


@dataclass(frozen=True)
class MultiCropAugmentation:
    """Callable: image -> {global_crops: 2, global_crops_teacher: 2, local_crops: n_local}.

    Each crop is a (3, S, S) float tensor with 3 equal channels. Pass a ``torch.Generator``
    for reproducible draws (the global torch RNG is used otherwise).
    """

    global_size: int = RAD_DINO_INPUT
    local_size: int = 196
    global_scale: tuple[float, float] = (0.5, 1.0)  # crop side / shorter image side
    local_scale: tuple[float, float] = (104 / RAD_DINO_INPUT, 0.5)
    n_local: int = 8
    patch_size: int = 14  # crop sizes must be multiples of it
    hflip_p: float = 0.0
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    gamma_p: float = 0.5
    gamma: tuple[float, float] = (0.8, 1.25)  # log-uniform
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # output pixels
    global_blur_p: tuple[float, float] = (1.0, 0.1)
    local_blur_p: float = 0.5
    teacher_blur_sigma: tuple[float, float] = (0.1, 1.0)
    teacher_blur_p: tuple[float, float] = (0.5, 0.1)
    solarize_p: tuple[float, float] = (0.0, 0.2)  # student global views only
    solarize_threshold: float = 0.5
    mean: float = field(kw_only=True)  # training data's pixel statistics in [0, 1]
    std: float = field(kw_only=True)

    def __post_init__(self) -> None:
        for name in ("global_size", "local_size", "patch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("global_size", "local_size"):
            if getattr(self, name) % self.patch_size:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be a multiple of patch_size "
                    f"({self.patch_size})"
                )
        if isinstance(self.n_local, bool) or not isinstance(self.n_local, int) or self.n_local < 0:
            raise ValueError(f"n_local must be a non-negative integer, got {self.n_local!r}")
        pairs = {
            "global_scale": (self.global_scale, 1e-6, 1.0),
            "local_scale": (self.local_scale, 1e-6, 1.0),
            "gamma": (self.gamma, 1e-6, math.inf),
            "blur_sigma": (self.blur_sigma, 1e-6, math.inf),
            "teacher_blur_sigma": (self.teacher_blur_sigma, 1e-6, math.inf),
        }
        for name, (value, lo, hi) in pairs.items():
            object.__setattr__(self, name, _pair(name, value, lo, hi))
        for name in ("global_blur_p", "teacher_blur_p", "solarize_p"):
            object.__setattr__(self, name, _probs(name, getattr(self, name)))
        for name in ("hflip_p", "jitter_p", "gamma_p", "local_blur_p", "solarize_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.mean <= 1.0:
            raise ValueError(f"mean must be in [0, 1] (pixels scaled to [0, 1]), got {self.mean}")
        if not self.std > 0.0:
            raise ValueError(f"std must be > 0, got {self.std}")

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid of a global crop (the masks' shape)."""
        n = self.global_size // self.patch_size
        return n, n

    # --- random draws -------------------------------------------------------------------
    # Every draw is made whatever its outcome, so changing one probability leaves the other
    # draws (crop boxes of later views, ...) unchanged: ablations compare like with like.
    @staticmethod
    def _uniform(g: torch.Generator | None, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    @staticmethod
    def _coin(g: torch.Generator | None, p: float) -> bool:
        return float(torch.rand((), generator=g)) < p

    def _box(
        self, g: torch.Generator | None, height: int, width: int, scale: tuple[float, float]
    ) -> tuple[int, int, int, int]:
        """A square (top, left, side, side) whose side is U(scale) x the shorter side."""
        shorter = min(height, width)
        side = round(self._uniform(g, scale[0] * shorter, scale[1] * shorter))
        side = min(max(side, 1), shorter)
        top = int(torch.randint(0, height - side + 1, (), generator=g))
        left = int(torch.randint(0, width - side + 1, (), generator=g))
        return top, left, side, side

    # --- transforms ---------------------------------------------------------------------
    def _crop(
        self, g: torch.Generator | None, x: torch.Tensor, size: int, scale: tuple[float, float]
    ) -> torch.Tensor:
        top, left, h, w = self._box(g, x.shape[-2], x.shape[-1], scale)
        crop = TF.resized_crop(
            x, top, left, h, w, [size, size], InterpolationMode.BICUBIC, antialias=True
        ).clamp(0.0, 1.0)  # bicubic overshoots
        if self._coin(g, self.hflip_p):
            crop = TF.horizontal_flip(crop)
        return crop

    def _intensity(self, g: torch.Generator | None, x: torch.Tensor) -> torch.Tensor:
        jitter = self._coin(g, self.jitter_p)
        b = self._uniform(g, 1 - self.brightness, 1 + self.brightness)
        c = self._uniform(g, 1 - self.contrast, 1 + self.contrast)
        use_gamma = self._coin(g, self.gamma_p)
        gamma = math.exp(self._uniform(g, math.log(self.gamma[0]), math.log(self.gamma[1])))
        if jitter:
            x = (x * b).clamp(0.0, 1.0)
            mean = x.mean()
            x = ((x - mean) * c + mean).clamp(0.0, 1.0)
        return x.pow(gamma) if use_gamma else x

    def _blur(
        self, g: torch.Generator | None, x: torch.Tensor, p: float, sigma: tuple[float, float]
    ) -> torch.Tensor:
        apply = self._coin(g, p)
        s = self._uniform(g, *sigma)
        if not apply:
            return x
        limit = 2 * ((min(x.shape[-2:]) - 1) // 2) + 1  # reflect padding needs kernel <= side
        kernel = min(2 * math.ceil(3 * s) + 1, limit)
        return TF.gaussian_blur(x, [kernel, kernel], [s, s])

    def _solarize(self, g: torch.Generator | None, x: torch.Tensor, p: float) -> torch.Tensor:
        if not self._coin(g, p):
            return x
        return torch.where(x >= self.solarize_threshold, 1.0 - x, x)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).repeat(3, 1, 1)

    def __call__(
        self, image: ImageLike, generator: torch.Generator | None = None
    ) -> dict[str, list[torch.Tensor]]:
        """Draw all views of one image."""
        g = generator
        x = to_gray_float(image)
        student, teacher = [], []
        for view in range(N_GLOBAL_CROPS):
            base = self._intensity(g, self._crop(g, x, self.global_size, self.global_scale))
            s = self._blur(g, base, self.global_blur_p[view], self.blur_sigma)
            s = self._solarize(g, s, self.solarize_p[view])
            t = self._blur(g, base, self.teacher_blur_p[view], self.teacher_blur_sigma)
            student.append(self._finish(s))
            teacher.append(self._finish(t))
        local = []
        for _ in range(self.n_local):
            crop = self._intensity(g, self._crop(g, x, self.local_size, self.local_scale))
            local.append(self._finish(self._blur(g, crop, self.local_blur_p, self.blur_sigma)))
        return {"global_crops": student, "global_crops_teacher": teacher, "local_crops": local}


def _views(sample: Any) -> Mapping[str, Sequence[torch.Tensor]]:
    """The crop dict of a sample: the dict itself, or the first item of (dict, target...)."""
    if isinstance(sample, Mapping):
        return sample
    if isinstance(sample, tuple | list) and sample and isinstance(sample[0], Mapping):
        return sample[0]
    raise TypeError(f"expected a crop dict or (crop dict, ...), got {type(sample).__name__}")


def _stack(views: Sequence[Mapping[str, Sequence[torch.Tensor]]], key: str) -> torch.Tensor:
    """Crop-major stack: [crop 0 of every sample, crop 1 of every sample, ...]."""
    n = len(views[0][key])
    if any(len(v[key]) != n for v in views):
        raise ValueError(f"samples disagree on the number of {key}")
    if n == 0:
        return torch.empty(0)
    return torch.stack([v[key][i] for i in range(n) for v in views])


def collate_multicrop(
    samples: Sequence[Any],
    mask_generator: MaskingGenerator | None = None,
    *,
    patch_size: int = 14,
    mask_ratio_min_max: tuple[float, float] = (0.1, 0.5),
    mask_probability: float = 0.5,
    generator: Any = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Stack the crops of a batch and draw iBOT masks for its global crops.

    Returns ``global_crops`` and ``global_crops_teacher`` (2B, 3, G, G), ``local_crops``
    (n_local B, 3, L, L) (crop-major: rows [0, B) are crop 0), ``masks`` (2B, (G/p)^2) bool,
    ``mask_indices_list`` (M,), ``n_masked_patches`` (1,), ``masks_weight`` (M,),
    ``upperbound`` (int), and the ints ``batch_size``, ``n_global_crops``, ``n_local_crops``.
    ``mask_generator`` defaults to ``MaskingGenerator(grid)`` with grid = G / patch_size;
    ``generator`` is a ``random.Random`` (None: the DataLoader-worker-seeded ``random``).
    """
    if not samples:
        raise ValueError("collate_multicrop needs at least one sample")
    views = [_views(s) for s in samples]
    out: dict[str, Any] = {
        key: _stack(views, key) for key in ("global_crops", "global_crops_teacher", "local_crops")
    }
    if dtype is not None:
        out = {k: v.to(dtype) for k, v in out.items()}
    n_global = len(views[0]["global_crops"])
    size = out["global_crops"].shape[-1]
    if mask_generator is None:
        if size % patch_size:
            raise ValueError(
                f"global crop size {size} is not a multiple of patch_size {patch_size}"
            )
        mask_generator = MaskingGenerator((size // patch_size, size // patch_size))
    out.update(
        collate_masks(
            len(views),
            n_global,
            mask_generator.input_size,
            mask_ratio_min_max=mask_ratio_min_max,
            mask_probability=mask_probability,
            generator=generator,
            mask_generator=mask_generator,
        )
    )
    out.update(
        batch_size=len(views),
        n_global_crops=n_global,
        n_local_crops=len(views[0]["local_crops"]),
    )
    return out
