import numpy as np
import pytest

from cxrflow.datasets.rle import RleError, rle_decode, rle_encode

# 3 rows x 4 columns:
#   1 1 0 0
#   0 1 0 1
#   0 0 0 1
HAND = np.array([[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]], dtype=bool)


def test_siim_decode_of_a_hand_made_mask():
    # column-major flat: col0 = 1 0 0 | col1 = 1 1 0 | col2 = 0 0 0 | col3 = 0 1 1
    # runs at flat 0 (len 1), 3 (len 2), 10 (len 2); relative offsets 0, 3-1=2, 10-5=5
    mask = rle_decode("0 1 2 2 5 2", height=3, width=4, style="siim")
    np.testing.assert_array_equal(mask, HAND)
    assert rle_encode(HAND, "siim") == "0 1 2 2 5 2"


def test_standard_decode_of_a_hand_made_mask():
    # row-major flat: 1 1 0 0 | 0 1 0 1 | 0 0 0 1 -> runs at 0 (len 2), 5 (1), 7 (1), 11 (1)
    mask = rle_decode("1 2 6 1 8 1 12 1", height=3, width=4, style="standard")
    np.testing.assert_array_equal(mask, HAND)
    assert rle_encode(HAND, "standard") == "1 2 6 1 8 1 12 1"


@pytest.mark.parametrize("style", ["siim", "standard"])
def test_round_trip_on_random_masks(style):
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (32, 17), (64, 64)]:
        for density in (0.0, 0.1, 0.5, 1.0):
            mask = rng.random(shape) < density
            decoded = rle_decode(rle_encode(mask, style), *shape, style=style)
            np.testing.assert_array_equal(decoded, mask)


def test_empty_encodings():
    for empty in ("-1", " -1", "", None, float("nan")):
        assert not rle_decode(empty, 4, 4).any()
    assert rle_encode(np.zeros((3, 3)), "siim") == "-1"


def test_bad_encodings_are_errors():
    with pytest.raises(RleError, match="odd"):
        rle_decode("1 2 3", 3, 4)
    with pytest.raises(RleError, match="past the end"):
        rle_decode("10 5", 3, 4)
    with pytest.raises(RleError, match="1-based"):
        rle_decode("0 2", 3, 4, style="standard")
    with pytest.raises(ValueError, match="unknown RLE style"):
        rle_decode("0 1", 3, 4, style="coco")  # type: ignore[arg-type]
