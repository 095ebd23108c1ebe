"""Encoder input preprocessing: one definition for training, serving and the model card.

An image becomes the encoder's square input in three steps, the same for every consumer:

1. pixels -> grey float32 in [0, 1], each source scaled by its own bit depth: 8-bit PNG or
   uint8 array / 255; 16-bit PNG (PIL mode ``I;16``, or ``I`` as older Pillow opens it) or
   uint16 array / 65535; float arrays taken as already in [0, 1]; DICOM through the ingest's
   display pipeline (Modality LUT, VOI LUT, MONOCHROME1 inversion: `display_image`);
2. geometry: resize the shortest edge to the input size (bicubic, antialiased, as PIL) and
   centre-crop (``crop``), or resize the longest edge and pad with black (``pad``);
3. ``(x - mean) / std`` with the encoder's statistics, replicated on three channels.

The statistics and size travel as a Hugging Face `preprocessor_config.json` (a
`BitImageProcessor`). That format has one fixed `rescale_factor` (1/255) and converts inputs
to 8-bit RGB, so it cannot say "scale each image by its own bit depth": `AutoImageProcessor`
serves 8-bit RGB images only, and a 16-bit image given to it (or through
``Image.convert("RGB")``) saturates. Every cxrflow consumer therefore reads that file with
`read_preprocessing` and prepares pixels with `load_image`.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BitImageProcessor

if TYPE_CHECKING:
    from pydicom.dataset import Dataset as DicomDataset

PROCESSOR_CONFIG = "preprocessor_config.json"
FitMode = Literal["crop", "pad"]
# PIL modes of 16-bit grey images: "I;16*" from Pillow >= 10's PNG reader, "I" from older ones
# and from 16-bit TIFF/DICOM exports; both hold values in [0, 65535].
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_DICOM_MAGIC_OFFSET = 128
_DICOM_SUFFIXES = (".dcm", ".dicom")


@dataclass(frozen=True)
class EncoderPreprocessing:
    """Intensity normalisation (on [0, 1] pixels) and input size an encoder was trained with."""

    mean: float
    std: float
    image_size: int


def make_image_processor(image_mean: float, image_std: float, image_size: int) -> BitImageProcessor:
    """RAD-DINO-style processor: resize shortest edge, centre crop, rescale 1/255, normalise.

    For `AutoImageProcessor` users with 8-bit images; it cannot scale 16-bit ones (see the
    module docstring), which is what `load_image` is for.
    """
    return BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": image_size},
        resample=3,  # PIL bicubic, as the DINOv2/RAD-DINO processors
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[image_mean] * 3,  # grey radiographs replicated on three channels
        image_std=[image_std] * 3,
        do_convert_rgb=True,
    )


def read_preprocessing(path: Path | str) -> EncoderPreprocessing:
    """`EncoderPreprocessing` from a directory's `preprocessor_config.json`."""
    file = Path(path) / PROCESSOR_CONFIG
    conf = json.loads(file.read_text())

    def single(field: str) -> float:
        values = conf.get(field)
        if not values or len(set(map(float, values))) != 1:
            raise ValueError(f"{file}: {field}={values!r} must be one value on all channels")
        return float(values[0])

    # The stored mean/std apply to 8-bit pixels rescaled to [0, 1]; anything else would
    # silently shift every downstream input.
    if not conf.get("do_rescale", False) or not math.isclose(
        conf.get("rescale_factor", 0.0), 1 / 255, rel_tol=1e-6
    ):
        raise ValueError(f"{file}: expected do_rescale with rescale_factor 1/255")
    if not conf.get("do_normalize", False):
        raise ValueError(f"{file}: do_normalize is off; mean/std would not be applied")
    size = conf["crop_size"] if conf.get("do_center_crop") else conf.get("size", {})
    side = size.get("height", size.get("shortest_edge"))
    if side is None or size.get("width", side) != side:
        raise ValueError(f"{file}: cannot read a square input size from {size!r}")
    return EncoderPreprocessing(mean=single("image_mean"), std=single("image_std"), image_size=side)


# ---------------------------------------------------------------- pixels -> [0, 1]

ImageSource = str | Path | bytes | np.ndarray | Image.Image


def to_unit_float(array: np.ndarray, *, where: str = "array") -> np.ndarray:
    """A grey (H, W) float32 image in [0, 1]: uint8 / 255, uint16 / 65535, float as is."""
    arr = np.asarray(array)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:-1])
    if arr.ndim != 2:
        raise ValueError(f"{where}: expected a single-channel (H, W) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:  # either byte order
        return arr.astype(np.float32) / 65535.0
    if arr.dtype.kind == "f":
        out = arr.astype(np.float32)
        lo, hi = float(out.min()), float(out.max())
        # A float image outside [0, 1] has an unknown scale: guessing one shifts every feature.
        if not (math.isfinite(lo) and math.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise ValueError(f"{where}: float pixels must lie in [0, 1], got [{lo}, {hi}]")
        return out
    raise ValueError(
        f"{where}: unsupported pixel type {arr.dtype}; give uint8, uint16 or float in [0, 1]"
    )


def pil_to_unit_float(img: Image.Image, *, where: str = "image") -> np.ndarray:
    """A PIL image as grey float32 in [0, 1], scaled by its mode's bit depth."""
    if img.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(img)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:  # mode "I" is 32-bit: refuse what is not a 16-bit image
            raise ValueError(f"{where}: mode {img.mode} values [{lo}, {hi}] exceed 16 bits")
        return arr.astype(np.float32) / 65535.0
    if img.mode == "F":
        return to_unit_float(np.asarray(img), where=where)
    if img.mode != "L":  # 8-bit colour, palette, bilevel: the grey an 8-bit viewer shows
        img = img.convert("L")
    return np.asarray(img).astype(np.float32) / 255.0


def read_dicom(source: str | Path | bytes | DicomDataset) -> np.ndarray:
    """A DICOM image as grey float32 in [0, 1], by the ingest's display pipeline."""
    import pydicom
    from pydicom.dataset import Dataset as DicomDataset

    from cxrflow.ingest.pixels import display_image

    if isinstance(source, DicomDataset):
        ds = source
    else:
        ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
    return display_image(ds)


def _is_dicom(head: bytes, name: str = "") -> bool:
    return head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM" or name.lower().endswith(
        _DICOM_SUFFIXES
    )


def read_image(source: ImageSource | DicomDataset) -> np.ndarray:
    """Grey float32 (H, W) in [0, 1] from a PNG/DICOM file or its bytes, a PIL image or an array."""
    if isinstance(source, np.ndarray):
        return to_unit_float(source)
    if isinstance(source, Image.Image):
        return pil_to_unit_float(source)
    if isinstance(source, bytes):
        if _is_dicom(source):
            return read_dicom(source)
        with Image.open(io.BytesIO(source)) as img:
            return pil_to_unit_float(img, where="image bytes")
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as f:
            head = f.read(_DICOM_MAGIC_OFFSET + 4)
        if _is_dicom(head, path.name):
            return read_dicom(path)
        with Image.open(path) as img:
            return pil_to_unit_float(img, where=str(path))
    from pydicom.dataset import Dataset as DicomDataset  # lazily: serving may lack pydicom

    if isinstance(source, DicomDataset):
        return read_dicom(source)
    raise TypeError(f"cannot read an image from {type(source).__name__}")


# ---------------------------------------------------------------- [0, 1] -> encoder input


def fit_geometry(
    x: torch.Tensor, size: int, fit: FitMode = "crop", *, nearest: bool = False
) -> torch.Tensor:
    """(C, H, W) -> (C, size, size) by `crop` (shortest edge) or `pad` (longest edge)."""
    h, w = x.shape[-2:]
    scale = size / (min(h, w) if fit == "crop" else max(h, w))
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if nearest:
        y = F.interpolate(x[None].float(), size=(nh, nw), mode="nearest")[0]
    else:  # bicubic with antialias, as the processor (PIL bicubic); clamp the overshoot
        y = F.interpolate(x[None], size=(nh, nw), mode="bicubic", antialias=True)[0].clamp(0, 1)
    if fit == "crop":
        top, left = (nh - size) // 2, (nw - size) // 2
        return y[:, top : top + size, left : left + size]
    top, left = (size - nh) // 2, (size - nw) // 2
    return F.pad(y, (left, size - nw - left, top, size - nh - top))


def normalise(x: torch.Tensor, prep: EncoderPreprocessing) -> torch.Tensor:
    """[0, 1] grey (1, S, S) -> normalised (3, S, S)."""
    return ((x - prep.mean) / prep.std).expand(3, -1, -1).contiguous()


def load_image(
    source: ImageSource | DicomDataset, prep: EncoderPreprocessing, fit: FitMode = "crop"
) -> torch.Tensor:
    """The encoder input (3, S, S) of an 8/16-bit PNG, DICOM, PIL image or array, as in training."""
    x = torch.from_numpy(np.ascontiguousarray(read_image(source)))[None]
    return normalise(fit_geometry(x, prep.image_size, fit), prep)
