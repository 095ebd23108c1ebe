"""End to end: PHI planted in a side-car report never reaches the manifest."""

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from cxrflow.deid import Deidentifier
from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.manifest import read_manifest
from tests.factory import PATIENT, make_dataset, write
from tests.ingest.conftest import KEY

CLINICAL = "Left pleural effusion. No pneumothorax. AP portable view. 5 mm nodule at T10."
REPORTS = {
    "1.2.840.99999.88.1": (
        "HISTORY: Jane Doe, MRN 12345678, Acc# A1234567, seen on 03/15/2020. "
        f"FINDINGS: {CLINICAL} Discussed with Dr. Jane Smith, call 555-123-4567. "
        "Signed by Gregory House, MD."
    ),
    "1.2.840.99999.88.2": (
        f"Pt DOE^JANE^Q ({PATIENT['PatientID']}, {PATIENT['AccessionNumber']}) at "
        f"{PATIENT['InstitutionName']}, 12 Example Road, Springfield IL 62704; "
        f"jane.doe@example.org. FINDINGS: {CLINICAL}"
    ),
}
PLANTED = [
    "Jane",
    "Doe",
    "Smith",
    "Gregory",
    "House",
    "12345678",
    "A1234567",
    "03/15/2020",
    "555-123-4567",
    "Example",
    "62704",
    "example.org",
    PATIENT["PatientID"],
    PATIENT["AccessionNumber"],
]


def _smooth(i: int) -> np.ndarray:
    """A featureless gradient (nothing an OCR pass could read as burned-in text)."""
    y, x = np.mgrid[0:96, 0:80]
    return ((x + y) * 20 + 100 * i).astype(np.uint16) % 4096


def test_manifest_reports_hold_no_planted_phi(tmp_path: Path):
    inbox = tmp_path / "inbox"
    for i, uid in enumerate(REPORTS):
        write(make_dataset(_smooth(i), sop_uid=uid, center=2048, width=4096), inbox / f"im{i}")
    gt = tmp_path / "ground_truth.parquet"
    pd.DataFrame({"sop_instance_uid": list(REPORTS), "report": list(REPORTS.values())}).to_parquet(
        gt
    )
    config = IngestConfig(
        input_dir=inbox, output_dir=tmp_path / "out", ground_truth=gt, show_progress=False
    )
    result = run_ingest(config, KEY)
    assert result.written == 2
    m = read_manifest(result.manifest_path)
    reports = "\n".join(m["report"])
    for value in PLANTED:
        assert value.lower() not in reports.lower(), value
    assert reports.count(CLINICAL) == 2
    days = Deidentifier(KEY).date_shift(PATIENT["PatientID"]).days
    assert f"seen on {date(2020, 3, 15) + timedelta(days=days):%m/%d/%Y}." in reports
    # The report's date moved with the header's StudyDate.
    assert set(m["study_date"]) == {f"{date(2020, 3, 15) + timedelta(days=days):%Y%m%d}"}
    # Nothing of it in the other outputs either.
    out_text = "".join(
        p.read_bytes().decode("latin-1") for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    for value in ("12345678", "A1234567", "555-123-4567"):
        assert value not in out_text
