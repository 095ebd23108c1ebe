import json

import numpy as np
import pandas as pd
from PIL import Image

from cxrflow.datasets import load_dataset, write_masks
from cxrflow.datasets.masks import BIT, pack, rasterize, unpack
from cxrflow.findings import MASK_STRUCTURES
from tests.datasets import fixtures


def read_png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_pack_puts_each_structure_on_its_bit():
    shape = (4, 4)
    masks = {name: np.zeros(shape, dtype=bool) for name in MASK_STRUCTURES}
    masks["left_lung"][0, 0] = True
    masks["ribs"][0, 0] = True
    masks["pneumothorax"][3, 3] = True
    packed = pack(masks, shape)
    assert packed.dtype == np.uint16
    assert packed[0, 0] == (1 << BIT["left_lung"]) | (1 << BIT["ribs"])
    assert packed[3, 3] == 1 << MASK_STRUCTURES.index("pneumothorax")
    back = unpack(packed)
    for name in MASK_STRUCTURES:
        np.testing.assert_array_equal(back[name], masks[name])


def test_candid_masks_are_decoded_from_the_siim_rle(tmp_path):
    df = load_dataset("candid_ptx", fixtures.candid(tmp_path))
    df["height"], df["width"] = fixtures.CANDID_SHAPE  # else read from the DICOM header
    out = write_masks(df, tmp_path, tmp_path / "out")
    expected = fixtures.candid_masks()
    rows = out.set_index("image_id")
    assert rows.loc["candid:1.2.3.1", "mask_path"] == "masks/candid_ptx/1.2.3.1.png"
    a = unpack(read_png(tmp_path / "out" / rows.loc["candid:1.2.3.1", "mask_path"]))
    np.testing.assert_array_equal(a["pneumothorax"], expected["ptx_a"] | expected["ptx_b"])
    assert not a["chest_tube"].any()
    c = unpack(read_png(tmp_path / "out" / rows.loc["candid:1.2.3.3", "mask_path"]))
    np.testing.assert_array_equal(c["chest_tube"], expected["tube"])
    assert not c["pneumothorax"].any()  # annotated negative: an empty mask is still written
    raw = read_png(tmp_path / "out" / rows.loc["candid:1.2.3.3", "mask_path"])
    assert raw.dtype == np.uint16 or raw.dtype.kind in "iu"


def test_rib_polygons_are_filled_and_size_read_from_the_image(tmp_path):
    df = load_dataset("vindr_ribcxr", fixtures.vindr_ribcxr(tmp_path))
    img_dir = tmp_path / "data" / "train" / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((5, 10), dtype=np.uint8)).save(img_dir / "VinDr_RibCXR_train_000.png")
    one = df[df["image_id"] == "vindr_rib:VinDr_RibCXR_train_000"]
    out = write_masks(one, tmp_path, tmp_path / "out")
    packed = read_png(tmp_path / "out" / out["mask_path"].iloc[0])
    assert packed.shape == (5, 10)
    ribs = unpack(packed)["ribs"]
    assert ribs[2, 2] and ribs[2, 7]  # inside R1 and L1
    assert not ribs[2, 5] and not ribs[4, 0]  # between the ribs, below them
    assert not unpack(packed)["left_lung"].any()


def test_lung_zones_are_the_lung_within_the_imagenome_box(tmp_path):
    df = load_dataset("mimic_lung", fixtures.mimic_lung(tmp_path))
    out = write_masks(df, tmp_path, tmp_path / "out").set_index("image_id")
    m = unpack(read_png(tmp_path / "out" / out.loc["mimic:d1", "mask_path"]))
    left, right = fixtures.lung_masks()
    np.testing.assert_array_equal(m["left_lung"], left)
    np.testing.assert_array_equal(m["right_lung"], right)
    box = np.zeros(fixtures.LUNG_SHAPE, dtype=bool)
    box[0:3, 0:6] = True
    np.testing.assert_array_equal(m["zone_right_upper"], right & box)
    assert m["zone_left_lower"].sum() == (left[5:8, 6:12]).sum() > 0
    assert not m["zone_left_upper"].any()  # no box for it in the scene graph
    d3 = unpack(read_png(tmp_path / "out" / out.loc["mimic:d3", "mask_path"]))
    assert not d3["zone_right_upper"].any()  # no scene graph for d3


def test_rows_without_a_spec_get_no_mask(tmp_path):
    df = load_dataset("chexpert", fixtures.chexpert(tmp_path))
    out = write_masks(df, tmp_path, tmp_path / "out")
    assert out["mask_path"].isna().all()
    spec = {"structures": {"pneumothorax": [{"box": [0, 0, 2, 2]}]}}
    masks = rasterize(spec, (3, 3))
    assert masks["pneumothorax"].sum() == 4
    frame = pd.DataFrame(
        {
            "image_id": ["x:1"],
            "source_dataset": ["x"],
            "image_path": ["a.png"],
            "height": [3],
            "width": [3],
            "mask_spec": [json.dumps(spec)],
            "mask_path": [None],
        }
    )
    assert write_masks(frame, tmp_path, tmp_path / "o")["mask_path"].iloc[0] == "masks/x/1.png"
