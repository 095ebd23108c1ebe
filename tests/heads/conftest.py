"""A phantom dataset with splits and a random-init tiny encoder, built once per module."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest
from cxrflow.models import DinoViT, ViTConfig, save_hf_dinov2
from cxrflow.split import hash_splits
from tests.phantom_data import ingested_phantom

# Shared, loaded CPUs: with 2 threads a tiny backward pass took 20 ms (spinning), 0.2 ms
# with 1; measured, so the tests run single-threaded.
torch.set_num_threads(1)

IMAGE_SIZE = 112  # 8x8 patches of 14 px
SPLIT_SEED = "a"  # chosen so that every split has masks and some findings
RATIOS = (0.6, 0.2, 0.2)


def build_dataset(root: Path) -> Path:
    """Phantom (15 subjects) -> ingest (128 px) -> manifest with a subject-level split."""
    data = ingested_phantom(root, 15)
    df = read_manifest(data / MANIFEST_FILE)
    splits = hash_splits(df["subject_id"], SPLIT_SEED, RATIOS)
    df["split"] = df["subject_id"].map(splits).astype(str)
    write_manifest(df, data / MANIFEST_FILE)
    return data


def save_encoder(path: Path, seed: int = 0, image_size: int = IMAGE_SIZE) -> Path:
    """A fresh random vit_tiny/14 in HF format (mean 0.5, std 0.25)."""
    torch.manual_seed(seed)
    model = DinoViT(ViTConfig.named("vit_tiny", img_size=image_size))
    return save_hf_dinov2(model, path, image_mean=0.5, image_std=0.25, image_size=image_size)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("heads-data"))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_encoder(tmp_path_factory.mktemp("heads-encoder") / "encoder")


@pytest.fixture(scope="module")
def manifest(dataset_dir: Path) -> pd.DataFrame:
    return read_manifest(dataset_dir / MANIFEST_FILE)
