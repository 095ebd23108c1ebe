"""One `tiny` pre-training run on the phantom, shared by the tests that judge what it learnt.

The run takes minutes, so it happens once per `make test`: under pytest-xdist the first
worker to ask runs it while holding a file lock in the session's shared temporary root, and
the others wait for it and read the result.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock

from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest
from cxrflow.models.vit import DinoViT
from cxrflow.ssl.presets import PretrainConfig, preset
from cxrflow.ssl.train import pretrain
from tests.phantom_data import ingested_phantom

# The `tiny` preset at 56 px (16 patches instead of 64) so that 800 steps fit in a test.
CONFIG_CHANGES = dict(
    image_size=56,
    global_size=56,
    local_size=28,
    n_local_crops=2,
    steps=800,
    warmup_steps=20,
)
DONE = "pretrained.json"


@dataclass(frozen=True)
class PretrainedPhantom:
    """The phantom data, the exported teacher and what the run logged."""

    config: PretrainConfig
    data_dir: Path
    encoder_dir: Path
    image_mean: float
    image_std: float
    dino_loss: dict[int, float]

    def random_twin(self) -> DinoViT:
        """The same architecture at its random initialisation (seeded like the run)."""
        torch.manual_seed(self.config.seed)
        return DinoViT(self.config.vit_config())


def phantom_train_set(root: Path) -> Path:
    """60 phantom subjects (210 images at 128 px), all in the train split."""
    data = ingested_phantom(root, 60)
    manifest = read_manifest(data / MANIFEST_FILE)
    manifest["split"] = "train"
    write_manifest(manifest, data / MANIFEST_FILE)
    return data


def _run(root: Path, config: PretrainConfig) -> dict:
    data = phantom_train_set(root)
    losses: dict[int, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as measured; xdist gives each worker one of two cores
    try:
        result = pretrain(
            config,
            data,
            root / "run",
            on_metrics=lambda step, m: losses.__setitem__(step, m["dino_loss"]),
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return {
        "data_dir": str(data),
        "encoder_dir": str(result.encoder_dir),
        "image_mean": result.image_mean,
        "image_std": result.image_std,
        "dino_loss": losses,
    }


def pretrained_phantom(session_root: Path) -> PretrainedPhantom:
    """The shared run under `session_root` (made by the first caller, read by the others)."""
    config = preset("tiny", **CONFIG_CHANGES)
    root = session_root / "pretrained-phantom"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        done = root / DONE
        if not done.is_file():
            record = _run(root, config)
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, done)
        record = json.loads(done.read_text())
    return PretrainedPhantom(
        config=config,
        data_dir=Path(record["data_dir"]),
        encoder_dir=Path(record["encoder_dir"]),
        image_mean=record["image_mean"],
        image_std=record["image_std"],
        dino_loss={int(k): v for k, v in record["dino_loss"].items()},
    )
