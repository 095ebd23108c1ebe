"""Hugging Face interchange: parity, round trip, strict loading, preprocessing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoImageProcessor,
    AutoModel,
    Dinov2Config,
    Dinov2Model,
    PreTrainedModel,
)

from cxrflow.models import (
    CheckpointMismatchError,
    DinoViT,
    EncoderPreprocessing,
    hf_config_from_vit,
    load_encoder,
    load_hf_dinov2,
    read_preprocessing,
    save_hf_dinov2,
    vit_config_from_hf,
    vit_large,
)
from cxrflow.models import hf as hf_module
from cxrflow.models.hf import (
    check_hf_export_compatible,
    hf_layout,
    hf_to_timm_state_dict,
    timm_to_hf_state_dict,
)
from cxrflow.models.hf_keys import Alias, Part, conversion_aliases, role_of
from tests.models.conftest import HF_DIMS, NATIVE, random_hf_model, tiny_cfg

HfDir = Callable[..., tuple[PreTrainedModel, Path]]
ATOL = 1e-5  # measured: 0.0 (bit-identical) on CPU at the native grid


def tokens(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Our features in HF's `last_hidden_state` layout: CLS, registers, patches."""
    return torch.cat(
        [out["x_norm_clstoken"][:, None], out["x_norm_regtokens"], out["x_norm_patchtokens"]], 1
    )


@pytest.mark.parametrize(("registers", "swiglu"), [(0, False), (4, False), (0, True)])
def test_parity_at_native_grid(hf_dir: HfDir, registers: int, swiglu: bool) -> None:
    hf_model, path = hf_dir(registers=registers, swiglu=swiglu)
    ours = load_hf_dinov2(path)
    assert not ours.training
    assert ours.cfg.num_register_tokens == registers
    x = torch.randn(2, 3, NATIVE, NATIVE)
    masks = torch.rand(2, 16) > 0.5
    with torch.no_grad():
        expected = hf_model(x).last_hidden_state
        expected_masked = hf_model(x, bool_masked_pos=masks).last_hidden_state
        got = tokens(ours.forward_features(x))
        got_masked = tokens(ours.forward_features(x, masks=masks))
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(got_masked, expected_masked, atol=ATOL, rtol=0)
    assert (got_masked - got).abs().max() > 1e-3  # the mask token does change the output


def test_registers_parity_off_native_grid(hf_dir: HfDir) -> None:
    # HF's register model interpolates like timm (bicubic, antialias); plain Dinov2Model does
    # not antialias, so it agrees only at the native grid.
    hf_model, path = hf_dir(registers=2)
    ours = load_hf_dinov2(path)
    x = torch.randn(1, 3, 84, 84)
    with torch.no_grad():
        torch.testing.assert_close(
            tokens(ours.forward_features(x)), hf_model(x).last_hidden_state, atol=ATOL, rtol=0
        )


@pytest.mark.parametrize("registers", [0, 2])
def test_round_trip_through_automodel(tmp_path: Path, registers: int) -> None:
    torch.manual_seed(1)
    ours = DinoViT(tiny_cfg(num_register_tokens=registers, layerscale_init=0.5)).eval()
    with torch.no_grad():
        ours.mask_token.normal_()
    out = save_hf_dinov2(ours, tmp_path / "enc", image_mean=0.5307, image_std=0.2583, image_size=56)
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in out.iterdir()
    }
    hf_model = AutoModel.from_pretrained(out, local_files_only=True).eval()
    expected_type = "Dinov2WithRegistersModel" if registers else "Dinov2Model"
    assert type(hf_model).__name__ == expected_type
    x = torch.randn(2, 3, NATIVE, NATIVE)
    masks = torch.rand(2, 16) > 0.5
    with torch.no_grad():
        torch.testing.assert_close(
            hf_model(x).last_hidden_state, tokens(ours.forward_features(x)), atol=ATOL, rtol=0
        )
        torch.testing.assert_close(
            hf_model(x, bool_masked_pos=masks).last_hidden_state,
            tokens(ours.forward_features(x, masks)),
            atol=ATOL,
            rtol=0,
        )
    # and back: the loaded model computes the same features
    again = load_hf_dinov2(out)
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), atol=ATOL, rtol=0)


def test_processor_config(tmp_path: Path) -> None:
    ours = DinoViT(tiny_cfg())
    out = save_hf_dinov2(ours, tmp_path / "enc", image_mean=0.53, image_std=0.26, image_size=56)
    processor = AutoImageProcessor.from_pretrained(out, local_files_only=True)
    assert list(processor.image_mean) == pytest.approx([0.53] * 3)
    assert list(processor.image_std) == pytest.approx([0.26] * 3)
    conf = json.loads((out / "preprocessor_config.json").read_text())
    assert conf["crop_size"] == {"height": 56, "width": 56}
    assert conf["size"] == {"shortest_edge": 56}
    assert conf["rescale_factor"] == pytest.approx(1 / 255)
    white = np.full((80, 64, 3), 255, dtype=np.uint8)
    pixels = processor(white, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 56, 56)
    torch.testing.assert_close(pixels, torch.full_like(pixels, (1 - 0.53) / 0.26))
    assert read_preprocessing(out) == EncoderPreprocessing(mean=0.53, std=0.26, image_size=56)


def test_load_encoder(tmp_path: Path) -> None:
    ours = DinoViT(tiny_cfg())
    out = save_hf_dinov2(ours, tmp_path / "enc", image_mean=0.4, image_std=0.2, image_size=56)
    model, prep = load_encoder(out)
    assert isinstance(model, DinoViT) and model.cfg == ours.cfg
    assert prep == EncoderPreprocessing(mean=0.4, std=0.2, image_size=56)


def test_save_rejects_bad_preprocessing(tmp_path: Path) -> None:
    ours = DinoViT(tiny_cfg())
    with pytest.raises(ValueError, match="patch size 14"):
        save_hf_dinov2(ours, tmp_path, image_mean=0.5, image_std=0.25, image_size=50)
    with pytest.raises(ValueError, match="std"):
        save_hf_dinov2(ours, tmp_path, image_mean=0.5, image_std=0.0, image_size=56)


def test_read_preprocessing_rejects_per_channel_stats(tmp_path: Path) -> None:
    conf = {
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.2, 0.2, 0.2],
        "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224},
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(conf))
    with pytest.raises(ValueError, match="image_mean"):
        read_preprocessing(tmp_path)


def _rewrite_weights(path: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    file = path / "model.safetensors"
    sd = load_file(file)
    edit(sd)
    save_file(sd, file, metadata={"format": "pt"})


def test_strict_load_names_extra_and_missing_keys(hf_dir: HfDir) -> None:
    _, path = hf_dir()

    def edit(sd: dict[str, torch.Tensor]) -> None:
        sd["encoder.layer.0.surprise.weight"] = torch.zeros(3)
        del sd["encoder.layer.1.norm2.bias"]

    _rewrite_weights(path, edit)
    with pytest.raises(CheckpointMismatchError) as err:
        load_hf_dinov2(path)
    message = str(err.value)
    assert "encoder.layer.0.surprise.weight" in message
    assert "encoder.layer.1.norm2.bias" in message


def test_strict_load_names_shape_mismatch(hf_dir: HfDir) -> None:
    _, path = hf_dir()
    _rewrite_weights(path, lambda sd: sd.__setitem__("layernorm.weight", torch.ones(47)))
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*layernorm\.weight"):
        load_hf_dinov2(path)


def test_lenient_load_warns_and_keeps_own_init(
    hf_dir: HfDir, caplog: pytest.LogCaptureFixture
) -> None:
    _, path = hf_dir()
    _rewrite_weights(path, lambda sd: sd.pop("embeddings.mask_token"))
    with caplog.at_level(logging.WARNING, logger="cxrflow.models.hf"):
        model = load_hf_dinov2(path, strict=False)
    assert "embeddings.mask_token" in caplog.text
    assert not model.mask_token.any()  # zeros, not HF's fill for a missing weight


def test_on_disk_names_are_pre_v5(hf_dir: HfDir) -> None:
    # transformers 5 writes the legacy attention names and renames them at load time
    hf_model, path = hf_dir()
    on_disk = load_file(path / "model.safetensors")
    assert "encoder.layer.0.attention.attention.query.weight" in on_disk
    assert "encoder.layer.0.attention.q_proj.weight" in hf_model.state_dict()
    cfg = vit_config_from_hf(hf_model.config)
    from_disk, problems = hf_to_timm_state_dict(on_disk, cfg)
    from_module, _ = hf_to_timm_state_dict(hf_model.state_dict(), cfg)
    assert problems == {"missing": [], "unexpected": []}
    assert from_disk.keys() == from_module.keys() == DinoViT(cfg).state_dict().keys()
    for key, value in from_module.items():
        torch.testing.assert_close(from_disk[key], value, atol=0, rtol=0)


@pytest.mark.parametrize("registers", [0, 3])
def test_config_round_trip(registers: int) -> None:
    cfg = tiny_cfg(num_register_tokens=registers, drop_path_rate=0.1, ffn="swiglu")
    hf_config = hf_config_from_vit(cfg)
    assert hf_config.model_type == ("dinov2_with_registers" if registers else "dinov2")
    assert vit_config_from_hf(hf_config) == cfg


def test_config_refuses_what_it_cannot_represent() -> None:
    with pytest.raises(ValueError, match="mlp_ratio"):
        hf_config_from_vit(tiny_cfg(mlp_ratio=2.5))
    with pytest.raises(ValueError, match="hidden_act"):
        vit_config_from_hf(Dinov2Config(**HF_DIMS, hidden_act="gelu_new"))
    with pytest.raises(ValueError, match="layer_norm_eps"):
        vit_config_from_hf(Dinov2Config(**HF_DIMS, layer_norm_eps=1e-5))


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_hf_dinov2(tmp_path / "nope")


# ---------------------------------------------------------------- key names by role


@pytest.mark.parametrize(
    ("key", "part"),
    [
        # transformers 4.x / 5.0-5.17 spellings
        (
            "encoder.layer.3.attention.attention.query.weight",
            Part("blocks.3.attn.qkv.weight", 0, 3),
        ),
        ("encoder.layer.3.attention.attention.value.bias", Part("blocks.3.attn.qkv.bias", 2, 3)),
        ("encoder.layer.3.attention.output.dense.weight", Part("blocks.3.attn.proj.weight")),
        ("encoder.layer.3.mlp.weights_in.weight", Part("blocks.3.mlp.fc1.weight")),
        ("encoder.layer.3.mlp.weights_out.bias", Part("blocks.3.mlp.fc2.bias")),
        # transformers 5.23 spellings
        ("encoder.layer.3.attention.k_proj.weight", Part("blocks.3.attn.qkv.weight", 1, 3)),
        ("encoder.layer.3.attention.o_proj.bias", Part("blocks.3.attn.proj.bias")),
        ("encoder.layer.3.mlp.gate_proj.weight", Part("blocks.3.mlp.fc1.weight", 0, 2)),
        ("encoder.layer.3.mlp.up_proj.bias", Part("blocks.3.mlp.fc1.bias", 1, 2)),
        ("encoder.layer.3.mlp.down_proj.weight", Part("blocks.3.mlp.fc2.weight")),
        # unchanged so far
        ("encoder.layer.0.layer_scale2.lambda1", Part("blocks.0.ls2.gamma")),
        ("encoder.layer.0.norm1.bias", Part("blocks.0.norm1.bias")),
        ("embeddings.register_tokens", Part("reg_token")),
        ("layernorm.weight", Part("norm.weight")),
        # not DINOv2 weights
        ("encoder.layer.0.surprise.weight", None),
        ("encoder.layer.0.layer_scale1.weight", None),
        ("pooler.dense.weight", None),
    ],
)
def test_roles_across_spellings(key: str, part: Part | None) -> None:
    assert role_of(key) == part


def test_installed_conversion_mapping_is_read() -> None:
    with torch.device("meta"):
        model = Dinov2Model(Dinov2Config(**HF_DIMS, use_swiglu_ffn=True))
    aliases = conversion_aliases(model)
    # transformers 5.23 renames these at load time (transformers.conversion_mapping)
    assert Alias("attention.q_proj", "attention.attention.query") in aliases
    assert Alias("mlp.up_proj.weight", "mlp.weights_in.weight", 1, 2) in aliases


class FutureDinov2Model(Dinov2Model):
    """A transformers that renamed `q_proj` to `query_projection` (a spelling we do not know)."""

    def __init__(self, config: Dinov2Config) -> None:
        super().__init__(config)
        for layer in self.encoder.layer:
            layer.attention.query_projection = layer.attention.q_proj
            del layer.attention.q_proj


def test_unknown_installed_key_fails_the_check_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hf_module, "_hf_model_class", lambda _: FutureDinov2Model)
    with pytest.raises(CheckpointMismatchError, match="no known role") as err:
        check_hf_export_compatible(tiny_cfg())
    assert "encoder.layer.0.attention.query_projection.weight" in str(err.value)
    assert "FutureDinov2Model" in str(err.value)


def test_unknown_spelling_is_learnt_from_transformers_conversion_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transformers import conversion_mapping
    from transformers.core_model_loading import WeightRenaming

    monkeypatch.setattr(hf_module, "_hf_model_class", lambda _: FutureDinov2Model)
    conversion_mapping.get_checkpoint_conversion_mapping("dinov2")  # builds the cache
    monkeypatch.setitem(
        conversion_mapping._checkpoint_conversion_mapping_cache,
        "FutureDinov2Model",
        [WeightRenaming("attention.attention.query", "attention.query_projection")],
    )
    cfg = tiny_cfg()
    check_hf_export_compatible(cfg)
    layout = hf_layout(cfg)
    key = "encoder.layer.1.attention.query_projection.weight"
    assert layout.roles[key] == Part("blocks.1.attn.qkv.weight", 0, 3)
    ours = DinoViT(cfg)
    hf_sd = timm_to_hf_state_dict(ours.state_dict(), cfg)
    torch.testing.assert_close(hf_sd[key], ours.state_dict()["blocks.1.attn.qkv.weight"][:48])


def test_export_check_is_cheap() -> None:
    # what training calls before its first step: meta device only, so ViT-L takes milliseconds
    start = time.perf_counter()
    check_hf_export_compatible(vit_large(num_register_tokens=4, ffn="swiglu"))
    check_hf_export_compatible(vit_large())
    assert time.perf_counter() - start < 5.0


def test_packed_and_split_swiglu_load_alike() -> None:
    hf_model = random_hf_model(swiglu=True)
    cfg = vit_config_from_hf(hf_model.config)
    split = hf_model.state_dict()
    packed = {
        k: v for k, v in split.items() if ".mlp.gate_proj." not in k and ".mlp.up_proj." not in k
    }
    for i in range(cfg.depth):
        for p in ("weight", "bias"):
            pre = f"encoder.layer.{i}.mlp."
            packed[f"{pre}weights_in.{p}"] = torch.cat(
                [split[f"{pre}gate_proj.{p}"], split[f"{pre}up_proj.{p}"]]
            )
    from_split, problems = hf_to_timm_state_dict(split, cfg)
    from_packed, packed_problems = hf_to_timm_state_dict(packed, cfg)
    assert problems == packed_problems == {"missing": [], "unexpected": []}
    for key, value in from_split.items():
        torch.testing.assert_close(from_packed[key], value, atol=0, rtol=0)


def test_conversion_names_missing_and_duplicate_keys() -> None:
    hf_model = random_hf_model()
    cfg = vit_config_from_hf(hf_model.config)
    sd = dict(hf_model.state_dict())
    q = sd.pop("encoder.layer.0.attention.q_proj.weight")
    sd["encoder.layer.1.attention.attention.query.weight"] = q  # a second spelling of one tensor
    _, problems = hf_to_timm_state_dict(sd, cfg)
    assert problems == {
        "missing": ["encoder.layer.0.attention.q_proj.weight"],
        "unexpected": ["encoder.layer.1.attention.attention.query.weight"],
    }
