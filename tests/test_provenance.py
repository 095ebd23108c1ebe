"""Synthetic or real: ingest tells the phantom's files from other DICOM, the summary says which."""

import pandas as pd
import pydicom
import pytest

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.manifest import read_manifest
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from cxrflow.provenance import DICOM_SOURCE, PHANTOM_SOURCE, data_source, dicom_source
from tests.factory import make_dataset, write
from tests.ingest.conftest import KEY


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ([PHANTOM_SOURCE] * 3, "synthetic:cxrflow-phantom"),
        (["chexpert", "dicom", "chexpert"], "real:chexpert,dicom"),
        ([PHANTOM_SOURCE, "dicom"], "mixed:cxrflow-phantom,dicom"),
        ([], ""),
    ],
)
def test_data_source_summarises_the_manifest(sources, expected):
    assert data_source(pd.Series(sources, dtype="string")) == expected


def test_ingest_marks_phantom_files_and_only_them(tmp_path):
    inbox = tmp_path / "inbox"
    generate_phantom(inbox, 2, seed=1, min_side=96, max_side=128, progress=False)
    phantom_file = next(p for p in inbox.rglob("*") if p.is_file() and p.suffix != ".parquet")
    assert dicom_source(pydicom.dcmread(phantom_file)) == PHANTOM_SOURCE
    other = write(make_dataset(sop_uid="1.2.840.99999.5.1", PatientID="REAL-1"), inbox / "x" / "IM")
    assert dicom_source(pydicom.dcmread(other)) == DICOM_SOURCE
    config = IngestConfig(
        inbox,
        tmp_path / "out",
        ground_truth=inbox / GROUND_TRUTH_NAME,
        max_side=96,
        workers=1,
        show_progress=False,
    )
    run_ingest(config, KEY)
    m = read_manifest(tmp_path / "out" / "manifest.parquet")
    counts = m["source_dataset"].value_counts().to_dict()
    assert counts[DICOM_SOURCE] == 1 and counts[PHANTOM_SOURCE] == len(m) - 1 >= 2
    assert data_source(m["source_dataset"]) == "mixed:cxrflow-phantom,dicom"
