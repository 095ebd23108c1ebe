"""Hand-made DICOM datasets with known pixel values and known identifiers, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")

PATIENT = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "MRN0042424",
    "PatientBirthDate": "19610214",
    "AccessionNumber": "ACC998877",
    "StudyID": "ST7766",
    "InstitutionName": "Saint Example Hospital",
    "InstitutionAddress": "12 Example Road, Springfield",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "OperatorsName": "TECH^TERRY",
    "StationName": "XRAYROOM7",
    "DeviceSerialNumber": "SN-555123",
}


def make_dataset(
    pixels: np.ndarray | None = None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    slope: float | None = None,
    intercept: float | None = None,
    center: float | None = None,
    width: float | None = None,
    sop_uid: str = "1.2.840.99999.77.1001",
    study_uid: str = "1.2.840.99999.77.2001",
    series_uid: str = "1.2.840.99999.77.3001",
    sop_class: UID = CR_STORAGE,
    modality: str = "CR",
    **attrs: object,
) -> Dataset:
    """A CR/DX chest dataset with PHI in the usual places and the given pixels."""
    if pixels is None:
        pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) % (2**bits_stored)).astype(
            np.uint16
        )
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.StudyDate = "20200315"
    ds.StudyTime = "101523"
    ds.SeriesDate = "20200315"
    ds.SeriesTime = "101601"
    ds.ContentDate = "20200315"
    ds.ContentTime = "101602.123"
    ds.AcquisitionDateTime = "20200315101600.000000+0100"
    ds.PatientSex = "F"
    ds.PatientAge = "059Y"
    ds.PatientWeight = 71.5
    ds.PatientSize = 1.68
    ds.StudyDescription = "CHEST PA for DOE^JANE"
    ds.ImageComments = "Pt Jane Doe MRN0042424 seen 2020-03-15"
    for k, v in PATIENT.items():
        setattr(ds, k, v)
    other = Dataset()
    other.PatientID = "OTHER-7781"
    other.IssuerOfPatientID = "Springfield Clinic"
    ds.OtherPatientIDsSequence = Sequence([other])
    req = Dataset()
    req.AccessionNumber = PATIENT["AccessionNumber"]
    req.RequestedProcedureID = "RP-44321"
    req.RequestedProcedureDescription = "Chest for DOE^JANE"
    req.ScheduledProcedureStepID = "SPS-90001"
    ds.RequestAttributesSequence = Sequence([req])
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = study_uid
    ds.ReferencedStudySequence = Sequence([ref])
    block = ds.private_block(0x0029, "HOSPITAL_PACS 1.0", create=True)
    block.add_new(0x10, "LO", PATIENT["PatientID"])
    block.add_new(0x11, "PN", PATIENT["PatientName"])
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # overlay data
    rows, cols = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    if center is not None:
        ds.WindowCenter = center
        ds.WindowWidth = width
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


__all__ = ["CR_STORAGE", "DX_STORAGE", "PATIENT", "make_dataset", "write"]
