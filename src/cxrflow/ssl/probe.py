"""A quick linear probe of frozen encoder features: is the encoder learning anything useful?

Logistic regression (scikit-learn) per finding on the CLS token concatenated with the mean
patch token, cross-validated over subject folds, scored by macro AUPRC. The heads stage does
the paper's full evaluation; this probe is the cheap check used to compare an encoder with
its random-init twin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from cxrflow.dataset import Dataset
from cxrflow.manifest import LABEL_COLUMNS
from cxrflow.models.vit import DinoViT
from cxrflow.ssl.data import load_image


@torch.no_grad()
def encode(
    model: DinoViT, paths: list[Path], image_size: int, mean: float, std: float, batch: int = 32
) -> np.ndarray:
    """(N, 2D) frozen features: CLS and mean patch token of each resized, normalised image."""
    model.eval()
    feats = []
    for i in range(0, len(paths), batch):
        images = [load_image(p) for p in paths[i : i + batch]]
        x = torch.stack(
            [
                F.interpolate(im[None], size=(image_size, image_size), mode="area")[0]
                for im in images
            ]
        )
        x = ((x - mean) / std).expand(-1, 3, -1, -1)
        out = model.forward_features(x)
        feats.append(torch.cat([out["x_norm_clstoken"], out["x_norm_patchtokens"].mean(1)], dim=1))
    return torch.cat(feats).numpy()


def probe_auprc(
    model: DinoViT, data_dir: Path, image_size: int, mean: float, std: float, folds: int = 5
) -> dict[str, float]:
    """Per-finding and macro AUPRC of a linear probe, cross-validated over subject folds.

    Every labelled image is scored once, by the probe trained on the other folds (grouped by
    subject, so no subject is in its own training data); on a small cohort this is a far
    steadier estimate than one small test split.
    """
    from sklearn.model_selection import GroupKFold

    manifest = Dataset(data_dir).manifest()
    x = encode(model, [data_dir / p for p in manifest["image_path"]], image_size, mean, std)
    groups = manifest["subject_id"].to_numpy()
    scores: dict[str, float] = {}
    for col in LABEL_COLUMNS:
        y = pd.to_numeric(manifest[col], errors="coerce")
        known = y.notna().to_numpy()
        yk, xk, gk = y[known].astype(int).to_numpy(), x[known], groups[known]
        if yk.sum() < folds or (yk == 0).sum() < folds:
            continue
        pred = np.zeros(len(yk))
        for train, test in GroupKFold(n_splits=folds).split(xk, yk, gk):
            if yk[train].min() == yk[train].max():
                pred[test] = yk[train].mean()
                continue
            scaler = StandardScaler().fit(xk[train])
            clf = LogisticRegression(max_iter=2000, C=0.1).fit(
                scaler.transform(xk[train]), yk[train]
            )
            pred[test] = clf.predict_proba(scaler.transform(xk[test]))[:, 1]
        scores[col.removeprefix("label_")] = float(average_precision_score(yk, pred))
    if not scores:
        raise ValueError(f"no finding has {folds} positives and {folds} negatives to probe")
    scores["macro"] = float(np.mean(list(scores.values())))
    return scores
