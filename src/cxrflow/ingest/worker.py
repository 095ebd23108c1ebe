"""Processing one input file: parse, check scope, decode, de-identify, write the image.

Runs in worker processes. Everything it returns is free of PHI: pseudonyms, shifted dates,
counts, reason classes. Quarantine reasons are fixed texts naming attributes and rules, never
a header value, a number read from the header, or an exception message (those can quote
attribute values).

Each file runs under the bounds of `IngestConfig.limits` (cxrflow.ingest.limits): a deflated
dataset is inflated in bounded steps, the pixel budget and frame count are checked from the
header before decoding, and a per-file time limit is set where SIGALRM is available.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import signal
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.config
from PIL import Image
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from cxrflow.deid import Deidentifier, DeidOptions, scrub_dataset_report
from cxrflow.ingest.burned_in import check_image as check_burned_in_text
from cxrflow.ingest.config import IngestConfig
from cxrflow.ingest.discover import has_dicm_preamble
from cxrflow.ingest.limits import ResourceLimits
from cxrflow.ingest.pixels import (
    DegeneratePixels,
    PixelError,
    check_display,
    display_image,
    encode_png,
    resize_longest,
    resize_mask,
)
from cxrflow.ingest.scope import out_of_scope_reason
from cxrflow.ingest.sidecar import Sidecar, load_sidecar
from cxrflow.keys import SecretKey
from cxrflow.provenance import dicom_source

_LATERAL = {"LL", "RL", "LATERAL", "LAT", "LLD", "RLD"}
MAX_AGE_YEARS = 130.0
# The first inflate step of a deflated dataset: enough for any sane header before PixelData.
_DEFLATE_HEAD = 1 << 20
_DEFLATE_CHUNK = 16 << 20


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
            with _time_limit(self.config.limits.max_seconds):
                return self._process(task, data, digest)
        except _TimeLimit:
            return Outcome(
                task.file_key,
                digest,
                "quarantined",
                "over_budget",
                "per-file time limit exceeded (rule: max_seconds)",
            )
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
        limits = self.config.limits
        ds = _parse(data, limits)
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
        _check_budget(ds, limits)
        arr = _decode(ds)
        try:
            img = resize_longest(display_image(ds, arr), self.config.max_side)
            del arr
            check_display(img)
        except DegeneratePixels as exc:
            raise Quarantine("degenerate_pixels", str(exc)) from exc
        except PixelError as exc:
            raise Quarantine("unsupported_pixels", str(exc)) from exc
        # Pixels can carry the patient's name when the header says nothing (issue 12).
        burned = check_burned_in_text(ds, img, self.config.burned_in_text)
        if burned is not None and burned.suspected:
            raise Quarantine(burned.reason_class, burned.rule)
        side = self.sidecar.get(sop_uid) if self.sidecar else None
        if side and side.get("report"):  # free text is PHI until scrubbed; `ds` still original
            side = {**side, "report": scrub_dataset_report(side["report"], ds, self.deid).text}

        subject_id = self.deid.subject_pseudonym(patient_id)
        image_id = self.key.pseudonym("image", sop_uid)
        study_id = self.key.pseudonym("study", study_uid)
        view = _view(ds, side)
        source = dicom_source(ds)  # before de-identification touches the dataset
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

        cleaned: list[str] = []
        row: dict[str, Any] = {
            "image_id": image_id,
            "subject_id": subject_id,
            "study_id": study_id,
            "view": view,
            "image_path": image_rel,
            "image_sha256": hashlib.sha256(png).hexdigest(),
            "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "source_dataset": source,
            "ingest_run": self.run_id,
            "study_date": str(ds.get("StudyDate", "") or "") or None,
            "sex": _sex(ds, side),
            "age_years": _age(ds, side, cleaned),
            "weight_kg": _float(ds.get("PatientWeight"), side, "weight_kg", cleaned),
            "height_m": _float(ds.get("PatientSize"), side, "height_m", cleaned),
            "report": side.get("report") if side else None,
            "mask_path": mask_rel,
        }
        for col, value in (side or {}).items():
            if col.startswith("label_"):
                row[col] = None if value is None else int(value)
        audit = {"file_key": task.file_key, "image_id": image_id, **report.counts()}
        audit.update({f"{k}_attributes": v for k, v in report.__dict__.items()})
        if cleaned:
            # Implausible demographics dropped from the manifest: attribute and rule, no value.
            audit["cleaned_attributes"] = [*audit.get("cleaned_attributes", []), *cleaned]
            audit["cleaned"] = len(audit["cleaned_attributes"])
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


class _TimeLimit(BaseException):
    """Raised by the per-file timer; a BaseException so that no `except Exception` eats it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _TimeLimit


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise _TimeLimit in this thread after `seconds`, where SIGALRM can do that."""
    if (
        seconds is None
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _over_budget(rule: str, what: str) -> Quarantine:
    return Quarantine("over_budget", f"{what} exceeds the per-file limit (rule: {rule})")


def _inflate(
    decomp: zlib._Decompress, pending: bytes, limit: int, out: bytearray
) -> tuple[bytes, bool]:
    """Inflate `pending` into `out` until `out` holds `limit` bytes; (unconsumed, finished)."""
    while pending and not decomp.eof and len(out) < limit:
        out += decomp.decompress(pending, min(_DEFLATE_CHUNK, limit - len(out)))
        pending = decomp.unconsumed_tail
    return pending, decomp.eof or not pending


def _header_pixel_bytes(head: bytes) -> tuple[int, int] | None:
    """(pixel bytes, frames) from the start of an inflated dataset, or None if unreadable."""
    try:
        ds = read_dataset(
            DicomBytesIO(head),
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=lambda tag, vr, length: tag == 0x7FE00010,
        )
        return _expected_pixel_bytes(ds), _frames(ds)
    except Exception:
        return None  # the full parse judges it


def _read_deflated(data: bytes, limits: ResourceLimits) -> Dataset | None:
    """Parse a Deflated Explicit VR Little Endian file without an unbounded inflate.

    pydicom inflates the whole dataset in one call; here the header is inflated first and the
    pixel budget checked on it, then the rest in bounded steps up to max_inflated_bytes.
    The dataset comes back as Explicit VR Little Endian (the same data, inflated); None when
    the file meta names another transfer syntax.
    """
    fp = DicomBytesIO(data)
    preamble = read_preamble(fp, False)
    meta = pydicom.filereader._read_file_meta_info(fp)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return None
    decomp = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending, finished = _inflate(decomp, data[fp.tell() :], _DEFLATE_HEAD, out)
    if not finished:
        header = _header_pixel_bytes(bytes(out))
        if header is not None:
            _check_sizes(*header, limits)
        pending, finished = _inflate(decomp, pending, limits.max_inflated_bytes, out)
        if not finished:
            raise _over_budget("max_inflated_bytes", "the inflated size of the deflated dataset")
    del pending
    ds = read_dataset(DicomBytesIO(bytes(out)), is_implicit_VR=False, is_little_endian=True)
    del out
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return FileDataset(
        "", ds, preamble=preamble, file_meta=meta, is_implicit_VR=False, is_little_endian=True
    )


def _is_deflated(data: bytes) -> bool:
    """Whether the file meta names the Deflated transfer syntax (a cheap byte search)."""
    return DeflatedExplicitVRLittleEndian.encode("ascii") in data[:4096]


def _parse(data: bytes, limits: ResourceLimits | None = None) -> Dataset:
    limits = limits or ResourceLimits()
    has_preamble = has_dicm_preamble(data[:132])
    try:
        ds = _read_deflated(data, limits) if has_preamble and _is_deflated(data) else None
        if ds is None:
            ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except Quarantine:
        raise
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


def _frames(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _expected_pixel_bytes(ds: Dataset) -> int:
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    return (int(ds.Rows) * int(ds.Columns) * _frames(ds) * spp * bits + 7) // 8


def _check_sizes(pixel_bytes: int, frames: int, limits: ResourceLimits) -> None:
    if frames > limits.max_frames:
        raise _over_budget("max_frames", "NumberOfFrames")
    if pixel_bytes > limits.max_pixel_bytes:
        raise _over_budget(
            "max_pixel_bytes",
            "Rows x Columns x SamplesPerPixel x NumberOfFrames x BitsAllocated",
        )


def _check_budget(ds: Dataset, limits: ResourceLimits) -> None:
    """Refuse, from the header and before decoding, a file whose pixels would not fit."""
    try:
        pixel_bytes, frames = _expected_pixel_bytes(ds), _frames(ds)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise Quarantine(
            "corrupt",
            "Rows, Columns, BitsAllocated, SamplesPerPixel or NumberOfFrames is absent "
            "or not a number",
        ) from exc
    if min(pixel_bytes, frames, int(ds.Rows), int(ds.Columns)) < 1:
        raise Quarantine("corrupt", "Rows, Columns or NumberOfFrames is not positive")
    _check_sizes(pixel_bytes, frames, limits)


def _decode(ds: Dataset) -> np.ndarray:
    try:
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            have = len(ds.PixelData)
            need = _expected_pixel_bytes(ds)
            if have < need:
                raise Quarantine(
                    "truncated", "PixelData is shorter than Rows x Columns x BitsAllocated require"
                )
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


def _age(ds: Dataset, side: dict[str, Any] | None, cleaned: list[str]) -> float | None:
    """Age in years; an age outside 0..MAX_AGE_YEARS becomes None and is noted in `cleaned`."""
    age = str(ds.get("PatientAge", "") or "").strip().upper()
    if len(age) == 4 and age[:3].isdigit() and age[3] in "DWMY":
        per_year = {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[age[3]]
        years: float | None = round(int(age[:3]) / per_year, 3)
        source = "PatientAge"
    else:
        years = _number(side.get("age_years")) if side else None
        source = "age_years"
    if years is not None and not 0.0 <= years <= MAX_AGE_YEARS:
        cleaned.append(f"{source} (rule: age outside 0..{MAX_AGE_YEARS:g} years)")
        return None
    return years


_COLUMN_SOURCE = {"weight_kg": "PatientWeight", "height_m": "PatientSize"}


def _float(
    value: Any, side: dict[str, Any] | None, column: str, cleaned: list[str]
) -> float | None:
    """A size or weight; a non-finite or negative one becomes None, noted in `cleaned`."""
    number, source = _number(value), _COLUMN_SOURCE.get(column, column)
    if number is None:
        number, source = (_number(side.get(column)) if side else None), column
    if number is not None and not (math.isfinite(number) and number >= 0):
        cleaned.append(f"{source} (rule: non-finite or negative)")
        return None
    return number


def _number(value: Any) -> float | None:
    try:
        if value not in (None, ""):
            return float(value)
    except (TypeError, ValueError):
        pass
    return None
