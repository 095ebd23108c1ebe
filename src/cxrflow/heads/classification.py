"""Linear probe for multi-label findings on a frozen encoder (E.3.1).

Labels come from the manifest's `label_*` columns; a null label is left out of the loss
(masked BCE) and of the metrics. Two modes: `cached` trains on features extracted once (no
augmentation); `augmented` runs the frozen encoder on augmented images every step.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from cxrflow.findings import FINDINGS, label_column
from cxrflow.heads.config import ClassificationConfig, HeadsConfigError
from cxrflow.heads.data import ImageDataset
from cxrflow.heads.features import encode_batch, select
from cxrflow.heads.metrics import BinaryScore, curve_data, macro, mean_std, multilabel_scores
from cxrflow.models import DinoViT
from cxrflow.split import subject_folds

log = logging.getLogger(__name__)

Batches = Callable[[torch.Generator], Iterator[tuple[torch.Tensor, torch.Tensor]]]


class LinearProbe(nn.Module):
    """One linear layer: features (B, F) -> logits (B, C)."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def label_matrix(df: pd.DataFrame, findings: Sequence[str]) -> np.ndarray:
    """(N, C) float labels, NaN where a label is null."""
    cols = [label_column(f) for f in findings]
    return df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)


def usable_findings(train: pd.DataFrame, cfg: ClassificationConfig) -> list[str]:
    """Findings the probe can learn: each needs positives and negatives in train.

    Policy (`cfg.missing_positives`): `skip` drops the others with a warning (tiny preset:
    small datasets lack rare findings); `error` raises (paper preset: a paper-scale run
    without a class is a data problem to fix, not to hide).
    """
    wanted = list(cfg.findings or FINDINGS)
    y = label_matrix(train, wanted)
    bad = {}
    for i, f in enumerate(wanted):
        col = y[:, i][~np.isnan(y[:, i])]
        if col.size == 0 or col.sum() == 0 or col.sum() == col.size:
            bad[f] = f"{int(col.sum())} positives of {col.size} labelled"
    if bad:
        text = "; ".join(f"{f} ({why})" for f, why in bad.items())
        if cfg.missing_positives == "error":
            raise HeadsConfigError(
                f"findings without both classes in the train split: {text}. Drop them with "
                "classification.findings or set classification.missing_positives='skip'"
            )
        log.warning("skipping findings without both classes in train: %s", text)
    kept = [f for f in wanted if f not in bad]
    if not kept:
        raise HeadsConfigError("no finding has both positives and negatives in the train split")
    return kept


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE over the labelled entries only (labels NaN = null)."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    loss = nn.functional.binary_cross_entropy_with_logits(
        logits[known], labels[known], reduction="mean"
    )
    return loss


def feature_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Batches:
    """Shuffled mini-batches of cached features."""

    def batches(gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]

    return batches


def image_batches(
    encoder: DinoViT,
    dataset: ImageDataset,
    y: torch.Tensor,
    kind: str,
    batch_size: int,
    device: str,
) -> Batches:
    """Mini-batches of augmented images encoded by the frozen encoder on the fly.

    The encoder runs in eval mode, as for the cached features: frozen means deterministic
    (no drop path or dropout), so an un-augmented image gives its cached features.
    """

    def batches(gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        encoder.eval()
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)
        for batch in loader:
            with torch.no_grad():
                feats = encode_batch(encoder, batch["pixels"].to(device))
            yield select(feats, kind), y[batch["index"]].to(device)

    return batches


def repeat_plans(
    train: pd.DataFrame, cfg: ClassificationConfig, seed: int
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(train rows, held-out rows or None) per repeat: seeds reuse all of train and validate
    on the val split; folds hold out one subject-level fold of train each (a subject's
    images are never on both sides)."""
    if cfg.protocol == "folds":
        folds = subject_folds(train, cfg.repeats, seed).to_numpy()
        return [(folds != k, folds == k) for k in range(cfg.repeats)]
    return [(np.ones(len(train), dtype=bool), None)] * cfg.repeats


@dataclass
class ProbeRun:
    """One trained probe and its loss history."""

    probe: LinearProbe
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


def train_probe(
    batches: Batches,
    in_features: int,
    n_classes: int,
    cfg: ClassificationConfig,
    *,
    steps_per_epoch: int,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> ProbeRun:
    """AdamW + cosine schedule over `cfg.epochs`; keeps the last or the min-val-loss probe."""
    torch.manual_seed(seed)
    probe = LinearProbe(in_features, n_classes).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    run = ProbeRun(probe)
    best = (math.inf, copy.deepcopy(probe.state_dict()))
    for _ in range(cfg.epochs):
        probe.train()
        total, n = 0.0, 0
        for xb, yb in batches(gen):
            loss = masked_bce(probe(xb.to(device)), yb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(xb), n + len(xb)
        run.train_loss.append(total / max(n, 1))
        if val is not None:
            probe.eval()
            with torch.no_grad():
                vl = float(masked_bce(probe(val[0].to(device)), val[1].to(device)))
            run.val_loss.append(vl)
            if vl < best[0]:
                best = (vl, copy.deepcopy(probe.state_dict()))
    if cfg.selection == "val_loss" and val is not None:
        probe.load_state_dict(best[1])
    run.probe = probe.eval().cpu()
    return run


@torch.no_grad()
def predict(probe: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Sigmoid scores (N, C)."""
    return torch.sigmoid(probe(x)).numpy()


@dataclass
class ClassificationResult:
    """Per-finding AUPRC/AUROC over repeats, curves of the exported probe, the probe itself."""

    findings: list[str]
    feature_kind: str
    protocol: str
    per_repeat: list[dict[str, BinaryScore]]
    probe: LinearProbe
    curves: list[dict]
    test_scores: np.ndarray
    test_labels: np.ndarray
    histories: list[ProbeRun]

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """finding (and "macro") -> {"auprc": (mean, std), "auroc": (mean, std)}."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for f in self.findings:
            out[f] = {
                m: mean_std([getattr(r[f], m) for r in self.per_repeat]) for m in ("auprc", "auroc")
            }
        out["macro"] = {
            m: mean_std([macro([getattr(s, m) for s in r.values()]) for r in self.per_repeat])
            for m in ("auprc", "auroc")
        }
        return out

    def test_counts(self) -> dict[str, tuple[int, int]]:
        """finding -> (positives, labelled images) in the test split the scores rest on."""
        labelled = ~np.isnan(self.test_labels)
        return {
            f: (int(np.nansum(self.test_labels[:, i])), int(labelled[:, i].sum()))
            for i, f in enumerate(self.findings)
        }


def run_classification(
    features: dict[str, dict[str, torch.Tensor]],
    frames: dict[str, pd.DataFrame],
    cfg: ClassificationConfig,
    *,
    seed: int = 0,
    augmented: Callable[[pd.DataFrame, torch.Tensor], tuple[Batches, int]] | None = None,
    device: str = "cpu",
) -> ClassificationResult:
    """Train `cfg.repeats` probes (seeds, or subject folds of train), report on test.

    `features[split]` are cached features of `frames[split]` (rows aligned). In augmented mode
    `augmented(train_frame, labels)` gives the image batches and steps per epoch.
    """
    # never train silently in the other mode than the one configured (and logged)
    if cfg.mode == "augmented" and augmented is None:
        raise HeadsConfigError(
            "classification.mode='augmented' needs augmented image batches (`augmented=`); "
            "without them the probe would train on cached features. Pass them or set "
            "classification.mode='cached'"
        )
    if cfg.mode == "cached" and augmented is not None:
        raise HeadsConfigError(
            "classification.mode='cached' but augmented image batches were given; set "
            "classification.mode='augmented' to train on them"
        )
    train_df = frames["train"]
    findings = usable_findings(train_df, cfg)
    kind = cfg.features
    x_all = {s: select(f, kind) for s, f in features.items()}
    y_all = {
        s: torch.tensor(label_matrix(frames[s], findings), dtype=torch.float32) for s in frames
    }
    y_test = y_all["test"].numpy()
    untested = [
        f
        for i, f in enumerate(findings)
        if np.nansum(y_test[:, i]) in (0, np.sum(~np.isnan(y_test[:, i])))
    ]
    if untested:
        log.warning("findings without both classes in test (no AUPRC/AUROC): %s", untested)
    plans = []
    for rows, held in repeat_plans(train_df, cfg, seed):
        if held is None:
            val = (x_all["val"], y_all["val"]) if "val" in x_all else None
        else:
            val = (x_all["train"][held], y_all["train"][held])
        plans.append((rows, val))
    per_repeat, runs = [], []
    for r, (rows, val) in enumerate(plans):
        idx = torch.from_numpy(np.flatnonzero(rows))
        xt, yt = x_all["train"][idx], y_all["train"][idx]
        if augmented is not None:
            batches, steps = augmented(train_df.iloc[idx.numpy()], yt)
        else:
            batches = feature_batches(xt, yt, cfg.batch_size)
            steps = math.ceil(len(xt) / cfg.batch_size)
        run = train_probe(
            batches,
            xt.shape[1],
            len(findings),
            cfg,
            steps_per_epoch=steps,
            val=val,
            seed=seed + r,
            device=device,
        )
        runs.append(run)
        scores = predict(run.probe, x_all["test"])
        per_repeat.append(multilabel_scores(y_all["test"].numpy(), scores, findings))
    # the exported probe: the repeat with the lowest final validation loss (the first without)
    pick = min(range(len(runs)), key=lambda i: runs[i].val_loss[-1] if runs[i].val_loss else i)
    probe = runs[pick].probe
    scores = predict(probe, x_all["test"])
    labels = y_all["test"].numpy()
    curves = [
        curve_data(labels[:, i], scores[:, i], f, cfg.threshold) for i, f in enumerate(findings)
    ]
    return ClassificationResult(
        findings, kind, cfg.protocol, per_repeat, probe, curves, scores, labels, runs
    )
