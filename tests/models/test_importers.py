"""Importers: upstream torch.hub, timm and HF checkpoints -> DinoViT -> HF, features equal."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from transformers import AutoModel, PreTrainedModel

from cxrflow.models import CheckpointMismatchError, DinoViT, save_hf_dinov2, vit_base
from cxrflow.models.checkpoint_files import CheckpointFormatError
from cxrflow.models.config import ViTConfig
from cxrflow.models.dinov2_hub import hub_to_timm
from cxrflow.models.importers import ImportedEncoder, import_encoder
from cxrflow.models.timm_checkpoint import config_from_state_dict
from tests.models.conftest import NATIVE, tiny_cfg
from tests.models.upstream_layout import (
    dinov2_hub_shapes,
    meta_weights,
    random_weights,
    upstream_forward,
)

ATOL = 1e-5  # measured: <= 1.8e-6 against the hand-written forward; HF vs ours 0.0 (MLP)
GRID = NATIVE // 14
TINY = {"embed_dim": 128, "depth": 2, "grid": GRID}  # 128 wide: 2 heads by the 64-dim rule


def tokens(model: DinoViT, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """Our features in upstream/HF token order: CLS, registers, patches."""
    with torch.no_grad():
        out = model.forward_features(x, masks)
    return torch.cat(
        [out["x_norm_clstoken"][:, None], out["x_norm_regtokens"], out["x_norm_patchtokens"]], 1
    )


def write_hub(tmp_path: Path, name: str = "dinov2_vitt14_pretrain.pth", **dims: object):
    """A random upstream-layout checkpoint file; returns (path, state dict)."""
    sd = random_weights(dinov2_hub_shapes(**{**TINY, **dims}))
    path = tmp_path / name
    torch.save(sd, path)
    return path, sd


def round_trip_through_hf(encoder: ImportedEncoder, tmp_path: Path) -> PreTrainedModel:
    """import -> save_hf_dinov2 -> transformers' AutoModel."""
    out = save_hf_dinov2(
        encoder.model, tmp_path / "hf", image_mean=0.5, image_std=0.25, image_size=NATIVE
    )
    return AutoModel.from_pretrained(out, local_files_only=True).eval()


# ---------------------------------------------------------------- torch.hub layout


@pytest.mark.parametrize(
    ("registers", "ffn"), [(0, "mlp"), (4, "mlp"), (0, "swiglu"), (4, "swiglu")]
)
def test_hub_import_matches_upstream_forward_and_hf(
    tmp_path: Path, registers: int, ffn: str
) -> None:
    path, sd = write_hub(tmp_path, registers=registers, ffn=ffn)
    encoder = import_encoder(path)
    assert encoder.source_format == "dinov2_hub"
    cfg = encoder.config
    assert cfg == encoder.model.cfg
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.img_size) == (128, 2, 2, NATIVE)
    assert (cfg.num_register_tokens, cfg.ffn, cfg.drop_path_rate) == (registers, ffn, 0.0)
    assert not encoder.model.training
    assert all(p.dtype == torch.float32 for p in encoder.model.parameters())

    torch.manual_seed(0)
    x = torch.randn(2, 3, NATIVE, NATIVE)
    masks = torch.rand(2, GRID * GRID) > 0.5
    with torch.no_grad():
        expected = upstream_forward(sd, x, num_heads=2)
        expected_masked = upstream_forward(sd, x, num_heads=2, masks=masks)
    got, got_masked = tokens(encoder.model, x), tokens(encoder.model, x, masks)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(got_masked, expected_masked, atol=ATOL, rtol=0)
    assert (got_masked - got).abs().max() > 1e-3  # the mask token is in use

    hf_model = round_trip_through_hf(encoder, tmp_path)
    with torch.no_grad():
        via_hf = hf_model(x).last_hidden_state
        via_hf_masked = hf_model(x, bool_masked_pos=masks).last_hidden_state
    torch.testing.assert_close(via_hf, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(via_hf_masked, expected_masked, atol=ATOL, rtol=0)
    torch.testing.assert_close(via_hf, got, atol=ATOL, rtol=0)


def test_hub_chunked_blocks_import_like_flat(tmp_path: Path) -> None:
    flat_path, _ = write_hub(tmp_path, name="flat.pth", depth=4)
    chunked_path, chunked_sd = write_hub(tmp_path, name="chunked.pth", depth=4, block_chunks=2)
    assert "blocks.1.3.attn.qkv.weight" in chunked_sd  # chunk 1 holds blocks 2 and 3
    flat, chunked = import_encoder(flat_path), import_encoder(chunked_path)
    assert chunked.source_format == "dinov2_hub" and chunked.config == flat.config
    for key, value in flat.model.state_dict().items():
        torch.testing.assert_close(chunked.model.state_dict()[key], value, atol=0, rtol=0)
    x = torch.randn(1, 3, NATIVE, NATIVE)
    torch.testing.assert_close(
        tokens(chunked.model, x), upstream_forward(chunked_sd, x, num_heads=2), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize(
    ("registers", "ffn", "width", "depth", "heads"),
    [(0, "mlp", 768, 12, 12), (4, "mlp", 768, 12, 12), (4, "swiglu", 1536, 40, 24)],
    ids=["vitb14", "vitb14_reg4", "vitg14_reg4"],
)
def test_hub_layout_at_release_sizes(
    registers: int, ffn: str, width: int, depth: int, heads: int
) -> None:
    # real sizes on the meta device: shapes only, no memory
    shapes = dinov2_hub_shapes(embed_dim=width, depth=depth, registers=registers, ffn=ffn)
    assert shapes["pos_embed"] == (1, 1370, width)  # 1 + 37 * 37 at 518 / 14
    sd = hub_to_timm(meta_weights(shapes), "vit-b")
    cfg, notes = config_from_state_dict(sd, num_heads=None, where="vit-b")
    assert cfg.img_size == 518 and cfg.patch_size == 14 and cfg.grid_size == 37
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads) == (width, depth, heads)
    assert (cfg.num_register_tokens, cfg.ffn, cfg.mlp_ratio) == (registers, ffn, 4.0)
    assert "64" in notes[0]
    if width == 768:
        assert cfg == vit_base(num_register_tokens=registers, layerscale_init=cfg.layerscale_init)
    with torch.device("meta"):
        ours = DinoViT(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        k: tuple(v.shape) for k, v in ours.items()
    }


# ---------------------------------------------------------------- timm layout


def timm_dinov2(registers: int, **kwargs: object) -> torch.nn.Module:
    """timm's own DINOv2 ViT (random, with tokens and LayerScale made non-trivial)."""
    name = "vit_base_patch14_reg4_dinov2" if registers else "vit_base_patch14_dinov2"
    dims = {"img_size": NATIVE, "embed_dim": 128, "depth": 2, "num_heads": 2, **kwargs}
    torch.manual_seed(3)
    model = timm.create_model(name, pretrained=False, **dims).eval()
    with torch.no_grad():
        for name_, p in model.named_parameters():
            if name_.endswith("gamma"):
                p.normal_(0.5, 0.1)
            elif name_ in ("cls_token", "reg_token", "pos_embed"):
                p.normal_()
    return model


@pytest.mark.parametrize("registers", [0, 4])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_timm_state_dict_file(tmp_path: Path, registers: int, suffix: str) -> None:
    reference = timm_dinov2(registers)
    sd = {k: v.contiguous() for k, v in reference.state_dict().items()}
    assert "mask_token" not in sd and ("reg_token" in sd) == bool(registers)
    path = tmp_path / f"vit_dinov2{suffix}"
    if suffix == ".safetensors":
        save_file(sd, path)
    else:
        torch.save(sd, path)
    encoder = import_encoder(path)
    assert encoder.source_format == "timm"
    assert encoder.config.num_register_tokens == registers and encoder.config.num_heads == 2
    assert not encoder.model.mask_token.any()
    assert "mask_token absent" in encoder.describe()["notes"]
    x = torch.randn(2, 3, NATIVE, NATIVE)
    with torch.no_grad():
        expected = reference.forward_features(x)  # timm: normalised [CLS, registers, patches]
    torch.testing.assert_close(tokens(encoder.model, x), expected, atol=ATOL, rtol=0)
    with torch.no_grad():
        via_hf = round_trip_through_hf(encoder, tmp_path)(x).last_hidden_state
    torch.testing.assert_close(via_hf, expected, atol=ATOL, rtol=0)


def write_timm_dir(path: Path, model: torch.nn.Module, conf: dict[str, object]) -> Path:
    """A timm hub-style directory: config.json + model.safetensors."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps(conf))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, path / "model.safetensors"
    )
    return path


def test_timm_directory_heads_from_model_args(tmp_path: Path) -> None:
    # 96 wide, 3 heads: the 64-dim rule cannot say; model_args does
    model = timm_dinov2(4, embed_dim=96, num_heads=3)
    conf = {
        "architecture": "vit_base_patch14_reg4_dinov2",
        "num_classes": 0,
        "model_args": {"img_size": NATIVE, "embed_dim": 96, "depth": 2, "num_heads": 3},
    }
    path = write_timm_dir(tmp_path / "timm", model, conf)
    encoder = import_encoder(path)
    assert encoder.source_format == "timm" and encoder.config.num_heads == 3
    assert encoder.sha256 == hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    x = torch.randn(1, 3, NATIVE, NATIVE)
    with torch.no_grad():
        expected = model.forward_features(x)
    torch.testing.assert_close(tokens(encoder.model, x), expected, atol=ATOL, rtol=0)


def test_timm_directory_heads_from_registered_architecture(tmp_path: Path) -> None:
    # no num_heads anywhere: timm's vit_small_patch14_dinov2 has 6 (built on the meta device)
    torch.manual_seed(4)
    model = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, img_size=NATIVE, depth=1
    ).eval()
    conf = {"architecture": "vit_small_patch14_dinov2", "model_args": {"depth": 1}}
    encoder = import_encoder(write_timm_dir(tmp_path / "timm", model, conf))
    assert (encoder.config.embed_dim, encoder.config.num_heads) == (384, 6)
    assert "vit_small_patch14_dinov2" in encoder.describe()["notes"]


def test_our_own_state_dict_is_a_timm_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(5)
    ours = DinoViT(tiny_cfg(embed_dim=128, num_heads=2, num_register_tokens=2)).eval()
    with torch.no_grad():
        ours.mask_token.normal_()
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, tmp_path / "m.safetensors")
    encoder = import_encoder(tmp_path / "m.safetensors")
    assert encoder.source_format == "timm"
    assert encoder.config == ours.cfg.replace(layerscale_init=encoder.config.layerscale_init)
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(encoder.model.state_dict()[key], value, atol=0, rtol=0)


# ---------------------------------------------------------------- HF directories


def test_hf_directory(hf_dir: Callable[..., tuple[PreTrainedModel, Path]]) -> None:
    hf_model, path = hf_dir(registers=2)
    encoder = import_encoder(path)
    assert encoder.source_format == "hf"
    assert encoder.sha256 == hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    x = torch.randn(1, 3, NATIVE, NATIVE)
    with torch.no_grad():
        expected = hf_model(x).last_hidden_state
    torch.testing.assert_close(tokens(encoder.model, x), expected, atol=ATOL, rtol=0)


def test_hf_directory_drop_path_is_turned_off(tmp_path: Path) -> None:
    trained = DinoViT(tiny_cfg(drop_path_rate=0.2))
    out = save_hf_dinov2(trained, tmp_path / "enc", image_mean=0.5, image_std=0.25, image_size=56)
    (out / "dino_head.safetensors").write_bytes(b"not part of the encoder")
    encoder = import_encoder(out)
    assert encoder.config.drop_path_rate == 0.0 and encoder.model.cfg == encoder.config
    assert encoder.config == trained.cfg.replace(drop_path_rate=0.0)
    # the hash covers the encoder's weights only, not the DINO head beside them
    assert encoder.sha256 == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def test_describe_is_flat_strings(tmp_path: Path) -> None:
    path, _ = write_hub(tmp_path, registers=4)
    info = import_encoder(path).describe()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())
    assert info["source_format"] == "dinov2_hub"
    assert info["path"] == str(path)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["config.embed_dim"] == "128" and info["config.num_register_tokens"] == "4"
    assert "num_heads 2: embed_dim // 64" in info["notes"]


# ---------------------------------------------------------------- errors


def test_head_count_rule_refuses_widths_it_cannot_split(tmp_path: Path) -> None:
    path, sd = write_hub(tmp_path, embed_dim=96)
    with pytest.raises(CheckpointFormatError, match=rf"{re.escape(str(path))}.*num_heads"):
        import_encoder(path)
    encoder = import_encoder(path, num_heads=3)
    assert encoder.config.num_heads == 3
    x = torch.randn(1, 3, NATIVE, NATIVE)
    expected = upstream_forward(sd, x, num_heads=3)
    torch.testing.assert_close(tokens(encoder.model, x), expected, atol=ATOL, rtol=0)


def test_extra_key_is_named(tmp_path: Path) -> None:
    path, sd = write_hub(tmp_path)
    sd["head.weight"] = torch.zeros(10, 128)
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError, match=r"head\.weight") as err:
        import_encoder(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("truncated.pth", None, "cannot be read"),
        ("garbage.safetensors", b"\x00" * 64, "cannot be read"),
        ("notes.txt", b"hello", "unknown weight file type"),
        ("other.pth", {"fc.weight": torch.zeros(2, 2)}, "not a DINOv2 ViT state dict"),
        ("module.pth", torch.nn.Linear(2, 2), "cannot be read"),
        ("list.pth", [torch.zeros(1)], "expected a state dict"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, name: str, content: object, match: str) -> None:
    path = tmp_path / name
    if content is None:
        good, _ = write_hub(tmp_path)
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointFormatError, match=match) as err:
        import_encoder(path)
    assert str(path) in str(err.value)


def test_bad_directories_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointFormatError, match=r"without config\.json") as err:
        import_encoder(empty)
    assert str(empty) in str(err.value) and "model_type dinov2" in str(err.value)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointFormatError, match="model_type='bert'"):
        import_encoder(bert)
    timm_dir = tmp_path / "timm"
    timm_dir.mkdir()
    (timm_dir / "config.json").write_text(json.dumps({"architecture": "vit_base_patch14_dinov2"}))
    with pytest.raises(CheckpointFormatError, match=r"without model\.safetensors"):
        import_encoder(timm_dir)
    with pytest.raises(FileNotFoundError, match="nope"):
        import_encoder(tmp_path / "nope")


def test_config_must_be_the_models(tmp_path: Path) -> None:
    model = DinoViT(tiny_cfg())
    with pytest.raises(ValueError, match=r"model\.cfg"):
        ImportedEncoder(model, tiny_cfg(depth=3), "timm", tmp_path, "0" * 64)
    assert isinstance(model.cfg, ViTConfig)
