"""DICOM files like a PACS export: CR/DX headers full of (fake) PHI, varied pixel encodings.

`build_dataset` returns the dataset and every identifying string it wrote (`phi`), so that the
ground truth can list exactly what a de-identification must remove.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from cxrflow.phantom.identities import Institution, Person
from cxrflow.phantom.plan import (
    IMPLICIT_VR_LE,
    SOP_CLASS_UIDS,
    ImagePlan,
    StudyPlan,
    SubjectPlan,
)
from cxrflow.phantom.seeding import derive_uid
from cxrflow.provenance import PHANTOM_IMPLEMENTATION_VERSION

PRIVATE_CREATOR = "PHANTOM_PACS 1.0"
PRIVATE_GROUP = 0x0029
ACQ_CREATOR = "PHANTOM_ACQ 1.0"
ACQ_GROUP = 0x0019
IMPLEMENTATION_CLASS_UID = derive_uid(0, "implementation", "cxrflow-phantom")
IMPLEMENTATION_VERSION = PHANTOM_IMPLEMENTATION_VERSION  # how ingest tells phantoms apart
# Detached Study Management SOP Class: what old RIS put in ReferencedStudySequence.
STUDY_REF_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
VIEW_CODES = {
    "PA": ("R-10214", "postero-anterior"),
    "AP": ("R-10206", "antero-posterior"),
    "LATERAL": ("R-10236", "left lateral"),
}


@dataclass
class PixelResult:
    """Stored pixels and the display parameters derived from them."""

    stored: np.ndarray
    window_center: float | None
    window_width: float | None
    voi_lut: tuple[list[int], int, int] | None = None  # (data, first mapped, n entries)
    extra_windows: list[tuple[float, float]] = field(default_factory=list)


def da(day: dt.date) -> str:
    """DICOM DA."""
    return day.strftime("%Y%m%d")


def ds_str(x: float) -> str:
    """A DS string (at most 16 characters) without float noise."""
    s = f"{x:.6g}"
    return s if len(s) <= 16 else f"{x:.8e}"


def to_stored(img: np.ndarray, plan: ImagePlan, rng: np.random.Generator) -> PixelResult:
    """Map a [0,1] brightness image to stored values (inverted for MONOCHROME1) and derive a
    window, in rescaled units, that covers the body."""
    maxv = (1 << plan.bits_stored) - 1
    lo = round(maxv * float(rng.uniform(0.02, 0.08)))
    hi = round(maxv * float(rng.uniform(0.85, 0.98)))
    stored = np.rint(lo + img * (hi - lo)).astype(np.int64)
    if plan.photometric == "MONOCHROME1":
        stored = maxv - stored
    stored = np.clip(stored, 0, maxv).astype(np.uint16)
    body = img > 0.12
    vals = img[body] if body.sum() > 100 else img.ravel()
    p_lo, p_hi = np.percentile(vals, [1.0, 99.7])
    ends = np.array([lo + p_lo * (hi - lo), lo + p_hi * (hi - lo)])
    if plan.photometric == "MONOCHROME1":
        ends = maxv - ends
    r = np.sort(plan.rescale_slope * ends + plan.rescale_intercept)
    wc, ww = round(float(r.mean()), 1), round(float(r[1] - r[0]) + 1.0, 1)
    voi_possible = (
        plan.rescale_slope == 1.0 and plan.rescale_intercept >= 0 and plan.bits_stored <= 14
    )
    if plan.window_count == 0 and voi_possible:
        first = int(plan.rescale_intercept)
        n = maxv + 1
        x = np.arange(n, dtype=np.float64) + first
        lut = 4095.0 / (1.0 + np.exp(-4.0 * (x - wc) / ww))
        return PixelResult(stored, None, None, (np.rint(lut).astype(int).tolist(), first, n))
    extra = [(wc, round(ww * 1.5, 1))] if plan.window_count >= 2 else []
    return PixelResult(stored, wc, ww, None, extra)


class _Phi:
    """Collects identifying values in the order they are written."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def add(self, *values: str) -> None:
        for v in values:
            if v and v not in self.values:
                self.values.append(v)

    def person(self, p: Person) -> None:
        self.add(*p.forms())


def build_dataset(
    subject: SubjectPlan,
    study: StudyPlan,
    plan: ImagePlan,
    inst: Institution,
    pixels: PixelResult | None,
    *,
    photometric: str | None = None,
) -> tuple[Dataset, list[str]]:
    """The full dataset of one file and the PHI strings it carries (pixels may be omitted)."""
    phi = _Phi()
    ident = subject.identity
    pn = ident.person
    date = da(study.date)
    sop_class = SOP_CLASS_UIDS[plan.sop_class]

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = plan.image_type.split("\\")
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = plan.sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.AcquisitionDateTime = f"{date}{plan.acquisition_time}{plan.acquisition_tz}"
    ds.StudyTime = study.study_time
    ds.SeriesTime = plan.series_time
    ds.AcquisitionTime = plan.acquisition_time
    ds.ContentTime = plan.content_time
    if plan.acquisition_tz:
        ds.TimezoneOffsetFromUTC = plan.acquisition_tz
    phi.add(date, ds.AcquisitionDateTime, study.study_time, plan.series_time)
    phi.add(plan.acquisition_time, plan.content_time)
    ds.AccessionNumber = study.accession
    ds.Modality = plan.sop_class
    if plan.sop_class == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = inst.manufacturer
    ds.InstitutionName = inst.name
    ds.InstitutionAddress = inst.address
    ds.ReferringPhysicianName = study.referring.pn
    ds.StationName = inst.station_name
    view_word = {"PA": "PA", "AP": "AP PORTABLE", "LATERAL": "LATERAL"}[plan.view]
    n_views = len(study.images)
    ds.StudyDescription = (
        f"CHEST {view_word} for {pn.short_pn}"
        if study.name_in_description
        else ("CHEST 2 VIEWS PA AND LATERAL" if n_views == 2 else f"CHEST 1 VIEW {view_word}")
    )
    ds.SeriesDescription = f"CHEST {view_word}"
    ds.InstitutionalDepartmentName = inst.department
    ds.PerformingPhysicianName = study.performing.pn
    ds.OperatorsName = study.operator.pn
    ds.ManufacturerModelName = inst.model
    phi.add(study.accession, inst.name, inst.address, inst.station_name)
    for p in (study.referring, study.performing, study.operator):
        phi.person(p)
    if study.name_in_description:
        phi.add(pn.short_pn)

    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = STUDY_REF_SOP_CLASS
    ref_study.ReferencedSOPInstanceUID = study.study_uid
    ds.ReferencedStudySequence = Sequence([ref_study])
    if plan.referenced_frontal_uid:
        ref_img = Dataset()
        ref_img.ReferencedSOPClassUID = sop_class
        ref_img.ReferencedSOPInstanceUID = plan.referenced_frontal_uid
        ds.ReferencedImageSequence = Sequence([ref_img])
        phi.add(plan.referenced_frontal_uid)

    # Patient module.
    ds.PatientName = pn.pn
    ds.PatientID = ident.patient_id
    ds.IssuerOfPatientID = ident.issuer
    ds.PatientBirthDate = da(subject.birth_date)
    ds.PatientSex = subject.sex
    ds.OtherPatientIDs = [ident.mrn, *(i for i, _ in ident.other_ids)]
    others = []
    for pid, issuer in ((ident.mrn, inst.issuer), *ident.other_ids):
        item = Dataset()
        item.PatientID = pid
        item.IssuerOfPatientID = issuer
        item.TypeOfPatientID = "TEXT"
        others.append(item)
        # A hospital's issuer names the institution; generic issuers identify nobody.
        phi.add(pid, issuer if issuer == inst.issuer else "")
    ds.OtherPatientIDsSequence = Sequence(others)
    ds.PatientAge = f"{study.age_years:03d}Y"
    ds.PatientSize = ds_str(subject.height_m)
    ds.PatientWeight = ds_str(study.weight_kg)
    ds.PatientAddress = ident.address
    ds.PatientTelephoneNumbers = ident.phone
    phi.person(pn)
    phi.add(ident.patient_id, ds.PatientBirthDate, ident.address, ident.phone)

    # Equipment and acquisition.
    ds.BodyPartExamined = "CHEST"
    ds.KVP = ds_str(110.0 if plan.view == "PA" else (125.0 if plan.view == "LATERAL" else 90.0))
    ds.DeviceSerialNumber = inst.device_serial
    ds.SoftwareVersions = "4.2.1"
    ds.DistanceSourceToDetector = ds_str(1800.0 if plan.view != "AP" else 1100.0)
    ds.ExposureTime = 12 if plan.view == "PA" else 20
    ds.XRayTubeCurrent = 250
    ds.ViewPosition = "LL" if plan.view == "LATERAL" else plan.view
    ds.PatientOrientation = ["P", "F"] if plan.view == "LATERAL" else ["L", "F"]
    phi.add(inst.device_serial)

    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = plan.series_instance_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = plan.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = plan.instance_number
    ds.FrameOfReferenceUID = plan.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    phi.add(study.study_uid, plan.series_instance_uid, plan.sop_instance_uid)
    phi.add(plan.frame_of_reference_uid, study.study_id)
    ds.ImageComments = (
        f"Patient {pn.natural_form}, {'portable' if plan.view == 'AP' else 'erect'}"
        if plan.name_in_comments
        else "Inspiration adequate"
    )
    if plan.name_in_comments:
        phi.add(pn.natural_form)

    # Request attributes: identifiers nested in a standard sequence.
    req = Dataset()
    req.RequestedProcedureID = study.requested_procedure_id
    req.ScheduledProcedureStepID = study.sps_id
    req.AccessionNumber = study.accession
    req.RequestedProcedureDescription = f"CHEST {view_word} for {pn.short_pn}"
    req.ScheduledProcedureStepDescription = "XR CHEST"
    ds.RequestAttributesSequence = Sequence([req])
    ds.PerformedProcedureStepStartDate = date
    ds.PerformedProcedureStepStartTime = study.study_time
    ds.PerformedProcedureStepID = study.sps_id
    phi.add(study.requested_procedure_id, study.sps_id, pn.short_pn)

    if plan.sop_class == "DX":
        ds.DetectorType = "SCINTILLATOR"
        code = Dataset()
        code.CodeValue, code.CodeMeaning = VIEW_CODES[plan.view]
        code.CodingSchemeDesignator = "SRT"
        ds.ViewCodeSequence = Sequence([code])

    _private_tags(ds, subject, plan, phi)

    if pixels is not None:
        _pixel_module(ds, plan, pixels, photometric or plan.photometric)

    ds.file_meta = _file_meta(sop_class, plan.sop_instance_uid, plan.transfer_syntax)
    return ds, phi.values


def _private_tags(ds: Dataset, subject: SubjectPlan, plan: ImagePlan, phi: _Phi) -> None:
    """A PACS vendor block holding the MRN and a sequence with a UID and the patient name."""
    ident = subject.identity
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", ident.mrn)
    item = Dataset()
    inner = item.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    inner.add_new(0x12, "UI", plan.private_uid)
    inner.add_new(0x13, "LO", ident.person.comma_form)
    block.add_new(0x11, "SQ", Sequence([item]))
    phi.add(ident.mrn, plan.private_uid, ident.person.comma_form)
    # A harmless acquisition block (no PHI), as real modalities write.
    acq = ds.private_block(ACQ_GROUP, ACQ_CREATOR, create=True)
    acq.add_new(0x10, "DS", "1532")
    acq.add_new(0x11, "LO", "LUNG FINE")


def _pixel_module(ds: Dataset, plan: ImagePlan, px: PixelResult, photometric: str) -> None:
    arr = px.stored
    ds.SamplesPerPixel = 1 if arr.ndim == 2 else 3
    ds.PhotometricInterpretation = photometric
    if arr.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    bits = 8 if arr.dtype == np.uint8 else plan.bits_stored
    ds.BitsAllocated = 8 if arr.dtype == np.uint8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    spacing = ds_str(round(0.43 * 896 / max(arr.shape[0], arr.shape[1]) * 0.9, 4))
    ds.ImagerPixelSpacing = [spacing, spacing]
    if plan.pixel_spacing_tag:
        cal = ds_str(round(float(spacing) / 1.1, 4))
        ds.PixelSpacing = [cal, cal]
    if plan.burned_in_tag:
        ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if arr.ndim == 2:
        ds.RescaleIntercept = ds_str(plan.rescale_intercept)
        ds.RescaleSlope = ds_str(plan.rescale_slope)
        ds.RescaleType = "US"
        if px.voi_lut is not None:
            data, first, n = px.voi_lut
            item = Dataset()
            item.add_new(0x00283002, "US", [n if n < 65536 else 0, first, 12])
            item.LUTExplanation = "SIGMOID CHEST"
            item.add_new(0x00283006, "US", data)
            ds.VOILUTSequence = Sequence([item])
        elif px.window_center is not None:
            centres = [px.window_center] + [c for c, _ in px.extra_windows]
            widths = [px.window_width] + [w for _, w in px.extra_windows]
            ds.WindowCenter = (
                [ds_str(c) for c in centres] if len(centres) > 1 else ds_str(centres[0])
            )
            ds.WindowWidth = [ds_str(w) for w in widths] if len(widths) > 1 else ds_str(widths[0])
            ds.WindowCenterWidthExplanation = ["NORMAL", "SOFT"] if len(centres) > 1 else "NORMAL"
        if plan.sop_class == "DX":
            ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
            ds.PixelIntensityRelationship = "LOG"
            ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME1" else -1
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OB" if arr.dtype == np.uint8 else "OW"


def _file_meta(sop_class: str, sop_uid: str, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def encode(ds: Dataset, syntax: str) -> bytes:
    """Compress if asked, then serialise with preamble and file meta."""
    uid = UID(syntax)
    if uid.is_compressed:
        # compress() reads the native pixels, then sets the compressed transfer syntax itself.
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(uid, generate_instance_uid=False)
    buf = io.BytesIO()
    if syntax == IMPLICIT_VR_LE:
        ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=True)
    else:
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
