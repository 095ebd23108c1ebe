"""The paper's tables as plain data: Markdown for cards, HTML for the report, dicts for tools."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cxrflow.evaluation.report_results import ReportResults


@dataclass(frozen=True)
class Table:
    """A titled table of strings."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def to_markdown(self) -> str:
        def cell(v: str) -> str:
            return v.replace("|", "\\|")

        lines = [f"**{self.title}**", ""]
        if self.rows:  # a header over no rows says nothing; the caption says why there are none
            lines.append("| " + " | ".join(cell(c) for c in self.columns) + " |")
            lines.append("| " + " | ".join("---" for _ in self.columns) + " |")
            lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in self.rows]
        if self.caption:
            lines += ["", f"_{self.caption}_"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in self.rows
        )
        cap = f"<p class='caption'>{html.escape(self.caption)}</p>" if self.caption else ""
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return (
            f"<h3 id='{html.escape(self.key)}'>{html.escape(self.title)}</h3>"
            f"{table if self.rows else ''}{cap}"
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def pct(mean: float | None, std: float | None = None) -> str:
    """0..1 as a percentage, `mean (std)` as the paper writes it; n/a when undefined."""
    if mean is None or math.isnan(mean):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ({100 * std:.1f})"


def num(v: float | None) -> str:
    """A number with three significant digits; n/a when undefined."""
    return "n/a" if v is None or math.isnan(v) else f"{v:.3g}"


def _grouped(metrics: Mapping[str, float], pattern: str) -> dict[tuple[str, ...], float]:
    rx = re.compile(pattern)
    return {m.groups(): v for k, v in metrics.items() if (m := rx.fullmatch(k))}


def classification_table(metrics: Mapping[str, float]) -> Table | None:
    """Table 1: AUPRC (and AUROC) per finding and macro, mean (std) over the repeats."""
    auprc = _grouped(metrics, r"cls\.auprc\.(.+)")
    if not auprc:
        return None
    findings = sorted(f for (f,) in auprc if f != "macro") + (
        ["macro"] if ("macro",) in auprc else []
    )
    rows = tuple(
        (
            "Macro average" if f == "macro" else f,
            pct(metrics.get(f"cls.auprc.{f}"), metrics.get(f"cls.auprc_std.{f}")),
            pct(metrics.get(f"cls.auroc.{f}"), metrics.get(f"cls.auroc_std.{f}")),
        )
        for f in findings
    )
    return Table(
        "table1_classification",
        "Table 1: image classification (linear probe, frozen encoder)",
        ("finding", "AUPRC", "AUROC"),
        rows,
        "Percent, mean (standard deviation) over the probe repeats, on the test split.",
    )


def segmentation_table(metrics: Mapping[str, float]) -> Table | None:
    """Table 3: Dice per structure and decoder, mean (std) over test images with the structure."""
    dice = _grouped(metrics, r"seg\.([^.]+)\.dice\.(.+)")
    if not dice:
        return None
    decoders = sorted({d for d, _ in dice})
    structures = sorted({s for _, s in dice})
    rows = []
    for d in decoders:
        values = [dice.get((d, s)) for s in structures]
        defined = [v for v in values if v is not None and not math.isnan(v)]
        avg = sum(defined) / len(defined) if defined else math.nan
        rows.append(
            (
                d,
                *(pct(dice.get((d, s)), metrics.get(f"seg.{d}.dice_std.{s}")) for s in structures),
                pct(avg),
            )
        )
    return Table(
        "table3_segmentation",
        "Table 3: semantic segmentation (frozen encoder)",
        ("decoder", *structures, "average"),
        tuple(rows),
        "Dice in percent, mean (standard deviation) across the test images that have the "
        "structure.",
    )


def demographics_table(metrics: Mapping[str, float]) -> Table | None:
    """Table 5: demographics from frozen features, accuracy mean (std) over the folds."""
    acc = _grouped(metrics, r"demo\.accuracy\.(.+)")
    if not acc:
        return None
    rows = tuple(
        (t, pct(v, metrics.get(f"demo.accuracy_std.{t}"))) for (t,), v in sorted(acc.items())
    )
    return Table(
        "table5_demographics",
        "Table 5: patient demographics from frozen features (linear classifier)",
        ("target", "accuracy"),
        rows,
        "Percent, mean (standard deviation) over the cross-validation folds; age, weight and "
        "BMI in five bins.",
    )


def report_table(report: ReportResults) -> Table:
    """Table 2: report generation, median [95% interval] over bootstrap samples."""
    names = report.metric_names()
    rows = []
    notes = []
    for system, scores in report.systems.items():
        cells = []
        for m in names:
            s = scores.get(m)
            if s is None:
                cells.append("-")
            elif s.reason:
                cells.append("not computed")
                notes.append(f"{m}: {s.reason}")
            else:
                cells.append(f"{num(s.median)} [{num(s.low)}, {num(s.high)}]")
        rows.append((system, *cells))
    caption = f"Median and 95% interval over {report.n_bootstrap or 'the'} bootstrap samples"
    caption += f" (N = {report.n})." if report.n else "."
    if notes:
        caption += " Not computed: " + "; ".join(sorted(set(notes))) + "."
    return Table(
        "table2_report_generation",
        "Table 2: report generation (Findings section)",
        ("system", *names),
        tuple(rows),
        caption,
    )
