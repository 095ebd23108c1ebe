"""Processing one input file: parse, check scope, decode, de-identify, write the image.

Runs in worker processes. Everything it returns is free of PHI: pseudonyms, shifted dates,
counts, reason classes. Quarantine reasons are fixed texts plus numbers the code derived,
never an exception message (those can quote attribute values).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.config
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from cxrflow.deid import Deidentifier, DeidOptions
from cxrflow.ingest.config import IngestConfig
from cxrflow.ingest.discover import has_dicm_preamble
from cxrflow.ingest.pixels import display_image, encode_png, resize_longest, resize_mask
from cxrflow.ingest.scope import out_of_scope_reason
from cxrflow.ingest.sidecar import Sidecar, load_sidecar
from cxrflow.keys import SecretKey

_LATERAL = {"LL", "RL", "LATERAL", "LAT", "LLD", "RLD"}


@dataclass(frozen=True)
class Task:
    """One file to process: its path and the PHI-free key that names it in every output."""

    path: Path
    file_key: str


@dataclass
class Outcome:
    """What became of one file."""

    file_key: str
    content_digest: str
    status: str  # "written" or "quarantined"
    reason_class: str = ""
    reason: str = ""
    row: dict[str, Any] | None = None
    audit: dict[str, Any] = field(default_factory=dict)
    staged: list[tuple[str, str]] = field(default_factory=list)  # (temporary, final) paths


class Quarantine(Exception):
    """Raised inside the worker to quarantine the current file."""

    def __init__(self, reason_class: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_class = reason_class
        self.reason = reason


class FileProcessor:
    """Holds what every file needs (key, options, side-car); one per worker process."""

    def __init__(
        self, config: IngestConfig, key: SecretKey, options: DeidOptions, run_id: str
    ) -> None:
        self.config = config
        self.key = key
        self.deid = Deidentifier(key, options)
        self.run_id = run_id
        self.sidecar: Sidecar | None = (
            load_sidecar(config.ground_truth) if config.ground_truth else None
        )
        # pydicom's validation warnings quote attribute values (a birth date, a name): they
        # must not reach a log. Malformed values are handled by the de-identifier instead.
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
        # Unknown private tags read as UN are expected (they are removed); don't flood the log.
        logging.getLogger("pydicom").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")

    def __call__(self, task: Task) -> Outcome:
        data = task.path.read_bytes()
        digest = self.key.digest("content", data).hex()
        try:
            return self._process(task, data, digest)
        except Quarantine as q:
            return Outcome(task.file_key, digest, "quarantined", q.reason_class, q.reason)
        except Exception as exc:  # anything else is a bug or an input we do not understand
            return Outcome(
                task.file_key,
                digest,
                "quarantined",
                "error",
                f"unexpected {type(exc).__name__} while processing",
            )

    # ----------------------------------------------------------------------------------------
    def _process(self, task: Task, data: bytes, digest: str) -> Outcome:
        ds = _parse(data)
        if "PixelData" not in ds:
            raise Quarantine("no_pixel_data", "no PixelData element")
        reason = out_of_scope_reason(ds, self.config.rules)
        if reason is not None:
            raise Quarantine(*reason)
        patient_id = str(ds.get("PatientID", "") or "").strip()
        sop_uid = str(ds.get("SOPInstanceUID", "") or "").strip()
        study_uid = str(ds.get("StudyInstanceUID", "") or "").strip()
        if not patient_id:
            raise Quarantine(
                "no_patient_id", "PatientID is empty: the image cannot be assigned to a subject"
            )
        if not sop_uid or not study_uid:
            raise Quarantine("no_uid", "SOPInstanceUID or StudyInstanceUID is empty")
        arr = _decode(ds)
        img = resize_longest(display_image(ds, arr), self.config.max_side)
        side = self.sidecar.get(sop_uid) if self.sidecar else None

        subject_id = self.deid.subject_pseudonym(patient_id)
        image_id = self.key.pseudonym("image", sop_uid)
        study_id = self.key.pseudonym("study", study_uid)
        view = _view(ds, side)
        report = self.deid.apply(ds)

        out = self.config.output_dir
        staged: list[tuple[str, str]] = []
        png = encode_png(img, self.config.png_bits)
        image_rel = f"images/{subject_id}/{image_id}.png"
        staged.append(_stage(out, image_rel, png, task.file_key))
        mask_rel = None
        if side is not None and side.get("mask_png"):
            mask = np.asarray(Image.open(io.BytesIO(side["mask_png"])))
            mask = resize_mask(mask, img.shape)
            buf = io.BytesIO()
            Image.fromarray(mask.astype(np.uint16)).save(buf, format="PNG", compress_level=6)
            mask_rel = f"masks/{subject_id}/{image_id}.png"
            staged.append(_stage(out, mask_rel, buf.getvalue(), task.file_key))
        if self.config.write_dicom:
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            staged.append(
                _stage(out, f"dicom/{subject_id}/{image_id}.dcm", buf.getvalue(), task.file_key)
            )

        row: dict[str, Any] = {
            "image_id": image_id,
            "subject_id": subject_id,
            "study_id": study_id,
            "view": view,
            "image_path": image_rel,
            "image_sha256": hashlib.sha256(png).hexdigest(),
            "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "source_dataset": "dicom",
            "ingest_run": self.run_id,
            "study_date": str(ds.get("StudyDate", "") or "") or None,
            "sex": _sex(ds, side),
            "age_years": _age(ds, side),
            "weight_kg": _float(ds.get("PatientWeight"), side, "weight_kg"),
            "height_m": _float(ds.get("PatientSize"), side, "height_m"),
            "report": side.get("report") if side else None,
            "mask_path": mask_rel,
        }
        for col, value in (side or {}).items():
            if col.startswith("label_"):
                row[col] = None if value is None else int(value)
        audit = {"file_key": task.file_key, "image_id": image_id, **report.counts()}
        audit.update({f"{k}_attributes": v for k, v in report.__dict__.items()})
        return Outcome(task.file_key, digest, "written", row=row, audit=audit, staged=staged)


def _stage(out: Path, rel: str, data: bytes, file_key: str) -> tuple[str, str]:
    """Write `data` beside its final path under a temporary name unique to this file."""
    final = out / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.{file_key}.part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return str(tmp), str(final)


def _parse(data: bytes) -> Dataset:
    has_preamble = has_dicm_preamble(data[:132])
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except (InvalidDicomError, EOFError, OSError) as exc:
        if has_preamble:
            cls = "truncated" if isinstance(exc, EOFError) else "corrupt"
            raise Quarantine(cls, f"DICOM file cannot be parsed ({type(exc).__name__})") from exc
        raise Quarantine("not_dicom", "no DICM preamble and no parseable DICOM dataset") from exc
    except Exception as exc:
        if has_preamble:
            raise Quarantine(
                "corrupt", f"DICOM file cannot be parsed ({type(exc).__name__})"
            ) from exc
        raise Quarantine("not_dicom", "no DICM preamble and no parseable DICOM dataset") from exc
    try:
        # Touch every element now: pydicom parses lazily and a cut file fails only on access.
        for _ in ds.iterall():
            pass
    except Exception as exc:
        raise Quarantine(
            "truncated" if has_preamble else "not_dicom", "dataset ends inside an element"
        ) from exc
    if "SOPClassUID" not in ds:
        if has_preamble:
            raise Quarantine("corrupt", "DICM preamble but no SOPClassUID: the dataset is damaged")
        raise Quarantine("not_dicom", "no DICM preamble and no parseable DICOM dataset")
    return ds


def _expected_pixel_bytes(ds: Dataset) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    return int(ds.Rows) * int(ds.Columns) * frames * spp * int(ds.BitsAllocated) // 8


def _decode(ds: Dataset) -> np.ndarray:
    try:
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            have = len(ds.PixelData)
            need = _expected_pixel_bytes(ds)
            if have < need:
                raise Quarantine("truncated", f"pixel data holds {have} bytes, {need} expected")
        return ds.pixel_array
    except Quarantine:
        raise
    except (NotImplementedError, RuntimeError) as exc:
        raise Quarantine(
            "no_decoder", f"pixel data cannot be decoded ({type(exc).__name__})"
        ) from exc
    except Exception as exc:
        raise Quarantine("corrupt", f"pixel data cannot be decoded ({type(exc).__name__})") from exc


def _view(ds: Dataset, side: dict[str, Any] | None) -> str:
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view in ("PA", "AP"):
        return view
    if view in _LATERAL:
        return "LATERAL"
    if side and side.get("view"):
        return str(side["view"])
    return "UNKNOWN"


def _sex(ds: Dataset, side: dict[str, Any] | None) -> str | None:
    sex = str(ds.get("PatientSex", "") or "").strip().upper()
    if sex in ("M", "F", "O"):
        return sex
    return side.get("sex") if side else None


def _age(ds: Dataset, side: dict[str, Any] | None) -> float | None:
    age = str(ds.get("PatientAge", "") or "").strip().upper()
    if len(age) == 4 and age[:3].isdigit() and age[3] in "DWMY":
        per_year = {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[age[3]]
        return round(int(age[:3]) / per_year, 3)
    return float(side["age_years"]) if side and side.get("age_years") is not None else None


def _float(value: Any, side: dict[str, Any] | None, column: str) -> float | None:
    try:
        if value not in (None, ""):
            return float(value)
    except (TypeError, ValueError):
        pass
    return float(side[column]) if side and side.get(column) is not None else None
