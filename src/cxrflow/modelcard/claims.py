"""The card's sentences about results, each computed from the numbers it states.

A comparative word ("strongly", "better than chance", "worst") appears only when the numbers
beside it support it; a number too thin to read is flagged "not interpretable" with its count.
"""

from __future__ import annotations

import math

from cxrflow.modelcard.facts import (
    MIN_GROUP_IMAGES,
    MIN_POSITIVES,
    STRONG_MARGIN,
    BinaryResult,
    DemographicProbe,
    GroupResult,
    Initialisation,
    IntervalResult,
    Provenance,
)


def pct(value: float | None, digits: int = 1) -> str:
    """0..1 as a percentage; n/a when undefined."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def points(value: float | None) -> str:
    """0..1 as percentage points with its sign."""
    return "n/a" if value is None else f"{100 * value:+.1f} points"


def not_interpretable(positives: int) -> str:
    """The flag a metric on too few positives carries."""
    return f"not interpretable: {positives} positive{'s' if positives != 1 else ''}"


# ------------------------------------------------------------------ classification


def classification_note(r: BinaryResult) -> str:
    """The reading of one finding's AUROC, from its counts and interval."""
    if r.positives is None:
        return "counts not recorded: cannot judge"
    if r.positives < MIN_POSITIVES:
        return not_interpretable(r.positives)
    ci = r.auroc_interval()
    if ci is None:
        return "no interval (one class only)"
    low, high = ci
    if low > 0.5:
        return "better than chance (95% interval above 50%)"
    if high < 0.5:
        return "worse than chance (95% interval below 50%)"
    return "not distinguishable from chance (95% interval includes 50%)"


def classification_row(r: BinaryResult, findings: int = 1) -> tuple[str, ...]:
    """finding | AUPRC | AUROC | AUROC 95% interval | positives / labelled | prevalence | note."""

    def with_std(mean: float, std: float | None) -> str:
        if math.isnan(mean):
            return "n/a"
        return pct(mean) + (f" ± {100 * std:.1f}" if std is not None else "")

    ci = r.auroc_interval()
    counts = "not recorded" if r.positives is None else f"{r.positives} / {r.labelled}"
    return (
        "macro average" if r.finding == "macro" else r.finding,
        with_std(r.auprc, r.auprc_std),
        with_std(r.auroc, r.auroc_std),
        f"[{pct(ci[0])}, {pct(ci[1])}]" if ci else "-",
        counts,
        pct(r.prevalence),
        (
            ("mean of the findings above" if findings else "per-finding results not recorded")
            if r.finding == "macro"
            else classification_note(r)
        ),
    )


def classification_summary(results: list[BinaryResult]) -> list[str]:
    """Sentences on Table 1: how many findings can be read, and the macro average's caveat."""
    per = [r for r in results if r.finding != "macro"]
    if not per:
        return []
    out = []
    unknown = [r.finding for r in per if r.positives is None]
    thin = [r for r in per if r.positives is not None and r.positives < MIN_POSITIVES]
    if unknown:
        out.append(
            f"Test counts (positives / labelled) are not recorded for {len(unknown)} of "
            f"{len(per)} findings, so their AUPRC/AUROC cannot be judged."
        )
    if thin:
        listed = ", ".join(f"{r.finding} ({r.positives})" for r in thin)
        out.append(
            f"{len(thin)} of {len(per)} findings have fewer than {MIN_POSITIVES} test "
            f"positives and are not interpretable: {listed}."
        )
    macro = next((r for r in results if r.finding == "macro"), None)
    if macro is not None and (thin or unknown):
        out.append(
            f"The macro average ({pct(macro.auprc)} AUPRC) includes them: read it with them."
        )
    better = [r.finding for r in per if classification_note(r).startswith("better")]
    if better:
        out.append(f"Better than chance (AUROC 95% interval above 50%): {', '.join(better)}.")
    return out


# ------------------------------------------------------------------ demographics


def demographic_sentence(p: DemographicProbe) -> str:
    """Whether the frozen features encode `p.target`, judged against the majority-class rate."""
    std = f" ± {100 * p.std:.1f}" if p.std is not None else ""
    head = f"{p.target}: accuracy {pct(p.accuracy)}{std}"
    if p.majority_rate is None or p.margin is None:
        return (
            f"{head}; the majority-class rate is not recorded, so whether the features encode "
            f"{p.target} cannot be judged."
        )
    base = f"majority-class rate {pct(p.majority_rate)}"
    if p.majority_class:
        base += f" (always answering {p.majority_class}"
        base += f", {p.images} images)" if p.images else ")"
    if p.margin <= 0:
        return f"{head}, at or below the {base}: no evidence that the features encode {p.target}."
    noise = p.std if p.std is not None else 0.0
    if p.margin >= STRONG_MARGIN and p.margin > noise:
        return f"{head}, {points(p.margin)} above the {base}: {p.target} is strongly encoded."
    if p.margin > noise:
        return f"{head}, {points(p.margin)} above the {base}: {p.target} is weakly encoded."
    return (
        f"{head}, {points(p.margin)} above the {base}, within the fold standard deviation: "
        f"not distinguishable from guessing the majority class."
    )


def encodes_demographics(probes: list[DemographicProbe]) -> list[str]:
    """The targets whose accuracy beats the majority rate by more than its fold std."""
    return [
        p.target
        for p in probes
        if p.margin is not None and p.margin > 0 and p.margin > (p.std or 0.0)
    ]


# ------------------------------------------------------------------ report, fairness


def report_sentence(r: IntervalResult) -> str:
    """A report metric with its interval and N."""
    n = f" (N = {r.n} test reports)" if r.n else ""
    return (
        f"{r.metric}: median {r.median:.3g}, 95% bootstrap interval [{r.low:.3g}, {r.high:.3g}]{n}."
    )


def fairness_sentence(g: GroupResult) -> str:
    """The worst group of one stratum against the average, flagged when it is small."""
    n = f", n = {g.worst_images}" if g.worst_images is not None else ""
    known = [(name, k, v) for name, k, v in g.groups if name != "unknown"]
    if len(known) < 2:  # one group has no "worst": there is nothing to compare it with
        only = ", ".join(f"{name} {v:.3g} (n = {k})" for name, k, v in known) or "none"
        return f"{g.task} {g.metric} by {g.attribute}: one group only ({only}): no comparison."
    line = (
        f"{g.task} {g.metric} by {g.attribute}: worst group {g.worst_group} "
        f"{g.worst:.3g}{n}; average of groups {g.average:.3g}; gap {g.gap:.3g}"
    )
    small = [f"{name} (n = {k})" for name, k, _ in g.groups if k < MIN_GROUP_IMAGES]
    if small:
        line += f"; not interpretable for groups under {MIN_GROUP_IMAGES} images: " + ", ".join(
            small
        )
    return line + "."


# ------------------------------------------------------------------ provenance, init


def provenance_sentence(p: Provenance, data_version: str) -> str:
    """What the images are, and which recorded fact says so."""
    if p.kind == "synthetic":
        what = f" ({p.source})" if p.source else ""
        return (
            f"**The training and evaluation images are synthetic**{what}: generated phantom "
            f"radiographs, not patients. Nothing here measures performance on real chest "
            f"X-rays. Source of this statement: {p.evidence}."
        )
    if p.kind == "mixed":
        return (
            f"**Some of the images are synthetic** (sources: {p.source}): generated phantom "
            f"radiographs are mixed with real ones, so no result here measures performance on "
            f"real chest X-rays alone. Source of this statement: {p.evidence}."
        )
    if p.kind == "real":
        what = f" ({p.source})" if p.source else ""
        return f"The images are real, de-identified chest radiographs{what}; source: {p.evidence}."
    return (
        f"**Whether the images of data version `{data_version}` are synthetic or real is not "
        f"recorded**: do not assume they are real patients' images, nor that results transfer "
        f"to them."
    )


def initialisation_sentence(init: Initialisation) -> str:
    """Random or continual, said only as the recorded init allows."""
    if not init.recorded:
        return "The initialisation is not recorded: whether this is continual training is unknown."
    if init.random:
        note = f" ({init.note})" if init.note else ""
        return (
            f"Trained from random initialisation{note}: this is not continual pre-training "
            "(RAD-DINO continues from DINOv2 weights; its Table B.1 puts the cost of a random "
            "start at 6.9 macro AUPRC points)."
        )
    parent = f" of registered model `{init.parent_model}`" if init.parent_model else ""
    return f"Continual pre-training from a `{init.source}` checkpoint{parent}."
