"""The heads' augmentations (E.3.1, E.3.2) on phantom images and masks.

Classification: the encoder's input shape, dtype and range; seeded draws repeat and unseeded
ones vary; the encoder's intensity normalisation is applied exactly once, after the
augmentation. Segmentation: image and masks take one geometric transform, masks stay binary,
and a left/right target is never mirrored.
"""

import itertools

import pytest
import torch

from cxrflow.findings import MASK_STRUCTURES
from cxrflow.heads.augment import (
    LATERAL_STRUCTURES,
    classification_augment,
    segmentation_augment,
)
from cxrflow.heads.data import ImageDataset, normalise, split_frame
from cxrflow.models import EncoderPreprocessing

from .conftest import IMAGE_SIZE

PREP = EncoderPreprocessing(mean=0.5, std=0.25, image_size=IMAGE_SIZE)
LUNGS = ("left_lung", "right_lung")
LEFT_ZONES = ("zone_left_upper", "zone_left_middle", "zone_left_lower")
DRAWS = 24  # seeded draws per property; 24 segmentation draws take ~0.3 s


def identity(x, m):
    return x, m


@pytest.fixture(scope="module")
def masked_train(dataset_dir, manifest):
    train = split_frame(manifest, "train")
    return train[train["mask_path"].notna()].reset_index(drop=True)


@pytest.fixture(scope="module")
def images(dataset_dir, masked_train):
    """Fitted [0, 1] phantom images (1, S, S) and their lung + left-zone masks (5, S, S)."""
    ds = ImageDataset(dataset_dir, masked_train, PREP, structures=LUNGS + LEFT_ZONES)
    return [(ds.image(i), ds.masks(i)) for i in range(4)]


def centre_col(mask: torch.Tensor) -> float:
    """Column of a (S, S) mask's centre of mass."""
    cols = torch.arange(mask.shape[-1], dtype=torch.float32)
    weight = mask.float().sum(0)
    return float((weight * cols).sum() / weight.sum())


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


# ------------------------------------------------------------------ classification


def test_classification_augment_gives_what_the_encoder_expects(images):
    aug = classification_augment(IMAGE_SIZE)
    for seed, (x, _) in enumerate(images):
        before = x.clone()
        torch.manual_seed(seed)
        y, m = aug(x, None)
        assert m is None
        assert y.shape == (1, IMAGE_SIZE, IMAGE_SIZE) and y.dtype == torch.float32
        assert type(y) is torch.Tensor  # not a tv_tensors subclass leaking into collation
        assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
        assert torch.isfinite(y).all()
        assert torch.equal(x, before)  # the input is not modified in place


def test_classification_augment_repeats_under_a_seed_and_varies_between_draws(images):
    aug = classification_augment(IMAGE_SIZE)
    x = images[0][0]
    torch.manual_seed(7)
    first = [aug(x, None)[0] for _ in range(3)]
    torch.manual_seed(7)
    again = [aug(x, None)[0] for _ in range(3)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    # consecutive draws differ from each other and from the input (measured: mean |diff|
    # ~0.2 on [0, 1] pixels)
    for a, b in itertools.pairwise(first):
        assert (a - b).abs().mean() > 0.02
    assert all((a - x).abs().mean() > 0.02 for a in first)


def test_normalisation_is_applied_once_after_augmentation(dataset_dir, masked_train, images):
    plain = ImageDataset(dataset_dir, masked_train, PREP)
    same = ImageDataset(dataset_dir, masked_train, PREP, augment=identity)
    aug = classification_augment(IMAGE_SIZE)
    augmented = ImageDataset(dataset_dir, masked_train, PREP, augment=aug)
    lo, hi = (0 - PREP.mean) / PREP.std, (1 - PREP.mean) / PREP.std
    for i in range(len(images)):
        x = plain.image(i)
        expected = ((x - PREP.mean) / PREP.std).expand(3, -1, -1)
        # un-augmented: the cached path and the augmented path with an identity augmentation
        # hand the encoder the same pixels, normalised once with the encoder's statistics
        assert torch.equal(plain[i]["pixels"], expected)
        assert torch.equal(same[i]["pixels"], expected)
        # augmented: exactly the augmentation's [0, 1] output, normalised once
        torch.manual_seed(i)
        got = augmented[i]["pixels"]
        torch.manual_seed(i)
        assert torch.equal(got, normalise(aug(x, None)[0], PREP))
        assert got.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and got.dtype == torch.float32
        assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])
        assert lo <= float(got.min()) and float(got.max()) <= hi
        # the same distribution as un-augmented pixels (a second normalisation would put
        # the mean near (mean_1 - 0.5) / 0.25, i.e. ~ -4 here)
        assert abs(float(got.mean()) - float(expected.mean())) < 0.5


# ------------------------------------------------------------------ segmentation


def test_image_and_masks_take_the_same_geometric_transform(images):
    """A binary image drawn from the lung masks stays on its masks after augmentation."""
    aug = segmentation_augment(LUNGS)
    moved = 0
    for seed in range(DRAWS):
        _, masks = images[seed % len(images)]
        lungs = masks[:2]
        picture = (lungs[0] | lungs[1]).float()[None]
        torch.manual_seed(seed)
        y, m = aug(picture, lungs)
        # intensity jitter and gamma are monotone: foreground stays above the mid-level
        fg = y[0] > (float(y.min()) + float(y.max())) / 2
        union = m[0] | m[1]
        # measured: IoU >= 0.99 (bilinear image vs nearest mask differ by a pixel at edges)
        assert iou(fg, union) > 0.97, seed
        moved += iou(union, lungs[0] | lungs[1]) < 0.9
    assert moved >= DRAWS // 2  # the transforms do move things (measured: most draws)


def test_masks_stay_binary_and_nested(dataset_dir, masked_train, images):
    structures = LUNGS + LEFT_ZONES
    aug = segmentation_augment(structures)
    for seed in range(DRAWS):
        x, masks = images[seed % len(images)]
        # the phantom's left zones lie inside the left lung
        zones = masks[2:].any(0)
        assert not (zones & ~masks[0]).any()
        torch.manual_seed(seed)
        y, m = aug(x, masks)
        assert m.dtype == torch.bool and m.shape == masks.shape
        assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
        # nearest-neighbour: one sampling for all channels keeps the zones inside the lung
        assert not (m[2:].any(0) & ~m[0]).any(), seed
        # and keeps each structure's area close (bilinear + threshold would grow it)
        assert m.sum((1, 2)).float().div(masks.sum((1, 2)).float()).sub(1).abs().max() < 0.35
    ds = ImageDataset(dataset_dir, masked_train, PREP, structures=structures, augment=aug)
    torch.manual_seed(0)
    item = ds[0]
    assert item["masks"].dtype == torch.float32
    assert set(item["masks"].unique().tolist()) <= {0.0, 1.0}
    assert item["pixels"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.parametrize(
    "structures",
    [LUNGS, ("left_lung",), ("left_lung", "ribs"), ("zone_right_lower", "pneumothorax")],
)
def test_no_horizontal_flip_with_left_right_targets(images, structures):
    aug = segmentation_augment(structures)
    half = IMAGE_SIZE / 2
    for seed in range(DRAWS):
        _, masks = images[seed % len(images)]
        left = masks[:1]
        side = centre_col(left[0]) > half
        torch.manual_seed(seed)
        _, m = aug(torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE), left)
        # the left lung stays on its side of the image, far from its mirror image
        assert (centre_col(m[0]) > half) == side, (structures, seed)
        assert abs(centre_col(m[0]) - centre_col(left[0])) < IMAGE_SIZE / 6


def test_flip_is_kept_without_left_right_targets(images):
    """The flip check above can fail: without lateral targets, some draws do mirror."""
    aug = segmentation_augment(("ribs", "pneumothorax", "chest_tube"))
    half = IMAGE_SIZE / 2
    flipped = 0
    for seed in range(DRAWS):
        _, masks = images[seed % len(images)]
        torch.manual_seed(seed)
        _, m = aug(torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE), masks[:1])
        flipped += (centre_col(m[0]) > half) != (centre_col(masks[0]) > half)
    assert 0 < flipped < DRAWS  # p = 0.5 (measured: about half)


def test_every_sided_structure_blocks_the_flip():
    sided = {s for s in MASK_STRUCTURES if "left" in s or "right" in s}
    assert sided <= LATERAL_STRUCTURES
