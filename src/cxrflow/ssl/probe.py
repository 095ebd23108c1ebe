"""A quick linear probe of frozen encoder features: is the encoder learning anything useful?

Logistic regression (scikit-learn) per finding on the CLS token concatenated with the mean
patch token, trained on the train split and scored on another split by macro AUPRC over the
findings that have positives in both. The heads stage does the paper's full evaluation; this
probe is the cheap check used to compare an encoder with its random-init twin.
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

from cxrflow.manifest import LABEL_COLUMNS, MANIFEST_FILE, read_manifest
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
    model: DinoViT,
    data_dir: Path,
    image_size: int,
    mean: float,
    std: float,
    eval_split: str = "test",
) -> dict[str, float]:
    """Per-finding and macro AUPRC of a linear probe trained on the train split."""
    manifest = read_manifest(data_dir / MANIFEST_FILE)
    train = manifest[manifest["split"] == "train"]
    test = manifest[manifest["split"] == eval_split]
    xs = {
        name: encode(model, [data_dir / p for p in rows["image_path"]], image_size, mean, std)
        for name, rows in (("train", train), ("test", test))
    }
    scaler = StandardScaler().fit(xs["train"])
    x_train, x_test = scaler.transform(xs["train"]), scaler.transform(xs["test"])
    scores: dict[str, float] = {}
    for col in LABEL_COLUMNS:
        y_train = pd.to_numeric(train[col], errors="coerce")
        y_test = pd.to_numeric(test[col], errors="coerce")
        tr, te = y_train.notna().to_numpy(), y_test.notna().to_numpy()
        if y_train[tr].nunique() < 2 or y_test[te].sum() == 0:
            continue
        clf = LogisticRegression(max_iter=2000, C=0.1).fit(x_train[tr], y_train[tr].astype(int))
        scores[col.removeprefix("label_")] = float(
            average_precision_score(y_test[te].astype(int), clf.predict_proba(x_test[te])[:, 1])
        )
    if not scores:
        raise ValueError(f"no finding has positives in both the train and {eval_split} splits")
    scores["macro"] = float(np.mean(list(scores.values())))
    return scores
