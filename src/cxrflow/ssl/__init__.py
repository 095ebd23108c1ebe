"""DINOv2/RAD-DINO objective pieces: heads, losses, masking, multi-crop views, schedules."""

from cxrflow.ssl.augment import (
    MultiCropAugmentation,
    collate_multicrop,
    intensity_stats,
    to_gray_float,
)
from cxrflow.ssl.heads import DINOHead
from cxrflow.ssl.losses import (
    CenteredTeacher,
    DINOLoss,
    KoLeoLoss,
    iBOTPatchLoss,
    masks_weight_from,
    n_dino_pairs,
    sinkhorn_knopp,
)
from cxrflow.ssl.masking import MaskingGenerator, collate_masks, default_max_num_patches
from cxrflow.ssl.schedules import CosineScheduler, ScheduleConfig, Schedules, lr_for_batch

__all__ = [
    "CenteredTeacher",
    "CosineScheduler",
    "DINOHead",
    "DINOLoss",
    "KoLeoLoss",
    "MaskingGenerator",
    "MultiCropAugmentation",
    "ScheduleConfig",
    "Schedules",
    "collate_masks",
    "collate_multicrop",
    "default_max_num_patches",
    "iBOTPatchLoss",
    "intensity_stats",
    "lr_for_batch",
    "masks_weight_from",
    "n_dino_pairs",
    "sinkhorn_knopp",
    "to_gray_float",
]
