"""Tiny fixtures' builders: a phantom dataset with splits, a tiny encoder, a tiny LLaVA."""

from __future__ import annotations

from pathlib import Path

import torch

from cxrflow.keys import SecretKey
from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest
from cxrflow.models import DinoViT, ViTConfig, save_hf_dinov2
from cxrflow.report.model import CxrLlavaForConditionalGeneration, build_report_model
from cxrflow.report.tokenizer import small_llama_for, train_bpe_tokenizer
from cxrflow.split.assignment import assign_splits
from cxrflow.split.config import SplitConfig
from tests.phantom_data import ingested_phantom

KEY = SecretKey(b"report-test-key-0123456789-0123456789-012345")


def make_encoder(out_dir: Path, img_size: int = 56, seed: int = 0) -> tuple[Path, DinoViT]:
    """A random vit_tiny encoder saved as a transformers Dinov2Model directory."""
    torch.manual_seed(seed)
    vit = DinoViT(ViTConfig.named("vit_tiny", img_size=img_size)).eval()
    save_hf_dinov2(vit, out_dir, image_mean=0.45, image_std=0.25, image_size=img_size)
    return out_dir, vit


def make_phantom_dataset(root: Path, subjects: int, seed: int = 3, max_side: int = 64) -> Path:
    """Phantom -> ingest -> hash split; returns the data directory."""
    data = ingested_phantom(
        root,
        subjects,
        seed=seed,
        min_side=96,
        max_side=128,
        ingest_side=max_side,
        include_faulty=False,
        key=KEY,
    )
    manifest = read_manifest(data / MANIFEST_FILE)
    assigned, _ = assign_splits(manifest, SplitConfig(ratios=(0.7, 0.1, 0.2), seed="report"))
    write_manifest(assigned, data / MANIFEST_FILE)
    return data


REPORTS = [
    "FINDINGS: No acute cardiopulmonary process.",
    "FINDINGS: Small left pleural effusion. No pneumothorax.",
    "FINDINGS: Mild cardiomegaly. The lungs are clear.",
    "FINDINGS: Right chest tube in place with its tip at the apex.",
    "FINDINGS: Moderate right pneumothorax with a visible pleural line.",
] * 4


def tiny_model(
    encoder_dir: Path, reports: list[str] = REPORTS, seed: int = 0
) -> tuple[CxrLlavaForConditionalGeneration, object]:
    """A 2-layer tiny Llama LLaVA on `encoder_dir`, with a BPE tokenizer learnt on `reports`."""
    torch.manual_seed(seed)
    tokenizer = train_bpe_tokenizer(reports, vocab_size=300)
    lm = small_llama_for(tokenizer, hidden_size=64, layers=2, heads=4)
    return build_report_model(encoder_dir, lm, tokenizer), tokenizer


def random_images(out_dir: Path, n: int, side: int = 64, seed: int = 0) -> list[Path]:
    """`n` random 16-bit grey PNGs."""
    import numpy as np
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = out_dir / f"img{i}.png"
        Image.fromarray(rng.integers(0, 65535, (side, side), dtype=np.uint16)).save(path)
        paths.append(path)
    return paths
