"""The NegEx labeler: scope rules on specific sentences, and its figures on our evaluation set."""

from pathlib import Path

import pytest

from cxrflow.findings import FINDINGS
from cxrflow.report.labeler import NEGATIVE, POSITIVE, UNCERTAIN, label_report, label_reports
from cxrflow.report.labeling.evaluation import evaluate_labeler, read_gold_reports

EVAL_SET = Path(__file__).with_name("labeler_eval.jsonl")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # One negation trigger covers a whole list.
        (
            "No focal airspace disease, pleural effusion or pneumothorax.",
            {"lung_opacity": NEGATIVE, "pleural_effusion": NEGATIVE, "pneumothorax": NEGATIVE},
        ),
        (
            "The lungs are clear without evidence of consolidation, effusion, or pneumothorax.",
            {"lung_opacity": NEGATIVE, "pleural_effusion": NEGATIVE, "pneumothorax": NEGATIVE},
        ),
        # A termination term ends the scope.
        (
            "No pleural effusion, but there is a small left pneumothorax.",
            {"pneumothorax": POSITIVE},
        ),
        ("No pneumothorax; however, a small right effusion is present.", {"pleural_effusion": 1}),
        # Laterality and severity words do not get in the way.
        ("Small left pleural effusion.", {"pleural_effusion": POSITIVE}),
        # Look-alikes outside our findings.
        ("Small pericardial effusion. No pleural effusion.", {"pleural_effusion": NEGATIVE}),
        ("Healed right clavicle fracture.", {"rib_fracture": NEGATIVE}),
        ("Chronic T11 vertebral compression fracture.", {"rib_fracture": NEGATIVE}),
        ("Acute fractures of the left posterior 6th through 8th ribs.", {"rib_fracture": 1}),
        ("Cavitation in the left upper lobe.", {"tuberculosis": NEGATIVE}),
        ("Moderate hiatal hernia.", dict.fromkeys(FINDINGS, NEGATIVE)),
        # Phrasings of the findings.
        ("Tortuosity of the thoracic aorta.", {"aortic_enlargement": POSITIVE}),
        ("Tortuous, calcified thoracic aorta.", {"aortic_enlargement": POSITIVE}),
        ("Atherosclerotic calcification of the aortic arch.", {"aortic_enlargement": NEGATIVE}),
        ("The heart size is mildly enlarged.", {"cardiomegaly": POSITIVE}),
        ("Heart size is normal.", {"cardiomegaly": NEGATIVE}),
        ("Normal heart size.", {"cardiomegaly": NEGATIVE}),
        ("Bilateral basilar fibrotic changes.", {"pulmonary_fibrosis": POSITIVE}),
        # Stable or unchanged findings are asserted; resolved ones are not.
        ("Stable cardiomegaly.", {"cardiomegaly": POSITIVE}),
        ("No change in the small right pleural effusion.", {"pleural_effusion": POSITIVE}),
        ("The previously seen left pneumothorax has resolved.", {"pneumothorax": NEGATIVE}),
        ("Resolved left pneumothorax; chest tube in place.", {"pneumothorax": 0, "chest_tube": 1}),
        ("Left chest tube has been removed.", {"chest_tube": NEGATIVE}),
        # Uncertainty.
        ("Possible small right pleural effusion.", {"pleural_effusion": UNCERTAIN}),
        ("Tuberculosis cannot be excluded.", {"tuberculosis": UNCERTAIN}),
        ("Opacity suspicious for tuberculosis.", {"tuberculosis": UNCERTAIN, "lung_opacity": 1}),
        ("Findings suggestive of a small left effusion.", {"pleural_effusion": UNCERTAIN}),
        (
            "Small left effusion versus pleural thickening.",
            {"pleural_effusion": UNCERTAIN, "pleural_thickening": UNCERTAIN},
        ),
        ("Borderline heart size.", {"cardiomegaly": UNCERTAIN}),
        # Positive beats uncertain beats negative over a report's mentions.
        ("Possible left effusion. Small left pleural effusion.", {"pleural_effusion": POSITIVE}),
        ("No pleural effusion. Possible left effusion.", {"pleural_effusion": UNCERTAIN}),
        # "and there is" starts a new assertion; a plain "and" continues the negated list.
        ("No pneumothorax and there is a small left effusion.", {"pleural_effusion": 1}),
        ("No pneumothorax, effusion and consolidation.", {"pleural_effusion": 0}),
        # Templated reports: the colon joins a mention to its value.
        (
            "Pneumothorax: none. Pleural effusion: absent.",
            {"pneumothorax": 0, "pleural_effusion": 0},
        ),
        ("Pleural effusion: small left. Pneumothorax: not seen.", {"pleural_effusion": 1}),
        # Both findings in one word.
        ("Small left hydropneumothorax.", {"pneumothorax": 1, "pleural_effusion": 1}),
    ],
)
def test_labels_sentences(text, expected):
    got = label_report(text)
    assert {f: got[f] for f in expected} == expected


def test_line_wraps_and_blank_lines():
    # MIMIC-CXR wraps lines mid-sentence; a blank line separates sections.
    text = (
        "FINDINGS: No pleural\n effusion or\n pneumothorax\n\nIMPRESSION: Small left pneumothorax"
    )
    got = label_report(text)
    assert got["pleural_effusion"] == NEGATIVE and got["pneumothorax"] == POSITIVE
    assert label_report("") == dict.fromkeys(FINDINGS, NEGATIVE)


def test_label_reports_equals_label_report_per_text():
    texts = ["No pneumothorax.", "", "Mild cardiomegaly.\n\nSmall left effusion."]
    assert label_reports(texts) == [label_report(t) for t in texts]


def test_reaches_the_goals_on_the_evaluation_set():
    reports = read_gold_reports(EVAL_SET)
    assert len(reports) >= 150 and sum(r.normal for r in reports) >= 40
    evaluation = evaluate_labeler(label_report, reports)
    assert evaluation.macro_f1 >= 0.80, evaluation.per_finding
    assert evaluation.normal_finding_rate <= 0.05
    assert all(s.support >= 10 for s in evaluation.per_finding.values())
