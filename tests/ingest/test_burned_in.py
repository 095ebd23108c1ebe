"""The pixel check for burned-in text (issue 12): OCR flags names and dates, not view markers."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import UID

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.ingest import burned_in as bi
from cxrflow.ingest.burned_in import (
    REASON_CLASS,
    UNAVAILABLE_CLASS,
    BurnedInTextCheck,
    applies,
    check_image,
    suspect_burned_in_text,
)
from cxrflow.ingest.config import ScopeRules
from tests.factory import CR_STORAGE, DX_STORAGE, make_dataset, write
from tests.ingest.conftest import KEY

US_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")  # Ultrasound Image Storage
SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")

needs_ocr = pytest.mark.skipif(
    bi.engine(BurnedInTextCheck()) is None,
    reason="tesseract is not installed (`make ocr` installs Debian's tesseract-ocr)",
)


def radiograph(size: int = 768, seed: int = 0) -> np.ndarray:
    """A chest-radiograph-like uint16 image: dark air, a bright body, darker lungs, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = np.exp(-(((x - 0.5) / 0.34) ** 4 + ((y - 0.6) / 0.45) ** 4))
    lungs = sum(np.exp(-(((x - cx) / 0.11) ** 2 + ((y - 0.5) / 0.2) ** 2)) for cx in (0.36, 0.64))
    ribs = 0.06 * (np.sin(y * 90) > 0.6) * body
    img = 0.08 + 0.7 * body - 0.35 * lungs + ribs + rng.normal(0, 0.01, (size, size))
    return (np.clip(img, 0, 1) * 4095).astype(np.uint16)


def burn(img: np.ndarray, text: str, *, size: int = 28, at: tuple[float, float] = (0.03, 0.03)):
    """Draw `text` at full brightness, as a modality does, with a font that ships with Pillow."""
    pil = Image.fromarray((img.astype(np.float32) / 4095 * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    xy = (int(pil.width * at[0]), int(pil.height * at[1]))
    draw.text(xy, text, fill=255, font=ImageFont.load_default(size=size))
    return (np.asarray(pil).astype(np.float32) / 255 * 4095).astype(np.uint16)


# --- scope: which images the check runs on (no OCR needed) -------------------------------------
def _ds(modality: str, sop_class: str = CR_STORAGE, **attrs: str) -> Dataset:
    ds = Dataset()
    ds.Modality, ds.SOPClassUID = modality, sop_class
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_default_scope_is_text_prone_modalities_and_portable_radiographs():
    check = BurnedInTextCheck()
    assert applies(_ds("US", US_STORAGE, Manufacturer="ACME"), check)
    assert applies(_ds("OT", SC_STORAGE, Manufacturer="ACME"), check)
    assert applies(_ds("CR", Manufacturer="ACME", ConversionType="WSD"), check)
    assert applies(
        _ds("DX", DX_STORAGE, Manufacturer="ACME", SeriesDescription="CHEST AP PORTABLE"), check
    )
    assert not applies(_ds("CR"), check)  # unknown source (no Manufacturer): only if asked
    assert applies(_ds("CR"), BurnedInTextCheck(unknown_source=True))
    assert not applies(_ds("CR", Manufacturer="ACME", SeriesDescription="CHEST PA"), check)
    assert not applies(_ds("MR", "1.2.840.10008.5.1.4.1.1.4"), check)
    assert not applies(_ds("US", US_STORAGE), BurnedInTextCheck(enabled=False))


def test_no_engine_skips_with_a_warning_or_quarantines_when_required(monkeypatch, caplog):
    monkeypatch.setattr(bi, "engine", lambda config: None)
    monkeypatch.setattr(bi, "_warned", False)
    ds, img = _ds("US", US_STORAGE), radiograph(320)
    with caplog.at_level(logging.WARNING, logger="cxrflow.ingest.burned_in"):
        skipped = check_image(ds, img, BurnedInTextCheck())
        check_image(ds, img, BurnedInTextCheck())
    assert skipped is not None and not skipped.suspected
    warnings = [r for r in caplog.records if "burned-in text check skipped" in r.getMessage()]
    assert len(warnings) == 1  # once per process, not once per image
    refused = check_image(ds, img, BurnedInTextCheck(required=True))
    assert refused is not None and refused.suspected
    assert refused.reason_class == UNAVAILABLE_CLASS
    assert check_image(_ds("MR", "1.2.840.10008.5.1.4.1.1.4"), img, BurnedInTextCheck()) is None
    # Too small for legible text (OCR would read the upscaled noise): not checked.
    assert check_image(ds, radiograph(128), BurnedInTextCheck(required=True)) is None


def test_config_is_validated():
    with pytest.raises(ValueError):
        BurnedInTextCheck(min_confidence=120)
    with pytest.raises(ValueError):
        BurnedInTextCheck(ocr_min_side=800, ocr_max_side=400)


# --- OCR on pixels -------------------------------------------------------------------------------
@needs_ocr
@pytest.mark.parametrize("dtype", ["uint16", "uint8", "float"])
def test_a_name_and_a_date_are_suspected(dtype):
    img = burn(radiograph(), "DOE^JOHN 1961-03-14")
    pixels = {
        "uint16": img,
        "uint8": (img >> 4).astype(np.uint8),
        "float": img.astype(np.float32) / 4095,
    }[dtype]
    verdict = suspect_burned_in_text(pixels, BurnedInTextCheck())
    assert verdict.suspected and verdict.words >= 1
    assert verdict.seconds > 0
    # The verdict names the rule, never the recognised text.
    for token in ("DOE", "JOHN", "1961"):
        assert token not in verdict.rule


@needs_ocr
@pytest.mark.parametrize("marker", [None, "L", "AP", "PORTABLE  R"])
def test_plain_radiographs_and_position_markers_are_not_suspected(marker):
    img = radiograph(seed=3)
    if marker:
        img = burn(img, marker, size=32, at=(0.86, 0.05) if marker == "L" else (0.04, 0.9))
    verdict = suspect_burned_in_text(img, BurnedInTextCheck())
    assert not verdict.suspected, verdict.rule


@needs_ocr
def test_allow_list_is_configurable():
    img = burn(radiograph(seed=4), "SUPINE MOBILE", size=32)
    assert not suspect_burned_in_text(img, BurnedInTextCheck()).suspected
    strict = BurnedInTextCheck(allowed_words=())
    assert suspect_burned_in_text(img, strict).suspected


# --- end to end through run_ingest ---------------------------------------------------------------
SECRET = "SMITH^ALICE 1957-08-23"
SECRET_TOKENS = ("SMITH", "ALICE", "1957", "19570823")


@needs_ocr
def test_ultrasound_with_burned_in_name_is_quarantined_end_to_end(tmp_path: Path, caplog):
    inbox = tmp_path / "inbox"
    text = burn(radiograph(640, seed=5), SECRET)
    clean = radiograph(640, seed=6)
    common = {"center": 2048, "width": 4096, "Manufacturer": "ACME"}
    # Ultrasound-like: modality US, no BurnedInAnnotation, the name in the pixels.
    write(
        make_dataset(
            text, sop_uid="1.2.840.99999.88.1", sop_class=US_STORAGE, modality="US", **common
        ),
        inbox / "us_text.dcm",
    )
    write(
        make_dataset(
            clean, sop_uid="1.2.840.99999.88.2", sop_class=US_STORAGE, modality="US", **common
        ),
        inbox / "us_clean.dcm",
    )
    # A DX from an unknown source (no Manufacturer) carrying the same text.
    dx = make_dataset(
        text,
        sop_uid="1.2.840.99999.88.3",
        sop_class=DX_STORAGE,
        modality="DX",
        center=2048,
        width=4096,
    )
    write(dx, inbox / "dx_text.dcm")
    rules = ScopeRules(
        modalities=("CR", "DX", "US"), sop_classes=(*ScopeRules().sop_classes, US_STORAGE)
    )
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        result = run_ingest(
            IngestConfig(
                inbox,
                out,
                rules=rules,
                max_side=640,
                show_progress=False,
                burned_in_text=BurnedInTextCheck(unknown_source=True),
            ),
            KEY,
        )
    assert result.reconciles and result.found == 3
    assert result.written == 1 and result.quarantined == 2
    q = pd.read_parquet(out / "quarantine.parquet")
    assert list(q["reason_class"]) == [REASON_CLASS, REASON_CLASS]
    texts = [pd.read_parquet(p).to_csv() for p in out.glob("*.parquet")]
    texts += [p.read_text() for p in out.rglob("*.json")]
    texts.append(caplog.text)
    for blob in texts:
        for token in SECRET_TOKENS:
            assert token not in blob.upper()


@needs_ocr
def test_check_can_be_switched_off(tmp_path: Path):
    inbox = tmp_path / "inbox"
    text = burn(radiograph(640, seed=5), SECRET)
    write(
        make_dataset(text, sop_uid="1.2.840.99999.89.1", center=2048, width=4096), inbox / "a.dcm"
    )
    on = BurnedInTextCheck(unknown_source=True)
    checked = IngestConfig(
        inbox, tmp_path / "on", max_side=640, show_progress=False, burned_in_text=on
    )
    assert run_ingest(checked, KEY).written == 0
    off = replace(on, enabled=False)
    unchecked = IngestConfig(
        inbox, tmp_path / "off", max_side=640, show_progress=False, burned_in_text=off
    )
    assert run_ingest(unchecked, KEY).written == 1
