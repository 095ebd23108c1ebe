"""The report generator's Table 2 as Markdown."""

from __future__ import annotations

from cxrflow.report.metrics import ReportMetrics


def _status(score: object) -> str:
    """A metric's reason for not being computed, or "computed"."""
    return getattr(score, "reason", "computed")


def table_markdown(
    metrics: dict[str, ReportMetrics], image_size: int, image_tokens: int, n: int
) -> str:
    """Table 2-style Markdown: median [95% interval] over bootstrap resamples, 0-100."""
    lines = [
        f"# Report generation (test split, N = {n})",
        "",
        "| Model | Input resolution | # of tokens | ROUGE-L | BLEU-4 | RG_ER | Finding F1 "
        "(rule-based) | CheXbert Macro-F1-14 |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for name, m in metrics.items():
        size = f"{image_size} x {image_size}" if name == "LLaVA" else "-"
        tokens = str(image_tokens) if name == "LLaVA" else "-"
        lines.append(
            f"| {name} | {size} | {tokens} | {m.rouge_l} | {m.bleu4} | {m.radgraph} | "
            f"{m.finding_f1} | {m.chexbert_f1} |"
        )
    first = next(iter(metrics.values()))
    lines += [
        "",
        "Median and 95% interval over "
        f"{first.rouge_l.n_bootstrap} bootstrap resamples of the test reports. ROUGE-L: "
        "`rouge_score` F-measure; BLEU-4: `sacrebleu` corpus BLEU (13a, exp smoothing). "
        "Finding F1: macro-F1 of a rule-based labeler with negation over the findings "
        "present in the references, an offline stand-in for CheXbert (not comparable in value).",
        f"RG_ER: {_status(first.radgraph)}. CheXbert: {_status(first.chexbert_f1)}.",
    ]
    return "\n".join(lines) + "\n"
