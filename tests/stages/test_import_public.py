"""The public-dataset import stage: a dataset directory the split stage reads, logged to MLflow."""

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from cxrflow.datasets import load_dataset
from cxrflow.deid import Deidentifier
from cxrflow.keys import KEY_ENV_VAR, KEY_FILE_ENV_VAR
from cxrflow.stages import import_public as stage
from cxrflow.stages import split as split_stage
from cxrflow.stages.contract import ParamsError, pick
from tests.datasets import fixtures
from tests.ingest.conftest import KEY


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv(KEY_ENV_VAR, KEY.value.decode())
    monkeypatch.delenv(KEY_FILE_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)  # the default artifact root is ./mlruns
    return tmp_path


def _chexpert(root):
    fixtures.chexpert(root)
    fixtures.write_images(root, list(load_dataset("chexpert", root)["image_path"]))
    return root


def test_chexpert_import_is_a_dataset_the_split_stage_splits_officially(env):
    root = _chexpert(env / "public" / "chexpert")
    params = stage.Params(
        source=f"chexpert={root}", data_dir=env / "data", max_side=32, pipeline_run="run-1"
    )
    out = stage.run(params)

    s = out.summary
    assert s.reconciles and [d.dataset for d in s.datasets] == ["chexpert"]
    assert out.listed == out.written == out.images == 4 and out.quarantined == 0
    manifest = out.dataset.manifest()
    assert len(manifest) == 4 and set(manifest["ingest_run"]) == {out.run_id}
    assert "Counts reconcile: **yes**" in out.summary_markdown
    assert "| chexpert | 4 | 4 | 0 | 0 | 0 | 0 | 0 | 3 of 3 |" in out.summary_markdown

    run = MlflowClient().get_run(out.mlflow_run_id)
    assert run.data.tags["cxrflow.stage"] == "import"
    assert run.data.tags["cxrflow.pipeline_run"] == "run-1"
    assert run.data.params["ingest_run"] == out.run_id
    assert run.data.params["datasets"] == "chexpert"
    assert run.data.params["deid_profile"].startswith("public dataset release")
    m = run.data.metrics
    assert m["files_found"] == m["files_written"] == m["chexpert/written"] == 4
    assert m["files_quarantined"] == 0 and m["chexpert/subjects_imported"] == 3
    text = mlflow.artifacts.load_text(f"runs:/{out.mlflow_run_id}/{stage.SUMMARY_ARTIFACT}")
    assert text == out.summary_markdown
    logged = mlflow.artifacts.load_dict(f"runs:/{out.mlflow_run_id}/{stage.RESULT_ARTIFACT}")
    assert logged == json.loads(out.to_json()) and logged["run_id"] == out.run_id

    # The split stage reads the directory as it reads an ingested one; `official` keeps
    # CheXpert's published split (its valid subject goes to val).
    split = split_stage.run(split_stage.Params(data_dir=out.dataset.root, mode="official"))
    assert sum(split.images.values()) == 4
    frozen = split.dataset.manifest()
    valid = Deidentifier(KEY).subject_pseudonym("chexpert:patient64541")
    assert set(frozen.loc[frozen["subject_id"] == valid, "split"]) == {"val"}

    again = stage.run(params)  # nothing new: every image is already imported
    assert again.written == 0 and again.images == 4 and again.summary.reconciles


def test_several_datasets_are_combined_into_one_directory(env):
    chexpert = _chexpert(env / "public" / "chexpert")
    cxr14 = fixtures.chestxray14(env / "public" / "cxr14")
    fixtures.write_images(cxr14, list(load_dataset("chestxray14", cxr14)["image_path"]))
    out = stage.run(
        stage.Params(
            source=f" chexpert={chexpert} , chestxray14={cxr14} ",
            data_dir=env / "data",
            max_side=32,
        )
    )
    assert [d.dataset for d in out.summary.datasets] == ["chexpert", "chestxray14"]
    assert out.summary.reconciles
    assert set(out.dataset.manifest()["source_dataset"]) == {"chexpert", "chestxray14"}


def test_params_from_the_component_inputs(tmp_path):
    # The component passes its locals(): KFP's strings and ints, plus its artifacts.
    values = {"source": "chexpert=/d", "data_dir": str(tmp_path), "workers": 2, "dataset": None}
    params = pick(stage.Params, values)
    assert params == stage.Params(source="chexpert=/d", data_dir=tmp_path, workers=2)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", r"^source: no dataset given; expected NAME=DIR"),
        ("   ", r"^source: no dataset given"),
        ("chexpert", r"^source: 'chexpert' is not NAME=DIR"),
        ("chexpert=", r"^source: 'chexpert=' is not NAME=DIR"),
        ("=/data", r"^source: '=/data' is not NAME=DIR"),
        ("chexpert={root},", r"^source: '' is not NAME=DIR"),
        ("nih={root}", r"^source: unknown dataset 'nih'; known datasets: brax, candid_ptx, "),
        ("chexpert={root},chexpert={root}", r"^source: dataset 'chexpert' is given more than once"),
        ("chexpert={root}/missing", r"^source: root of chexpert, .*/missing, is not a directory"),
    ],
)
def test_a_bad_source_is_refused_by_name_before_anything_runs(env, source, message):
    root = env / "public"
    root.mkdir()
    params = stage.Params(source=source.format(root=root), data_dir=env / "data")
    with pytest.raises(ParamsError, match=message):
        stage.run(params)
    # Refused before the import and before an MLflow run (nothing touched the store).
    assert not (env / "data").exists() and not (env / "mlflow.db").exists()


def test_the_root_check_can_wait_for_the_cluster():
    # At submit time the roots are on the cluster's volumes: syntax and names only.
    assert stage.parse_source("chexpert=/nowhere,padchest=/p", check_roots=False) == [
        ("chexpert", Path("/nowhere")),
        ("padchest", Path("/p")),
    ]


def test_a_root_without_the_images_fails_the_run_with_its_counts_logged(env):
    root = fixtures.chexpert(env / "public" / "chexpert")  # the metadata, none of the images
    params = stage.Params(source=f"chexpert={root}", data_dir=env / "data", max_side=32)
    with pytest.raises(FileNotFoundError, match=r"^chexpert: none of the 4 images its metadata"):
        stage.run(params)
    (run,) = MlflowClient().search_runs([mlflow.get_experiment_by_name("cxrflow").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.metrics["chexpert/missing"] == 4 and run.data.metrics["files_written"] == 0
