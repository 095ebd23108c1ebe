"""ViTConfig validation and named sizes."""

from __future__ import annotations

import pytest

from cxrflow.models import ViTConfig, vit_base, vit_large, vit_small, vit_tiny


def test_named_sizes() -> None:
    assert (vit_base().embed_dim, vit_base().depth, vit_base().num_heads) == (768, 12, 12)
    assert (vit_small().embed_dim, vit_small().depth, vit_small().num_heads) == (384, 12, 6)
    assert (vit_large().embed_dim, vit_large().depth, vit_large().num_heads) == (1024, 24, 16)
    tiny = vit_tiny(img_size=224)
    assert (tiny.embed_dim, tiny.depth, tiny.num_heads, tiny.img_size) == (192, 6, 3, 224)
    assert vit_base().img_size == 518 and vit_base().grid_size == 37
    assert vit_base().patch_size == 14 and vit_base().layerscale_init == 1e-5


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="vit_huge"):
        ViTConfig.named("vit_huge")


def test_img_size_must_be_multiple_of_patch() -> None:
    with pytest.raises(ValueError, match=r"img_size \(512\).*patch_size \(14\).*504 or 518"):
        vit_base(img_size=512)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("embed_dim", 0),
        ("depth", -1),
        ("num_heads", 5),  # 192 is not divisible by 5
        ("mlp_ratio", 0.0),
        ("num_register_tokens", -1),
        ("layerscale_init", 0.0),
        ("drop_path_rate", 1.0),
        ("ffn", "geglu"),
        ("in_chans", True),
        ("qkv_bias", 1),
    ],
)
def test_bad_field_is_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        vit_tiny(img_size=224, **{field: value})


def test_frozen_and_replace() -> None:
    cfg = vit_tiny(img_size=224)
    with pytest.raises(AttributeError):
        cfg.depth = 3  # type: ignore[misc]
    assert cfg.replace(num_register_tokens=4).num_register_tokens == 4
    with pytest.raises(ValueError, match="img_size"):
        cfg.replace(img_size=100)
    assert cfg.to_dict()["embed_dim"] == 192
