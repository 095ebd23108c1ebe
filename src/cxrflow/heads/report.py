"""Markdown tables in the paper's layout: Table 1 (AUPRC), Table 3 (Dice), Table 5 (accuracy)."""

from __future__ import annotations

import math

from cxrflow.heads.classification import ClassificationResult
from cxrflow.heads.demographics import DemographicsResult
from cxrflow.heads.segmentation import SegmentationResult


def _pct(mean: float, std: float) -> str:
    """'mean ± std' in percent; n/a when undefined."""
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def classification_table(result: ClassificationResult) -> str:
    """Table 1 style: a row per finding with AUPRC and AUROC over the repeats, then macro."""
    summary = result.summary()
    repeats = len(result.per_repeat)
    lines = [
        f"### Linear probe ({result.feature_kind} features, {repeats} {result.protocol})",
        "",
        "| finding | AUPRC | AUROC | test positives |",
        "| --- | ---: | ---: | ---: |",
    ]
    first = result.per_repeat[0]
    for f in result.findings:
        s = summary[f]
        lines.append(
            f"| {f} | {_pct(*s['auprc'])} | {_pct(*s['auroc'])} | "
            f"{first[f].positives}/{first[f].labelled} |"
        )
    m = summary["macro"]
    lines.append(f"| **macro** | **{_pct(*m['auprc'])}** | **{_pct(*m['auroc'])}** | |")
    return "\n".join(lines) + "\n"


def segmentation_table(results: list[SegmentationResult]) -> str:
    """Table 3 style: a row per decoder, Dice 'mean (std)' per structure and their average."""
    if not results:
        return ""
    structures = results[0].structures
    lines = [
        "### Segmentation (Dice on test images with the structure)",
        "",
        "| decoder | # params | " + " | ".join(structures) + " | average |",
        "| --- | ---: | " + " | ".join("---:" for _ in structures) + " | ---: |",
    ]
    for r in results:
        cells = [_pct(r.dice[s].mean, r.dice[s].std) for s in structures]
        means = [r.dice[s].mean for s in structures if not math.isnan(r.dice[s].mean)]
        avg = f"{100 * sum(means) / len(means):.1f}" if means else "n/a"
        lines.append(
            f"| {r.decoder_name} | {r.trainable_params:,} | " + " | ".join(cells) + f" | {avg} |"
        )
    counts = ", ".join(f"{s}: {results[0].dice[s].images}" for s in structures)
    lines += ["", f"Test images per structure: {counts}."]
    return "\n".join(lines) + "\n"


def demographics_table(result: DemographicsResult) -> str:
    """Table 5 style: accuracy 'mean (std)' per target; skipped targets with their reason."""
    lines = [
        "### Demographics (logistic regression, subject-grouped k-fold accuracy)",
        "",
        "| target | accuracy | images | classes |",
        "| --- | ---: | ---: | --- |",
    ]
    for t, s in result.scores.items():
        lines.append(f"| {t} | {_pct(s.accuracy, s.std)} | {s.images} | {', '.join(s.classes)} |")
    for t, why in result.skipped.items():
        lines.append(f"| {t} | skipped | | {why} |")
    return "\n".join(lines) + "\n"
