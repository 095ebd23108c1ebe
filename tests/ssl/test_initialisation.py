"""Where pre-training starts: parsing `init`, refusing a silent random start, applying a
checkpoint without losing the preset's settings, and resolving registered encoders."""

from pathlib import Path

import mlflow
import pytest
import torch

from cxrflow.models.config import ViTConfig
from cxrflow.models.hf import save_hf_dinov2
from cxrflow.models.vit import DinoViT
from cxrflow.registry.tags import ParentModel
from cxrflow.serving import EncoderPyfunc
from cxrflow.ssl.initialisation import (
    EncoderInit,
    InitError,
    InitSource,
    continual_config,
    initial_backbone,
    require_init,
    resolve_init,
)
from cxrflow.ssl.presets import preset
from cxrflow.tags import CHAMPION, ENCODER_MODEL, TAG_INIT_FROM, TAG_INIT_PREFIX


def _encoder_dir(root: Path, **overrides) -> Path:
    """A random tiny encoder exported as a Hugging Face directory."""
    torch.manual_seed(0)
    cfg = ViTConfig(**{"img_size": 56, "embed_dim": 192, "depth": 6, "num_heads": 3, **overrides})
    model = DinoViT(cfg)
    return save_hf_dinov2(model, root / "hf", image_mean=0.5, image_std=0.25, image_size=56)


@pytest.mark.parametrize(
    "text, kind",
    [
        ("random", "random"),
        ("champion", "champion"),
        ("models:/cxrflow-encoder@champion", "registry"),
        ("models:/cxrflow-encoder/3", "registry"),
        ("/checkpoints/dinov2_vitb14_pretrain.pth", "path"),
    ],
)
def test_init_parses_and_prints_back(text, kind):
    init = EncoderInit.parse(text)
    assert init.kind == kind
    assert str(init) == text
    assert (init.local_path is not None) == (kind == "path")


@pytest.mark.parametrize("text", ["", "models:/", "models:/cxrflow-encoder@", "models:/a/b/c"])
def test_malformed_inits_are_refused_by_name(text):
    with pytest.raises(InitError, match="init"):
        EncoderInit.parse(text)


def test_paper_refuses_to_start_without_an_init_unless_random_is_explicit():
    paper = preset("paper")
    with pytest.raises(InitError, match=r"preset 'paper' is continual .*random"):
        require_init(paper, None, "paper")
    assert require_init(paper, EncoderInit.parse("random"), "paper").kind == "random"
    assert require_init(preset("tiny"), None, "tiny").kind == "random"


def test_a_checkpoint_keeps_the_presets_settings_and_records_its_departures(tmp_path):
    encoder = _encoder_dir(tmp_path, num_register_tokens=4)
    config = preset("tiny", drop_path_rate=0.1)  # vit_tiny at 112 px, no registers
    source = resolve_init(EncoderInit.parse(encoder), tmp_path / "cache")
    adapted, source = continual_config(config, source)

    assert source.departures == {"img_size": (112, 56), "num_register_tokens": (0, 4)}
    assert (adapted.image_size, adapted.num_register_tokens) == (56, 4)
    # everything else stays the preset's: drop path, crops, objective, schedules
    assert adapted.with_(image_size=112, num_register_tokens=0) == config
    backbone = initial_backbone(adapted, source)
    assert backbone is not None and backbone.cfg.drop_path_rate == 0.1
    assert {b.drop_path1.drop_prob for b in backbone.blocks} == {0.1}
    for key, value in source.imported.model.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key

    record = source.record()
    assert record["init_source"] == "hf" and len(record["init_sha256"]) == 64
    assert record["init_departure.num_register_tokens"] == "0 -> 4"
    assert "/" not in record["init"]  # a path never enters params, tags or the card
    tags = source.tags()
    assert tags[TAG_INIT_FROM] == "path" and tags[f"{TAG_INIT_PREFIX}source"] == "hf"


def test_an_architecture_no_preset_names_is_refused(tmp_path):
    encoder = _encoder_dir(tmp_path / "odd", depth=5)
    source = resolve_init(EncoderInit.parse(encoder), tmp_path / "cache")
    with pytest.raises(InitError, match="depth 5"):
        continual_config(preset("tiny"), source)


def test_a_missing_path_is_refused_with_the_options(tmp_path):
    with pytest.raises(InitError, match=r"does not exist.*models:/cxrflow-encoder@champion"):
        resolve_init(EncoderInit.parse(tmp_path / "nowhere"), tmp_path / "cache")


def test_random_init_builds_nothing():
    source = InitSource(EncoderInit.parse("random"))
    config = preset("tiny")
    assert continual_config(config, source) == (config, source)
    assert initial_backbone(config, source) is None
    assert source.record() == {"init": "random", "init_source": "random"}


def _register_encoder(tmp_path: Path, client) -> str:
    encoder = _encoder_dir(tmp_path / "registered")
    mlflow.set_experiment("initialisation")  # not an experiment id another test left behind
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="encoder", python_model=EncoderPyfunc(), artifacts={"encoder": str(encoder)}
        )
    mv = mlflow.register_model(info.model_uri, ENCODER_MODEL)
    return str(mv.version)


def test_champion_is_random_until_there_is_one_then_the_registered_encoder(
    tracking, tmp_path, monkeypatch
):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    first = resolve_init(EncoderInit.parse("champion"), tmp_path / "cache")
    assert first.is_random and "no cxrflow-encoder@champion" in first.note

    version = _register_encoder(tmp_path, tracking)
    tracking.set_registered_model_alias(ENCODER_MODEL, CHAMPION, version)
    for text in ("champion", f"models:/{ENCODER_MODEL}@{CHAMPION}", f"models:/{ENCODER_MODEL}/1"):
        source = resolve_init(EncoderInit.parse(text), tmp_path / "cache")
        assert source.parent == ParentModel(ENCODER_MODEL, version)
        assert source.imported is not None and source.imported.config.embed_dim == 192
    assert source.record()["init_model"] == f"{ENCODER_MODEL}:{version}"


def test_an_unknown_registered_model_is_refused(tracking, tmp_path):
    with pytest.raises(InitError, match="cannot resolve models:/nobody@champion"):
        resolve_init(EncoderInit.parse("models:/nobody@champion"), tmp_path / "cache")
