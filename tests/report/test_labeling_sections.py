from cxrflow.report.labeler import NEGATIVE, POSITIVE, label_report
from cxrflow.report.labeling.sections import image_sections


def test_drops_the_request_and_keeps_the_image_sections():
    text = (
        "EXAMINATION: CHEST (PA AND LAT)\n\nINDICATION: ___ with history of pneumothorax.\n\n"
        "COMPARISON: ___\n\nFINDINGS:\n\nNo pneumothorax.\n\nIMPRESSION: Small left effusion."
    )
    assert image_sections(text) == "No pneumothorax.\n\nSmall left effusion."


def test_inline_headings_in_any_case():
    text = "Clinical history: Positive PPD. Findings: Lungs clear. impression: Normal chest."
    assert image_sections(text) == "Lungs clear.\n\nNormal chest."


def test_a_plural_marker_in_the_heading():
    text = "IMPRESSION: Normal.\n\nRECOMMENDATION(S): Repeat to exclude pneumothorax."
    assert image_sections(text) == "Normal."


def test_text_without_headings_is_kept_whole():
    text = "Small left pleural effusion. History is not given."
    assert image_sections(text) == text
    assert image_sections("") == ""


def test_a_finding_named_in_the_history_is_not_labelled():
    got = label_report(
        "Indication: history of tuberculosis, rib fracture after fall. "
        "Findings: Lungs are clear. Impression: Old left rib fractures."
    )
    assert got["tuberculosis"] == NEGATIVE
    assert got["rib_fracture"] == POSITIVE


def test_a_dropped_section_ends_at_a_blank_line():
    text = "INDICATION: Cough.\n\nThere is a right lower lobe consolidation."
    assert image_sections(text) == "There is a right lower lobe consolidation."
    assert image_sections("History: cough. No pneumothorax.") == ""
    # MIMIC-CXR puts a blank line between a heading and its text.
    spaced = "INDICATION: \n\n___M with pneumothorax.\n\nFINDINGS: \n\nLungs clear."
    assert image_sections(spaced) == "Lungs clear."
