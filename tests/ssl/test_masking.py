"""Block masks and batch mask collation: statistics, bounds, stratification, determinism."""

from __future__ import annotations

import math
import random

import pytest
import torch

from cxrflow.ssl import MaskingGenerator, collate_masks, default_max_num_patches

GRID = (14, 14)
N = GRID[0] * GRID[1]
SHORTFALL = 4 / N  # blocks are >= 4 patches, so a mask may stop up to 3 patches short


def test_max_num_patches_is_half_the_grid() -> None:
    assert default_max_num_patches((37, 37)) == 684
    assert 0.5 * 518 // 14 * 518 // 14 == 666  # upstream's precedence slip, for the record
    assert MaskingGenerator((37, 37)).max_num_patches == 684
    assert MaskingGenerator((37, 37), max_num_patches=100).max_num_patches == 100


def test_block_proposals_respect_area_and_aspect_bounds() -> None:
    gen = MaskingGenerator(GRID)
    rng = random.Random(0)
    blocks = [gen.sample_block(60, rng) for _ in range(2000)]
    assert all(0.3 - 1e-9 <= b.aspect <= 1 / 0.3 + 1e-9 for b in blocks)
    assert all(4 <= b.area <= 60 for b in blocks)
    assert all(abs(b.h - math.sqrt(b.area * b.aspect)) <= 0.5 for b in blocks)
    assert all(abs(b.w - math.sqrt(b.area / b.aspect)) <= 0.5 for b in blocks)
    log_aspects = torch.tensor([math.log(b.aspect) for b in blocks])
    assert abs(log_aspects.mean().item()) < 0.06  # log-uniform, symmetric around aspect 1
    assert log_aspects.min() < math.log(0.35) and log_aspects.max() > math.log(1 / 0.35)


def test_a_single_block_is_a_solid_rectangle() -> None:
    gen = MaskingGenerator(GRID)
    rng = random.Random(1)
    for _ in range(200):
        mask = torch.zeros(GRID, dtype=torch.bool)
        added = gen._add_block(mask, 30, rng)
        if added == 0:
            continue
        rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert added == h * w == int(mask.sum()) <= 30
        assert 1 / 5 <= h / w <= 5  # aspect 0.3..3.33 after rounding small blocks


def test_masks_never_exceed_the_target_and_nearly_reach_it() -> None:
    gen = MaskingGenerator(GRID)
    rng = random.Random(2)
    for target in [0, 4, 19, 50, 98]:
        for _ in range(20):
            count = int(gen(target, rng).sum())
            assert target - 3 <= count <= target


def test_collate_statistics() -> None:
    rng = random.Random(3)
    batch_size, n_global = 8, 2
    n_images = batch_size * n_global
    bounds = torch.linspace(0.1, 0.5, n_images // 2 + 1)
    masked_positions = torch.zeros(n_images)
    for _ in range(60):
        out = collate_masks(batch_size, n_global, GRID, generator=rng)
        masks = out["masks"]
        assert masks.shape == (n_images, N) and masks.dtype == torch.bool
        counts = masks.sum(dim=1)
        masked = counts > 0
        assert int(masked.sum()) == n_images // 2  # half the images
        masked_positions += masked.float()
        ratios = (counts[masked].float() / N).sort().values
        assert ratios.max() <= 0.5 and ratios.min() >= 0.1 - SHORTFALL
        # stratified: the k-th smallest ratio lies in the k-th stratum
        assert torch.all(ratios <= bounds[1:] + 1e-6)
        assert torch.all(ratios >= bounds[:-1] - SHORTFALL - 1e-6)
        m = int(out["n_masked_patches"])
        assert m == int(counts.sum()) <= out["upperbound"]
        assert torch.equal(out["mask_indices_list"], masks.flatten().nonzero().flatten())
        weights = (1.0 / counts.clamp(min=1).float()).repeat_interleave(counts)
        torch.testing.assert_close(out["masks_weight"], weights)
    assert masked_positions.min() > 0  # shuffled: every position is sometimes masked


def test_collate_is_deterministic_by_seed() -> None:
    a = collate_masks(4, 2, GRID, generator=random.Random(7))
    b = collate_masks(4, 2, GRID, generator=random.Random(7))
    c = collate_masks(4, 2, GRID, generator=random.Random(8))
    assert torch.equal(a["masks"], b["masks"])
    assert not torch.equal(a["masks"], c["masks"])


def test_collate_validation() -> None:
    with pytest.raises(ValueError, match="mask_ratio_min_max"):
        collate_masks(2, 2, GRID, mask_ratio_min_max=(0.5, 0.1))
    with pytest.raises(ValueError, match="mask_probability"):
        collate_masks(2, 2, GRID, mask_probability=1.5)
    with pytest.raises(ValueError, match="max_num_patches"):
        MaskingGenerator((2, 2))
