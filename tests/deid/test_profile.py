import io
from datetime import datetime

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cxrflow.deid import Deidentifier, DeidOptions
from cxrflow.keys import SecretKey
from tests.factory import PATIENT, make_dataset

KEY = SecretKey(b"0123456789abcdef0123456789abcdef")
PHI = [
    *PATIENT.values(),
    "DOE",
    "JANE",
    "OTHER-7781",
    "Springfield Clinic",
    "RP-44321",
    "SPS-90001",
    "1.2.840.99999.77",  # every original UID starts with this root
    "20200315",
    "101523",
    "19610214",
]


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _deid(ds: Dataset, **opts) -> Dataset:
    Deidentifier(KEY, DeidOptions(**opts)).apply(ds)
    return pydicom.dcmread(io.BytesIO(_bytes(ds)))


def test_no_phi_survives_anywhere_in_the_file():
    out = _bytes(_deid(make_dataset()))
    for value in PHI:
        assert value.encode() not in out, value
        assert value.upper().encode() not in out.upper(), value


def test_private_tags_overlays_are_removed_and_markers_added():
    ds = _deid(make_dataset())
    assert not any(e.tag.is_private for e in ds.iterall())
    assert not any(0x6000 <= e.tag.group <= 0x60FF for e in ds.iterall())
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "DICOM PS3.15 E.1 Basic Profile" in ds.DeidentificationMethod
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113105", "113107", "113108"}
    assert all(
        item.CodingSchemeDesignator == "DCM" for item in ds.DeidentificationMethodCodeSequence
    )


def test_patient_characteristics_are_retained_and_optional():
    ds = _deid(make_dataset())
    assert (ds.PatientSex, ds.PatientAge, float(ds.PatientWeight), float(ds.PatientSize)) == (
        "F",
        "059Y",
        71.5,
        1.68,
    )
    ds = _deid(make_dataset(), retain_patient_characteristics=False)
    assert "PatientAge" not in ds and "PatientWeight" not in ds
    assert ds.PatientSex == ""
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert "113108" not in codes


def test_uids_are_keyed_consistent_and_references_follow():
    frontal = make_dataset(sop_uid="1.2.840.99999.77.5")
    lateral = make_dataset(sop_uid="1.2.840.99999.77.6")
    ref = Dataset()
    ref.ReferencedSOPClassUID = frontal.SOPClassUID
    ref.ReferencedSOPInstanceUID = frontal.SOPInstanceUID
    lateral.ReferencedImageSequence = Sequence([ref])
    a = _deid(frontal)
    b = Deidentifier(KEY).apply(lateral) and pydicom.dcmread(io.BytesIO(_bytes(lateral)))
    assert a.SOPInstanceUID.startswith("2.25.") and len(a.SOPInstanceUID) <= 64
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert (
        b.ReferencedImageSequence[0].ReferencedSOPClassUID == frontal.SOPClassUID
    )  # registered: kept
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SOPClassUID == frontal.SOPClassUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    # Same input on another run with the same key: same output. Another key: another UID.
    again = _deid(make_dataset(sop_uid="1.2.840.99999.77.5"))
    assert again.SOPInstanceUID == a.SOPInstanceUID
    other = make_dataset(sop_uid="1.2.840.99999.77.5")
    Deidentifier(SecretKey(b"x" * 32)).apply(other)
    assert other.SOPInstanceUID != a.SOPInstanceUID


def test_dates_shift_per_patient_and_keep_intervals():
    first = _deid(make_dataset(StudyDate="20200315", SeriesDate="20200315"))
    later = _deid(make_dataset(StudyDate="20230101", SeriesDate="20230101"))
    interval = datetime(2023, 1, 1) - datetime(2020, 3, 15)

    def study(ds):
        return datetime.strptime(ds.StudyDate, "%Y%m%d")

    assert study(later) - study(first) == interval
    assert first.StudyTime == later.StudyTime != "101523"  # same time of day, same offset
    assert first.StudyDate != "20200315"
    other_patient = _deid(make_dataset(PatientID="SOMEONE-ELSE"))
    assert other_patient.StudyDate != first.StudyDate  # another patient, another offset
    nested = make_dataset()
    item = Dataset()
    item.ObservationDateTime = "20200315101600"
    nested.ContentSequence = Sequence([item])
    out = _deid(nested)
    assert out.ContentSequence[0].ObservationDateTime != "20200315101600"


def test_dates_are_emptied_without_the_modified_dates_option():
    ds = _deid(make_dataset(), retain_longitudinal_modified_dates=False)
    assert ds.StudyDate == "" and ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_clean_descriptors_keeps_meaning_and_drops_identity():
    ds = _deid(make_dataset())
    assert ds.StudyDescription.startswith("CHEST PA")
    assert "DOE" not in ds.StudyDescription.upper()
    assert "JANE" not in ds.ImageComments.upper()
    ds = _deid(make_dataset(), clean_descriptors=False)
    assert "StudyDescription" not in ds and "ImageComments" not in ds


def test_unlisted_person_names_are_emptied():
    ds = make_dataset()
    ds.add_new(0x00321032, "PN", "REQUESTING^ROBERTA")  # Requesting Physician: listed or not, gone
    ds.add_new(0x00700084, "PN", "CREATOR^CARL")
    out = _bytes(_deid(ds))
    assert b"ROBERTA" not in out and b"CARL" not in out


def test_audit_names_attributes_never_values():
    ds = make_dataset()
    report = Deidentifier(KEY).apply(ds)
    text = repr(report.__dict__)
    for value in PHI:
        assert value not in text
    assert "PatientBirthDate" in report.emptied
    assert "(0029,1010)" in report.removed
    assert "StudyDate" in report.shifted
    assert "RequestAttributesSequence[0].RequestedProcedureID" in report.removed
    assert report.counts()["uids_replaced"] >= 4


@pytest.mark.parametrize("vr_value", ["11111111", "2020.03.15", "2020", "not a date"])
def test_odd_birth_and_study_dates_never_crash(vr_value):
    ds = make_dataset()
    ds.StudyDate = vr_value
    Deidentifier(KEY).apply(ds)
    assert ds.StudyDate != vr_value or vr_value == ""
