"""A small image dataset in the manifest format, with a split column, for training tests."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrflow.manifest import MANIFEST_SCHEMA, write_manifest
from cxrflow.ssl.presets import preset


def make_image_dataset(root: Path, n: int = 16, size: int = 64, seed: int = 0) -> Path:
    """`n` blob images (16-bit PNG) in a dataset directory whose manifest has a train split."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows = []
    for i in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)
        img = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2) + 0.1 * rng.random((size, size))
        img = (np.clip(img / img.max(), 0, 1) * 65535).astype(np.uint16)
        rel = f"images/s{i}/{i:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        rows.append(
            {
                "image_id": f"{i:04d}",
                "subject_id": f"s{i}",
                "study_id": f"st{i}",
                "view": "PA",
                "image_path": rel,
                "image_sha256": "",
                "width": size,
                "height": size,
                "source_dataset": "test",
                "ingest_run": "test",
            }
        )
    df = pd.DataFrame(rows)
    for field in MANIFEST_SCHEMA:
        if field.name not in df:
            df[field.name] = None
    df["split"] = "train"
    write_manifest(df, root / "manifest.parquet")
    return root


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory) -> Path:
    return make_image_dataset(tmp_path_factory.mktemp("ssl-data"))


def micro_config(**changes):
    """Every mechanism of the objective at toy size: runs a step in well under a second."""
    base = dict(
        image_size=56,
        global_size=56,
        local_size=28,
        n_local_crops=2,
        prototypes=64,
        head_hidden_dim=32,
        head_bottleneck_dim=16,
        batch_size=8,
        steps=6,
        warmup_steps=1,
        warmup_teacher_temp=0.04,  # DINOv2's warm-up, so that tests see the schedule move
        teacher_temp=0.07,
        warmup_teacher_temp_steps=3,
        freeze_last_layer_steps=2,
        log_every=1,
        checkpoint_every=100,
    )
    return preset("tiny", **{**base, **changes})


def random_batch(cfg, batch_size: int = 4, seed: int = 0) -> dict:
    """A training batch of random crops with real iBOT masks, shaped as the loop feeds it."""
    import random

    import torch

    from cxrflow.ssl.masking import collate_masks

    gen = torch.Generator().manual_seed(seed)
    g, loc = cfg.global_size, cfg.local_size
    global_crops = torch.randn(2 * batch_size, 3, g, g, generator=gen)
    batch = {
        "global_crops": global_crops,
        "global_crops_teacher": global_crops.clone(),
        "local_crops": torch.randn(cfg.n_local_crops * batch_size, 3, loc, loc, generator=gen),
    }
    grid = g // cfg.patch_size
    masks = collate_masks(
        batch_size,
        2,
        (grid, grid),
        mask_ratio_min_max=cfg.mask_ratio,
        mask_probability=cfg.mask_probability,
        generator=random.Random(seed),
    )
    batch.update({k: masks[k] for k in ("masks", "mask_indices_list", "n_masked_patches")})
    batch["masks_weight"] = masks["masks_weight"]
    return batch
