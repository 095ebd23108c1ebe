import itertools
import json

import mlflow
import pandas as pd
import pytest
import yaml

from cxrflow.evaluation import EvaluationInputs, evaluate, report_results_from_dict
from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.keys import SecretKey
from cxrflow.modelcard import (
    attach_model_card,
    build_model_card,
    find_phi,
    safe_hyperparameters,
    write_model_card,
)
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from cxrflow.registry import ENCODER_MODEL, lineage_for, register_candidate
from cxrflow.tags import TAG_DATA_VERSION, TAG_GIT_COMMIT, TAG_MODEL_CARD
from tests.registry.helpers import stage, upstream

KEY = SecretKey(b"model-card-test-key-0123456789-0123456789")
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
METRICS = {"cls.auprc.macro": 0.52, "cls.auprc_std.macro": 0.03, "seg.linear.dice.lung_left": 0.9}


@pytest.fixture
def phantom_card(tracking, tmp_path):
    """A card of an encoder trained on an ingested phantom, with its cohort and fairness."""
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    generate_phantom(inbox, 3, seed=1, min_side=64, max_side=96, progress=False)
    gt = pd.read_parquet(inbox / GROUND_TRUTH_NAME)
    result = run_ingest(
        IngestConfig(
            inbox, data, ground_truth=inbox / GROUND_TRUTH_NAME, max_side=64, show_progress=False
        ),
        KEY,
    )
    manifest = pd.read_parquet(result.manifest_path)
    subjects = sorted(manifest["subject_id"].unique())
    manifest["split"] = manifest["subject_id"].map(
        dict(zip(subjects, itertools.cycle(["train", "test"]), strict=False))
    )
    test = manifest[manifest["split"] == "test"]
    samples = [
        {"image_id": i, "reference": r or "", "generated": "No acute cardiopulmonary process."}
        for i, r in zip(test["image_id"], test["report"], strict=True)
    ]
    report = report_results_from_dict(
        {"metrics": {"rouge_l": {"median": 20.0, "low": 18.0, "high": 22.0}}, "samples": samples}
    )
    evaluation = evaluate(
        EvaluationInputs(
            heads_metrics=METRICS, report=report, manifest=manifest, context={"data_version": MD5}
        )
    )
    upstream("kfp-1", MD5, "split0001")
    stage(
        "ingest",
        "kfp-1",
        params={
            "deid_profile": result.profile,
            "key_fingerprint": result.key_fingerprint,
            "ingest_run": result.run_id,
        },
        metrics={"files_found": result.found},
    )
    run = stage(
        "pretrain",
        "kfp-1",
        tags={TAG_DATA_VERSION: MD5, TAG_GIT_COMMIT: "1" * 40},
        params={
            "steps": "10",
            "batch_size": "8",
            "inbox": str(inbox),
            "init_from": str(tmp_path / "weights"),
            "ground_truth": str(gt.iloc[0]["relpath"]),
        },
        artifacts={"model/README.txt": "stand-in"},
    )
    mv = register_candidate(
        f"runs:/{run}/model",
        ENCODER_MODEL,
        lineage_for("kfp-1", "encoder", params_digest="p" * 16),
    )
    card = build_model_card(ENCODER_MODEL, f":{mv.version}", evaluation=evaluation, license="mit")
    phi = sorted(set(itertools.chain.from_iterable(gt["phi_values"])))
    return card, phi, gt


def test_card_holds_no_phi_and_no_secret(phantom_card):
    card, phi, gt = phantom_card
    assert phi  # the phantom did write identities
    text = card.to_markdown() + card.to_json()
    assert find_phi(text, phi) == []
    assert find_phi(text, [str(p) for p in gt["patient_id"].dropna()]) == []
    assert KEY.value.decode() not in text
    assert "inbox" not in card.hyperparameters and "ground_truth" not in card.hyperparameters
    assert card.hyperparameters == {"batch_size": "8", "steps": "10"}
    # the check itself works
    assert find_phi(text + f" {phi[-1]} ", phi) == [phi[-1]]


def test_card_follows_the_hugging_face_layout(phantom_card):
    card, _, _ = phantom_card
    md = card.to_markdown()
    _, header, body = md.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert meta["datasets"] == [f"cxrflow-data-{MD5[:12]}"]
    assert "chest-x-ray" in meta["tags"] and "auprc" in meta["metrics"]
    (result,) = [
        r for r in meta["model-index"][0]["results"] if r["metrics"][0]["name"] == "cls.auprc.macro"
    ]
    assert result["dataset"]["type"] == MD5 and result["metrics"][0]["value"] == 0.52
    for section in (
        "## Model details",
        "## Intended use",
        "### Out-of-scope use",
        "## Training data",
        "## Training procedure",
        "## Evaluation",
        "## Fairness",
        "## Limitations and risks",
        "## Lineage",
        "## How to load",
    ):
        assert section in body
    assert "Not for clinical decisions" in body
    assert MD5 in body and f"cxrflow data checkout {MD5}" in body
    assert "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile" in body
    assert "retain_patient_characteristics=True" in body
    assert "AutoModel.from_pretrained" in body and "AutoImageProcessor" in body
    assert "Cohort characteristics" in body and "Table 1" in body
    assert "Fairness (C.6)" in body
    doc = json.loads(card.to_json())
    assert doc["data_version"] == MD5 and doc["split_digest"] == "split0001"


def test_card_is_attached_to_the_version_and_written(phantom_card, tracking, tmp_path):
    card, _, _ = phantom_card
    uri = attach_model_card(card)
    mv = tracking.get_model_version(card.name, card.version)
    assert mv.tags[TAG_MODEL_CARD] == uri
    text = mlflow.artifacts.load_text(uri)
    assert text == card.to_markdown()
    out = write_model_card(card, tmp_path / "kfp" / "card.md", tmp_path / "kfp" / "card.json")
    assert out.read_text() == card.to_markdown()
    assert json.loads((tmp_path / "kfp" / "card.json").read_text())["version"] == card.version


def test_safe_hyperparameters_drop_paths():
    params = {"lr": "0.001", "data_dir": "x", "init_from": "/models/rad-dino", "note": "a\\b"}
    assert safe_hyperparameters(params) == {"lr": "0.001"}


def _encoder_card(init_tags: dict[str, str]):
    upstream("kfp-9", MD5, "s" * 16)
    run = stage(
        "pretrain",
        "kfp-9",
        tags={TAG_DATA_VERSION: MD5, TAG_GIT_COMMIT: "1" * 40, **init_tags},
        params={"steps": "10"},
        artifacts={"model/README.txt": "stand-in"},
    )
    mv = register_candidate(
        f"runs:/{run}/model", ENCODER_MODEL, lineage_for("kfp-9", "encoder", params_digest="p")
    )
    return build_model_card(ENCODER_MODEL, f":{mv.version}")


def test_an_encoder_card_states_where_its_training_started(tracking):
    continual = _encoder_card(
        {
            "cxrflow.init_from": "champion",
            "cxrflow.init.source": "hf",
            "cxrflow.init.sha256": "ab" * 32,
            "cxrflow.init.model": "cxrflow-encoder:4",
            "cxrflow.init.file": "patient-named-folder",
            "cxrflow.init.departure.img_size": "112 -> 518",
        }
    )
    md = continual.to_markdown()
    assert "Continual training from a `hf` checkpoint" in md
    assert "Registered parent: `cxrflow-encoder:4`" in md
    assert f"Weights sha256: `{'ab' * 32}`" in md
    assert "Departs from the preset: img_size 112 -> 518" in md
    assert "patient-named-folder" not in md + continual.to_json()  # file names stay out

    scratch = _encoder_card({"cxrflow.init_from": "random", "cxrflow.init.source": "random"})
    assert "Random initialisation: not continual training" in scratch.to_markdown()
