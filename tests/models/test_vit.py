"""DinoViT shapes, masking, intermediate layers, checkpointing and optimiser metadata."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models import group_parameters
from transformers import AutoModel

from cxrflow.models import DinoViT, attention_backend
from cxrflow.models import attention as attention_module
from cxrflow.models.hf import save_hf_dinov2
from tests.models.conftest import NATIVE, tiny_cfg


@pytest.fixture(scope="module")
def model() -> DinoViT:
    torch.manual_seed(0)
    return DinoViT(tiny_cfg()).eval()


@pytest.fixture(scope="module")
def reg_model() -> DinoViT:
    torch.manual_seed(0)
    return DinoViT(tiny_cfg(num_register_tokens=4)).eval()


def test_forward_features_keys_and_shapes(model: DinoViT) -> None:
    x = torch.randn(2, 3, NATIVE, NATIVE)
    with torch.no_grad():
        out = model.forward_features(x)
        cls = model(x)
    assert set(out) == {
        "x_norm_clstoken",
        "x_norm_regtokens",
        "x_norm_patchtokens",
        "x_prenorm",
        "masks",
    }
    assert out["x_norm_clstoken"].shape == (2, 48)
    assert out["x_norm_regtokens"].shape == (2, 0, 48)
    assert out["x_norm_patchtokens"].shape == (2, 16, 48)
    assert out["x_prenorm"].shape == (2, 17, 48)
    assert out["masks"] is None
    torch.testing.assert_close(cls, out["x_norm_clstoken"])
    torch.testing.assert_close(model.norm(out["x_prenorm"])[:, 0], cls)


def test_registers(reg_model: DinoViT) -> None:
    with torch.no_grad():
        out = reg_model.forward_features(torch.randn(2, 3, NATIVE, NATIVE))
    assert out["x_norm_regtokens"].shape == (2, 4, 48)
    assert out["x_norm_patchtokens"].shape == (2, 16, 48)
    assert out["x_prenorm"].shape == (2, 21, 48)
    # timm's register layout: position embeddings for patches only
    assert reg_model.pos_embed.shape == (1, 16, 48)
    assert reg_model.num_register_tokens == 4


def test_properties(model: DinoViT) -> None:
    assert (model.embed_dim, model.patch_size, model.num_register_tokens) == (48, 14, 0)
    assert model.n_blocks == 2
    assert model.patch_grid(NATIVE) == (4, 4)
    assert model.patch_grid((28, 70)) == (2, 5)
    assert model.mask_token.shape == (1, 48) and not model.mask_token.any()


@pytest.mark.parametrize("size", [(28, 28), (84, 84), (42, 70)])
def test_non_native_size_interpolates(reg_model: DinoViT, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = reg_model.forward_features(torch.randn(1, 3, *size))
    assert out["x_norm_patchtokens"].shape == (1, size[0] // 14 * (size[1] // 14), 48)


@pytest.mark.parametrize("size", [(50, 56), (56, 60)])
def test_non_multiple_size_raises(model: DinoViT, size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=rf"{size[0]}x{size[1]}.*patch size 14"):
        model.forward_features(torch.randn(1, 3, *size))
    with pytest.raises(ValueError, match="patch size 14"):
        model.patch_grid(size)


def test_wrong_channels_raise(model: DinoViT) -> None:
    with pytest.raises(ValueError, match="3, H, W"):
        model(torch.randn(1, 1, NATIVE, NATIVE))


def test_masks_replace_patches_before_positions(model: DinoViT) -> None:
    x = torch.randn(2, 3, NATIVE, NATIVE)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, [1, 5, 6]] = True
    with torch.no_grad():
        tokens = model.prepare_tokens(x, masks)
        plain = model.prepare_tokens(x)
        out = model.forward_features(x, masks)
    pos = model.pos_embed[:, 1:]
    torch.testing.assert_close(tokens[0, 1 + 1], model.mask_token[0] + pos[0, 1])
    torch.testing.assert_close(tokens[1], plain[1])  # unmasked image untouched
    # patches 0, 2, 3, 4 (tokens 1, 3, 4, 5) are not masked
    torch.testing.assert_close(tokens[0, [1, 3, 4, 5]], plain[0, [1, 3, 4, 5]])
    assert out["masks"] is masks


def test_bad_masks_raise(model: DinoViT) -> None:
    x = torch.randn(2, 3, NATIVE, NATIVE)
    with pytest.raises(ValueError, match="16 entries"):
        model.forward_features(x, torch.zeros(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        model.forward_features(x, torch.zeros(2, 16))


def test_intermediate_layers(reg_model: DinoViT) -> None:
    x = torch.randn(2, 3, 42, 70)
    with torch.no_grad():
        last = reg_model.get_intermediate_layers(x, 1)
        both = reg_model.get_intermediate_layers(x, [0, 1], reshape=True)
        raw = reg_model.get_intermediate_layers(x, [-1], norm=False)
        feats = reg_model.forward_features(x)
    assert isinstance(last, tuple) and len(last) == 1 and len(both) == 2
    torch.testing.assert_close(last[0], feats["x_norm_patchtokens"])
    torch.testing.assert_close(raw[0], feats["x_prenorm"][:, 5:])
    assert both[0].shape == (2, 48, 3, 5)
    # (B, D, h, w) is the row-major patch sequence
    torch.testing.assert_close(both[1].flatten(2).transpose(1, 2), last[0])
    with pytest.raises(ValueError, match="block indices"):
        reg_model.get_intermediate_layers(x, [2])
    with pytest.raises(ValueError, match="n must be"):
        reg_model.get_intermediate_layers(x, 3)


def test_grad_checkpointing_same_output_and_grads() -> None:
    torch.manual_seed(0)
    model = DinoViT(tiny_cfg(num_register_tokens=2)).train()
    x = torch.randn(2, 3, NATIVE, NATIVE)
    masks = torch.rand(2, 16) > 0.5

    def run() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        out = model.forward_features(x, masks)
        loss = out["x_norm_clstoken"].square().sum() + out["x_norm_patchtokens"].sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out["x_prenorm"].detach(), grads

    plain_out, plain_grads = run()
    model.set_grad_checkpointing(True)
    ckpt_out, ckpt_grads = run()
    torch.testing.assert_close(ckpt_out, plain_out)
    assert ckpt_grads.keys() == plain_grads.keys()
    assert "mask_token" in ckpt_grads and "blocks.0.attn.qkv.weight" in ckpt_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, msg=name)


def test_layer_ids(reg_model: DinoViT) -> None:
    depth = reg_model.n_blocks
    assert reg_model.layer_id_for("patch_embed.proj.weight") == 0
    for token in ("cls_token", "reg_token", "pos_embed", "mask_token"):
        assert reg_model.layer_id_for(token) == 0
    assert reg_model.layer_id_for("blocks.0.attn.qkv.weight") == 1
    assert reg_model.layer_id_for("blocks.1.ls2.gamma") == 2
    assert reg_model.layer_id_for("norm.weight") == depth + 1
    with pytest.raises(KeyError):
        reg_model.layer_id_for("head.weight")
    # the same grouping as timm's param_groups_layer_decay (via group_matcher)
    timm_ids = group_parameters(reg_model, reg_model.group_matcher(), reverse=True)
    ours = {name: reg_model.layer_id_for(name) for name, _ in reg_model.named_parameters()}
    assert ours == timm_ids


def test_no_weight_decay_names(reg_model: DinoViT) -> None:
    names = reg_model.no_weight_decay_names()
    for expected in (
        "cls_token",
        "reg_token",
        "pos_embed",
        "mask_token",
        "patch_embed.proj.bias",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.bias",
        "blocks.1.ls1.gamma",
        "norm.weight",
        "norm.bias",
    ):
        assert expected in names
    for decayed in (
        "patch_embed.proj.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.1.mlp.fc2.weight",
    ):
        assert decayed not in names
    assert reg_model.no_weight_decay() == {"cls_token", "reg_token", "pos_embed", "mask_token"}


def test_attention_backend_cpu_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    # real environment: CPU is always SDPA, whether or not xformers is installed
    assert attention_backend("cpu") == "sdpa"
    assert attention_backend(torch.device("cpu")) == "sdpa"
    monkeypatch.setattr(attention_module, "xformers_available", lambda: True)
    assert attention_backend("cpu") == "sdpa"
    assert attention_backend("cuda:0") == "xformers"
    monkeypatch.setattr(attention_module, "xformers_available", lambda: False)
    assert attention_backend("cuda") == "sdpa"


@pytest.mark.skipif(
    not (torch.cuda.is_available() and attention_module.xformers_available()),
    reason="needs CUDA and xformers",
)
def test_xformers_matches_sdpa() -> None:
    torch.manual_seed(0)
    model = DinoViT(tiny_cfg()).cuda().eval()
    x = torch.randn(2, 3, NATIVE, NATIVE, device="cuda")
    attn = model.blocks[0].attn
    tokens = torch.randn(2, 17, 48, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(
            attn._forward_xformers(tokens),
            attn._forward_sdpa(tokens, None, False),
            atol=1e-4,
            rtol=0,
        )
        assert model(x).shape == (2, 48)


@pytest.mark.parametrize(
    ("registers", "timm_name"),
    [(0, "vit_small_patch14_dinov2"), (2, "vit_small_patch14_reg4_dinov2")],
)
def test_state_dict_is_timms_plus_mask_token(registers: int, timm_name: str) -> None:
    torch.manual_seed(0)
    ours = DinoViT(tiny_cfg(num_register_tokens=registers)).eval()
    reference = timm.create_model(
        timm_name,
        pretrained=False,
        img_size=NATIVE,
        embed_dim=48,
        depth=2,
        num_heads=3,
        num_classes=0,
        reg_tokens=registers,
    ).eval()
    sd = ours.state_dict()
    assert sd.pop("mask_token").shape == (1, 48)
    reference.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, NATIVE, NATIVE)
    with torch.no_grad():
        feats = ours.forward_features(x)
        expected = reference.forward_features(x)  # timm returns the normalised tokens
    torch.testing.assert_close(ours.norm(feats["x_prenorm"]), expected)


@pytest.fixture(scope="module")
def exported_518(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[DinoViT, object]]:
    """Tiny DinoViTs at native 518 px (37x37 grid), with and without registers, and their HF
    reloads; random tokens and position embeddings large enough that resampling shows."""
    out: dict[int, tuple[DinoViT, object]] = {}
    for registers in (0, 4):
        torch.manual_seed(registers)
        model = DinoViT(tiny_cfg(img_size=518, num_register_tokens=registers, layerscale_init=0.5))
        with torch.no_grad():
            model.pos_embed.normal_()
            model.cls_token.normal_()
            if registers:
                model.reg_token.normal_()
        path = tmp_path_factory.mktemp(f"hf518_r{registers}")
        save_hf_dinov2(model, path, image_mean=0.5, image_std=0.25, image_size=518)
        out[registers] = (model.eval(), AutoModel.from_pretrained(path).eval())
    return out


@pytest.mark.parametrize("registers", [0, 4])
@pytest.mark.parametrize("size", [196, 224, 518])
def test_position_interpolation_matches_transformers(
    exported_518: dict[int, tuple[DinoViT, object]], registers: int, size: int
) -> None:
    """The exported encoder runs through transformers: off the native grid (196 px: 14x14,
    224 px: 16x16 from 37x37) its outputs must be ours, not just at 518 px."""
    ours, hf = exported_518[registers]
    torch.manual_seed(size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        mine = ours.norm(ours.forward_features(x)["x_prenorm"])
        theirs = hf(pixel_values=x).last_hidden_state
    assert mine.shape == theirs.shape == (2, 1 + registers + (size // 14) ** 2, 48)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_drop_path_is_uniform_across_blocks() -> None:
    """DINOv2 (drop_path_uniform) drops every block's branches at the configured rate."""
    model = DinoViT(tiny_cfg(depth=4, drop_path_rate=0.1))
    rates = [
        getattr(getattr(block, name), "drop_prob", 0.0)
        for block in model.blocks
        for name in ("drop_path1", "drop_path2")
    ]
    assert rates == [0.1] * 8
    assert all(
        isinstance(getattr(b, n), torch.nn.Identity)
        for b in DinoViT(tiny_cfg(depth=4)).blocks
        for n in ("drop_path1", "drop_path2")
    )
