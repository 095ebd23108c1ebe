"""Every consumer of a registered encoder prepares pixels as training did (issue 16).

One 16-bit image goes through (1) the feature-extraction path of training (`ImageDataset` +
`extract_features`), (2) the MLflow pyfunc logged to a SQLite store and loaded back, (3) the
Hugging Face export's `preprocessor_config.json` read by cxrflow, and (4) the model card's
"How to load" snippet, executed as printed. Their CLS features must agree; the old
`Image.open(p).convert("RGB")` + `AutoImageProcessor` path must not.

`preprocessor_config.json` is a `BitImageProcessor` config: one fixed `rescale_factor`
(1/255) applied after conversion to 8-bit RGB, so it cannot express "scale each image by its
own bit depth". `AutoImageProcessor` is therefore checked only as the wrong path; (3) checks
that cxrflow's reader of that config gives tensors identical to training's.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from cxrflow.heads.data import ImageDataset
from cxrflow.heads.features import extract_features
from cxrflow.ingest.pixels import display_image
from cxrflow.modelcard.card import ModelCard
from cxrflow.modelcard.sections import EXAMPLE_IMAGE, render_sections
from cxrflow.models import DinoViT, EncoderPreprocessing, read_preprocessing, save_hf_dinov2
from cxrflow.models.preprocessing import load_image, read_image
from cxrflow.serving import IMAGE_COLUMN, PATH_COLUMN, example_input, log_encoder_model
from tests.factory import make_dataset, write
from tests.models.conftest import NATIVE, tiny_cfg

PREP = EncoderPreprocessing(mean=0.45, std=0.22, image_size=NATIVE)
TOL = 1e-5
MODEL_NAME = "cxr-encoder"
log = logging.getLogger(__name__)


def chest_like(h: int = 80, w: int = 64, seed: int = 0) -> np.ndarray:
    """A 16-bit grey image with structure at all intensities (most pixels above 255)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = 0.2 + 0.5 * xx / w + 0.2 * np.exp(-((yy - h / 2) ** 2 + (xx - w / 3) ** 2) / 120.0)
    x += 0.05 * rng.standard_normal((h, w))
    return np.round(np.clip(x, 0, 1) * 65535).astype(np.uint16)


@pytest.fixture
def encoder(tmp_path: Path) -> tuple[DinoViT, Path]:
    """A random tiny encoder (the training side) and its Hugging Face export."""
    torch.manual_seed(0)
    model = DinoViT(tiny_cfg()).eval()
    with torch.no_grad():  # non-trivial tokens, so that the CLS output depends on the pixels
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    export = save_hf_dinov2(
        model, tmp_path / "enc", image_mean=PREP.mean, image_std=PREP.std, image_size=NATIVE
    )
    return model, export


@pytest.fixture
def png16(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "chest.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(chest_like()).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16"  # what the dataset's PNGs open as
    return path


def encoder_card(version: str) -> ModelCard:
    """An encoder card with only what the "How to load" section reads filled in."""
    return ModelCard(
        name=MODEL_NAME,
        version=version,
        kind="encoder",
        description="test encoder",
        license="mit",
        tags=(),
        data_version="d" * 32,
        split_digest="s" * 16,
        deid_profile="test",
        deid_options={},
        git_commit="0" * 40,
        pipeline_run="kfp-1",
        pipeline_params_digest="p" * 16,
        parents=(),
        aliases=(),
        hyperparameters={},
        metrics={},
    )


def card_snippet(card: ModelCard) -> str:
    """The Python block of the card's "How to load" section."""
    section = render_sections(card).split("## How to load", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def hf_cls(export: Path, pixels: torch.Tensor) -> torch.Tensor:
    model = AutoModel.from_pretrained(export).eval()
    with torch.no_grad():
        return model(pixel_values=pixels).last_hidden_state[:, 0]


def test_every_consumer_gives_the_training_features(
    encoder: tuple[DinoViT, Path], png16: Path, tracking
) -> None:
    model, export = encoder
    frame = pd.DataFrame({"image_id": ["a"], "image_path": [png16.relative_to(png16.parents[1])]})

    # (1) training: the heads' dataset and feature extraction
    dataset = ImageDataset(png16.parents[1], frame, PREP)
    train_pixels = dataset[0]["pixels"]
    train = extract_features(model, dataset)["cls"].numpy()

    # (2) the pyfunc, logged with its signature and example, registered, loaded back
    with mlflow.start_run():
        info = log_encoder_model(export)
    version = mlflow.register_model(info.model_uri, MODEL_NAME).version
    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    schema = served.metadata.get_input_schema()
    assert schema.input_names() == [IMAGE_COLUMN, PATH_COLUMN]
    assert served.metadata.get_output_schema().inputs[0].shape == (-1, tiny_cfg().embed_dim)
    encoded = base64.b64encode(png16.read_bytes()).decode("ascii")
    by_bytes = served.predict(pd.DataFrame({IMAGE_COLUMN: [encoded]}))
    by_path = served.predict(pd.DataFrame({PATH_COLUMN: [str(png16)]}))
    assert served.predict(example_input()).shape == (1, tiny_cfg().embed_dim)

    # (3) the HF export: its config read by cxrflow gives training's tensors exactly
    exported_prep = read_preprocessing(export)
    assert exported_prep == PREP
    assert torch.equal(load_image(png16, exported_prep), train_pixels)
    export_cls = hf_cls(export, load_image(png16, exported_prep)[None]).numpy()

    # (4) the card's snippet, executed as printed but for the image it reads
    code = card_snippet(encoder_card(version))
    assert "load_image" in code and 'convert("RGB")' not in code
    assert f'"{EXAMPLE_IMAGE}"' in code
    namespace: dict[str, object] = {}
    exec(code.replace(f'"{EXAMPLE_IMAGE}"', repr(str(png16))), namespace)
    card_cls = namespace["cls"].numpy()

    for name, got in {
        "pyfunc (base64)": by_bytes,
        "pyfunc (path)": by_path,
        "hf export": export_cls,
        "card": card_cls,
    }.items():
        assert got.shape == train.shape, name
        diff = float(np.abs(got - train).max())
        log.info("%s: max |features - training features| = %.3g", name, diff)
        assert diff < TOL, name

    # The old path: PIL's RGB conversion clips 16-bit values to 255, i.e. white.
    with Image.open(png16) as img:
        rgb = img.convert("RGB")
    assert (np.asarray(rgb) == 255).mean() > 0.9
    processor = AutoImageProcessor.from_pretrained(export)
    old_pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]
    assert float(old_pixels.std()) < 0.1 < float(train_pixels.std())  # contrast lost
    old = hf_cls(export, old_pixels).numpy()
    log.info("convert('RGB') path: max diff %.3g", float(np.abs(old - train).max()))
    # measured: 0.076 with this random tiny encoder (cosine 0.24 on a trained ViT-B)
    assert float(np.abs(old - train).max()) > 1000 * TOL


def test_bit_depths_and_array_types_agree(tmp_path: Path) -> None:
    x16 = chest_like()
    x8 = np.round(x16 / 257.0).astype(np.uint8)
    Image.fromarray(x16).save(tmp_path / "a16.png")
    Image.fromarray(x8, mode="L").save(tmp_path / "a8.png")
    # mode "I" (32-bit) is how older Pillow opens 16-bit PNGs
    Image.fromarray(x16.astype(np.int32), mode="I").save(tmp_path / "aI.tif")
    with Image.open(tmp_path / "aI.tif") as img:
        assert img.mode == "I"
        from_i = load_image(img, PREP)

    from_png16 = load_image(tmp_path / "a16.png", PREP)
    assert torch.equal(from_png16, load_image(x16, PREP))
    assert torch.equal(from_png16, load_image(x16.astype(np.float32) / 65535.0, PREP))
    assert torch.equal(from_png16, load_image(x16.astype(">u2"), PREP))
    assert torch.equal(from_png16, from_i)
    assert torch.equal(from_png16, load_image((tmp_path / "a16.png").read_bytes(), PREP))
    from_png8 = load_image(tmp_path / "a8.png", PREP)
    assert torch.equal(from_png8, load_image(x8, PREP))
    # each scaled by its own depth: the 8-bit copy differs by its quantisation only
    assert float((from_png8 - from_png16).abs().max()) < 2 / 255 / PREP.std
    assert from_png16.shape == (3, NATIVE, NATIVE)


def test_dicom_goes_through_the_ingest_display_pipeline(tmp_path: Path) -> None:
    stored = (chest_like(64, 48).astype(np.uint32) >> 4).astype(np.uint16)  # 12 bits stored
    ds = make_dataset(stored, photometric="MONOCHROME1", center=2048, width=3000)
    path = write(ds, tmp_path / "x" / "image")  # no suffix: recognised by its DICM preamble
    expected = display_image(ds)
    assert np.array_equal(read_image(path), expected)
    assert np.array_equal(read_image(path.read_bytes()), expected)
    assert torch.equal(load_image(path, PREP), load_image(expected, PREP))
    assert torch.equal(load_image(ds, PREP), load_image(expected, PREP))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((8, 8), 1.5, dtype=np.float32), r"\[0, 1\]"),
        (np.zeros((8, 8), dtype=np.int64), "unsupported pixel type"),
        (np.zeros((8, 8, 3), dtype=np.uint8), "single-channel"),
        (Image.fromarray(np.full((8, 8), 70000, dtype=np.int32), mode="I"), "exceed 16 bits"),
    ],
)
def test_ambiguous_inputs_are_refused(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_image(image)


def test_pyfunc_refuses_rows_without_an_image(encoder: tuple[DinoViT, Path], tracking) -> None:
    _, export = encoder
    with mlflow.start_run():
        info = log_encoder_model(export)
    served = mlflow.pyfunc.load_model(info.model_uri)
    with pytest.raises(Exception, match="image"):
        served.predict(pd.DataFrame({PATH_COLUMN: [""]}))
