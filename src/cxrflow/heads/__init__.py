"""Task heads on a frozen encoder: linear probe, segmentation decoders, demographics."""

from cxrflow.heads.config import (
    PRESETS,
    ClassificationConfig,
    DemographicsConfig,
    HeadsConfig,
    HeadsConfigError,
    SegmentationConfig,
    preset,
)
from cxrflow.heads.data import EmptySplitError, ImageDataset, load_manifest, split_frame
from cxrflow.heads.export import HeadCard, export_head, load_head
from cxrflow.heads.features import FeatureCache, encoder_digest, extract_features
from cxrflow.heads.metrics import binary_score, dice, dice_per_structure, multilabel_scores
from cxrflow.heads.train import HeadsResult, train_heads

__all__ = [
    "PRESETS",
    "ClassificationConfig",
    "DemographicsConfig",
    "EmptySplitError",
    "FeatureCache",
    "HeadCard",
    "HeadsConfig",
    "HeadsConfigError",
    "HeadsResult",
    "ImageDataset",
    "SegmentationConfig",
    "binary_score",
    "dice",
    "dice_per_structure",
    "encoder_digest",
    "export_head",
    "extract_features",
    "load_head",
    "load_manifest",
    "multilabel_scores",
    "preset",
    "split_frame",
    "train_heads",
]
