"""Ingesting the phantom: no PHI value that it wrote survives anywhere in the outputs."""

import itertools
import logging
import re
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.ingest.run import file_key
from cxrflow.manifest import read_manifest
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from tests.ingest.conftest import KEY

_SPLIT = re.compile(r"[^A-Za-z0-9.+:,^' -]+")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom-ingest")
    inbox = root / "inbox"
    generate_phantom(inbox, 10, seed=5, min_side=128, max_side=224, progress=False)
    gt = pd.read_parquet(inbox / GROUND_TRUTH_NAME)
    handler = _Capture()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        config = IngestConfig(
            inbox,
            root / "out",
            ground_truth=inbox / GROUND_TRUTH_NAME,
            max_side=96,
            write_dicom=True,
            workers=2,
            show_progress=False,
        )
        result = run_ingest(config, KEY)
    finally:
        logging.getLogger().removeHandler(handler)
    return inbox, root / "out", gt, result, "\n".join(handler.lines)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _tokens(text: str) -> set[str]:
    """Values as a reader would see them: whole strings and their word-like parts."""
    out = set()
    for chunk in _SPLIT.split(text):
        chunk = chunk.strip().upper()
        if chunk:
            out.add(chunk)
            out.update(p for p in re.split(r"[\s^,]+", chunk) if p)
    return out


def _leaks(phi: list[str], tokens: set[str], text: str) -> list[str]:
    found = []
    for value in phi:
        v = value.strip().upper()
        # Short values (a time, a first name) are matched as whole tokens; long ones anywhere.
        if v and (v in tokens or (len(v) >= 8 and v in text.upper())):
            found.append(value)
    return found


def _element_text(ds: pydicom.Dataset) -> str:
    parts = []
    for elem in ds.iterall():
        if elem.VR in ("OB", "OW", "OF", "OD", "UN") and elem.tag != 0x7FE00010:
            parts.append(bytes(elem.value or b"").decode("latin-1", "ignore"))
        elif elem.VR != "SQ" and elem.tag != 0x7FE00010:
            parts.append(str(elem.value))
    return "\n".join(parts)


def test_counts_reconcile_and_faulty_files_get_their_reasons(ingested):
    inbox, out, gt, result, _ = ingested
    assert result.found == len(gt) and result.reconciles
    assert result.written == int((gt["kind"] == "image").sum())
    q = pd.read_parquet(out / "quarantine.parquet")
    got = dict(zip(q["file_key"], q["reason_class"], strict=True))
    faulty = gt[gt["kind"] == "faulty"]
    want = {
        file_key(KEY, inbox, inbox / r): c
        for r, c in zip(faulty["relpath"], faulty["expected_quarantine"], strict=True)
    }
    assert got == want


def test_no_phantom_phi_survives_in_any_output(ingested):
    _, out, gt, _, logs = ingested
    all_phi = sorted({v for values in gt["phi_values"] for v in values})
    manifest = read_manifest(out / "manifest.parquet")
    for name in ("manifest.parquet", "quarantine.parquet", "audit.parquet", "ingest_state.parquet"):
        text = pd.read_parquet(out / name).to_csv()
        assert not _leaks(all_phi, _tokens(text), text), name
    paths = "\n".join(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert not _leaks(all_phi, _tokens(paths), paths)
    assert not _leaks(all_phi, _tokens(logs), logs)
    runs = "\n".join(p.read_text() for p in (out / "runs").glob("*.json"))
    assert not _leaks(all_phi, _tokens(runs), runs)
    dicoms = sorted(out.rglob("*.dcm"))
    assert len(dicoms) == len(manifest)
    by_subject = gt[gt["kind"] == "image"]
    subject_phi = sorted({v for values in by_subject["phi_values"] for v in values})
    for path in dicoms:
        text = _element_text(pydicom.dcmread(path))
        assert not _leaks(subject_phi, _tokens(text), text), path.name


def test_labels_reports_masks_and_demographics_come_through(ingested):
    _, out, gt, _, _ = ingested
    m = read_manifest(out / "manifest.parquet")
    images = gt[gt["kind"] == "image"]
    assert m["label_cardiomegaly"].sum() == images["label_cardiomegaly"].sum()
    assert m["report"].notna().all()
    frontal = m[m["view"].isin(["PA", "AP"])]
    assert frontal["mask_path"].notna().all()
    assert m.loc[m["view"] == "LATERAL", "mask_path"].isna().all()
    assert set(m["sex"]) <= {"M", "F"} and m["age_years"].between(18, 100).all()
    assert m["subject_id"].nunique() == images["subject"].nunique()
    for rel in frontal["mask_path"].head(3):
        assert (out / rel).is_file()


def test_uids_stay_consistent_across_files(ingested):
    _, out, gt, _, _ = ingested
    laterals = gt[gt["referenced_frontal_uid"].notna() & (gt["kind"] == "image")]
    assert len(laterals) > 0
    sop_to_file = {}
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        sop_to_file[ds.SOPInstanceUID] = ds
    for ds in sop_to_file.values():
        for ref in ds.get("ReferencedImageSequence", []):
            assert ref.ReferencedSOPInstanceUID in sop_to_file  # points at the new frontal UID
            assert ref.ReferencedSOPInstanceUID.startswith("2.25.")
    studies = {ds.StudyInstanceUID for ds in sop_to_file.values()}
    assert len(studies) == gt.loc[gt["kind"] == "image", "study_instance_uid"].nunique()


def test_shifted_dates_keep_intervals_per_subject(ingested):
    _, out, gt, _, _ = ingested
    m = read_manifest(out / "manifest.parquet")
    images = gt[gt["kind"] == "image"]
    shifted = pd.to_datetime(m["study_date"], format="%Y%m%d")
    # Every subject's set of study-date gaps is preserved.
    orig = images.groupby("subject")["study_date"].apply(
        lambda s: sorted(pd.to_datetime(s.unique()))
    )
    new = m.assign(d=shifted).groupby("subject_id")["d"].apply(lambda s: sorted(s.unique()))

    def gaps(dates):
        return [(b - a).days for a, b in itertools.pairwise(dates)]

    assert sorted(map(tuple, map(gaps, orig))) == sorted(map(tuple, map(gaps, new)))


def test_path_of_inbox_is_not_in_outputs(ingested):
    inbox, out, *_ = ingested
    text = Path(out / "manifest.parquet").read_bytes()
    assert str(inbox).encode() not in text
