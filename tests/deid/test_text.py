"""Free-text report scrubbing: planted identifiers go, dates shift, clinical text stays."""

from datetime import date, timedelta

import numpy as np
import pytest

from cxrflow.deid import Deidentifier, DeidOptions, KnownIdentifiers, scrub_report
from cxrflow.deid.text import scrub_dataset_report
from cxrflow.keys import SecretKey
from cxrflow.phantom.plan import Lesion
from cxrflow.phantom.reports import FINDING_KEYWORDS, write_report
from tests.factory import PATIENT, make_dataset

OFFSET = -400
KNOWN = KnownIdentifiers(
    names=("SMITH^JOHN^A", "HOUSE^GREGORY"),
    ids=("MRN0042424", "ACC998877"),
    locations=("Saint Example Hospital", "12 Example Road, Springfield"),
    birth_dates=(date(1961, 2, 14),),
)

CLINICAL = [
    "FINDINGS: Left pleural effusion with blunting of the costophrenic angle.",
    "No pneumothorax.",
    "AP portable view.",
    "Mild compression deformity of T10.",
    "A 5 mm nodule in the right upper zone.",
    "The cardiac silhouette is enlarged, cardiothoracic ratio above 0.5.",
    "IMPRESSION: Bilateral basal reticular opacities, consistent with pulmonary fibrosis.",
]

REPORTS = [
    (
        "EXAMINATION: CHEST PA AND LATERAL.\n"
        "HISTORY: John Smith, MRN 12345678, Acc# A1234567, seen on 03/14/2024 for cough.\n"
        + " ".join(CLINICAL[:3])
        + "\nResults discussed with Dr. Jane Smith, call 555-123-4567.\n"
        "Electronically signed by Gregory House, MD."
    ),
    (
        "Patient: Maria Gonzalez  DOB: 02/14/1961  Address: 44 Elm Street, Springfield, IL 62704\n"
        "Contact jsmith@example.org or (555) 987-6543 ext 12; pager 4321.\n"
        + " ".join(CLINICAL[3:5])
        + "\nComparison: 2024-01-02 and March 3, 2023."
    ),
    (
        "Saint Example Hospital, Department of Radiology. Accession number ACC998877.\n"
        + " ".join(CLINICAL[5:])
        + "\nCompared with the radiograph of 14 Mar 2024. Dictated by Dr Patel. "
        "Transcribed 15/03/2024, read by Dr. O'Neil. Ref DOE^JANE, postcode SW1A 1AA. "
        "A 92-year-old man."
    ),
]

PLANTED = [
    "John",
    "Smith",
    "Jane",
    "Gregory",
    "House",
    "Maria",
    "Gonzalez",
    "Patel",
    "O'Neil",
    "DOE",
    "12345678",
    "A1234567",
    "ACC998877",
    "03/14/2024",
    "2024-01-02",
    "March 3, 2023",
    "14 Mar 2024",
    "15/03/2024",
    "02/14/1961",
    "1961",
    "555-123-4567",
    "987-6543",
    "4321",
    "jsmith",
    "example.org",
    "44 Elm Street",
    "62704",
    "SW1A",
    "Saint Example Hospital",
    "92",
]


def _shift(d: date) -> date:
    return d + timedelta(days=OFFSET)


@pytest.fixture(scope="module")
def scrubbed() -> list[str]:
    return [scrub_report(r, known=KNOWN, date_offset_days=OFFSET).text for r in REPORTS]


def test_no_planted_identifier_survives(scrubbed):
    text = "\n".join(scrubbed)
    for value in PLANTED:
        assert value.lower() not in text.lower(), value
    for placeholder in ("[NAME]", "[ID]", "[PHONE]", "[EMAIL]", "[ADDRESS]", "[POSTCODE]"):
        assert placeholder in text


def test_dates_are_shifted_by_the_offset_in_their_own_format(scrubbed):
    first, second, third = scrubbed
    assert f"seen on {_shift(date(2024, 3, 14)):%m/%d/%Y} for cough" in first
    assert f"Comparison: {_shift(date(2024, 1, 2)):%Y-%m-%d} and " in second
    d = _shift(date(2023, 3, 3))
    assert f"and {d:%B} {d.day}, {d.year}." in second
    d = _shift(date(2024, 3, 14))
    assert f"radiograph of {d.day} {d:%b} {d.year}." in third
    assert f"Transcribed {_shift(date(2024, 3, 15)):%d/%m/%Y}," in third


def test_birth_dates_are_removed_not_shifted(scrubbed):
    assert "DOB: [DATE]" in scrubbed[1]
    assert f"{_shift(date(1961, 2, 14)):%m/%d/%Y}" not in scrubbed[1]


def test_dates_are_removed_without_an_offset():
    out = scrub_report("Seen on 03/14/2024 and March 3, 2023.", known=KNOWN)
    assert out.text == "Seen on [DATE] and [DATE]."
    assert out.counts == {"DATE": 2}


def test_clinical_sentences_are_unchanged(scrubbed):
    text = "\n".join(scrubbed)
    for sentence in CLINICAL:
        assert sentence in text
    assert "Dr. [NAME]" in scrubbed[0] and "signed by [NAME], MD." in scrubbed[0]


def test_counts_name_the_kinds():
    out = scrub_report(REPORTS[0], known=KNOWN, date_offset_days=OFFSET)
    assert out.counts["DATE"] == 1 and out.counts["PHONE"] == 1
    assert out.counts["ID"] == 2 and out.counts["NAME"] >= 3
    assert out.total == sum(out.counts.values())


def test_known_header_values_are_removed_whatever_the_patterns_find():
    # No cue, no title: only the header says these words identify.
    out = scrub_report(
        "Comparison with smith john ACC998877 at saint example hospital.", known=KNOWN
    )
    assert out.text == "Comparison with [NAME] [ID] at [LOCATION]."


def test_phantom_reports_pass_through_unchanged():
    rng = np.random.default_rng(0)
    findings = list(FINDING_KEYWORDS)
    for i in range(300):
        lesions = tuple(
            Lesion(
                finding=findings[int(rng.integers(len(findings)))],
                side=["left", "right", "bilateral"][int(rng.integers(3))],
                severity=int(rng.integers(1, 4)),
                zone=["upper", "middle", "lower"][int(rng.integers(3))],
                token=i,
            )
            for _ in range(int(rng.integers(0, 3)))
        )
        prior = lesions[:1] if i % 3 == 0 else None
        report = write_report(rng, lesions, prior)
        assert scrub_report(report, known=KNOWN, date_offset_days=OFFSET).text == report


def test_dataset_report_uses_the_original_header_and_the_patients_offset():
    key = SecretKey(b"test-key-0123456789-0123456789-0123456789")
    deid = Deidentifier(key)
    ds = make_dataset()
    text = "Jane Doe (MRN0042424, ACC998877) seen 03/15/2020 by Dr House at Saint Example Hospital."
    out = scrub_dataset_report(text, ds, deid)
    for value in ("Jane", "Doe", PATIENT["PatientID"], PATIENT["AccessionNumber"], "House"):
        assert value not in out.text
    days = deid.date_shift(PATIENT["PatientID"]).days
    assert f"seen {date(2020, 3, 15) + timedelta(days=days):%m/%d/%Y} by" in out.text
    # The header keeps no dates: neither does the report.
    plain = Deidentifier(key, DeidOptions(retain_longitudinal_modified_dates=False))
    assert "seen [DATE] by" in scrub_dataset_report(text, ds, plain).text
