"""From stored DICOM pixel values to a display-ready, normalised image file.

The order is the standard's (PS3.3 C.11, and the grayscale pipeline of PS3.4 N.2): Modality
LUT (Rescale Slope/Intercept or a Modality LUT Sequence), then VOI LUT (Window Center/Width
with its VOI LUT Function, or a VOI LUT Sequence), then MONOCHROME1 inversion exactly once.
pydicom never inverts MONOCHROME1 by itself. The window is applied here by the standard's
formulas so that the result is a float image in [0, 1] regardless of the input's range.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi


class PixelError(ValueError):
    """The pixel data cannot be turned into a display image.

    The message names attributes and rules only, never a header value: it becomes a
    quarantine reason.
    """


class DegeneratePixels(PixelError):
    """The LUT chain is degenerate (non-finite parameters, a forbidden window, or an output
    without contrast): writing the image would give a blank or meaningless picture."""


# An output whose range is below one 8-bit grey level shows nothing (all black, all white).
MIN_OUTPUT_RANGE = 1.0 / 255.0
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _first(value: object) -> float:
    if isinstance(value, (list, MultiValue)):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Apply a VOI window (PS3.3 C.11.2.1.2) and return float32 values in [0, 1]."""
    # float32 holds every stored value exactly (< 2**24) and halves the memory traffic of
    # full-resolution radiographs; the operations below work in place for the same reason.
    if not (np.isfinite(center) and np.isfinite(width)):
        raise DegeneratePixels("non-finite VOI LUT parameters (WindowCenter/WindowWidth)")
    function = function.strip().upper() or "LINEAR"
    if function == "SIGMOID":
        if width <= 0:
            raise DegeneratePixels("WindowWidth must be > 0 for VOILUTFunction SIGMOID")
        x = values.astype(np.float32)
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise DegeneratePixels("WindowWidth must be > 0 for VOILUTFunction LINEAR_EXACT")
        x = values.astype(np.float32)
        x -= center
        x *= 1.0 / width
        x += 0.5
        return np.clip(x, 0.0, 1.0, out=x)
    if function != "LINEAR":
        raise PixelError("VOILUTFunction is not LINEAR, LINEAR_EXACT or SIGMOID")
    if width < 1:
        raise DegeneratePixels("WindowWidth must be >= 1 for VOILUTFunction LINEAR")
    x = values.astype(np.float32)
    if width == 1:
        return (x > center - 0.5).astype(np.float32)
    x -= center - 0.5
    x *= 1.0 / (width - 1)
    x += 0.5
    return np.clip(x, 0.0, 1.0, out=x)


def display_image(ds: Dataset, arr: np.ndarray | None = None) -> np.ndarray:
    """The image as a person would see it on a calibrated display: float32 in [0, 1]."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PixelError("not a monochrome image (PhotometricInterpretation)")
    if arr is None:
        arr = ds.pixel_array
    if arr.ndim != 2:
        raise PixelError("expected one 2-D frame (pixel array dimensions)")
    _check_modality_parameters(ds)
    rescaled = apply_modality_lut(arr, ds)

    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        item = ds.VOILUTSequence[0]
        # A LUT is indexed by integers: give it integers, not the float copy.
        lut_input = (
            rescaled
            if np.issubdtype(rescaled.dtype, np.integer)
            else np.rint(rescaled).astype(np.int64)
        )
        out = apply_voi(lut_input, ds, index=0).astype(np.float32)
        bits = int(item.LUTDescriptor[2])
        img = np.clip(out * (1.0 / float(2**bits - 1)), 0.0, 1.0)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        img = window(
            rescaled,
            _first(ds.WindowCenter),
            _first(ds.WindowWidth),
            str(ds.get("VOILUTFunction", "LINEAR")),
        )
    else:
        values = rescaled.astype(np.float32)
        lo, hi = float(values.min()), float(values.max())
        img = (values - lo) * (1.0 / (hi - lo)) if hi > lo else np.zeros_like(values)

    if photometric == "MONOCHROME1":
        np.subtract(1.0, img, out=img)
    return img


def _check_modality_parameters(ds: Dataset) -> None:
    """Refuse Rescale Slope/Intercept that are not finite numbers (PS3.3 C.11.1.1.2)."""
    if "ModalityLUTSequence" in ds:
        return  # pydicom uses the sequence then; its entries are integers
    numbers = {}
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = ds.get(keyword)
        if value is None or value == "":
            numbers[keyword] = default
            continue
        try:
            numbers[keyword] = _first(value)
        except (TypeError, ValueError, IndexError) as exc:
            raise DegeneratePixels(f"{keyword} is not a number (Modality LUT)") from exc
        if not np.isfinite(numbers[keyword]):
            raise DegeneratePixels("non-finite Modality LUT parameters (RescaleSlope/Intercept)")
    # The largest rescaled value must stay a finite float32 (the window works in float32).
    bits = int(ds.get("BitsStored", 16) or 16)
    bound = abs(numbers["RescaleSlope"]) * 2.0**bits + abs(numbers["RescaleIntercept"])
    if not bound < _FLOAT32_MAX:
        raise DegeneratePixels(
            "Modality LUT output out of the float range (RescaleSlope/Intercept)"
        )


def check_display(img: np.ndarray) -> None:
    """Refuse a display image that is not finite or shows nothing (constant, all black).

    Run on the image as written (after resizing: a cheap pass over at most max_side^2 values).
    """
    lo, hi = float(img.min()), float(img.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise DegeneratePixels("non-finite output after the LUT chain")
    if hi - lo < MIN_OUTPUT_RANGE:
        raise DegeneratePixels(
            "constant output after the LUT chain (range below one 8-bit grey level)"
        )


def resize_longest(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so that the longest side is at most `max_side`, keeping the aspect ratio."""
    h, w = img.shape
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # BOX is area averaging: the right filter for strong downscaling, and exact in float.
    return np.asarray(Image.fromarray(img, mode="F").resize(size, Image.Resampling.BOX))


def encode_png(img: np.ndarray, bits: Literal[8, 16]) -> bytes:
    """Quantise a [0, 1] image and encode it as a grayscale PNG (deterministic bytes)."""
    if bits == 16:
        q = np.round(np.clip(img, 0, 1) * 65535.0).astype(np.uint16)
        pil = Image.fromarray(q)
    else:
        q = np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
        pil = Image.fromarray(q, mode="L")
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a packed bit mask with nearest neighbour (bits must not blend)."""
    if mask.shape == shape:
        return mask
    pil = Image.fromarray(mask.astype(np.uint16))
    return np.asarray(pil.resize((shape[1], shape[0]), Image.Resampling.NEAREST)).astype(np.uint16)
