"""Model cards in the Hugging Face layout, attached to registered versions in MLflow."""

from cxrflow.modelcard.build import (
    attach_model_card,
    build_model_card,
    find_phi,
    write_model_card,
)
from cxrflow.modelcard.card import ModelCard, safe_hyperparameters

__all__ = [
    "ModelCard",
    "attach_model_card",
    "build_model_card",
    "find_phi",
    "safe_hyperparameters",
    "write_model_card",
]
