import json

import pytest

from cxrflow.deid import Deidentifier
from cxrflow.keys import SecretKey
from cxrflow.lineage import (
    LineageNode,
    NodeKind,
    SubjectQuery,
    data_lineage,
    model_lineage,
    patient_lineage,
    subject_lineage,
    subject_pseudonym,
)
from cxrflow.registry import ENCODER_MODEL, ParentModel, lineage_for, register_candidate
from tests.lineage.helpers import commit, git_repo
from tests.registry.helpers import model_run, upstream, use_tracking

KEY = SecretKey(b"lineage-test-key-0123456789-0123456789")
PATIENT_ID = "PID-4711"
HEAD = "cxrflow-head-classification"


@pytest.fixture(scope="module")
def chain(mlflow_template, tmp_path_factory):
    """Two data versions (a subject added in v2), an encoder + head on each, real MLflow runs.

    Built once for the module (the tests only read it).
    """
    tmp_path = tmp_path_factory.mktemp("lineage")
    with pytest.MonkeyPatch.context() as mp:
        use_tracking(mlflow_template, tmp_path, mp)
        root = git_repo(tmp_path / "repo")
        mp.chdir(root)
        yield _build(root)


def _build(root):
    newcomer = subject_pseudonym(PATIENT_ID, KEY)
    v1 = commit(root, [("i1", "s-old", "train"), ("i2", "s-test", "test"), ("i3", "s-val", "val")])
    v2 = commit(
        root,
        [
            ("i1", "s-old", "train"),
            ("i2", "s-test", "test"),
            ("i3", "s-val", "val"),
            ("i4", newcomer, "train"),
        ],
    )
    models = {}
    for p, v in (("kfp-1", v1), ("kfp-2", v2)):
        upstream(p, v.md5, f"split-{p}", found=9 if p == "kfp-1" else 4, quarantined=2)
        enc_run = model_run("pretrain", p, v.md5, steps="10", init_from="random")
        enc = register_candidate(
            f"runs:/{enc_run}/model",
            ENCODER_MODEL,
            lineage_for(p, "encoder", params_digest=f"digest-{p}", git_commit="abc123" * 6 + "ab"),
        )
        head_run = model_run("heads", p, v.md5)
        head = register_candidate(
            f"runs:/{head_run}/model",
            HEAD,
            lineage_for(
                p,
                "head",
                params_digest=f"digest-{p}",
                parents=[ParentModel(ENCODER_MODEL, str(enc.version))],
                git_commit="abc123" * 6 + "ab",
            ),
        )
        models[p] = (str(enc.version), str(head.version))
    return root, v1, v2, models, newcomer


def test_model_lineage_reaches_data_version_and_ingestion_counts(chain):
    _, v1, _, models, _ = chain
    tree = model_lineage(ENCODER_MODEL, f":{models['kfp-1'][0]}")
    (data,) = tree.find(NodeKind.DATA_VERSION)
    assert data.attrs["md5"] == v1.md5
    assert data.attrs["restore"] == f"cxrflow data checkout {v1.md5}"
    (ingest,) = tree.find(NodeKind.INGESTION)
    assert ingest.attrs["files_found"] == 9 and ingest.attrs["files_quarantined"] == 2
    assert ingest.attrs["deid_profile"].startswith("DICOM PS3.15")
    (split,) = tree.find(NodeKind.SPLIT)
    assert split.attrs["digest"] == "split-kfp-1"
    (params,) = tree.find(NodeKind.PARAMETERS)
    assert params.attrs["digest"] == "digest-kfp-1" and params.attrs["params"]["steps"] == "10"
    (pipeline,) = tree.find(NodeKind.PIPELINE_RUN)
    assert pipeline.attrs["kfp_run"] == "kfp-1"
    assert set(pipeline.attrs["stages"]) == {"ingest", "split", "data_version", "pretrain", "heads"}
    assert tree.find(NodeKind.GIT_COMMIT)[0].attrs["commit"].startswith("abc123")


def test_head_lineage_includes_its_encoder_chain(chain):
    _, _, v2, models, _ = chain
    tree = model_lineage(HEAD, "@candidate")
    assert tree.attrs["kind"] == "head" and tree.label == f"{HEAD}:{models['kfp-2'][1]}"
    encoders = [n for n in tree.find(NodeKind.MODEL_VERSION) if n.attrs["name"] == ENCODER_MODEL]
    assert [e.attrs["version"] for e in encoders] == [models["kfp-2"][0]]
    assert {n.attrs["md5"] for n in tree.find(NodeKind.DATA_VERSION)} == {v2.md5}


def test_lineage_text_and_json(chain):
    _, v1, _, models, _ = chain
    tree = model_lineage(ENCODER_MODEL, f":{models['kfp-1'][0]}")
    text = tree.to_text()
    assert text.startswith(f"[model_version] {ENCODER_MODEL}:{models['kfp-1'][0]}")
    assert f"cxrflow data checkout {v1.md5}" in text and "files_found: 9" in text
    assert "└── " in text
    doc = json.loads(tree.to_json())
    assert doc["kind"] == "model_version" and doc["children"]
    assert LineageNode.from_dict(doc).to_json() == tree.to_json()


def test_cli_json_is_plain_json_on_a_narrow_pipe(chain):
    from typer.testing import CliRunner

    from cxrflow.cli import app

    _, _, _, models, _ = chain
    # A 40-column console: rich would wrap the long strings (digests, tags) inside the JSON.
    result = CliRunner().invoke(
        app, ["lineage", "model", ENCODER_MODEL, f":{models['kfp-1'][0]}", "--json"],
        env={"COLUMNS": "40"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["label"] == f"{ENCODER_MODEL}:{models['kfp-1'][0]}"
    bad = CliRunner().invoke(app, ["lineage", "model", ENCODER_MODEL, "champion", "--json"])
    assert bad.exit_code == 1 and bad.stdout == "" and "@alias" in bad.stderr


def test_bad_reference_is_explained(chain):
    with pytest.raises(ValueError, match="@alias"):
        model_lineage(ENCODER_MODEL, "champion")


def test_data_lineage_lists_models_of_a_version(chain):
    _, v1, _, models, _ = chain
    tree = data_lineage(v1.md5)
    labels = {n.label for n in tree.children}
    assert labels == {f"{ENCODER_MODEL}:{models['kfp-1'][0]}", f"{HEAD}:{models['kfp-1'][1]}"}
    assert tree.attrs["models"] == 2


def test_subject_added_later_is_only_in_later_models(chain):
    root, v1, v2, models, newcomer = chain
    query = SubjectQuery(repo_root=root)
    tree = subject_lineage(newcomer, query)
    assert [d.attrs["md5"] for d in tree.find(NodeKind.DATA_VERSION)] == [v2.md5]
    assert set(tree.attrs["model_versions"]) == {
        f"{ENCODER_MODEL}:{models['kfp-2'][0]}",
        f"{HEAD}:{models['kfp-2'][1]}",
    }

    old = subject_lineage("s-old", query)
    assert {d.attrs["md5"] for d in old.find(NodeKind.DATA_VERSION)} == {v1.md5, v2.md5}
    assert len(old.attrs["model_versions"]) == 4

    # in every version, but only ever in test (or val): no model trained on it
    for held_out in ("s-test", "s-val"):
        t = subject_lineage(held_out, query)
        assert t.attrs["data_versions"] == 2 and t.attrs["model_versions"] == []
    assert subject_lineage("nobody", query).attrs["data_versions"] == 0


def test_subject_lineage_reads_versions_from_the_remote(chain):
    import shutil

    root, _, v2, _, newcomer = chain
    clone = root.parent / "clone"  # as on a fresh clone: only the remote has the versions
    shutil.copytree(root, clone, ignore=shutil.ignore_patterns("cache"))
    assert not (clone / ".dvc" / "cache").exists()
    tree = subject_lineage(newcomer, SubjectQuery(repo_root=clone))
    assert [d.attrs["md5"] for d in tree.find(NodeKind.DATA_VERSION)] == [v2.md5]


def test_patient_lineage_uses_the_keyed_pseudonym_and_never_the_id(chain):
    root, _, v2, _, newcomer = chain
    assert newcomer == Deidentifier(KEY).subject_pseudonym(PATIENT_ID)
    tree = patient_lineage(PATIENT_ID, KEY, SubjectQuery(repo_root=root))
    assert tree.attrs["pseudonym"] == newcomer
    assert [d.attrs["md5"] for d in tree.find(NodeKind.DATA_VERSION)] == [v2.md5]
    assert PATIENT_ID not in tree.to_json() and PATIENT_ID not in tree.to_text()


def test_cli_lineage_data_accepts_the_short_md5_it_prints(chain):
    from typer.testing import CliRunner

    from cxrflow.cli import app

    _, v1, _, _, _ = chain
    narrow = CliRunner(env={"COLUMNS": "40"})
    text = narrow.invoke(app, ["lineage", "data", v1.md5])
    assert text.exit_code == 0, text.output
    short = text.stdout.split()[2].rstrip(":")  # "[data_version] data <short>: 2 model version(s)"
    assert len(short) == 12 and v1.md5.startswith(short)
    for given in (short, short.upper(), v1.md5[:20], f"{v1.md5}.dir"):
        result = narrow.invoke(app, ["lineage", "data", given, "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["attrs"]["md5"] == v1.md5 and doc["attrs"]["models"] == 2, given


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("not-a-hash", "not a data version"),
        ("0123456789a", "at least 12"),  # 11 digits: too short to be the printed form
        ("0123456789abcdef0123456789abcdef0", "not a data version"),  # 33 digits
        ("ffffffffffffffff", "no data version known to MLflow starts with ffffffffffffffff"),
    ],
)
def test_cli_lineage_data_refuses_malformed_and_unknown_versions(chain, given, says):
    from typer.testing import CliRunner

    from cxrflow.cli import app

    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["lineage", "data", given, "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert says in line


def test_lineage_of_a_run_that_imported_public_datasets(mlflow_template, tmp_path, monkeypatch):
    use_tracking(mlflow_template, tmp_path, monkeypatch)
    upstream("kfp-imp", "0" * 32, "split-imp", found=12, quarantined=3, entry="import")
    run = model_run("pretrain", "kfp-imp", "0" * 32, steps="10", init_from="random")
    enc = register_candidate(
        f"runs:/{run}/model",
        ENCODER_MODEL,
        lineage_for("kfp-imp", "encoder", params_digest="d-imp"),
    )
    tree = model_lineage(ENCODER_MODEL, f":{enc.version}")
    (entry,) = tree.find(NodeKind.INGESTION)
    assert entry.label == "import chexpert,chestxray14 ingest-kfp-imp"
    assert entry.attrs["files_found"] == 12 and entry.attrs["files_quarantined"] == 3
    assert entry.attrs["deid_profile"].startswith("public dataset release")
    (data,) = tree.find(NodeKind.DATA_VERSION)
    assert data.attrs["md5"] == "0" * 32
