"""RAD-DINO's continual-vs-random ablation (Table B.1) in miniature, on the phantom.

The starting encoder is the suite's shared pre-training run (tests/ssl/phantom_pretraining.py:
800 `tiny` steps on 60 phantom subjects, seed 3). Both arms then train for the same budget on
*other* phantom data (40 new subjects, seed 11): one continues from that encoder through the
stage's init path (`cxrflow.ssl.initialisation`), the other starts from random weights; the
linear probe (5 subject-grouped folds, macro AUPRC) scores each arm's exported teacher on the
new data.
"""

from pathlib import Path

import pytest
import torch

from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest
from cxrflow.models.hf import load_hf_dinov2
from cxrflow.ssl.initialisation import (
    EncoderInit,
    continual_config,
    initial_backbone,
    resolve_init,
)
from cxrflow.ssl.probe import probe_auprc
from cxrflow.ssl.train import PretrainResult, pretrain
from tests.phantom_data import ingested_phantom

pytestmark = pytest.mark.slow  # two 150-step runs (~1 min each on one core) + the shared run

STEPS = 150
SEED = 0
REQUIRED_MARGIN = 0.01


def _other_phantom(root: Path) -> Path:
    data = ingested_phantom(root, 40, seed=11, include_faulty=False)
    manifest = read_manifest(data / MANIFEST_FILE)
    manifest["split"] = "train"
    write_manifest(manifest, data / MANIFEST_FILE)
    return data


def _train(config, data: Path, out: Path, backbone) -> PretrainResult:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = pretrain(config, data, out, init=backbone, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.encoder_dir is not None
    return result


def test_continual_training_beats_random_init_at_the_same_budget(pretrained_phantom, tmp_path):
    start = pretrained_phantom
    data = _other_phantom(tmp_path / "other")
    config = start.config.with_(steps=STEPS, seed=SEED)

    source = resolve_init(EncoderInit.parse(start.encoder_dir), tmp_path / "cache")
    continual_cfg, source = continual_config(config, source)
    assert source.imported is not None and source.imported.source_format == "hf"
    assert source.departures == {}  # same architecture as the preset: nothing overridden
    continual = _train(
        continual_cfg, data, tmp_path / "continual", initial_backbone(continual_cfg, source)
    )
    random_init = _train(config, data, tmp_path / "random", None)

    def probe(run: PretrainResult) -> float:
        stats = (config.image_size, run.image_mean, run.image_std)
        return probe_auprc(load_hf_dinov2(run.encoder_dir), data, *stats)["macro"]

    scores = {"continual": probe(continual), "random": probe(random_init)}
    margin = scores["continual"] - scores["random"]
    assert margin > REQUIRED_MARGIN, f"probe macro AUPRC {scores} (margin {margin:+.4f})"
