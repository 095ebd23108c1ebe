"""Self-distillation objectives: DINO (image), iBOT (masked patches), KoLeo (spread)."""

from cxrflow.ssl.losses.centering import CenteredTeacher, sinkhorn_knopp
from cxrflow.ssl.losses.dino import DINOLoss, n_dino_pairs
from cxrflow.ssl.losses.ibot import iBOTPatchLoss, masks_weight_from
from cxrflow.ssl.losses.koleo import KoLeoLoss

__all__ = [
    "CenteredTeacher",
    "DINOLoss",
    "KoLeoLoss",
    "iBOTPatchLoss",
    "masks_weight_from",
    "n_dino_pairs",
    "sinkhorn_knopp",
]
