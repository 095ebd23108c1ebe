"""PNG figures for the report, returned as bytes (embedded as base64, never linked)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: stages run in containers without a display
import matplotlib.pyplot as plt
import pandas as pd


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pr_curves_png(curves: Sequence[dict], title: str = "Precision-recall on test") -> bytes:
    """One PR curve a finding (from the heads' curve data); n/a for findings without one."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for c in curves:
        pr = c.get("pr", {})
        if pr.get("recall"):
            ax.plot(pr["recall"], pr["precision"], label=c["class"], drawstyle="steps-post")
        else:
            ax.plot([], [], label=f"{c['class']} (n/a)")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def dice_distribution_png(per_image: pd.DataFrame) -> bytes:
    """Box plots of per-image Dice: one box a structure, one panel a decoder."""
    decoders = sorted(per_image["decoder"].unique())
    fig, axes = plt.subplots(
        1, len(decoders), figsize=(4.5 * len(decoders), 3.8), dpi=100, squeeze=False
    )
    for ax, d in zip(axes[0], decoders, strict=True):
        part = per_image[per_image["decoder"] == d]
        names = sorted(part["structure"].unique())
        ax.boxplot([part.loc[part["structure"] == s, "dice"] for s in names], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=7)
        ax.set(ylim=(0, 1.02), ylabel="Dice", title=f"{d}: Dice per test image")
    return _png(fig)
