"""Files that an ingestion stage must quarantine, one per reason class.

Every builder returns the file's bytes, the PHI strings in it and ground-truth fields that differ
from the planned image (e.g. the SOP class of a secondary capture).
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxrflow.phantom.dicom_writer import PixelResult, build_dataset, encode, to_stored
from cxrflow.phantom.identities import Institution
from cxrflow.phantom.plan import EXPLICIT_VR_LE, ImagePlan, StudyPlan, SubjectPlan

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"


def build_faulty(
    subject: SubjectPlan,
    study: StudyPlan,
    plan: ImagePlan,
    inst: Institution,
    img: np.ndarray,
    rng: np.random.Generator,
) -> tuple[bytes, list[str], dict[str, Any]]:
    """Bytes, PHI and ground-truth overrides of the faulty file `plan.faulty`."""
    kind = plan.faulty
    gt: dict[str, Any] = {}
    if kind == "not_dicom":
        gt = {key: None for key in _DICOM_FIELDS}
        if plan.relpath.rsplit("/", 1)[-1].startswith("Thumbs"):
            text = "PACS export log\nbatch exported without errors\nfiles: see index\n"
            return text.encode("ascii"), [], gt
        buf = io.BytesIO()
        Image.fromarray((img * 255).astype(np.uint8)).save(buf, format="PNG")
        return buf.getvalue(), [], gt

    plan = replace(plan, transfer_syntax=EXPLICIT_VR_LE, window_count=1)
    if kind == "burned_in_annotation":
        img = _burn_in(img, f"{subject.identity.person.pn}  {subject.identity.patient_id}")
    if kind == "not_chest":
        img = _hand(img.shape, rng)
    px = to_stored(img, plan, rng)
    photometric = plan.photometric
    if kind == "not_monochrome":
        gray = (img * 255).astype(np.uint8)
        rgb = np.stack([gray, gray, gray], axis=-1)
        rgb[4:24, 4:60, 0] = 255  # a red annotation box, as colour screenshots have
        px = PixelResult(rgb, None, None)
        photometric = "RGB"
        gt.update(photometric="RGB", bits_stored=8, window_center=None, window_width=None)
        gt.update(rescale_slope=None, rescale_intercept=None)
    ds, phi = build_dataset(
        subject,
        study,
        plan,
        inst,
        None if kind == "no_pixel_data" else px,
        photometric=photometric,
    )
    if kind == "no_pixel_data":
        gt.update(photometric=None, bits_stored=None, rows=None, columns=None)
        gt.update(rescale_slope=None, rescale_intercept=None, window_center=None, window_width=None)
    elif kind == "burned_in_annotation":
        ds.BurnedInAnnotation = "YES"
    elif kind == "secondary_capture":
        ds.SOPClassUID = SECONDARY_CAPTURE
        ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        ds.Modality = "OT"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ConversionType = "WSD"
        gt.update(sop_class="SC", sop_class_uid=SECONDARY_CAPTURE)
    elif kind == "for_processing":
        ds.SOPClassUID = DX_FOR_PROCESSING
        ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PROCESSING
        ds.Modality = "DX"
        ds.PresentationIntentType = "FOR PROCESSING"
        gt.update(sop_class="DX_FOR_PROCESSING", sop_class_uid=DX_FOR_PROCESSING)
    elif kind == "not_chest":
        ds.BodyPartExamined = "HAND"
        ds.StudyDescription = "HAND 2 VIEWS"
        ds.SeriesDescription = "HAND PA"
        ds.ViewPosition = "PA"
    raw = encode(ds, EXPLICIT_VR_LE)
    if kind == "truncated":
        # Cut in the middle of the pixel data: the header (and its PHI) stays readable.
        raw = raw[: len(raw) - px.stored.nbytes // 2]
    elif kind == "corrupt":
        # Keep preamble, DICM and file meta; the dataset is overwritten with garbage.
        meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")
        garbage = rng.integers(0, 256, size=len(raw) - meta_end, dtype=np.uint8).tobytes()
        raw = raw[:meta_end] + garbage
        phi = [plan.sop_instance_uid]
        gt.update(photometric=None, bits_stored=None, rows=None, columns=None)
    if kind not in ("no_pixel_data",) and "window_center" not in gt:
        gt.update(window_center=px.window_center, window_width=px.window_width)
    return raw, phi, gt


_DICOM_FIELDS = (
    "sop_instance_uid",
    "series_instance_uid",
    "study_instance_uid",
    "sop_class",
    "sop_class_uid",
    "transfer_syntax",
    "photometric",
    "bits_stored",
    "rows",
    "columns",
    "rescale_slope",
    "rescale_intercept",
    "window_center",
    "window_width",
    "view",
    "patient_id",
    "patient_name",
    "birth_date",
    "accession_number",
    "mrn",
)


def _burn_in(img: np.ndarray, text: str) -> np.ndarray:
    """Write identifying text into the pixels, as old modalities and screenshots do."""
    pil = Image.fromarray((img * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    draw.text((6, 6), text, fill=255, font=font)
    draw.text((6, pil.height - 16), "PORTABLE  R", fill=255, font=font)
    return np.asarray(pil, dtype=np.float32) / 255.0


def _hand(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A crude hand radiograph: palm and five finger bones on a dark background."""
    rows, cols = shape[:2]
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    img = np.full((rows, cols), 0.05, np.float32)
    palm = ((x - cols * 0.5) / (cols * 0.22)) ** 2 + ((y - rows * 0.72) / (rows * 0.2)) ** 2 < 1
    img[palm] = 0.45
    for k in range(5):
        cx = cols * (0.3 + 0.1 * k)
        finger = (np.abs(x - cx) < cols * 0.035) & (y > rows * (0.12 + 0.03 * abs(k - 2)))
        finger &= y < rows * 0.6
        img[finger] = 0.5
        img[finger & (np.abs(x - cx) < cols * 0.015)] = 0.8
    img += 0.01 * rng.standard_normal((rows, cols)).astype(np.float32)
    return np.clip(img, 0, 1)
