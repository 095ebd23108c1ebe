"""Model cards in the Hugging Face layout, generated from recorded facts and attached in MLflow."""

from cxrflow.modelcard.build import (
    attach_model_card,
    build_model_card,
    find_phi,
    write_model_card,
)
from cxrflow.modelcard.card import ModelCard, safe_hyperparameters
from cxrflow.modelcard.facts import PROJECT_LICENSE, License, Provenance

__all__ = [
    "PROJECT_LICENSE",
    "License",
    "ModelCard",
    "Provenance",
    "attach_model_card",
    "build_model_card",
    "find_phi",
    "safe_hyperparameters",
    "write_model_card",
]
