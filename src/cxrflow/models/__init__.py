"""DINOv2-family ViT backbone and its Hugging Face interchange."""

from cxrflow.models.attention import attention_backend
from cxrflow.models.config import ViTConfig, vit_base, vit_large, vit_small, vit_tiny
from cxrflow.models.hf import (
    CheckpointMismatchError,
    hf_config_from_vit,
    load_encoder,
    load_hf_dinov2,
    save_hf_dinov2,
    vit_config_from_hf,
)
from cxrflow.models.preprocessing import (
    EncoderPreprocessing,
    make_image_processor,
    read_preprocessing,
)
from cxrflow.models.vit import DinoViT

__all__ = [
    "CheckpointMismatchError",
    "DinoViT",
    "EncoderPreprocessing",
    "ViTConfig",
    "attention_backend",
    "hf_config_from_vit",
    "load_encoder",
    "load_hf_dinov2",
    "make_image_processor",
    "read_preprocessing",
    "save_hf_dinov2",
    "vit_base",
    "vit_config_from_hf",
    "vit_large",
    "vit_small",
    "vit_tiny",
]
