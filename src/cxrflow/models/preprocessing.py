"""Encoder input preprocessing, stored as a Hugging Face image-processor config."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from transformers import BitImageProcessor

PROCESSOR_CONFIG = "preprocessor_config.json"


@dataclass(frozen=True)
class EncoderPreprocessing:
    """Intensity normalisation (on [0, 1] pixels) and input size an encoder was trained with."""

    mean: float
    std: float
    image_size: int


def make_image_processor(image_mean: float, image_std: float, image_size: int) -> BitImageProcessor:
    """RAD-DINO-style processor: resize shortest edge, centre crop, rescale 1/255, normalise."""
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
