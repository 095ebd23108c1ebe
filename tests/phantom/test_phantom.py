"""Behaviour of the phantom generator: determinism, DICOM realism, PHI, masks, labels, faults."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import RLELossless

from cxrflow.findings import FINDINGS, MASK_STRUCTURES, label_column
from cxrflow.phantom import GROUND_TRUTH_NAME, PhantomConfig, generate_phantom, png_to_mask
from cxrflow.phantom.ground_truth import SCHEMA
from cxrflow.phantom.plan import FAULTY_CLASSES
from cxrflow.phantom.reports import FINDING_KEYWORDS, NORMAL_SENTENCE

from .conftest import SMALL

CR, DX = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"
BIT = {name: i for i, name in enumerate(MASK_STRUCTURES)}


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _images(gt):
    return [r for r in gt if r["kind"] == "image"]


def _display(ds: pydicom.Dataset) -> np.ndarray:
    """The documented display pipeline: modality LUT, VOI, invert MONOCHROME1, scale to [0,1]."""
    arr = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds:
        arr = arr.astype(np.int64)  # slope 1 and an integer intercept: exact
    arr = apply_voi_lut(arr, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        lo, hi = 0.0, 4095.0
    else:
        wc, ww = float(np.ravel([ds.WindowCenter])[0]), float(np.ravel([ds.WindowWidth])[0])
        lo, hi = wc - ww / 2, wc + ww / 2
        arr = np.clip(arr, lo, hi)
    arr = (arr - lo) / (hi - lo)
    return 1.0 - arr if ds.PhotometricInterpretation == "MONOCHROME1" else arr


def _walk_values(ds: pydicom.Dataset):
    """Every element value as text, at every depth (sequences, private tags, UN included)."""
    for elem in ds.iterall():
        if elem.VR == "SQ" or elem.tag == 0x7FE00010:
            continue
        value = elem.value
        if isinstance(value, bytes):
            yield value.decode("latin-1", errors="replace")
        elif isinstance(value, (list, pydicom.multival.MultiValue)):
            yield from (str(v) for v in value)
        else:
            yield str(value)


# --------------------------------------------------------------------- API and determinism


def test_summary_counts(phantom, gt):
    summary, out = phantom
    assert summary.n_subjects == SMALL["subjects"]
    assert summary.n_images == len(_images(gt))
    assert summary.n_faulty == len(gt) - summary.n_images
    assert summary.ground_truth_path == out / GROUND_TRUTH_NAME
    assert summary.n_studies == len({(r["subject"], r["study_index"]) for r in _images(gt)})
    assert summary.to_dict()["out_dir"] == str(out)
    assert 1.5 <= summary.n_images / summary.n_subjects <= 5


def test_config_validates():
    with pytest.raises(ValueError):
        PhantomConfig(Path("x"), subjects=0)
    with pytest.raises(ValueError):
        PhantomConfig(Path("x"), subjects=1, min_side=300, max_side=200)


def test_same_seed_gives_identical_bytes(phantom, tmp_path):
    _, out = phantom
    again = tmp_path / "again"
    generate_phantom(again, workers=2, **SMALL)
    first, second = _digests(out), _digests(again)
    assert first == second
    assert pq.read_table(out / GROUND_TRUTH_NAME).equals(pq.read_table(again / GROUND_TRUTH_NAME))


def test_other_seed_differs(phantom, tmp_path):
    _, out = phantom
    other = tmp_path / "other"
    generate_phantom(other, **{**SMALL, "seed": SMALL["seed"] + 1, "subjects": 3})
    gt_a = pq.read_table(out / GROUND_TRUTH_NAME).to_pylist()
    gt_b = pq.read_table(other / GROUND_TRUTH_NAME).to_pylist()
    uids_a = {r["sop_instance_uid"] for r in gt_a} - {None}
    assert uids_a.isdisjoint({r["sop_instance_uid"] for r in gt_b})
    assert {r["relpath"] for r in gt_a}.isdisjoint({r["relpath"] for r in gt_b})


# --------------------------------------------------------------------- ground truth schema


def test_ground_truth_schema(phantom, gt):
    _, out = phantom
    table = pq.read_table(out / GROUND_TRUTH_NAME)
    assert table.schema.equals(SCHEMA)
    for f in FINDINGS:
        assert label_column(f) in table.column_names
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files - {GROUND_TRUTH_NAME} == {r["relpath"] for r in gt}
    for r in _images(gt):
        assert r["view"] in ("PA", "AP", "LATERAL")
        assert r["sex"] in ("M", "F")
        assert r["expected_quarantine"] is None
        assert re.fullmatch(r"\d{8}", r["study_date"])
        assert (r["mask_png"] is None) == (r["view"] == "LATERAL")


def test_age_matches_dates(gt):
    for r in _images(gt):
        b, s = r["birth_date"], r["study_date"]
        age = int(s[:4]) - int(b[:4]) - ((s[4:]) < (b[4:]))
        assert age == r["age_years"]


def test_subject_identity_constant_over_studies(gt):
    by_subject: dict[int, set] = {}
    for r in _images(gt):
        by_subject.setdefault(r["subject"], set()).add((r["patient_id"], r["patient_name"]))
    assert all(len(v) == 1 for v in by_subject.values())
    dates = {}
    for r in _images(gt):
        dates.setdefault(r["subject"], set()).add(r["study_date"])
    assert any(len(v) > 1 for v in dates.values()), "some subject should have several studies"


# --------------------------------------------------------------------- DICOM realism


def test_every_image_reads_and_decodes(phantom, gt):
    _, out = phantom
    for r in _images(gt):
        ds = pydicom.dcmread(out / r["relpath"])
        assert ds.preamble is not None
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == r["sop_instance_uid"]
        assert ds.file_meta.TransferSyntaxUID == r["transfer_syntax"]
        assert ds.SOPClassUID in (CR, DX) and ds.Modality == r["sop_class"]
        assert ds.BodyPartExamined == "CHEST"
        arr = ds.pixel_array
        assert arr.shape == (r["rows"], r["columns"])
        assert ds.BitsAllocated == 16 and ds.HighBit == ds.BitsStored - 1
        assert ds.PixelRepresentation == 0
        assert int(arr.max()) < (1 << ds.BitsStored)
        assert ds.PhotometricInterpretation == r["photometric"]
        assert float(ds.RescaleSlope) == r["rescale_slope"]
        assert float(ds.RescaleIntercept) == r["rescale_intercept"]
        if ds.Modality == "DX":
            assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert {"ImagerPixelSpacing", "StudyInstanceUID"} <= set(ds.dir())


def test_variety(gt):
    images = _images(gt)
    assert {r["photometric"] for r in images} == {"MONOCHROME1", "MONOCHROME2"}
    assert {r["sop_class"] for r in images} == {"CR", "DX"}
    assert {r["view"] for r in images} == {"PA", "AP", "LATERAL"}
    syntaxes = {r["transfer_syntax"] for r in images}
    assert RLELossless in syntaxes
    assert "1.2.840.10008.1.2.1" in syntaxes and "1.2.840.10008.1.2" in syntaxes
    bits = {r["bits_stored"] for r in images}
    assert min(bits) >= 12 and max(bits) <= 16 and len(bits) >= 3
    assert any(r["rescale_slope"] != 1.0 for r in images)
    assert any(r["rescale_intercept"] != 0.0 for r in images)
    assert any(r["voi_lut"] for r in images)
    shapes = {(r["rows"] > r["columns"], r["rows"] == r["columns"]) for r in images}
    assert len(shapes) >= 2


def test_lateral_references_its_frontal(phantom, gt):
    _, out = phantom
    by_uid = {r["sop_instance_uid"]: r for r in _images(gt)}
    laterals = [r for r in _images(gt) if r["view"] == "LATERAL"]
    assert laterals
    for r in laterals:
        ds = pydicom.dcmread(out / r["relpath"], stop_before_pixels=True)
        ref = ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        assert ref == r["referenced_frontal_uid"]
        frontal = by_uid[ref]
        assert frontal["study_instance_uid"] == r["study_instance_uid"]
        assert frontal["view"] in ("PA", "AP")
        assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID


def test_file_names_carry_no_phi(gt):
    for r in gt:
        path = r["relpath"].upper()
        if r["patient_id"]:
            assert r["patient_id"].upper() not in path
            assert r["mrn"].upper() not in path
            for part in r["patient_name"].split("^")[:2]:
                assert part not in path
        assert "PID" not in path and "MRN" not in path


# --------------------------------------------------------------------- PHI


def test_phi_values_are_in_the_files(phantom, gt):
    _, out = phantom
    checked = 0
    for r in gt:
        if not r["phi_values"] or r["expected_quarantine"] in ("corrupt", "truncated"):
            continue
        ds = pydicom.dcmread(out / r["relpath"], stop_before_pixels=True)
        text = "\n".join(_walk_values(ds))
        for value in r["phi_values"]:
            assert value in text, (r["relpath"], value)
        checked += 1
    assert checked > 10


def test_phi_in_sequences_and_private_tags(phantom, gt):
    _, out = phantom
    r = next(r for r in _images(gt) if r["transfer_syntax"] != "1.2.840.10008.1.2")
    ds = pydicom.dcmread(out / r["relpath"], stop_before_pixels=True)
    block = ds.private_block(0x0029, "PHANTOM_PACS 1.0")
    assert block[0x10].value == r["mrn"]
    item = block[0x11].value[0]
    inner = item.private_block(0x0029, "PHANTOM_PACS 1.0")
    assert inner[0x12].value in r["phi_values"]
    family = r["patient_name"].split("^")[0]
    assert family in inner[0x13].value
    req = ds.RequestAttributesSequence[0]
    assert req.AccessionNumber == r["accession_number"]
    assert req.RequestedProcedureID in r["phi_values"]
    assert family in req.RequestedProcedureDescription
    assert r["mrn"] in [item.PatientID for item in ds.OtherPatientIDsSequence]
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "AccessionNumber",
        "InstitutionName",
        "ReferringPhysicianName",
        "StationName",
        "DeviceSerialNumber",
        "StudyInstanceUID",
        "FrameOfReferenceUID",
    ):
        assert str(ds[keyword].value) in r["phi_values"], keyword
    assert any(len(v) > 14 and v[14:15] in "+-." for v in r["phi_values"])  # a DT


def test_implicit_vr_file_keeps_private_phi(phantom, gt):
    _, out = phantom
    r = next(r for r in _images(gt) if r["transfer_syntax"] == "1.2.840.10008.1.2")
    raw = (out / r["relpath"]).read_bytes()
    assert r["mrn"].encode() in raw


# --------------------------------------------------------------------- image content and masks


def test_lungs_darker_than_mediastinum(phantom, gt):
    _, out = phantom
    frontals = [r for r in _images(gt) if r["view"] != "LATERAL"]
    assert frontals
    for r in frontals:
        img = _display(pydicom.dcmread(out / r["relpath"]))
        mask = png_to_mask(r["mask_png"])
        assert mask.shape == img.shape
        lungs = ((mask >> BIT["left_lung"]) & 1) | ((mask >> BIT["right_lung"]) & 1)
        assert lungs.sum() > 0.05 * lungs.size
        cols = np.flatnonzero(lungs.any(axis=0))
        rows = np.flatnonzero(lungs.any(axis=1))
        mid = (cols[0] + cols[-1]) // 2
        band = img[rows[0] + (rows[-1] - rows[0]) // 4 : rows[-1], mid - 2 : mid + 3]
        assert img[lungs.astype(bool)].mean() + 0.15 < band.mean(), r["relpath"]


def test_masks_are_consistent(gt):
    for r in _images(gt):
        if r["mask_png"] is None:
            continue
        m = png_to_mask(r["mask_png"])
        assert m.dtype == np.uint16 and m.shape == (r["rows"], r["columns"])
        assert int(m.max()) < (1 << len(MASK_STRUCTURES))
        for side in ("left", "right"):
            lung = (m >> BIT[f"{side}_lung"]) & 1
            zones = sum((m >> BIT[f"zone_{side}_{z}"]) & 1 for z in ("upper", "middle", "lower"))
            assert np.array_equal(zones, lung)  # zones partition the lung
        left = np.argwhere((m >> BIT["left_lung"]) & 1)[:, 1].mean()
        right = np.argwhere((m >> BIT["right_lung"]) & 1)[:, 1].mean()
        assert left > right, "the patient's left lung is on the image right"
        assert ((m >> BIT["ribs"]) & 1).any()
        assert ((m >> BIT["pneumothorax"]) & 1).any() == bool(r["label_pneumothorax"])
        assert ((m >> BIT["chest_tube"]) & 1).any() == bool(r["label_chest_tube"])


def test_cardiomegaly_means_large_ctr(gt):
    for r in _images(gt):
        if r["cardiothoracic_ratio"] is not None:
            assert (r["cardiothoracic_ratio"] > 0.5) == bool(r["label_cardiomegaly"])


# --------------------------------------------------------------------- labels and reports


def test_reports_match_labels(gt):
    images = _images(gt)
    assert any(all(r[label_column(f)] == 0 for f in FINDINGS) for r in images)
    assert any(any(r[label_column(f)] for f in FINDINGS) for r in images)
    for r in images:
        report = r["report"]
        assert report.startswith("FINDINGS:")
        positives = [f for f in FINDINGS if r[label_column(f)]]
        assert (NORMAL_SENTENCE in report) == (not positives)
        for f in positives:
            assert any(k in report.lower() for k in FINDING_KEYWORDS[f]), (f, report)


def test_prevalence_on_a_larger_cohort():
    from cxrflow.phantom.plan import plan_cohort

    plan = plan_cohort(3, 600, 128, 192, False, ())
    studies = [st for s in plan.subjects for st in s.studies]
    normal = np.mean([not st.lesions for st in studies])
    assert 0.3 < normal < 0.5
    rate = {f: np.mean([st.has(f) for st in studies]) for f in FINDINGS}
    assert rate["aortic_enlargement"] > rate["tuberculosis"]
    assert 0.1 < rate["lung_opacity"] < 0.26
    images = sum(len(st.images) for st in studies) / len(plan.subjects)
    assert 2.4 < images < 3.8


# --------------------------------------------------------------------- faulty files


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_faulty_files(phantom, gt):
    _, out = phantom
    faulty = [r for r in gt if r["kind"] == "faulty"]
    assert {r["expected_quarantine"] for r in faulty} == set(FAULTY_CLASSES)
    assert 6 <= len(faulty) <= 10
    for r in faulty:
        path = out / r["relpath"]
        kind = r["expected_quarantine"]
        raw = path.read_bytes()
        if kind == "not_dicom":
            assert raw[128:132] != b"DICM"
            with pytest.raises(pydicom.errors.InvalidDicomError):
                pydicom.dcmread(path)
            continue
        assert raw[128:132] == b"DICM"
        if kind == "corrupt":
            ds = None
            try:
                ds = pydicom.dcmread(path)
                _ = ds.pixel_array
            except Exception:
                continue
            pytest.fail("a corrupt file decoded")
        ds = pydicom.dcmread(path)
        assert ds.PatientID == r["patient_id"]
        if kind == "truncated":
            with pytest.raises(ValueError):
                _ = ds.pixel_array
        elif kind == "no_pixel_data":
            assert "PixelData" not in ds
        elif kind == "burned_in_annotation":
            assert ds.BurnedInAnnotation == "YES"
        elif kind == "secondary_capture":
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
            assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        elif kind == "for_processing":
            assert ds.PresentationIntentType == "FOR PROCESSING"
        elif kind == "not_chest":
            assert ds.BodyPartExamined == "HAND"
        elif kind == "not_monochrome":
            assert ds.PhotometricInterpretation == "RGB"
            assert ds.pixel_array.shape[-1] == 3


def test_without_faulty(tmp_path):
    s = generate_phantom(
        tmp_path, 2, seed=5, min_side=96, max_side=128, include_faulty=False, progress=False
    )
    assert s.n_faulty == 0
    rows = pq.read_table(s.ground_truth_path).to_pylist()
    assert all(r["kind"] == "image" for r in rows)
