"""The training loop: exact resume, data-parallel equivalence, export, bad configuration."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from transformers import AutoImageProcessor, AutoModel

from cxrflow.ssl import train as train_module
from cxrflow.ssl.checkpoint import load_checkpoint
from cxrflow.ssl.data import PretrainDataError, StepSampler
from cxrflow.ssl.losses import KoLeoLoss
from cxrflow.ssl.meta_arch import SSLMetaArch
from cxrflow.ssl.presets import PAPER
from cxrflow.ssl.train import CHECKPOINT_DIR, pretrain
from tests.ssl.conftest import micro_config, random_batch

PAPER_SCALE = {"layerscale_init": PAPER.layerscale_init, "base_lr": PAPER.base_lr}


def _final(out):
    return load_checkpoint(out / CHECKPOINT_DIR / "latest.pt")


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> float:
    worst = 0.0
    assert a.keys() == b.keys()
    for k in a:
        diff = (a[k].float() - b[k].float()).abs().max().item() if a[k].numel() else 0.0
        worst = max(worst, diff)
        assert diff <= atol, (k, diff)
    return worst


def test_killed_and_resumed_run_ends_at_the_same_weights(image_dataset, tmp_path):
    cfg = micro_config()
    pretrain(cfg, image_dataset, tmp_path / "full", progress=False)
    pretrain(cfg, image_dataset, tmp_path / "killed", stop_after=3, progress=False)
    assert _final(tmp_path / "killed")["step"] == 3
    resumed = pretrain(cfg, image_dataset, tmp_path / "killed", progress=False)
    assert resumed.start_step == 3
    full, again = _final(tmp_path / "full"), _final(tmp_path / "killed")
    _assert_same_weights(full["student"], again["student"])
    _assert_same_weights(full["teacher"], again["teacher"])
    assert torch.equal(full["dino_loss"]["center"], again["dino_loss"]["center"])


def test_losses_are_logged_separately_and_schedules_move(image_dataset, tmp_path):
    seen = {}
    pretrain(micro_config(), image_dataset, tmp_path, on_metrics=seen.__setitem__, progress=False)
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]
    for key in (
        "dino_loss",
        "ibot_loss",
        "koleo_loss",
        "lr",
        "weight_decay",
        "momentum",
        "teacher_temp",
    ):
        assert all(key in m for m in seen.values()), key
    assert seen[1]["last_layer_lr"] == 0.0 and seen[3]["last_layer_lr"] > 0.0  # frozen 2 steps
    for m in seen.values():  # cross-entropy = teacher entropy + KL, and KL >= 0 (Gibbs)
        assert m["dino_kl"] >= -1e-4
        assert m["dino_loss"] == pytest.approx(m["dino_teacher_entropy"] + m["dino_kl"])
    assert seen[1]["momentum"] < seen[6]["momentum"]
    assert seen[1]["teacher_temp"] < seen[4]["teacher_temp"] == pytest.approx(0.07)


def test_export_loads_with_transformers_alone(image_dataset, tmp_path):
    result = pretrain(micro_config(steps=2), image_dataset, tmp_path, progress=False)
    assert result.device == "cpu"  # what the model card's compute section states
    model = AutoModel.from_pretrained(result.encoder_dir).eval()
    processor = AutoImageProcessor.from_pretrained(result.encoder_dir)
    assert processor.image_mean[0] == pytest.approx(result.image_mean)
    assert (result.encoder_dir / "dino_head.safetensors").is_file()
    with torch.no_grad():
        out = model(pixel_values=torch.rand(1, 3, 56, 56)).last_hidden_state
    assert out.shape == (1, 1 + 16, 192)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, data, out, cfg) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    try:
        pretrain(cfg, data, out, progress=False)
    finally:
        torch.distributed.destroy_process_group()


def _single_and_ddp(cfg, data, root):
    pretrain(cfg, data, root / "single", progress=False)
    mp.spawn(_ddp_worker, args=(_free_port(), data, root / "ddp", cfg), nprocs=2)
    return _final(root / "single"), _final(root / "ddp")


def test_two_process_gloo_run_equals_one_process_with_the_same_global_batch(
    image_dataset, tmp_path
):
    # Without KoLeo the runs agree to float precision over several real updates. Adam turns
    # float noise in near-zero gradients into differences up to its step size, so the bound
    # is for DINOv2's (the paper preset's) LayerScale and learning rate, not tiny's larger ones.
    cfg = micro_config(**PAPER_SCALE, steps=3, warmup_steps=0, koleo_weight=0.0)
    single, ddp = _single_and_ddp(cfg, image_dataset, tmp_path / "no-koleo")
    _assert_same_weights(single["student"], ddp["student"], atol=1e-6)
    _assert_same_weights(single["teacher"], ddp["teacher"], atol=1e-6)
    assert torch.allclose(single["dino_loss"]["center"], ddp["dino_loss"]["center"], atol=1e-6)


def _koleo_worker(rank: int, port: int, out) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = SSLMetaArch(micro_config()).train()
        batch = random_batch(model.cfg, batch_size=4, seed=rank)  # this rank's shard
        with torch.no_grad():
            cls = model.student["backbone"].forward_features(
                batch["global_crops"], masks=batch["masks"]
            )["x_norm_clstoken"]
        alone = sum(float(KoLeoLoss()(c)) for c in cls.chunk(2))
        losses = model.forward_backward(batch, 0.04)
        model.dino_loss.apply_center_update()
        model.ibot_loss.apply_center_update()
        torch.save({"alone": alone, "koleo": losses["koleo_loss"]}, out / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_koleo_is_computed_on_each_ranks_shard(tmp_path):
    # As upstream: KoLeo on each GPU's own student CLS tokens (per global crop), no gather.
    mp.spawn(_koleo_worker, args=(_free_port(), tmp_path), nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["koleo"] == pytest.approx(got["alone"], rel=1e-6), (rank, got)


def test_last_layer_is_frozen_by_a_zero_learning_rate(image_dataset, tmp_path, monkeypatch):
    # As upstream: the prototype layer keeps its gradients (so AdamW builds its moments and
    # clipping counts it) while its learning rate is 0 for the first steps.
    seen: dict = {}
    build_optimizer = train_module.build_optimizer

    def recording_build(groups, device):
        seen["last"] = [p for g in groups if g["is_last_layer"] for p in g["params"]]
        seen["initial"] = [p.detach().clone() for p in seen["last"]]
        seen["optimizer"] = build_optimizer(groups, device)
        return seen["optimizer"]

    clipped: list[tuple[bool, float, float]] = []
    clip_grad_norm = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        params = list(parameters)
        last = {id(p) for p in seen["last"]}
        if not last & {id(p) for p in params}:
            return clip_grad_norm(params, max_norm, *args, **kwargs)
        has_grads = all(p.grad is not None and bool(p.grad.any()) for p in seen["last"])
        others = [p.grad.norm() for p in params if id(p) not in last and p.grad is not None]
        without_last = float(torch.stack(others).norm())
        norm = float(clip_grad_norm(params, max_norm, *args, **kwargs))
        clipped.append((has_grads, norm, without_last))
        return norm

    monkeypatch.setattr(train_module, "build_optimizer", recording_build)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    steps: dict[int, tuple[bool, bool]] = {}

    def on_metrics(step, metrics):
        state = seen["optimizer"].state
        unchanged = all(
            torch.equal(p, q) for p, q in zip(seen["last"], seen["initial"], strict=True)
        )
        moments = all(p in state and bool(state[p]["exp_avg"].any()) for p in seen["last"])
        steps[step] = (unchanged, moments)

    cfg = micro_config(steps=3, freeze_last_layer_steps=2)
    pretrain(cfg, image_dataset, tmp_path, on_metrics=on_metrics, progress=False)
    assert steps == {1: (True, True), 2: (True, True), 3: (False, True)}
    assert len(clipped) == 3
    for has_grads, norm, without_last in clipped:
        assert has_grads and norm > without_last


def test_sampler_is_a_function_of_the_step():
    a = StepSampler(20, 4, seed=1, start_step=0, steps=10)
    b = StepSampler(20, 4, seed=1, start_step=7, steps=10)
    assert list(a)[7:] == list(b)
    halves = [
        list(StepSampler(20, 4, seed=1, start_step=0, steps=10, rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert [x + y for x, y in zip(*halves, strict=True)] == list(a)


def test_bad_configuration_is_refused_by_name(image_dataset, tmp_path):
    with pytest.raises(ValueError, match="global_size"):
        micro_config(global_size=50)
    with pytest.raises(ValueError, match="model"):
        micro_config(model="vit_colossal")
    with pytest.raises(PretrainDataError, match="fewer than one global batch"):
        pretrain(micro_config(batch_size=64), image_dataset, tmp_path, progress=False)
