from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import RLELossless

from cxrflow.keys import SecretKey
from tests.factory import DX_STORAGE, make_dataset, write

KEY = SecretKey(b"test-key-0123456789-0123456789-0123456789")


@pytest.fixture
def key() -> SecretKey:
    return KEY


def _pixels(seed: int, shape=(96, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, size=shape, dtype=np.uint16)


def build_inbox(root: Path) -> dict[str, str]:
    """A small PACS-like inbox with good and bad files; returns {relpath: expected outcome}."""
    expected: dict[str, str] = {}

    def good(rel: str, i: int, **kw) -> None:
        write(
            make_dataset(
                _pixels(i), sop_uid=f"1.2.840.99999.77.{i}", center=2048, width=4096, **kw
            ),
            root / rel,
        )
        expected[rel] = "written"

    good("A/B/IM0001", 1)
    good("A/B/IM0002.dcm", 2, photometric="MONOCHROME1", slope=2.0, intercept=-50.0)
    good("C/x.DCM", 3, ImageType=["DERIVED", "PRIMARY"], PatientID="P-2", PatientName="ROE^RICHARD")
    ds = make_dataset(
        _pixels(4), sop_uid="1.2.840.99999.77.4", center=2048, width=4096, PatientID="P-2"
    )
    ds.compress(RLELossless)
    write(ds, root / "C/compressed")
    expected["C/compressed"] = "written"
    good("D/dx", 5, sop_class=DX_STORAGE, modality="DX", PresentationIntentType="FOR PRESENTATION")

    def bad(rel: str, reason: str, ds=None, data: bytes | None = None) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        else:
            write(ds, path)
        expected[rel] = reason

    bad("junk/readme.txt", "not_dicom", data=b"not a DICOM file at all\n")
    bad("junk/random", "corrupt", data=b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    full = (root / "A/B/IM0001").read_bytes()
    bad("junk/truncated", "truncated", data=full[: len(full) - 3000])
    nopix = make_dataset(_pixels(6), sop_uid="1.2.840.99999.77.6")
    del nopix.PixelData
    bad("junk/nopixels", "no_pixel_data", ds=nopix)
    bad(
        "junk/burned",
        "burned_in_annotation",
        ds=make_dataset(_pixels(7), sop_uid="1.2.840.99999.77.7", BurnedInAnnotation="YES"),
    )
    bad(
        "junk/sc",
        "secondary_capture",
        ds=make_dataset(
            _pixels(8), sop_uid="1.2.840.99999.77.8", ImageType=["DERIVED", "SECONDARY"]
        ),
    )
    bad(
        "junk/raw",
        "for_processing",
        ds=make_dataset(
            _pixels(9),
            sop_uid="1.2.840.99999.77.9",
            sop_class=DX_STORAGE,
            modality="DX",
            PresentationIntentType="FOR PROCESSING",
        ),
    )
    bad(
        "junk/hand",
        "not_chest",
        ds=make_dataset(_pixels(10), sop_uid="1.2.840.99999.77.10", BodyPartExamined="HAND"),
    )
    rgb = make_dataset(_pixels(11), sop_uid="1.2.840.99999.77.11")
    rgb.PhotometricInterpretation = "RGB"
    bad("junk/rgb", "not_monochrome", ds=rgb)
    return expected


@pytest.fixture
def inbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "inbox"
    return root, build_inbox(root)
