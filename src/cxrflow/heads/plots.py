"""PNG artefacts: PR curves of the probe, overlays of predicted and true masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run in containers without a display
import matplotlib.pyplot as plt
import numpy as np


def pr_curves_png(curves: Sequence[dict], path: Path, title: str = "") -> Path:
    """One axis, one PR curve a finding (findings without both classes are listed as n/a)."""
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    for c in curves:
        if c["pr"]["recall"]:
            ax.plot(
                c["pr"]["recall"], c["pr"]["precision"], label=c["class"], drawstyle="steps-post"
            )
        else:
            ax.plot([], [], label=f"{c['class']} (n/a)")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def overlays_png(
    images: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    structures: Sequence[str],
    path: Path,
    title: str = "",
) -> Path:
    """A row per image: truth contours (solid) and predicted contours (dashed) per structure."""
    n = len(images)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(3 * max(n, 1), 3.3), dpi=100, squeeze=False)
    colours = plt.get_cmap("tab10")
    for i, ax in enumerate(axes[0]):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        for k, name in enumerate(structures):
            colour = colours(k % 10)
            if truth[i, k].any():
                ax.contour(truth[i, k], levels=[0.5], colors=[colour], linewidths=1.2)
            if pred[i, k].any():
                ax.contour(
                    pred[i, k], levels=[0.5], colors=[colour], linewidths=1.2, linestyles="--"
                )
            ax.plot([], [], color=colour, label=name)
        if i == 0:
            ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(f"{title} (solid: truth, dashed: prediction)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
