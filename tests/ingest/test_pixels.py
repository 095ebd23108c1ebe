import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from cxrflow.ingest.pixels import PixelError, display_image, encode_png, resize_longest, window
from tests.factory import make_dataset

STORED = np.array([[0, 1000, 2000], [3000, 4000, 4095]], dtype=np.uint16)


def test_linear_window_matches_the_standard_formula():
    x = np.array([0.0, 1023.5, 2047.5, 3071.5, 4095.0])
    out = window(x, center=2048, width=4096)
    assert out[0] == pytest.approx(0.0, abs=1e-3)
    assert out[2] == pytest.approx(0.5, abs=1e-3)
    assert out[4] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(window(np.array([99.0, 100.0, 101.0]), 100, 1), [0, 1, 1])
    np.testing.assert_allclose(
        window(np.array([90.0, 100.0, 110.0]), 100, 20, "LINEAR_EXACT"), [0, 0.5, 1]
    )
    np.testing.assert_allclose(window(np.array([100.0]), 100, 20, "SIGMOID"), [0.5])


def test_modality_lut_then_window_on_known_values():
    # Stored 0..4095, slope 2, intercept -100: rescaled values -100..8090; window 0..8000.
    ds = make_dataset(STORED, slope=2.0, intercept=-100.0, center=4000.5, width=8001)
    img = display_image(ds)
    expected = np.clip((STORED * 2.0 - 100.0 - 4000.0) / 8000.0 + 0.5, 0, 1)
    np.testing.assert_allclose(img, expected, atol=1e-6)


def test_monochrome1_is_inverted_exactly_once():
    m2 = display_image(make_dataset(STORED, photometric="MONOCHROME2", center=2047.5, width=4096))
    m1 = display_image(make_dataset(STORED, photometric="MONOCHROME1", center=2047.5, width=4096))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m1[0, 0] == pytest.approx(1.0, abs=1e-3)  # stored 0 is white in MONOCHROME1


def test_without_a_window_the_full_range_is_used():
    img = display_image(make_dataset(STORED))
    assert img.min() == 0.0 and img.max() == 1.0


def test_voi_lut_sequence_is_applied():
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = make_dataset(STORED, bits_stored=12)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [min(65535, v * 16) for v in range(4096)]
    ds.VOILUTSequence = Sequence([item])
    img = display_image(ds)
    np.testing.assert_allclose(img, STORED * 16 / 65535.0, atol=1e-6)


def test_non_monochrome_is_refused():
    ds = make_dataset(STORED)
    ds.PhotometricInterpretation = "RGB"
    with pytest.raises(PixelError, match="not a monochrome image"):
        display_image(ds)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_twins_decode_to_the_same_pixels(syntax):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(40, 56), dtype=np.uint16)
    plain = make_dataset(pixels, center=2048, width=4096)
    packed = make_dataset(pixels, center=2048, width=4096)
    packed.compress(syntax)
    assert packed.file_meta.TransferSyntaxUID == syntax
    a, b = display_image(plain), display_image(packed)
    np.testing.assert_array_equal(a, b)
    assert encode_png(a, 16) == encode_png(b, 16)


def test_resize_keeps_aspect_and_caps_the_longest_side():
    img = np.random.default_rng(0).random((300, 200)).astype(np.float32)
    out = resize_longest(img, 150)
    assert out.shape == (150, 100)
    assert resize_longest(img, 1000) is img
