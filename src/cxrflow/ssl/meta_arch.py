"""Student and teacher, and one step of the DINOv2 objective (DINO + iBOT + KoLeo).

The teacher sees the two global views (with its weaker blur); the student sees the same two
global crops with iBOT masks applied to their patch embeddings, plus the local crops. Global
and local crops differ in size: without xformers' block-diagonal packing they run as two
forward passes of the student, which is what this module does (it is exact, and on CPU the
only option).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from cxrflow.models.vit import DinoViT
from cxrflow.ssl.heads import DINOHead
from cxrflow.ssl.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss
from cxrflow.ssl.presets import PretrainConfig


class SSLMetaArch(nn.Module):
    """The student (backbone + heads), its EMA teacher and the three losses."""

    def __init__(self, cfg: PretrainConfig, backbone: DinoViT | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        backbone = backbone if backbone is not None else DinoViT(cfg.vit_config())
        dim = backbone.embed_dim
        student: dict[str, nn.Module] = {
            "backbone": backbone,
            "dino_head": DINOHead(
                dim, cfg.prototypes, cfg.head_hidden_dim, cfg.head_bottleneck_dim
            ),
        }
        if cfg.ibot_separate_head:
            student["ibot_head"] = DINOHead(
                dim, cfg.prototypes, cfg.head_hidden_dim, cfg.head_bottleneck_dim
            )
        self.student = nn.ModuleDict(student)
        self.teacher = self._build_teacher()
        self.dino_loss = DINOLoss(cfg.prototypes, cfg.student_temp)
        self.ibot_loss = iBOTPatchLoss(cfg.prototypes, cfg.student_temp)
        self.koleo_loss = KoLeoLoss()

    def _build_teacher(self) -> nn.ModuleDict:
        """The student's architecture and weights, without drop path, frozen and in eval mode."""
        backbone = self.student["backbone"]
        # As upstream: the teacher's backbone is built without drop path (a deep copy would
        # keep the student's, and its targets would then be noisy in train mode).
        # Its random init is overwritten at once: keep it from shifting the caller's RNG stream.
        with torch.random.fork_rng(devices=[]):
            teacher_backbone = type(backbone)(backbone.cfg.replace(drop_path_rate=0.0))
        teacher_backbone.to(backbone.pos_embed.device).load_state_dict(backbone.state_dict())
        heads = {name: copy.deepcopy(m) for name, m in self.student.items() if name != "backbone"}
        teacher = nn.ModuleDict({"backbone": teacher_backbone, **heads})
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher.eval()

    def train(self, mode: bool = True) -> SSLMetaArch:
        """Set the student's (and the losses') mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    @property
    def ibot_head_name(self) -> str:
        return "ibot_head" if self.cfg.ibot_separate_head else "dino_head"

    @torch.no_grad()
    def teacher_targets(
        self, batch: dict[str, Any], teacher_temp: float
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Teacher CLS targets per global view and masked-patch targets."""
        cfg = self.cfg
        out = self.teacher["backbone"].forward_features(batch["global_crops_teacher"])
        cls_logits = self.teacher["dino_head"](out["x_norm_clstoken"])
        patches = out["x_norm_patchtokens"].flatten(0, 1)[batch["mask_indices_list"]]
        patch_logits = self.teacher[self.ibot_head_name](patches)
        n_masked = int(batch["n_masked_patches"])
        if cfg.centering == "sinkhorn_knopp":
            cls_probs = self.dino_loss.sinkhorn_knopp_teacher(cls_logits, teacher_temp)
            patch_probs = self.ibot_loss.sinkhorn_knopp_teacher(
                patch_logits, teacher_temp, n_masked
            )
        else:
            cls_probs = self.dino_loss.softmax_center_teacher(cls_logits, teacher_temp)
            self.dino_loss.update_center(cls_logits)
            patch_probs = self.ibot_loss.softmax_center_teacher(patch_logits, teacher_temp)
            self.ibot_loss.update_center(patch_logits)
        return list(cls_probs.chunk(2)), patch_probs

    def forward_backward(
        self, batch: dict[str, Any], teacher_temp: float, loss_scale: float = 1.0
    ) -> dict[str, float]:
        """Compute every loss term of one (micro-)batch and back-propagate their weighted sum."""
        cfg = self.cfg
        teacher_cls, teacher_patches = self.teacher_targets(batch, teacher_temp)
        backbone = self.student["backbone"]
        g = backbone.forward_features(batch["global_crops"], masks=batch["masks"])
        student_logits = list(self.student["dino_head"](g["x_norm_clstoken"]).chunk(2))
        if cfg.n_local_crops:
            local = backbone.forward_features(batch["local_crops"])
            student_logits += list(
                self.student["dino_head"](local["x_norm_clstoken"]).chunk(cfg.n_local_crops)
            )
        dino = self.dino_loss(student_logits, teacher_cls)

        masked = g["x_norm_patchtokens"].flatten(0, 1)[batch["mask_indices_list"]]
        ibot = self.ibot_loss.forward_masked(
            self.student[self.ibot_head_name](masked),
            teacher_patches,
            batch["masks"],
            batch["n_masked_patches"],
            batch["masks_weight"],
        )
        # As upstream: on this rank's own CLS tokens, per global crop (no gather across ranks).
        koleo = sum(self.koleo_loss(c) for c in g["x_norm_clstoken"].chunk(2))
        total = cfg.dino_weight * dino + cfg.ibot_weight * ibot + cfg.koleo_weight * koleo
        (total * loss_scale).backward()
        # The DINO loss is a cross-entropy: H(teacher) + KL(teacher || student). As the teacher
        # sharpens or the centre moves, H(teacher) changes and the loss can rise while the
        # student keeps getting closer to its targets; the KL term says which is happening.
        teacher_entropy = _mean_entropy(teacher_cls)
        return {
            "loss": float(total.detach()),
            "dino_loss": float(dino.detach()),
            "dino_teacher_entropy": teacher_entropy,
            "dino_kl": float(dino.detach()) - teacher_entropy,
            "ibot_loss": float(ibot.detach()),
            "koleo_loss": float(koleo.detach()),
        }

    def _ema_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(teacher, student) parameters paired by name."""
        # A compiled student backbone names its parameters `_orig_mod.*`; the teacher's do not.
        student = {
            name.replace("_orig_mod.", ""): p.detach()
            for name, p in self.student.named_parameters()
        }
        teacher = dict(self.teacher.named_parameters())
        if student.keys() != teacher.keys():
            raise RuntimeError(
                f"student and teacher parameters differ: {sorted(set(student) ^ set(teacher))}"
            )
        names = list(teacher)
        return [teacher[n] for n in names], [student[n] for n in names]

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA of the student: teacher <- m teacher + (1 - m) student."""
        t, s = self._ema_pairs()
        torch._foreach_mul_(t, momentum)
        torch._foreach_add_(t, s, alpha=1.0 - momentum)


@torch.no_grad()
def _mean_entropy(probs: list[torch.Tensor]) -> float:
    """Mean entropy (nats) of the rows of each target, averaged over targets.

    Each teacher view supervises the same number of DINO pairs, so this equals the entropy
    term of the pair-averaged DINO cross-entropy.
    """
    per_view = [-(p.float() * p.float().clamp_min(1e-12).log()).sum(-1).mean() for p in probs]
    return float(torch.stack(per_view).mean())
