"""One self-contained HTML page: inline CSS, figures as base64 PNGs, no external address."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from cxrflow.evaluation.evaluate import EvaluationResult

# Kept small and neutral: the KFP UI shows the page in an iframe of limited width.
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#1f2328;
max-width:1100px}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;
margin-top:1.6em}h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
.caption{color:#57606a;font-size:.85em;margin-top:.2em}
.context td{text-align:left;font-family:ui-monospace,monospace}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4em .7em;border-radius:4px}
figure{margin:1em 0}img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:.85em}
.reports td{text-align:left;white-space:pre-wrap;font-size:.85em;max-width:480px}
"""


def _img(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    t = html.escape(title)
    return (
        f"<figure><img alt='{t}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{t}</figcaption></figure>"
    )


def render_html(result: EvaluationResult, title: str = "cxrflow evaluation") -> str:
    """The evaluation as one HTML document that needs nothing but itself."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if result.context:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in result.context.items()
        )
        parts.append(f"<table class='context'>{rows}</table>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in result.notes]
    sections = {
        "Classification": ("table1_classification",),
        "Report generation": ("table2_report_generation",),
        "Segmentation": ("table3_segmentation",),
        "Patient characteristics": ("table5_demographics", "table5_cohort"),
        "Fairness": ("fairness",),
        "Champion": ("champion_comparison",),
    }
    figures_for = {
        "Classification": [k for k in result.figures if "recision" in k],
        "Segmentation": [k for k in result.figures if "recision" not in k],
    }
    for name, keys in sections.items():
        tables = [t for k in keys if (t := result.table(k)) is not None]
        figs = figures_for.get(name, [])
        if not tables and not figs and not (name == "Report generation" and result.samples):
            continue
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts += [t.to_html() for t in tables]
        parts += [_img(k, result.figures[k]) for k in figs]
        if name == "Report generation" and result.samples:
            parts.append(_samples(result.samples))
    parts.append("</body></html>")
    return "\n".join(parts)


def _samples(samples: tuple[dict[str, str], ...]) -> str:
    columns = {"image_id": "image", "generated": "generated", "reference": "reference"}
    # The labeler's findings, where the report stage wrote them, show what the words mean.
    if any("generated_findings" in s for s in samples):
        columns |= {"generated_findings": "findings (generated)"}
        columns |= {"reference_findings": "findings (reference)"}
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(s.get(k, ''))}</td>" for k in columns) + "</tr>"
        for s in samples
    )
    head = "".join(f"<th>{html.escape(t)}</th>" for t in columns.values())
    return (
        "<h3>Generated and reference reports (test samples)</h3><table class='reports'>"
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def write_html(result: EvaluationResult, path: Path, title: str = "cxrflow evaluation") -> Path:
    """Write the page to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, title), encoding="utf-8")
    return path
