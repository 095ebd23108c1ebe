"""The probe's augmented mode: the frozen encoder on augmented images every step (E.3.1).

Its batches are the cached features when the augmentation is the identity (same pixels, same
encoder, same labels); it trains end to end through `train_heads`, its loss decreases, it
reports what cached mode reports, repeats under a seed, and refuses a mode it cannot run.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from cxrflow.heads import train_heads
from cxrflow.heads.augment import classification_augment
from cxrflow.heads.classification import (
    image_batches,
    label_matrix,
    run_classification,
    usable_findings,
)
from cxrflow.heads.config import (
    ClassificationConfig,
    DemographicsConfig,
    HeadsConfig,
    HeadsConfigError,
    SegmentationConfig,
)
from cxrflow.heads.data import ImageDataset, split_frame
from cxrflow.heads.features import extract_features, select
from cxrflow.heads.metrics import BinaryScore
from cxrflow.models import DinoViT, ViTConfig, load_encoder

from .conftest import IMAGE_SIZE

KIND = "cls+mean_patch"
# 27 train images, batch 96: one step an epoch, 12 epochs. Measured (random vit_tiny): at lr
# 3e-3 the train BCE goes 0.80 -> 0.33 in both modes; at TINY_PROBE_LR (1e-2, tuned for 100
# steps) it overshoots to 0.35 at step 2 and settles at ~0.42 in both modes.
EPOCHS = 12
LR = 3e-3


def identity(x, m):
    return x, m


def only_classification(mode: str) -> HeadsConfig:
    return HeadsConfig(
        classification=ClassificationConfig(
            mode=mode, features=KIND, lr=LR, epochs=EPOCHS, repeats=1
        ),
        segmentation=SegmentationConfig(enabled=False),
        demographics=DemographicsConfig(enabled=False),
        register=False,
    )


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    return load_encoder(encoder_dir)


@pytest.fixture(scope="module")
def frames(manifest):
    return {s: split_frame(manifest, s) for s in ("train", "val", "test")}


@pytest.fixture(scope="module")
def cached(dataset_dir, encoder, frames):
    enc, prep = encoder
    return {s: extract_features(enc, ImageDataset(dataset_dir, f, prep)) for s, f in frames.items()}


@pytest.fixture(scope="module")
def runs(dataset_dir, encoder_dir, tmp_path_factory):
    """The stage's library call in both modes (one probe each, same seed)."""
    out = {}
    for mode in ("cached", "augmented"):
        root = tmp_path_factory.mktemp(f"heads-{mode}")
        out[mode] = train_heads(
            dataset_dir, encoder_dir, config=only_classification(mode), out_dir=root
        )
    return out


def collect(batches, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches(torch.Generator().manual_seed(seed)), strict=True)
    return torch.cat(xs), torch.cat(ys)


def with_row(y: torch.Tensor) -> torch.Tensor:
    """Labels plus a last column holding each row's index, to undo the shuffle."""
    return torch.cat([y, torch.arange(len(y), dtype=torch.float32)[:, None]], dim=1)


def unshuffled(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batches put back in dataset order by the row column of `with_row`."""
    rows = y[:, -1].long()
    assert sorted(rows.tolist()) == list(range(len(rows)))  # every image exactly once
    order = rows.argsort()
    return x[order], y[order, :-1]


def test_identity_augmented_batches_are_the_cached_features(dataset_dir, encoder, frames, cached):
    """Same pixels in both modes: every row's features and labels are the cached ones."""
    enc, prep = encoder
    train = frames["train"]
    y = torch.tensor(label_matrix(train, ["lung_opacity", "cardiomegaly"]), dtype=torch.float32)
    ds = ImageDataset(dataset_dir, train, prep, augment=identity)
    x_aug, y_aug = unshuffled(*collect(image_batches(enc, ds, with_row(y), KIND, 8, "cpu")))
    # the features an image gets in augmented mode (row from the label index) are those the
    # cached mode computed for it: labels and images stay paired through the shuffle
    torch.testing.assert_close(x_aug, select(cached["train"], KIND), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_aug, y, equal_nan=True)


def test_augmented_batches_use_the_encoder_in_eval_mode(dataset_dir, encoder, frames):
    """A frozen encoder is deterministic even when handed over in train mode (drop path)."""
    _, prep = encoder
    torch.manual_seed(0)
    # layerscale 1: the residual branches (and so drop path) change the features visibly
    enc = DinoViT(
        ViTConfig.named("vit_tiny", img_size=IMAGE_SIZE, drop_path_rate=0.5, layerscale_init=1.0)
    ).train()
    train = frames["train"].iloc[:6]
    y = with_row(torch.zeros(len(train), 0))
    ds = ImageDataset(dataset_dir, train, prep, augment=identity)
    first, _ = unshuffled(*collect(image_batches(enc, ds, y, KIND, 4, "cpu"), seed=0))
    second, _ = unshuffled(*collect(image_batches(enc, ds, y, KIND, 4, "cpu"), seed=1))
    torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-5)
    reference = select(extract_features(enc, ImageDataset(dataset_dir, train, prep)), KIND)
    torch.testing.assert_close(first, reference, atol=1e-5, rtol=1e-5)


def test_augmented_batches_differ_from_cached_features(dataset_dir, encoder, frames, cached):
    enc, prep = encoder
    train = frames["train"]
    y = torch.zeros(len(train), 1)
    ds = ImageDataset(dataset_dir, train, prep, augment=classification_augment(IMAGE_SIZE))
    torch.manual_seed(0)
    x_aug, _ = collect(image_batches(enc, ds, y, KIND, 96, "cpu"))
    x_cached = select(cached["train"], KIND)
    assert x_aug.shape == x_cached.shape and torch.isfinite(x_aug).all()
    assert torch.cdist(x_aug, x_cached).min(dim=1).values.min() > 1e-3  # no row unchanged


def test_augmented_mode_trains_end_to_end_and_its_loss_decreases(runs):
    res = runs["augmented"].classification
    assert res is not None and len(res.histories) == 1
    run = res.histories[0]
    print("augmented train BCE", [round(v, 3) for v in run.train_loss])
    assert len(run.train_loss) == EPOCHS and all(np.isfinite(run.train_loss))
    assert run.train_loss[-1] < 0.6 * run.train_loss[0]
    assert max(run.train_loss[EPOCHS // 2 :]) < min(run.train_loss[:2])
    assert len(run.val_loss) == EPOCHS and all(np.isfinite(run.val_loss))
    # it trained on augmented images, not silently on the cached features
    cached_run = runs["cached"].classification.histories[0]
    assert not np.allclose(run.train_loss, cached_run.train_loss)
    assert "classification" in runs["augmented"].exported


def test_augmented_mode_reports_what_cached_mode_reports(runs):
    aug, cached = runs["augmented"].classification, runs["cached"].classification
    assert aug.findings == cached.findings and aug.feature_kind == cached.feature_kind == KIND
    assert aug.test_scores.shape == cached.test_scores.shape
    assert aug.test_labels.shape == cached.test_labels.shape
    assert [c["class"] for c in aug.curves] == [c["class"] for c in cached.curves]
    summary, reference = aug.summary(), cached.summary()
    assert set(summary) == set(reference) == {*aug.findings, "macro"}
    for name, metrics in summary.items():
        assert set(metrics) == set(reference[name]) == {"auprc", "auroc"}
        for value in metrics.values():
            assert len(value) == 2 and all(isinstance(v, float) for v in value)
    for name in ("auprc", "auroc"):
        macro = summary["macro"][name][0]
        assert 0.0 <= macro <= 1.0, (name, macro)
    assert set(aug.per_repeat[0]) == set(aug.findings)
    assert all(isinstance(s, BinaryScore) for s in aug.per_repeat[0].values())
    assert set(runs["augmented"].metrics()) == set(runs["cached"].metrics())
    assert "cls.auprc.macro" in runs["augmented"].metrics()


def test_augmented_mode_repeats_under_a_seed(dataset_dir, encoder, frames, cached):
    enc, prep = encoder
    cfg = ClassificationConfig(mode="augmented", features=KIND, lr=LR, epochs=2, repeats=1)
    aug = classification_augment(IMAGE_SIZE)

    def augmented(train, y):
        ds = ImageDataset(dataset_dir, train, prep, augment=aug)
        return image_batches(enc, ds, y, KIND, 16, "cpu"), math.ceil(len(ds) / 16)

    def once(seed):
        return run_classification(cached, frames, cfg, seed=seed, augmented=augmented)

    a, b, c = once(0), once(0), once(1)
    assert a.histories[0].train_loss == b.histories[0].train_loss
    np.testing.assert_array_equal(a.test_scores, b.test_scores)
    assert a.histories[0].train_loss != c.histories[0].train_loss


@pytest.mark.parametrize("mode", ["augment", "Augmented", "", None])
def test_unknown_mode_is_refused_naming_the_parameter(mode):
    with pytest.raises(
        HeadsConfigError, match=r"classification\.mode must be one of cached, augmented"
    ):
        ClassificationConfig(mode=mode)
    with pytest.raises(HeadsConfigError, match=r"classification\.mode"):
        dataclasses.replace(ClassificationConfig(), mode=mode)


def test_mode_and_batches_must_agree(frames, cached):
    """`run_classification` does not fall back to cached training when told `augmented`."""
    findings = usable_findings(frames["train"], ClassificationConfig())
    assert findings
    cfg = ClassificationConfig(mode="augmented", epochs=1, repeats=1)
    with pytest.raises(HeadsConfigError, match=r"classification\.mode='augmented'"):
        run_classification(cached, frames, cfg)
    with pytest.raises(HeadsConfigError, match=r"classification\.mode='cached'"):
        run_classification(
            cached,
            frames,
            dataclasses.replace(cfg, mode="cached"),
            augmented=lambda train, y: (None, 1),
        )
