"""The finding labeler on our evaluation set: per-finding precision/recall/F1, macro F1, and
how many normal reports get a finding.

Run: .venv/bin/python bench/labeler.py [--eval-set tests/report/labeler_eval.jsonl] [--errors]

The evaluation set (tests/report/labeler_eval.jsonl) holds FINDINGS/IMPRESSION sections written
in MIMIC-CXR/OpenI style with gold labels over `cxrflow.findings.FINDINGS`; uncertain counts as
negative on both sides, as in the finding-F1 metric. `--errors` lists the reports where the
labeler and the gold label disagree on a positive. Also prints labelling speed (reports/s).

The regex labeler this one replaced (6-word look-back negation) scored, on the same set before
it was replaced: macro F1 0.804, 5 of 53 normal reports (9.4%) with a finding; its per-finding
F1: lung_opacity 0.863, cardiomegaly 0.974, pleural_thickening 0.696, aortic_enlargement 0.737,
pulmonary_fibrosis 0.700, tuberculosis 0.833, pleural_effusion 0.857, pneumothorax 0.857,
chest_tube 0.839, rib_fracture 0.686. Prints figures; asserts nothing (tests assert behaviour).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from cxrflow.findings import FINDINGS
from cxrflow.report.labeler import POSITIVE, label_report, label_reports, labeler_pipeline
from cxrflow.report.labeling.evaluation import evaluate_labeler, read_gold_reports

log = logging.getLogger("bench.labeler")
DEFAULT_EVAL_SET = Path(__file__).resolve().parents[1] / "tests" / "report" / "labeler_eval.jsonl"


def main() -> None:
    """Print the labeler's figures on the evaluation set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET)
    parser.add_argument("--errors", action="store_true", help="list disagreeing reports")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    reports = read_gold_reports(args.eval_set)
    started = time.perf_counter()
    labeler_pipeline()
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    label_reports([r.text for r in reports])
    label_s = time.perf_counter() - started
    evaluation = evaluate_labeler(label_report, reports)

    print(f"{args.eval_set}: {evaluation.n_reports} reports, {evaluation.n_normal} normal")
    print(f"{'finding':<20} {'P':>6} {'R':>6} {'F1':>6} {'support':>8} {'predicted':>10}")
    for finding, s in evaluation.per_finding.items():
        print(
            f"{finding:<20} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.support:8d}"
            f" {s.predicted:10d}"
        )
    print(f"macro F1: {evaluation.macro_f1:.3f}")
    print(
        f"normal reports with a finding: {evaluation.normal_with_finding}/{evaluation.n_normal}"
        f" ({100 * evaluation.normal_finding_rate:.1f}%)"
    )
    print(
        f"pipeline build {build_s:.2f} s; labelling {len(reports) / label_s:.0f} reports/s"
        f" (batch of {len(reports)})"
    )
    if args.errors:
        for report in reports:
            got = label_report(report.text)
            wrong = {
                f: (report.labels[f], got[f])
                for f in FINDINGS
                if (report.labels[f] == POSITIVE) != (got[f] == POSITIVE)
            }
            if wrong:
                print(f"{report.id} (gold, labeler) {wrong}: {report.text}")


if __name__ == "__main__":
    main()
