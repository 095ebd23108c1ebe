"""Hostile inputs: memory bombs, degenerate LUTs, implausible demographics, PHI in the header.

Each is quarantined (or cleaned) with a reason that names attributes and rules only.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.ingest.limits import MIB, ResourceLimits
from cxrflow.ingest.run import file_key
from cxrflow.manifest import read_manifest
from tests.factory import make_dataset, write
from tests.ingest.conftest import KEY

ROOT = Path(__file__).resolve().parents[2]


def _pixels(seed: int = 0, shape=(96, 80)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=shape, dtype=np.uint16)


def _good(i: int, **kw):
    return make_dataset(_pixels(i), sop_uid=f"1.2.840.99999.88.{i}", center=2048, width=4096, **kw)


def _deflated_file(path: Path, rows: int, cols: int, private_zero_bytes: int = 0) -> Path:
    """A deflated dataset whose PixelData (and optional private OB) are zeros, streamed."""
    ds = _good(900)
    del ds.PixelData
    ds.Rows, ds.Columns = rows, cols
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(16 * MIB)

    def stream_zeros(n: int) -> list[bytes]:
        out = []
        while n > 0:
            k = min(n, len(zeros))
            out.append(comp.compress(zeros if k == len(zeros) else zeros[:k]))
            n -= k
        return out

    parts = [comp.compress(body.getvalue())]
    if private_zero_bytes:  # (0x0009,0x0010) private creator + a huge private OB before pixels
        parts.append(comp.compress(struct.pack("<HH2sH", 9, 0x10, b"LO", 4) + b"BOMB"))
        parts.append(comp.compress(struct.pack("<HH2sHI", 9, 0x1000, b"OB", 0, private_zero_bytes)))
        parts += stream_zeros(private_zero_bytes)
    n = rows * cols * 2
    parts.append(comp.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, n)))
    parts += stream_zeros(n)
    parts.append(comp.flush())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(parts))
    return path


def _header_bomb(path: Path, compress: bool) -> Path:
    ds = _good(901)
    if compress:
        ds.compress(RLELossless)
    ds.Rows, ds.Columns = 20000, 20000
    return write(ds, path)


def _ingest(inbox: Path, out: Path, **kw):
    result = run_ingest(IngestConfig(inbox, out, show_progress=False, **kw), KEY)
    q = pd.read_parquet(result.quarantine_path)
    reasons = {
        p.relative_to(inbox).as_posix(): (c, r)
        for p in inbox.rglob("*")
        if p.is_file()
        for fk, c, r in zip(q["file_key"], q["reason_class"], q["reason"], strict=True)
        if fk == file_key(KEY, inbox, p)
    }
    return result, reasons


# --- 1. memory bombs -------------------------------------------------------------------------
def test_limits_are_validated():
    assert ResourceLimits().max_pixel_bytes >= 4096 * 4096 * 2 * 4
    for bad in (
        {"max_pixel_bytes": 0},
        {"max_frames": -1},
        {"max_seconds": 0},
        {"max_seconds": float("nan")},
        {"max_pixel_bytes": 10 * MIB, "max_inflated_bytes": MIB},
        {"max_frames": True},
    ):
        with pytest.raises(ValueError):
            ResourceLimits(**bad)


def test_bombs_are_over_budget_and_a_good_deflated_file_is_written(tmp_path):
    inbox = tmp_path / "inbox"
    _deflated_file(inbox / "deflate_bomb", 16384, 16384)  # 512 MiB of zeros, ~0.5 MB on disk
    _deflated_file(inbox / "deflate_private", 64, 48, private_zero_bytes=8 * MIB)
    _header_bomb(inbox / "rle_bomb", compress=True)
    _header_bomb(inbox / "plain_bomb", compress=False)
    write(_good(902, NumberOfFrames=3), inbox / "frames")
    good = _good(903)
    good.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    write(good, inbox / "deflated_good")
    write(_good(903, SOPInstanceUID="1.2.840.99999.88.9031"), inbox / "plain_twin")
    assert (inbox / "deflate_bomb").stat().st_size < 1 * MIB
    limits = ResourceLimits(max_pixel_bytes=4 * MIB, max_inflated_bytes=6 * MIB)
    result, reasons = _ingest(inbox, tmp_path / "out", limits=limits)
    assert reasons == {
        "deflate_bomb": ("over_budget", reasons["deflate_bomb"][1]),
        "deflate_private": ("over_budget", reasons["deflate_private"][1]),
        "rle_bomb": ("over_budget", reasons["rle_bomb"][1]),
        "plain_bomb": ("over_budget", reasons["plain_bomb"][1]),
        "frames": ("over_budget", reasons["frames"][1]),
    }
    assert "max_pixel_bytes" in reasons["deflate_bomb"][1]
    assert "max_inflated_bytes" in reasons["deflate_private"][1]
    assert "max_pixel_bytes" in reasons["rle_bomb"][1]
    assert "max_frames" in reasons["frames"][1]
    assert not any(ch.isdigit() for _, r in reasons.values() for ch in r)  # no header values
    manifest = read_manifest(result.manifest_path)
    assert len(manifest) == 2
    assert manifest["image_sha256"].nunique() == 1  # the deflated file decodes as its twin


_PEAK_SCRIPT = """
import json, resource, sys
from pathlib import Path
from cxrflow.deid import DeidOptions
from cxrflow.ingest.config import IngestConfig
from cxrflow.ingest.worker import FileProcessor, Task
from tests.ingest.conftest import KEY
inbox, out = Path(sys.argv[1]), Path(sys.argv[2])
p = FileProcessor(IngestConfig(inbox, out, show_progress=False), KEY, DeidOptions(), "run")
p(Task(inbox / "warmup", "warmup"))  # imports and first-use allocations before the baseline
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
res = {}
for name in sys.argv[3:]:
    before = rss()
    o = p(Task(inbox / name, name))
    res[name] = [o.status, o.reason_class, (rss() - before) / 2**20]
print(json.dumps(res))
"""


def peak_memory(inbox: Path, out: Path, names: list[str], pythonpath: str = "") -> dict:
    """Process each file in a fresh interpreter; the ru_maxrss increase (MiB) of each."""
    env = {"PYTHONPATH": pythonpath} if pythonpath else None
    import os

    env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(inbox), str(out), *names],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bombs_are_refused_with_default_limits_and_low_peak_memory(tmp_path):
    inbox = tmp_path / "inbox"
    write(_good(904), inbox / "warmup")
    _deflated_file(inbox / "deflate_bomb", 20000, 20000)  # 800 MB of zeros, ~0.8 MB on disk
    _header_bomb(inbox / "rle_bomb", compress=True)
    _header_bomb(inbox / "plain_bomb", compress=False)
    names = ["deflate_bomb", "rle_bomb", "plain_bomb"]
    got = peak_memory(inbox, tmp_path / "out", names)
    for name in names:
        status, reason_class, peak_mib = got[name]
        assert (status, reason_class) == ("quarantined", "over_budget"), name
        # Measured about 1-3 MiB each (before the limits: 1.6 GB, 0.8 GB, 0.8 GB).
        assert peak_mib < 64, (name, peak_mib)


def test_per_file_time_limit(tmp_path, monkeypatch):
    import cxrflow.ingest.worker as worker

    inbox = tmp_path / "inbox"
    write(_good(905), inbox / "slow")
    real = worker._decode

    def slow(ds):
        time.sleep(5)
        return real(ds)

    monkeypatch.setattr(worker, "_decode", slow)
    start = time.monotonic()
    _, reasons = _ingest(inbox, tmp_path / "out", limits=ResourceLimits(max_seconds=0.3))
    assert time.monotonic() - start < 4
    assert reasons == {"slow": ("over_budget", reasons["slow"][1])}
    assert "max_seconds" in reasons["slow"][1]


# --- 3. degenerate pixels --------------------------------------------------------------------
def test_degenerate_luts_are_quarantined_not_written(tmp_path):
    inbox = tmp_path / "inbox"
    cases = {
        "nan_window": dict(WindowCenter="NaN"),
        "inf_width": dict(WindowWidth="inf"),
        "zero_width_exact": dict(WindowWidth=0, VOILUTFunction="LINEAR_EXACT"),
        "huge_slope": dict(RescaleSlope="1e38", RescaleIntercept=0),
        "inf_slope": dict(RescaleSlope="inf", RescaleIntercept=0),
        "constant": dict(),
    }
    for i, (name, attrs) in enumerate(cases.items()):
        ds = _good(910 + i)
        for k, v in attrs.items():
            setattr(ds, k, v)
        if name == "constant":
            ds.PixelData = np.full((96, 80), 1000, np.uint16).tobytes()
        write(ds, inbox / name)
    write(_good(920), inbox / "fine")
    result, reasons = _ingest(inbox, tmp_path / "out")
    assert {n: c for n, (c, _) in reasons.items()} == dict.fromkeys(cases, "degenerate_pixels")
    assert "non-finite VOI LUT" in reasons["nan_window"][1]
    assert "non-finite VOI LUT" in reasons["inf_width"][1]
    assert "LINEAR_EXACT" in reasons["zero_width_exact"][1]
    assert "non-finite Modality LUT" in reasons["inf_slope"][1]
    assert "Modality LUT output out of the float range" in reasons["huge_slope"][1]
    assert "constant output" in reasons["constant"][1]
    assert result.written == 1
    assert len(list((tmp_path / "out" / "images").rglob("*.png"))) == 1


# --- 4. implausible demographics -------------------------------------------------------------
def test_implausible_demographics_become_missing_with_a_rule(tmp_path):
    inbox = tmp_path / "inbox"
    write(_good(930, PatientAge="999Y", PatientWeight=-5, PatientSize="NaN"), inbox / "odd")
    write(_good(931), inbox / "fine")
    result, reasons = _ingest(inbox, tmp_path / "out")
    assert reasons == {}
    manifest = read_manifest(result.manifest_path).set_index("image_path")
    audit = pd.read_parquet(result.audit_path)
    by_key = dict(zip(audit["file_key"], audit["cleaned_attributes"], strict=True))
    odd = manifest.loc[[p for p in manifest.index if p]].copy()
    ages = sorted(odd["age_years"].tolist(), key=lambda a: (a is None or a != a, a))
    assert ages[0] == 59.0 and pd.isna(ages[1])
    assert manifest["weight_kg"].isna().sum() == 1 and manifest["height_m"].isna().sum() == 1
    cleaned = list(by_key[file_key(KEY, inbox, inbox / "odd")])
    assert "PatientAge (rule: age outside 0..130 years)" in cleaned
    assert "PatientWeight (rule: non-finite or negative)" in cleaned
    assert "PatientSize (rule: non-finite or negative)" in cleaned
    assert not any("999" in c for c in cleaned)
    fine = list(by_key[file_key(KEY, inbox, inbox / "fine")])
    assert not any("rule:" in c for c in fine)


# --- 5. no header values in quarantine reasons -----------------------------------------------
PHI = ["DOE^JANE 19610214", "MRN0042424", "JANE", "19610214", "ROE^RICHARD"]


def test_quarantine_reasons_never_quote_header_values(tmp_path):
    inbox = tmp_path / "inbox"
    planted = {
        "body_part": dict(BodyPartExamined="DOE^JANE 19610214"),
        "modality": dict(Modality="MRN0042424"),
        "modality_dx": dict(Modality="JANE"),
        "sop_class": dict(SOPClassUID="1.2.19610214.1"),
        "secondary": dict(SOPClassUID="1.2.840.10008.5.1.4.1.1.7.19610214"),
        "photometric": dict(PhotometricInterpretation="ROE^RICHARD"),
        "image_type": dict(ImageType=["DERIVED", "SECONDARY", "DOE^JANE 19610214"]),
        "voi_function": dict(VOILUTFunction="DOE^JANE 19610214"),
        "intent": dict(PresentationIntentType="FOR PROCESSING", ImageComments="MRN0042424"),
    }
    for i, (name, attrs) in enumerate(planted.items()):
        ds = _good(940 + i)
        for k, v in attrs.items():
            setattr(ds, k, v)
        write(ds, inbox / name)
    result, reasons = _ingest(inbox, tmp_path / "out")
    assert set(reasons) == set(planted), set(planted) - set(reasons)
    q = pd.read_parquet(result.quarantine_path)
    for reason in q["reason"]:
        assert not any(v.upper() in reason.upper() for v in PHI), reason
        assert not any(ch.isdigit() for ch in reason), reason
    assert reasons["body_part"] == ("not_chest", "BodyPartExamined is not a chest body part")
    assert reasons["voi_function"][0] == "unsupported_pixels"
