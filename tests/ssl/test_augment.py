"""Multi-crop views: sizes, shared teacher geometry with weaker blur, determinism, collation."""

from __future__ import annotations

import dataclasses
import random
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cxrflow.ssl import MultiCropAugmentation, collate_multicrop, intensity_stats, to_gray_float

MEAN, STD = 0.45, 0.25


def _image(size: int = 112, seed: int = 0) -> Image.Image:
    """A textured grayscale image: smooth gradient plus fine noise (high frequencies)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, size)[None, :] + np.zeros((size, 1))
    pixels = np.clip(ramp + rng.normal(0, 30, (size, size)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L")


def _aug(**changes: object) -> MultiCropAugmentation:
    base = MultiCropAugmentation(global_size=56, local_size=28, n_local=3, mean=MEAN, std=STD)
    return dataclasses.replace(base, **changes)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _high_freq(x: torch.Tensor) -> float:
    """Mean squared horizontal and vertical first differences of channel 0."""
    c = x[0]
    return float((c[1:] - c[:-1]).pow(2).mean() + (c[:, 1:] - c[:, :-1]).pow(2).mean())


def test_crop_counts_sizes_and_equal_channels() -> None:
    out = _aug()(_image(), _gen(0))
    assert set(out) == {"global_crops", "global_crops_teacher", "local_crops"}
    assert [c.shape for c in out["global_crops"]] == [(3, 56, 56)] * 2
    assert [c.shape for c in out["global_crops_teacher"]] == [(3, 56, 56)] * 2
    assert [c.shape for c in out["local_crops"]] == [(3, 28, 28)] * 3
    for crop in [c for views in out.values() for c in views]:
        assert crop.dtype == torch.float32
        assert torch.equal(crop[0], crop[1]) and torch.equal(crop[0], crop[2])


def test_rad_dino_crop_sides() -> None:
    aug = MultiCropAugmentation(mean=MEAN, std=STD)
    assert (aug.global_size, aug.local_size, aug.n_local, aug.grid) == (518, 196, 8, (37, 37))
    g = _gen(1)
    global_sides = [aug._box(g, 518, 518, aug.global_scale)[2] for _ in range(500)]
    local_sides = [aug._box(g, 518, 518, aug.local_scale)[2] for _ in range(500)]
    assert 259 <= min(global_sides) and max(global_sides) <= 518
    assert 104 <= min(local_sides) and max(local_sides) <= 259
    assert max(global_sides) - min(global_sides) > 200  # spread over the range
    top, left, h, w = aug._box(g, 600, 518, aug.global_scale)  # non-square: shorter side
    assert h == w <= 518 and top + h <= 600 and left + w <= 518


def test_teacher_shares_the_student_geometry() -> None:
    no_blur = _aug(global_blur_p=(0.0, 0.0), teacher_blur_p=(0.0, 0.0), solarize_p=(0.0, 0.0))
    out = no_blur(_image(), _gen(2))
    for student, teacher in zip(out["global_crops"], out["global_crops_teacher"], strict=True):
        assert torch.equal(student, teacher)  # same box, flip and intensity jitter
    # The student blurred and the teacher not: the teacher view is the student's unblurred crop.
    sharp_teacher = dataclasses.replace(no_blur, global_blur_p=(1.0, 1.0))
    blurred = sharp_teacher(_image(), _gen(2))
    for v in range(2):
        assert torch.equal(blurred["global_crops_teacher"][v], out["global_crops"][v])
        assert not torch.equal(blurred["global_crops"][v], out["global_crops"][v])
    # With blur on both, the views still align: heavily smoothed, they nearly coincide.
    out = _aug(solarize_p=(0.0, 0.0))(_image(), _gen(2))
    smooth = partial(torch.nn.functional.avg_pool2d, kernel_size=8)
    s, t = smooth(out["global_crops"][0]), smooth(out["global_crops_teacher"][0])
    assert torch.corrcoef(torch.stack([s.flatten(), t.flatten()]))[0, 1] > 0.95


def test_teacher_views_are_blurred_less_on_average() -> None:
    aug = _aug(solarize_p=(0.0, 0.0), n_local=0)
    student = [0.0, 0.0]
    teacher = [0.0, 0.0]
    for seed in range(40):
        out = aug(_image(seed=seed), _gen(seed))
        for v in range(2):
            student[v] += _high_freq(out["global_crops"][v])
            teacher[v] += _high_freq(out["global_crops_teacher"][v])
    assert teacher[0] > 1.2 * student[0]  # student view 1 is always blurred (p = 1.0)
    assert sum(teacher) > sum(student)


def test_blur_probabilities_mean_what_they_say() -> None:
    image = _image()
    never = _aug(global_blur_p=(0.0, 0.0), teacher_blur_p=(0.0, 0.0), solarize_p=(0.0, 0.0))
    always = dataclasses.replace(never, global_blur_p=(1.0, 1.0))
    crisp = never(image, _gen(3))["global_crops"]
    blurred = always(image, _gen(3))["global_crops"]
    for v in range(2):  # upstream's RandomApply(1 - p) would never blur view 1 here
        assert _high_freq(blurred[v]) < _high_freq(crisp[v])


def test_deterministic_given_a_generator() -> None:
    aug, image = _aug(), _image()
    a, b, c = aug(image, _gen(4)), aug(image, _gen(4)), aug(image, _gen(5))
    for key in a:
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key], strict=True))
    assert not torch.equal(a["global_crops"][0], c["global_crops"][0])


def test_normalisation_uses_the_given_statistics() -> None:
    plain = _aug(
        jitter_p=0.0,
        gamma_p=0.0,
        global_blur_p=(0.0, 0.0),
        teacher_blur_p=(0.0, 0.0),
        local_blur_p=0.0,
        solarize_p=(0.0, 0.0),
    )
    flat = Image.fromarray(np.full((70, 90), 153, dtype=np.uint8), mode="L")
    out = plain(flat, _gen(6))
    want = (153 / 255 - MEAN) / STD
    for crop in [c for views in out.values() for c in views]:
        torch.testing.assert_close(crop, torch.full_like(crop, want))


def test_inputs_of_several_kinds() -> None:
    rgb = Image.merge("RGB", [_image(64)] * 3)
    assert torch.equal(to_gray_float(rgb), to_gray_float(_image(64)))
    wide = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    assert to_gray_float(wide).max().item() == pytest.approx(0.5, abs=1e-4)
    assert to_gray_float(torch.full((1, 5, 5), 255, dtype=torch.uint8)).max() == 1.0
    assert to_gray_float(np.zeros((5, 6, 3), dtype=np.uint8)).shape == (1, 5, 6)
    out = _aug()(torch.rand(100, 120), _gen(7))
    assert out["global_crops"][0].shape == (3, 56, 56)


def test_intensity_stats() -> None:
    images = [_image(32, seed=s) for s in range(3)]
    pixels = np.concatenate([np.asarray(i, dtype=np.float64).ravel() / 255 for i in images])
    mean, std = intensity_stats(images)
    assert mean == pytest.approx(pixels.mean()) and std == pytest.approx(pixels.std())


def test_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="global_size"):
        _aug(global_size=50)
    with pytest.raises(ValueError, match="teacher_blur_p"):
        _aug(teacher_blur_p=(0.5,))
    with pytest.raises(ValueError, match="std"):
        _aug(std=0.0)
    with pytest.raises(TypeError):
        MultiCropAugmentation(56, 28)  # mean/std are required: the data's statistics


def test_collate_multicrop_stacks_crop_major_and_builds_masks() -> None:
    aug = _aug(n_local=2)
    samples = [aug(_image(seed=s), _gen(s)) for s in range(3)]
    out = collate_multicrop([(s, 0) for s in samples], generator=random.Random(0))
    assert out["global_crops"].shape == (6, 3, 56, 56)
    assert out["global_crops_teacher"].shape == (6, 3, 56, 56)
    assert out["local_crops"].shape == (6, 3, 28, 28)
    assert torch.equal(out["global_crops"][1], samples[1]["global_crops"][0])
    assert torch.equal(out["global_crops"][3 + 1], samples[1]["global_crops"][1])
    assert torch.equal(out["local_crops"][3 + 2], samples[2]["local_crops"][1])
    assert out["masks"].shape == (6, 16) and out["masks"].dtype == torch.bool
    assert int(out["n_masked_patches"]) == int(out["masks"].sum()) <= out["upperbound"]
    assert out["masks_weight"].shape == out["mask_indices_list"].shape
    assert (out["batch_size"], out["n_global_crops"], out["n_local_crops"]) == (3, 2, 2)


def test_dataloader_round_trip() -> None:
    aug = _aug(n_local=1)
    images = [_image(64, seed=s) for s in range(4)]
    dataset = [aug(i, _gen(k)) for k, i in enumerate(images)]
    loader = DataLoader(
        dataset,
        batch_size=2,
        collate_fn=partial(collate_multicrop, generator=random.Random(1), dtype=torch.bfloat16),
    )
    batch = next(iter(loader))
    assert batch["global_crops"].dtype == torch.bfloat16
    assert batch["masks"].shape == (4, 16)


def test_pretraining_reads_images_as_the_served_encoder_does():
    from PIL import Image

    from cxrflow.models.preprocessing import read_image

    sixteen = Image.fromarray(np.arange(0, 60000, 1000, dtype=np.uint16).reshape(6, 10))
    assert torch.equal(to_gray_float(sixteen)[0], torch.from_numpy(read_image(sixteen)))
    over = Image.fromarray(np.full((4, 4), 70000, dtype=np.int32), mode="I")
    with pytest.raises(ValueError, match="exceed 16 bits"):
        to_gray_float(over)
