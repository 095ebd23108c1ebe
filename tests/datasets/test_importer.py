"""Importing public datasets into a dataset directory under the ingest stage's contracts."""

import hashlib
import json
import secrets

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrflow.dataset import Dataset
from cxrflow.datasets import load_dataset
from cxrflow.datasets.cli import app
from cxrflow.datasets.importer import ImportConfig, Source, import_dataset, import_datasets
from cxrflow.deid import Deidentifier
from cxrflow.ingest.commit import AUDIT_FILE, QUARANTINE_FILE, STATE_FILE
from cxrflow.keys import KEY_ENV_VAR, KEY_FILE_ENV_VAR, SecretKey
from cxrflow.split.assignment import assign_splits
from cxrflow.split.config import SplitConfig
from cxrflow.split.leakage import check_leakage
from tests.datasets import fixtures

KEY = SecretKey(bytes.fromhex("5f1d0c9a7b3e2d4c6a8b0f1e3d5c7a9b2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c"))


def _config(out, **kw) -> ImportConfig:
    return ImportConfig(output_dir=out, max_side=32, show_progress=False, **kw)


def _chexpert(tmp_path, *, skip: str | None = None):
    root = fixtures.chexpert(tmp_path / "chexpert")
    frame = load_dataset("chexpert", root)
    fixtures.write_images(root, [p for p in frame["image_path"] if p != skip])
    return root


LATERAL = "train/patient00002/study2/view2_lateral.jpg"


def test_chexpert_import_writes_the_ingest_contracts(tmp_path):
    root = _chexpert(tmp_path, skip=LATERAL)
    out = tmp_path / "data"
    summary = import_dataset(Source("chexpert", root), _config(out), KEY)

    (s,) = summary.datasets
    assert (s.metadata_rows, s.listed, s.written, s.skipped_existing) == (4, 4, 3, 0)
    assert s.missing == (LATERAL,) and s.unreadable == () and summary.reconciles
    assert (s.subjects_listed, s.subjects_imported) == (3, 3)
    assert s.labels_listed["lung_opacity"].positive == 2  # both images of patient00002
    assert s.labels_imported["lung_opacity"].positive == 1  # its lateral is missing
    assert (
        s.labels_listed["pneumothorax"].positive == 1 == s.labels_imported["pneumothorax"].positive
    )
    assert summary.subjects_by_official_split == {"train": 2, "val": 1}

    manifest = Dataset(out).manifest()  # schema-checked
    assert len(manifest) == 3
    deid = Deidentifier(KEY)
    subject = deid.subject_pseudonym("chexpert:patient00002")  # keyed as ingest keys PatientID
    row = manifest[manifest["subject_id"] == subject].iloc[0]
    assert row["image_id"] == KEY.pseudonym("image", "chexpert:patient00002_study2_view1_frontal")
    assert row["image_path"] == f"images/{subject}/{row['image_id']}.png"
    assert row["source_dataset"] == "chexpert" and row["ingest_run"] == summary.run_id
    assert row["official_split"] == "train" and row["labels_other"] == "Fracture"
    assert row["sex"] == "F" and row["age_years"] == 87
    png = Image.open(out / row["image_path"])
    assert (
        png.mode == "I;16" and max(png.size) == 32 and (png.size == (row["width"], row["height"]))
    )
    assert row["image_sha256"] == hashlib.sha256((out / row["image_path"]).read_bytes()).hexdigest()
    # no dataset id or source path in any table of the directory
    for table in (manifest, *(pd.read_parquet(out / f) for f in (QUARANTINE_FILE, AUDIT_FILE))):
        text = table.astype(str).to_string()
        assert "patient0" not in text and "view1_frontal" not in text
    q = pd.read_parquet(out / QUARANTINE_FILE)
    assert list(q["reason_class"]) == ["missing"]
    run = json.loads((out / "runs" / f"{summary.run_id}.json").read_text())
    assert run["written"] == 3 and run["quarantined"] == 1

    # again, with the missing file now there: only it is processed
    fixtures.write_images(root, [LATERAL])
    again = import_dataset(Source("chexpert", root), _config(out), KEY)
    (s2,) = again.datasets
    assert (s2.written, s2.skipped_existing, s2.missing) == (1, 3, ())
    assert s2.labels_imported["lung_opacity"].positive == 2 and again.reconciles
    assert len(Dataset(out).manifest()) == 4
    assert pd.read_parquet(out / QUARANTINE_FILE).empty
    assert pd.read_parquet(out / STATE_FILE)["status"].eq("written").all()


def test_imported_data_splits_by_subject_keeping_the_official_split(tmp_path):
    root = _chexpert(tmp_path)
    out = tmp_path / "data"
    import_dataset(Source("chexpert", root), _config(out), KEY)
    manifest = Dataset(out).manifest()
    assigned, frozen = assign_splits(manifest, SplitConfig(mode="official"))
    check_leakage(assigned)
    by_subject = assigned.groupby("subject_id")["split"].nunique()
    assert (by_subject == 1).all()
    valid = Deidentifier(KEY).subject_pseudonym("chexpert:patient64541")
    assert frozen.set_index("subject_id").loc[valid, "split"] == "val"
    assert set(frozen["method"]) == {"official"}


def test_padchest_import_16_bit_pngs_and_hierarchy_counts(tmp_path):
    root = fixtures.padchest_specific(tmp_path / "padchest")
    frame = load_dataset("padchest", root)
    fixtures.write_images(root, list(frame["image_path"]))
    # two worker processes: the pool path gives the same dataset as one process
    summary = import_dataset(Source("padchest", root), _config(tmp_path / "data", workers=2), KEY)
    one = import_dataset(Source("padchest", root), _config(tmp_path / "one"), KEY)
    assert pd.read_parquet(tmp_path / "data" / "manifest.parquet").equals(
        pd.read_parquet(tmp_path / "one" / "manifest.parquet")
    )
    assert one.run_id == summary.run_id
    (s,) = summary.datasets
    assert s.written == 8 and summary.reconciles
    assert s.labels_imported["rib_fracture"] == s.labels_listed["rib_fracture"]
    assert s.labels_listed["rib_fracture"].positive == 2
    assert s.labels_listed["pleural_effusion"].positive == 4
    assert s.labels_listed["pneumothorax"].positive == 1
    assert s.labels_listed["lung_opacity"].unannotated == 8
    assert summary.subjects_by_official_split == {"none": 8}  # left to the split stage
    m = Dataset(tmp_path / "data").manifest()
    assert m["labels_implied"].str.contains("rib fracture").sum() == 2
    assert m["study_date"].isna().all()  # PadChest dates are not carried (unshifted)


def test_vindr_kaggle_dicoms_and_header_demographics(tmp_path):
    root = fixtures.vindr_kaggle(tmp_path / "vindr")
    frame = load_dataset("vindr_cxr", root)
    fixtures.write_images(root, list(frame["image_path"]))
    (root / f"train/{fixtures.KAGGLE_B}.dicom").write_bytes(b"DICM but truncated")
    summary = import_dataset(Source("vindr_cxr", root), _config(tmp_path / "data"), KEY)
    (s,) = summary.datasets
    assert s.written == 1 and len(s.unreadable) == 1 and summary.reconciles
    assert s.unreadable[0][0] == f"train/{fixtures.KAGGLE_B}.dicom"
    assert s.labels_listed["tuberculosis"].unannotated == 2
    assert any("image_labels_train.csv" in n for n in s.notes)
    m = Dataset(tmp_path / "data").manifest()
    assert (m["sex"].tolist(), m["age_years"].tolist()) == (["F"], [45.0])  # from the header
    assert m["official_split"].tolist() == ["train"] and m["boxes"].notna().all()


def test_mimic_dates_are_shifted_by_the_subject_key(tmp_path):
    root = fixtures.mimic(tmp_path / "mimic")
    frame = load_dataset("mimic_cxr", root)
    paths = list(frame["image_path"])
    fixtures.write_images(root, paths)
    import_dataset(Source("mimic_cxr", root), _config(tmp_path / "data"), KEY)
    m = Dataset(tmp_path / "data").manifest().set_index("image_id")
    row = m.loc[KEY.pseudonym("image", "mimic:d1")]
    shift = Deidentifier(KEY).date_shift("mimic:10000032")
    expected = (pd.Timestamp("2180-05-06") + pd.Timedelta(days=shift.days)).strftime("%Y%m%d")
    assert row["study_date"] == expected
    assert row["report"].startswith("There is a small left pleural effusion")


def test_multi_cxr_import_applies_the_recipe_and_leaves_out_evaluation_subjects(tmp_path):
    chexpert = _chexpert(tmp_path)
    mimic = fixtures.mimic(tmp_path / "mimic")
    fixtures.write_images(mimic, list(load_dataset("mimic_cxr", mimic)["image_path"]))
    lung = fixtures.mimic_lung(tmp_path / "lung")  # evaluation: subjects 10000032, 10000764
    summary = import_datasets(
        [Source("chexpert", chexpert), Source("mimic_cxr", mimic)],
        _config(tmp_path / "data"),
        KEY,
        evaluation=[Source("mimic_lung", lung)],
    )
    by_name = {d.dataset: d for d in summary.datasets}
    assert by_name["chexpert"].written == 4 and by_name["chexpert"].excluded == 0
    # MIMIC: d1 (train, PA) is an evaluation subject's; d2 lateral, d3 val, d4 test
    assert by_name["mimic_cxr"].metadata_rows == 4 and by_name["mimic_cxr"].excluded == 4
    assert by_name["mimic_cxr"].listed == 0 and summary.reconciles
    m = Dataset(tmp_path / "data").manifest()
    assert set(m["source_dataset"]) == {"chexpert"}
    whole = import_datasets(
        [Source("mimic_cxr", mimic)], _config(tmp_path / "all"), KEY, recipe=None
    )
    assert whole.datasets[0].written == 4


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'chexpertt'"):
        Source("chexpertt", tmp_path)
    with pytest.raises(FileNotFoundError, match="root of chexpert"):
        Source("chexpert", tmp_path / "nope")
    with pytest.raises(ValueError, match="png_bits"):
        ImportConfig(output_dir=tmp_path, png_bits=12)  # type: ignore[arg-type]
    root = _chexpert(tmp_path)
    with pytest.raises(ValueError, match=r"chexpert: bad adapter option.*uncertain, blank"):
        import_dataset(Source("chexpert", root, {"vote": "any"}), _config(tmp_path / "d"), KEY)
    with pytest.raises(ValueError, match="more than once: chexpert"):
        import_datasets([Source("chexpert", root)] * 2, _config(tmp_path / "d"), KEY)


# The command line ---------------------------------------------------------------------------


@pytest.fixture
def env():
    return {KEY_ENV_VAR: secrets.token_hex(32), KEY_FILE_ENV_VAR: ""}


def test_cli_import_prints_the_reconciled_summary(tmp_path, env):
    root = _chexpert(tmp_path, skip=LATERAL)
    result = CliRunner().invoke(
        app,
        [
            "import",
            "chexpert",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "d"),
            "--max-side",
            "32",
            "--png-bits",
            "8",
            "--no-progress",
            "--option",
            "uncertain=positive",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (s,) = summary["datasets"]
    assert s["missing"] == [LATERAL] and s["written"] == 3 and summary["reconciles"]
    assert s["labels_listed"]["cardiomegaly"]["positive"] == 2  # -1 read as positive
    png = Image.open(next((tmp_path / "d" / "images").rglob("*.png")))
    assert png.mode == "L"


def test_cli_import_multi(tmp_path, env):
    root = _chexpert(tmp_path)
    vindr = fixtures.vindr_cxr(tmp_path / "vindr")
    result = CliRunner().invoke(
        app,
        [
            "import-multi",
            "--root",
            f"chexpert={root}",
            "--eval-root",
            f"vindr_cxr={vindr}",
            "--out",
            str(tmp_path / "d"),
            "--max-side",
            "32",
            "--no-progress",
            "--option",
            "chexpert.blank=negative",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    (s,) = json.loads(result.stdout)["datasets"]
    assert s["dataset"] == "chexpert" and s["written"] == 4
    assert s["labels_listed"]["pleural_effusion"]["unannotated"] == 0  # blank read as 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["import-multi", "--root", "chexpert", "--out", "D"],
            "--root 'chexpert': expected NAME=DIR",
        ),
        (["import-multi", "--root", "nih=/tmp", "--out", "D"], "--root: unknown dataset 'nih'"),
        (["import", "chexpert", "--root", "/nonexistent", "--out", "D"], "--root for chexpert"),
        (["import", "chexpert", "--root", ".", "--out", "D", "--png-bits", "12"], "--png-bits"),
        (["import", "chexpert", "--root", ".", "--out", "D", "--option", "x"], "--option 'x'"),
        (
            ["import-multi", "--root", "chexpert=.", "--option", "padchest.a=1", "--out", "D"],
            "--option names datasets not given",
        ),
    ],
)
def test_cli_errors_are_one_line_naming_the_parameter(tmp_path, env, args, message):
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_cli_missing_metadata_file_is_named(tmp_path, env):
    result = CliRunner().invoke(
        app,
        ["import", "rsna_pneumonia", "--root", str(tmp_path), "--out", str(tmp_path / "d")],
        env=env,
    )
    assert result.exit_code == 1 and "stage_2_train_labels.csv" in result.stderr


def test_cli_root_without_the_images_is_refused_after_the_summary(tmp_path, env):
    root = fixtures.chexpert(tmp_path / "chexpert")  # metadata only: the images are elsewhere
    out = tmp_path / "d"
    args = ["import", "chexpert", "--root", str(root), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["datasets"][0]["written"] == 0  # the counts still print
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: chexpert: none of the 4 images its metadata lists is under {root}"
    )
    assert "train/patient00001/study1/view1_frontal.jpg" in line


def test_cli_without_key_is_refused(tmp_path):
    root = _chexpert(tmp_path)
    result = CliRunner().invoke(
        app,
        ["import", "chexpert", "--root", str(root), "--out", str(tmp_path / "d")],
        env={KEY_ENV_VAR: "", KEY_FILE_ENV_VAR: ""},
    )
    assert result.exit_code == 1 and "no de-identification key" in result.stderr


def test_cli_help_and_list():
    runner = CliRunner()
    help_text = runner.invoke(app, ["import-multi", "--help"]).output
    assert "Multi-CXR" in help_text and "--eval-root" in help_text
    listing = json.loads(runner.invoke(app, ["list"]).stdout)
    assert listing["padchest"]["cohort"] == "padchest" and len(listing) == 10


def test_images_are_normalised_like_ingest(tmp_path):
    """A 16-bit PNG is stretched to its own range; 8-bit images keep their grey levels."""
    from cxrflow.datasets.importer import _decode

    buf = tmp_path / "x.png"
    Image.fromarray(np.array([[100, 4000], [2050, 100]], dtype=np.uint16)).save(buf)
    img, _ = _decode(buf.read_bytes(), ".png")
    assert img.min() == 0.0 and img.max() == 1.0
    Image.fromarray(np.array([[0, 51]], dtype=np.uint8)).save(tmp_path / "y.jpg", quality=100)
    img8, _ = _decode((tmp_path / "y.jpg").read_bytes(), ".jpg")
    assert img8.max() < 0.3


def _mask_of(out, manifest, source_image_id: str) -> dict[str, np.ndarray]:
    from cxrflow.datasets.masks import unpack

    row = manifest.set_index("image_id").loc[KEY.pseudonym("image", source_image_id)]
    assert row["mask_path"] == f"masks/{row['subject_id']}/{row.name}.png"
    packed = np.asarray(Image.open(out / row["mask_path"]))
    assert packed.shape == (row["height"], row["width"])  # the written image's size
    return unpack(packed)


def test_candid_masks_are_imported_beside_their_images(tmp_path):
    root = fixtures.candid(tmp_path / "candid")
    frame = load_dataset("candid_ptx", root)
    rng = np.random.default_rng(0)
    for rel in frame["image_path"]:  # the masks' RLE is drawn on images of CANDID_SHAPE
        fixtures.write_dicom(root / rel, rng.integers(0, 4096, fixtures.CANDID_SHAPE))
    out = tmp_path / "data"
    summary = import_dataset(Source("candid_ptx", root), _config(out), KEY)
    assert summary.datasets[0].written == 3 and summary.reconciles
    manifest = Dataset(out).manifest()
    expected = fixtures.candid_masks()
    a = _mask_of(out, manifest, "candid:1.2.3.1")
    np.testing.assert_array_equal(a["pneumothorax"], expected["ptx_a"] | expected["ptx_b"])
    assert not a["chest_tube"].any()
    c = _mask_of(out, manifest, "candid:1.2.3.3")
    np.testing.assert_array_equal(c["chest_tube"], expected["tube"])
    assert not c["pneumothorax"].any()  # annotated negative: an empty mask, not no mask
    # unchanged on a re-import: nothing rewritten, the mask paths kept
    again = import_dataset(Source("candid_ptx", root), _config(out), KEY)
    assert again.datasets[0].skipped_existing == 3
    assert Dataset(out).manifest()["mask_path"].notna().sum() == manifest["mask_path"].notna().sum()


def test_rib_masks_are_resized_with_the_image(tmp_path):
    from cxrflow.datasets.masks import MASK_SPEC_COLUMN, packed_mask, unpack
    from cxrflow.ingest.pixels import resize_mask

    root = fixtures.vindr_ribcxr(tmp_path / "rib")
    frame = load_dataset("vindr_ribcxr", root)
    for rel in frame["image_path"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(0).integers(100, 4000, (48, 80)).astype(np.uint16)
        Image.fromarray(pixels).save(root / rel)
    out = tmp_path / "data"
    config = ImportConfig(output_dir=out, max_side=20, show_progress=False)
    assert import_dataset(Source("vindr_ribcxr", root), config, KEY).datasets[0].written == 3
    manifest = Dataset(out).manifest()
    source = "vindr_rib:VinDr_RibCXR_train_000"
    ribs = _mask_of(out, manifest, source)["ribs"]
    assert ribs.shape == (12, 20)
    spec = frame.set_index("image_id").loc[source, MASK_SPEC_COLUMN]
    full = packed_mask(spec, (48, 80))  # drawn on the source image, then resized with it
    assert ribs.any() and full.shape == (48, 80)
    np.testing.assert_array_equal(ribs, unpack(resize_mask(full, (12, 20)))["ribs"])


def test_a_mask_that_cannot_be_drawn_quarantines_its_image(tmp_path):
    root = fixtures.candid(tmp_path / "candid")
    rng = np.random.default_rng(0)
    for rel in load_dataset("candid_ptx", root)["image_path"]:  # smaller than the RLE's image
        fixtures.write_dicom(root / rel, rng.integers(0, 4096, (3, 3)))
    out = tmp_path / "data"
    (s,) = import_dataset(Source("candid_ptx", root), _config(out), KEY).datasets
    assert set(s.unreadable) == {  # their RLE runs past 3 x 3
        ("dataset/1.2.3.1.dcm", "unreadable_mask"),
        ("dataset/1.2.3.3.dcm", "unreadable_mask"),
    }
    q = pd.read_parquet(out / QUARANTINE_FILE)
    assert q["reason"].str.startswith("mask cannot be drawn").any()
    assert Dataset(out).manifest()["mask_path"].notna().all()  # no image without its mask
