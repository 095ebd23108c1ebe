"""The MONAI bundle `metadata.json` fields of a card (schema meta_schema_20220324)."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any

from cxrflow.modelcard.claims import provenance_sentence

if TYPE_CHECKING:
    from cxrflow.modelcard.card import ModelCard

METADATA_NAME = "metadata.json"
MONAI_SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
    "meta_schema_20220324.json"
)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def monai_metadata(card: ModelCard) -> dict[str, Any]:
    """Bundle metadata from the card's facts (MONAI itself is not used: `monai_version` n/a)."""
    from cxrflow.modelcard.claims import initialisation_sentence
    from cxrflow.modelcard.sections import INTENDED_USE, OUT_OF_SCOPE, REFERENCES

    spec, arch = card.input_spec, card.architecture
    side = spec.image_size if spec else None
    tokens = None
    if arch is not None and side:
        tokens = (side // arch.patch_size) ** 2 + 1 + arch.num_register_tokens
    inputs = {
        "image": {
            "type": "image",
            "format": "magnitude",
            "modality": "xray",
            "num_channels": spec.channels if spec else "not recorded",
            "spatial_shape": [side, side] if side else "not recorded",
            "dtype": "float32",
            "value_range": "(x - mean) / std of [0, 1] pixels"
            + (f", mean {spec.mean:g}, std {spec.std:g}" if spec and spec.mean is not None else ""),
            "is_patch_data": False,
            "channel_def": {"0": "grey", "1": "grey (copy)", "2": "grey (copy)"},
        }
    }
    outputs = {
        "pred": {
            "type": "tensor",
            "format": "embedding",
            "num_channels": arch.embed_dim if arch else "not recorded",
            "spatial_shape": [tokens, arch.embed_dim] if tokens and arch else "not recorded",
            "dtype": "float32",
            "value_range": "unbounded",
            "is_patch_data": False,
            "channel_def": {"0": "CLS token (image embedding)", "1..": "patch tokens"},
        }
    }
    data_source = provenance_sentence(card.provenance, card.data_version).replace("**", "")
    return {
        "schema": MONAI_SCHEMA,
        "version": card.version,
        "changelog": {
            card.version: f"Registered as {card.name}:{card.version} by pipeline run "
            f"{card.pipeline_run} (git {card.git_commit[:12]}), data version "
            f"{card.data_version}. {initialisation_sentence(card.init)}"
        },
        "monai_version": "n/a",
        "pytorch_version": _version("torch"),
        "numpy_version": _version("numpy"),
        "required_packages_version": {
            "transformers": _version("transformers"),
            "cxrflow": _version("cxrflow"),
        },
        "optional_packages_version": {"python": platform.python_version()},
        "task": {
            "encoder": "Chest X-ray image feature extraction (self-supervised ViT encoder)",
            "head": "Task head on a frozen chest X-ray encoder",
            "report_generator": "Chest X-ray report generation (Findings section)",
        }.get(card.kind, card.kind),
        "description": card.summary(),
        "authors": "cxrflow pipeline (automated training; see the changelog for the run)",
        "copyright": "Copyright (c) the cxrflow authors; license " + card.license_.describe(),
        "data_source": data_source,
        "data_type": "PNG (8 or 16 bit grey) or DICOM, read by cxrflow's load_image",
        "image_classes": "single-channel chest radiograph, replicated on three channels",
        "label_classes": "none (self-supervised encoder)" if card.kind == "encoder" else "",
        "pred_classes": "",
        "eval_metrics": dict(card.headline_metrics()),
        "intended_use": INTENDED_USE.replace("\n", " ")
        + " Out of scope: "
        + OUT_OF_SCOPE.replace("\n", " "),
        "references": list(REFERENCES),
        "network_data_format": {"inputs": inputs, "outputs": outputs},
    }
