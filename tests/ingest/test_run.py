import hashlib
import logging
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.ingest.run import file_key
from cxrflow.manifest import ManifestSchemaError, read_manifest, read_manifest_column
from tests.factory import PATIENT, make_dataset, write
from tests.ingest.conftest import KEY


def _config(inbox: Path, out: Path, **kw) -> IngestConfig:
    return IngestConfig(input_dir=inbox, output_dir=out, show_progress=False, **kw)


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_file_is_written_or_quarantined_with_its_reason(inbox, tmp_path):
    root, expected = inbox
    result = run_ingest(_config(root, tmp_path / "out"), KEY)
    assert result.found == len(expected)
    assert result.written == sum(v == "written" for v in expected.values())
    assert result.reconciles and result.found == result.written + result.quarantined
    q = pd.read_parquet(result.quarantine_path)
    by_key = {
        file_key(KEY, root, root / rel): reason
        for rel, reason in expected.items()
        if reason != "written"
    }
    got = dict(zip(q["file_key"], q["reason_class"], strict=True))
    assert got == by_key
    assert q["reason"].str.len().min() > 5
    manifest = read_manifest(result.manifest_path)
    assert len(manifest) == result.written
    assert set(manifest["subject_id"].value_counts()) == {3, 2}  # two patients: 3 and 2 images
    for rel in manifest["image_path"]:
        assert (tmp_path / "out" / rel).is_file()


def test_outputs_carry_no_phi_and_no_key(inbox, tmp_path, caplog):
    root, _ = inbox
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        run_ingest(_config(root, out, write_dicom=True), KEY)
    phi = [v for v in PATIENT.values()] + [
        "DOE",
        "JANE",
        "ROE",
        "RICHARD",
        "OTHER-7781",
        "RP-44321",
        "1.2.840.99999.77",
    ]
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    names = [p.relative_to(out).as_posix() for p in out.rglob("*")]
    assert any(n.endswith(".dcm") for n in names)
    for value in [*phi, KEY.value.decode()]:
        v = value.encode()
        assert not any(v in b for b in blobs), value
        assert not any(value in n for n in names), value
        assert value not in caplog.text, value
    for dcm in out.rglob("*.dcm"):
        ds = pydicom.dcmread(dcm)
        assert ds.PatientIdentityRemoved == "YES"
        assert not any(e.tag.is_private for e in ds.iterall())


def test_same_input_and_key_give_byte_identical_outputs(inbox, tmp_path):
    root, _ = inbox
    run_ingest(_config(root, tmp_path / "a"), KEY)
    run_ingest(_config(root, tmp_path / "b", workers=2), KEY)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    before = _tree(tmp_path / "a")
    again = run_ingest(_config(root, tmp_path / "a"), KEY)
    assert (again.written, again.quarantined, again.skipped_existing) == (0, 0, again.found)
    assert _tree(tmp_path / "a") == before


def test_incremental_run_processes_only_new_files(inbox, tmp_path):
    root, expected = inbox
    out = tmp_path / "out"
    first = run_ingest(_config(root, out), KEY)
    write(make_dataset(sop_uid="1.2.840.99999.77.100", PatientID="NEW-1"), root / "new" / "IMG")
    shutil.copy(root / "A/B/IM0001", root / "new" / "copy-of-IM0001")  # same SOP UID: a duplicate
    second = run_ingest(_config(root, out), KEY)
    assert second.found == len(expected) + 2
    assert (second.written, second.quarantined, second.skipped_existing) == (1, 1, len(expected))
    assert second.run_id != first.run_id
    manifest = read_manifest(out / "manifest.parquet")
    assert len(manifest) == first.written + 1
    assert set(manifest["ingest_run"]) == {first.run_id, second.run_id}
    q = pd.read_parquet(out / "quarantine.parquet")
    assert "duplicate" in set(q["reason_class"])
    assert not list(out.rglob("*.part"))


def test_sidecar_labels_and_exclusion(inbox, tmp_path):
    root, _ = inbox
    side = pd.DataFrame(
        {
            "sop_instance_uid": ["1.2.840.99999.77.1"],
            "label_cardiomegaly": [1],
            "report": ["Enlarged cardiac silhouette."],
            "patient_id": [PATIENT["PatientID"]],  # identity columns are never read
        }
    )
    gt = root / "ground_truth.parquet"  # inside the inbox: excluded from the files found
    side.to_parquet(gt)
    result = run_ingest(_config(root, tmp_path / "out", ground_truth=gt), KEY)
    m = read_manifest(result.manifest_path)
    row = m[m["label_cardiomegaly"] == 1]
    assert len(row) == 1 and row["report"].iloc[0] == "Enlarged cardiac silhouette."
    assert m["label_cardiomegaly"].isna().sum() == len(m) - 1
    assert PATIENT["PatientID"] not in m.to_string()


def test_manifest_schema_is_checked_on_read(tmp_path):
    pd.DataFrame({"image_id": ["a"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ManifestSchemaError, match="missing columns: subject_id"):
        read_manifest(tmp_path / "m.parquet")


def test_one_manifest_column_is_read_alone(tmp_path):
    pd.DataFrame({"image_id": ["a", "b"], "source_dataset": ["x", "y"]}).to_parquet(
        tmp_path / "m.parquet"
    )
    assert read_manifest_column(tmp_path / "m.parquet", "source_dataset") == ["x", "y"]
    with pytest.raises(ManifestSchemaError, match="has no column 'split'"):
        read_manifest_column(tmp_path / "m.parquet", "split")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest_column(tmp_path / "none.parquet", "split")


def test_bad_parameters_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="max_side"):
        IngestConfig(input_dir=tmp_path, output_dir=tmp_path, max_side=2)
    with pytest.raises(ValueError, match="workers"):
        IngestConfig(input_dir=tmp_path, output_dir=tmp_path, workers=0)
    with pytest.raises(NotADirectoryError, match="input directory not found"):
        run_ingest(_config(tmp_path / "nope", tmp_path / "out"), KEY)
