"""Block masking for iBOT and the per-batch mask collation (half the images, stratified ratios).

Maximum patches per block: ``max_num_patches = int(0.5 * h * w)``, computed as written:
684 at 518/14 (37 x 37 grid). Upstream's ``0.5 * img_size // patch_size * img_size //
patch_size`` parses as ``((0.5 * 518) // 14 * 518) // 14`` = 666. ``default_max_num_patches``
is the one place this is computed.

Randomness comes from a ``random.Random`` passed in; with ``None`` the module-level ``random``
is used, which torch's DataLoader reseeds in every worker (a shared ``Random`` instance would be
copied into each worker with the same state and repeat the same masks across workers).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

MIN_NUM_PATCHES = 4
MIN_ASPECT = 0.3
MAX_TRIES = 10


class Block(NamedTuple):
    """A block proposal: rounded sides and the drawn area and aspect (h / w before rounding)."""

    h: int
    w: int
    area: float
    aspect: float


def _resolve(rng: random.Random | None) -> random.Random:
    """The given generator, or the module-level one (per-worker seeded by DataLoader)."""
    return rng if rng is not None else random  # type: ignore[return-value]


def default_max_num_patches(grid: tuple[int, int]) -> int:
    """Half the grid, with the precedence upstream meant: int(0.5 * h * w) (684 for 37 x 37)."""
    return int(0.5 * grid[0] * grid[1])


@dataclass(frozen=True)
class MaskingGenerator:
    """Draws block masks on an (h, w) patch grid; blocks of area U(min, max), log-uniform aspect."""

    input_size: tuple[int, int]
    max_num_patches: int | None = None  # per block; None: default_max_num_patches(input_size)
    min_num_patches: int = MIN_NUM_PATCHES
    min_aspect: float = MIN_ASPECT
    max_aspect: float | None = None  # None: 1 / min_aspect (3.33)
    max_tries: int = MAX_TRIES
    _log_aspect: tuple[float, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        size = self.input_size
        if isinstance(size, int):
            size = (size, size)
        size = tuple(size)
        if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
            raise ValueError(
                f"input_size must be (h, w) positive integers, got {self.input_size!r}"
            )
        object.__setattr__(self, "input_size", size)
        max_patches = self.max_num_patches
        if max_patches is None:
            max_patches = default_max_num_patches(size)
        max_patches = int(max_patches)
        if max_patches < self.min_num_patches:
            raise ValueError(
                f"max_num_patches ({max_patches}) must be >= min_num_patches "
                f"({self.min_num_patches})"
            )
        object.__setattr__(self, "max_num_patches", max_patches)
        if self.min_num_patches < 1:
            raise ValueError(f"min_num_patches must be >= 1, got {self.min_num_patches}")
        max_aspect = self.max_aspect if self.max_aspect is not None else 1.0 / self.min_aspect
        if not 0 < self.min_aspect <= max_aspect:
            raise ValueError(
                f"min_aspect must be in (0, max_aspect={max_aspect}], got {self.min_aspect}"
            )
        object.__setattr__(self, "max_aspect", max_aspect)
        object.__setattr__(self, "_log_aspect", (math.log(self.min_aspect), math.log(max_aspect)))
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")

    @property
    def num_patches(self) -> int:
        """h * w."""
        return self.input_size[0] * self.input_size[1]

    def sample_block(self, max_mask_patches: int, rng: random.Random) -> Block:
        """One block proposal: area U(min, max), aspect h / w log-uniform, sides rounded."""
        area = rng.uniform(self.min_num_patches, max_mask_patches)
        aspect = math.exp(rng.uniform(*self._log_aspect))
        return Block(round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect)), area, aspect)

    def _add_block(self, mask: torch.Tensor, max_mask_patches: int, rng: random.Random) -> int:
        """Try up to max_tries blocks; paint the first that adds 1..max patches; return how many."""
        height, width = self.input_size
        for _ in range(self.max_tries):
            h, w, _, _ = self.sample_block(max_mask_patches, rng)
            if not (w < width and h < height):
                continue
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            window = mask[top : top + h, left : left + w]
            added = h * w - int(window.sum())
            if 0 < added <= max_mask_patches:  # overlap allowed, overshoot not
                window.fill_(True)
                return added
        return 0

    def __call__(
        self, num_masking_patches: int = 0, rng: random.Random | None = None
    ) -> torch.Tensor:
        """A bool (h, w) mask of at most ``num_masking_patches`` patches (fewer if blocks fail)."""
        rng = _resolve(rng)
        mask = torch.zeros(self.input_size, dtype=torch.bool)
        count = 0
        while count < num_masking_patches:
            budget = min(num_masking_patches - count, self.max_num_patches)
            added = self._add_block(mask, budget, rng)
            if added == 0:
                break
            count += added
        return mask


def collate_masks(
    batch_size: int,
    n_global_crops: int,
    grid: tuple[int, int],
    mask_ratio_min_max: tuple[float, float] = (0.1, 0.5),
    mask_probability: float = 0.5,
    generator: random.Random | None = None,
    mask_generator: MaskingGenerator | None = None,
) -> dict[str, Any]:
    """Masks for the n_global * B global crops (crop-major order, as the crops are stacked).

    ``int(n * mask_probability)`` images get masks; their target ratios are stratified: image k
    draws U(p_k, p_{k+1}) with p = linspace(min, max, n_masked + 1), as upstream; the list is
    then shuffled. Returns ``masks`` (n, h*w) bool, ``mask_indices_list`` (M,) long (flat
    indices into masks), ``n_masked_patches`` (1,) long = M, ``masks_weight`` (M,) float
    (1 / M_i of each patch's image), ``upperbound`` int (sum of int(N p_{k+1}) >= M, the size
    of a fixed buffer for the masked tokens).
    """
    lo, hi = mask_ratio_min_max
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"mask_ratio_min_max must satisfy 0 <= min <= max <= 1, got {(lo, hi)}")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    if batch_size < 1 or n_global_crops < 1:
        raise ValueError(
            f"batch_size and n_global_crops must be >= 1, got {batch_size}, {n_global_crops}"
        )
    rng = _resolve(generator)
    mask_generator = mask_generator or MaskingGenerator(tuple(grid))
    if mask_generator.input_size != tuple(grid):
        raise ValueError(f"mask_generator grid {mask_generator.input_size} != grid {tuple(grid)}")
    n_images = batch_size * n_global_crops
    n_tokens = mask_generator.num_patches
    n_masked_images = int(n_images * mask_probability)
    bounds = torch.linspace(lo, hi, n_masked_images + 1).tolist()
    masks: list[torch.Tensor] = []
    upperbound = 0
    for k in range(n_masked_images):
        target = int(n_tokens * rng.uniform(bounds[k], bounds[k + 1]))
        masks.append(mask_generator(target, rng))
        upperbound += int(n_tokens * bounds[k + 1])
    masks += [mask_generator(0, rng) for _ in range(n_masked_images, n_images)]
    rng.shuffle(masks)
    collated = torch.stack(masks).flatten(1)
    indices = collated.flatten().nonzero().flatten()
    per_image = 1.0 / collated.sum(dim=-1).clamp(min=1).float()
    weights = per_image.unsqueeze(-1).expand_as(collated)[collated]
    return {
        "masks": collated,
        "mask_indices_list": indices,
        "n_masked_patches": torch.full((1,), indices.shape[0], dtype=torch.long),
        "masks_weight": weights,
        "upperbound": upperbound,
    }
