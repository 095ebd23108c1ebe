"""A pixel check for burned-in text: OCR flags images whose text is more than a view marker.

Headers are not enough: BurnedInAnnotation is absent from most files, and ultrasound,
secondary captures and portable radiographs often carry the patient's name, a date or an
accession number in the pixels. This module runs Tesseract on the image the ingestion is about
to write and reports whether the recognised words go beyond laterality/position markers (L, R,
AP, PA, LAT, PORTABLE, SUPINE, ERECT, a few digits). The verdict carries a rule name and
counts only: the recognised text may be PHI and never leaves this module.

Engine: `tesserocr` (Tesseract's C++ API, loaded once per process) when it imports, else
`pytesseract` (one `tesseract` process per image, 3-5x slower), else none. Both need
Tesseract's language data, which Debian's `tesseract-ocr` package installs (`make ocr`).
Without an engine the check is skipped with a logged warning, or, when `required`, applicable
images are quarantined as `burned_in_check_unavailable` (fail closed, never a crash).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

REASON_CLASS = "burned_in_text_suspected"
UNAVAILABLE_CLASS = "burned_in_check_unavailable"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"

# Position and laterality markers that radiographs legitimately carry in their pixels.
DEFAULT_ALLOWED_WORDS: tuple[str, ...] = (
    "L", "R", "LT", "RT", "LEFT", "RIGHT", "AP", "PA", "LAT", "LATERAL", "LL", "RL", "LLD",
    "RLD", "DECUB", "DECUBITUS", "PORT", "PORTABLE", "MOBILE", "BEDSIDE", "SUPINE", "ERECT",
    "SEMI", "SEMIERECT", "UPRIGHT", "SITTING", "STANDING", "PRONE", "INSP", "EXP", "CHEST",
)  # fmt: skip


@dataclass(frozen=True)
class BurnedInTextCheck:
    """Where the OCR check runs and what it counts as text beyond a marker.

    Default scope: always on modalities and sources that often carry text (ultrasound, secondary
    captures and other converted images: `modalities`, a Secondary Capture SOP class or a
    ConversionType); on CR/DX radiographs only from portable acquisitions (a portable marker in
    the series/study/protocol description) or from an unknown source (no Manufacturer). Fixed
    room radiographs from a known device are not OCR'd: their text is view markers and OCR costs
    about as much as the whole rest of the ingestion of an image.
    """

    enabled: bool = True
    # Modalities checked on every image.
    modalities: tuple[str, ...] = ("US", "SC", "OT", "XC", "ES")
    # Every Secondary Capture SOP class or image with a ConversionType (scanned, screenshots).
    secondary_captures: bool = True
    # Radiography checked when the source is portable (or, if asked, unknown).
    radiography_modalities: tuple[str, ...] = ("CR", "DX")
    portable_markers: tuple[str, ...] = ("PORTABLE", "BEDSIDE", "MOBILE")
    # Off by default: exports often drop Manufacturer, and Tesseract reads "words" in
    # noise-like textures (it flagged the random-noise test images of tests/ingest), so every
    # fixed-room radiograph of such an export would be at risk of a false quarantine.
    unknown_source: bool = False
    # Word filter: a word counts when Tesseract's confidence is at least `min_confidence`,
    # it has `min_word_length` letters/digits or more and it is not in `allowed_words`;
    # digits-only words up to `max_marker_digits` long (a time, a marker number) never count.
    min_confidence: float = 60.0
    min_word_length: int = 3
    max_marker_digits: int = 4
    allowed_words: tuple[str, ...] = DEFAULT_ALLOWED_WORDS
    min_words: int = 1
    # Images whose shorter side is below this are not OCR'd: text at that size is not legible,
    # and Tesseract reads "words" in the upscaled noise (a 96-128 px phantom radiograph was
    # flagged). Real radiographs and ultrasound frames are far larger.
    min_image_side: int = 256
    # Preprocessing: the shorter side is scaled to at least `ocr_min_side` pixels and the longer
    # to at most `ocr_max_side`; `both_polarities` also OCRs the other polarity (twice the cost).
    ocr_min_side: int = 400
    ocr_max_side: int = 1600
    both_polarities: bool = False
    # Without an OCR engine: False skips the check (logged warning), True quarantines the
    # images it applies to as `burned_in_check_unavailable`.
    required: bool = False
    tessdata: Path | None = None  # Tesseract's language data; found automatically when None
    language: str = "eng"

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 100:
            raise ValueError(f"min_confidence must be in [0, 100] (got {self.min_confidence})")
        if self.min_image_side < 1:
            raise ValueError("min_image_side must be at least 1")
        if self.min_word_length < 1 or self.min_words < 1:
            raise ValueError("min_word_length and min_words must be at least 1")
        if self.ocr_min_side < 16 or self.ocr_max_side < self.ocr_min_side:
            raise ValueError("need 16 <= ocr_min_side <= ocr_max_side")


@dataclass(frozen=True)
class Verdict:
    """Outcome of the check on one image: a rule name and counts, never recognised text."""

    suspected: bool
    rule: str
    words: int = 0
    seconds: float = 0.0
    reason_class: str = REASON_CLASS


# ---------------------------------------------------------------------------------------------
def applies(ds: Dataset, check: BurnedInTextCheck) -> bool:
    """Whether `check` runs on the image of `ds` (modality, source)."""
    if not check.enabled:
        return False
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in check.modalities:
        return True
    if check.secondary_captures:
        sop_class = str(ds.get("SOPClassUID", "") or "").strip()
        if sop_class.startswith(SECONDARY_CAPTURE_PREFIX) or ds.get("ConversionType"):
            return True
    if modality in check.radiography_modalities:
        if check.unknown_source and not str(ds.get("Manufacturer", "") or "").strip():
            return True
        words = " ".join(
            str(ds.get(k, "") or "")
            for k in ("SeriesDescription", "StudyDescription", "ProtocolName")
        ).upper()
        return any(marker in words for marker in check.portable_markers)
    return False


def check_image(ds: Dataset, pixels: np.ndarray, check: BurnedInTextCheck) -> Verdict | None:
    """The verdict on the image about to be written, or None when the check does not apply."""
    if not applies(ds, check) or min(pixels.shape[:2]) < check.min_image_side:
        return None
    if engine(check) is None:
        if check.required:
            return Verdict(
                True,
                "burned-in text check required but no OCR engine (tesseract) is installed",
                reason_class=UNAVAILABLE_CLASS,
            )
        _warn_unavailable_once()
        return Verdict(False, "skipped: no OCR engine (tesseract) installed")
    return suspect_burned_in_text(pixels, check)


def suspect_burned_in_text(pixels: np.ndarray, config: BurnedInTextCheck) -> Verdict:
    """OCR `pixels` (uint8, uint16 or float in [0, 1], one channel or RGB) and judge the words.

    Raises RuntimeError when no OCR engine is available (`check_image` decides before).
    """
    start = time.perf_counter()
    ocr = engine(config)
    if ocr is None:
        raise RuntimeError("no OCR engine: install tesseract-ocr (make ocr)")
    gray = prepare(pixels, config)
    suspicious = 0
    polarities = [gray, 255 - gray] if config.both_polarities else [gray]
    for img in polarities:
        words = ocr(img)
        suspicious = max(suspicious, sum(_counts(w, c, config) for w, c in words))
        if suspicious >= config.min_words:
            break
    seconds = time.perf_counter() - start
    if suspicious >= config.min_words:
        rule = (
            f"OCR found {suspicious} word(s) beyond laterality/position markers "
            f"(confidence >= {config.min_confidence:g}, length >= {config.min_word_length})"
        )
        return Verdict(True, rule, suspicious, seconds)
    return Verdict(False, "no text beyond markers", 0, seconds)


def prepare(pixels: np.ndarray, config: BurnedInTextCheck) -> np.ndarray:
    """uint8 image for OCR: contrast-stretched, dark text on light, scaled to OCR-friendly size.

    On 20 phantom radiographs at 1024 px with "DOE^JOHN 1961-03-14" drawn at 12/18/28 px, this
    finds 50/60 and flags none of 60 clean or marker-only images (about 0.1 s an image).

    Tesseract itself binarises with Sauvola's local threshold (set by the engines below).
    """
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[-1] in (3, 4):  # RGB(A)
        a = a[..., :3].astype(np.float32).mean(axis=-1)
    while a.ndim > 2:  # frames: the first one (text overlays repeat on every frame)
        a = a[0]
    a = a.astype(np.float32, copy=False)
    # Stretch up to the maximum: burned-in text is usually drawn at the brightest value, and
    # clipping the top percent would merge it with bone.
    lo, hi = np.percentile(a, (0.5, 100.0)) if a.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    x = np.clip((a - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    # Burned-in text is drawn bright on a dark radiograph (or dark on a light page): make the
    # background light, as Tesseract expects.
    if float(np.median(x)) < 0.5:
        x = 1.0 - x * x  # the square darkens anatomy more than the brightest (text) pixels
    img = Image.fromarray((x * 255.0 + 0.5).astype(np.uint8))
    rows, cols = a.shape[:2]
    scale = max(config.ocr_min_side / max(min(rows, cols), 1), 1.0)
    scale = min(scale, config.ocr_max_side / max(rows, cols))
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS if scale > 1 else Image.Resampling.BOX)
    return np.asarray(img)


def _counts(word: str, confidence: float, config: BurnedInTextCheck) -> bool:
    if confidence < config.min_confidence:
        return False
    token = "".join(ch for ch in word if ch.isalnum()).upper()
    if len(token) < config.min_word_length:
        return False
    if token.isdigit() and len(token) <= config.max_marker_digits:
        return False
    return token not in {w.upper() for w in config.allowed_words}


# ---------------------------------------------------------------------------------------------
# Engines: callables uint8 image -> [(word, confidence)], one per process and configuration.
_ENGINES: dict[tuple[Any, ...], Any] = {}
_warned = False


def engine(config: BurnedInTextCheck) -> Any | None:
    """The OCR callable for this process (cached), or None when Tesseract is not installed."""
    key = (os.getpid(), config.tessdata, config.language)
    if key not in _ENGINES:
        _ENGINES[key] = _tesserocr(config) or _pytesseract(config)
    return _ENGINES[key]


def engine_name(config: BurnedInTextCheck | None = None) -> str | None:
    """'tesserocr', 'pytesseract' or None: for a run's start-up log line."""
    ocr = engine(config or BurnedInTextCheck())
    return getattr(ocr, "name", None) if ocr is not None else None


def _tessdata(config: BurnedInTextCheck) -> str | None:
    if config.tessdata is not None:
        return str(config.tessdata)
    if os.environ.get("TESSDATA_PREFIX"):
        return os.environ["TESSDATA_PREFIX"]
    found = sorted(glob.glob(f"/usr/share/tesseract-ocr/*/tessdata/{config.language}.traineddata"))
    found += glob.glob(f"/usr/share/tessdata/{config.language}.traineddata")
    return str(Path(found[-1]).parent) if found else None


def _tesserocr(config: BurnedInTextCheck) -> Any | None:
    try:
        import tesserocr
    except ImportError:
        return None
    path = _tessdata(config)
    if path is None:
        return None
    try:
        api = tesserocr.PyTessBaseAPI(
            path=path.rstrip("/") + "/", lang=config.language, psm=tesserocr.PSM.SPARSE_TEXT
        )
    except RuntimeError:
        return None
    # Sauvola's local threshold: a global (Otsu) one loses small text on a radiograph's
    # uneven background.
    api.SetVariable("thresholding_method", "2")

    def ocr(img: np.ndarray) -> list[tuple[str, float]]:
        api.SetImage(Image.fromarray(img))
        api.Recognize()
        words: list[tuple[str, float]] = []
        it = api.GetIterator()
        level = tesserocr.RIL.WORD
        if it is None:
            return words
        for w in tesserocr.iterate_level(it, level):
            try:
                text = w.GetUTF8Text(level)
            except RuntimeError:  # an empty result
                continue
            if text and text.strip():
                words.append((text, float(w.Confidence(level))))
        return words

    ocr.name = "tesserocr"  # type: ignore[attr-defined]
    return ocr


def _pytesseract(config: BurnedInTextCheck) -> Any | None:
    try:
        import pytesseract
    except ImportError:
        return None
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        return None
    path = _tessdata(config)
    options = "--psm 11 -c thresholding_method=2" + (f' --tessdata-dir "{path}"' if path else "")

    def ocr(img: np.ndarray) -> list[tuple[str, float]]:
        data = pytesseract.image_to_data(
            Image.fromarray(img),
            lang=config.language,
            config=options,
            output_type=pytesseract.Output.DICT,
        )
        return [(t, float(c)) for t, c in zip(data["text"], data["conf"], strict=True) if t.strip()]

    ocr.name = "pytesseract"  # type: ignore[attr-defined]
    return ocr


def _warn_unavailable_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "burned-in text check skipped: no OCR engine (tesseract) is installed; images are "
            "written without the pixel check (install with `make ocr`, or set "
            "BurnedInTextCheck(required=True) to quarantine them instead)"
        )
