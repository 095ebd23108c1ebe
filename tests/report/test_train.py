"""Fine-tuning with the Trainer: schedule, gradient checkpointing, resume, DeepSpeed on CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cxrflow.report.baselines import most_frequent_report
from cxrflow.report.config import ReportConfig
from cxrflow.report.data import ReportDataset
from cxrflow.report.generate import generate_reports, load_pixels
from cxrflow.report.metrics import compute_metrics
from cxrflow.report.model import build_report_model
from cxrflow.report.small_lm import small_lm_for_reports
from cxrflow.report.train import deepspeed_config, train_report_model
from tests.report.helpers import REPORTS, random_images, tiny_model

ROOT = Path(__file__).resolve().parents[2]


def _config(**changes) -> ReportConfig:
    base = {
        "max_steps": 4,
        "learning_rate": 2e-3,
        "warmup_ratio": 0.25,
        "global_batch_size": 4,
        "per_device_batch_size": 2,  # accumulation 2: the global batch from micro-batches
        "save_steps": 2,
        "gradient_checkpointing": True,
    }
    return ReportConfig.named("tiny", **{**base, **changes})


def test_config_presets_and_validation():
    paper = ReportConfig.named("paper")
    assert (paper.epochs, paper.learning_rate, paper.warmup_ratio) == (3.0, 2e-5, 0.03)
    assert paper.global_batch_size == 128 and paper.accumulation_steps(world_size=4) == 1
    assert paper.max_new_tokens == 150 and paper.gradient_checkpointing
    with pytest.raises(ValueError, match="multiple"):
        ReportConfig(global_batch_size=128, per_device_batch_size=48)
    with pytest.raises(ValueError, match="preset"):
        ReportConfig.named("huge")
    assert deepspeed_config("zero2").is_file() and deepspeed_config("zero3").is_file()
    assert json.loads(deepspeed_config("zero3").read_text())["zero_optimization"]["stage"] == 3


def test_training_warms_up_checkpoints_and_resumes(encoder_dir, tmp_path):
    paths = random_images(tmp_path / "images", 4)
    model, tokenizer = tiny_model(encoder_dir)
    tower = model.model.vision_tower.embeddings.patch_embeddings.projection.weight.clone()
    dataset = ReportDataset(
        paths, REPORTS[:4], tokenizer, model.image_preprocessing, model.image_seq_length, 512
    )
    first = train_report_model(model, tokenizer, dataset, _config(), tmp_path / "run")
    assert first.global_step == 4 and first.resumed_from is None
    assert [s for s, _ in first.losses] == [1, 2, 3, 4]
    assert first.losses[-1][1] < first.losses[0][1]
    lrs = [lr for _, lr in first.learning_rates]
    assert lrs[0] < lrs[1] and lrs[1] > lrs[2] > lrs[3]  # 1 warm-up step, then cosine
    assert model._require_grads_hooks  # enable_input_require_grads came with checkpointing
    assert torch.equal(
        tower, model.model.vision_tower.embeddings.patch_embeddings.projection.weight
    )
    assert (first.model_dir / "config.json").is_file()
    assert (first.model_dir / "preprocessor_config.json").is_file()

    model2, tokenizer2 = tiny_model(encoder_dir)
    dataset2 = ReportDataset(
        paths, REPORTS[:4], tokenizer2, model2.image_preprocessing, model2.image_seq_length, 512
    )
    again = train_report_model(model2, tokenizer2, dataset2, _config(max_steps=6), tmp_path / "run")
    assert again.resumed_from is not None and again.resumed_from.endswith("checkpoint-4")
    assert again.global_step == 6 and [s for s, _ in again.losses] == [5, 6]


def test_deepspeed_zero2_and_zero3_on_cpu_train_and_save(tmp_path):
    # A fresh process: DeepSpeed initialises its accelerator and a gloo process group once.
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.report.deepspeed_worker", str(tmp_path), "zero2", "zero3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and len(lines) == 2, proc.stderr[-3000:]
    for line, stage in zip(lines, ("zero2", "zero3"), strict=True):
        result = json.loads(line.removeprefix("RESULT "))
        losses = [loss for _, loss in result["losses"]]
        assert result["stage"] == stage and len(losses) == 3 and result["saved"]
        assert losses[-1] < losses[0], (stage, losses)


@pytest.fixture
def one_thread():
    """Tiny ops on one thread: on shared CPUs, a second thread is often descheduled and every
    parallel op waits for it (20x slower steps measured, see bench/report.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grey_images(out_dir: Path, kinds: list[int], seed: int) -> list[Path]:
    """Noisy grey 16-bit images; kind 1 has a bright lower-left, kind 2 a bright upper-right."""
    import numpy as np
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, kind in enumerate(kinds):
        pixels = rng.integers(10_000, 20_000, (64, 64), dtype=np.uint16)
        if kind == 1:
            pixels[32:, :32] = 60_000
        elif kind == 2:
            pixels[:32, 32:] = 60_000
        paths.append(out_dir / f"{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_fine_tuning_reads_the_findings_the_image_shows(encoder_dir, tmp_path, one_thread):
    # The phantom's lesions are too faint for a random encoder (see the stage's report), so
    # here the image alone decides the report: the most frequent (normal) report scores a
    # finding F1 of 0, and a model that reads the image beats it on both metrics.
    reports = [
        "No acute cardiopulmonary process.",
        "Moderate left pleural effusion. No pneumothorax.",
        "Moderate right pneumothorax with a visible pleural line.",
    ]
    train_kinds, test_kinds = [0] * 12 + [1] * 6 + [2] * 6, [0, 1, 2] * 4
    train_reports = [reports[k] for k in train_kinds]
    references = [reports[k] for k in test_kinds]
    config = ReportConfig.named("tiny", max_steps=60, save_steps=1000, n_bootstrap=50)
    torch.manual_seed(0)
    lm, tokenizer = small_lm_for_reports(train_reports, config)
    model = build_report_model(encoder_dir, lm, tokenizer)
    dataset = ReportDataset(
        _grey_images(tmp_path / "train", train_kinds, seed=0),
        train_reports,
        tokenizer,
        model.image_preprocessing,
        model.image_seq_length,
        config.max_length,
        cache_images=True,
    )
    train_report_model(model, tokenizer, dataset, config, tmp_path / "run", save_final=False)
    pixels = load_pixels(model, _grey_images(tmp_path / "test", test_kinds, seed=1))
    generated = generate_reports(model, tokenizer, pixel_values=pixels, max_new_tokens=30)
    frequent = most_frequent_report(train_reports)
    llava = compute_metrics(generated, references, n_bootstrap=50)
    baseline = compute_metrics([frequent] * len(references), references, n_bootstrap=50)
    assert frequent == reports[0] and baseline.finding_f1.value == 0.0
    assert llava.finding_f1.value > 90 and llava.rouge_l.value > baseline.rouge_l.value + 30
