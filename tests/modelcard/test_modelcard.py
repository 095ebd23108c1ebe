import itertools
import json
import re

import mlflow
import pandas as pd
import pytest
from huggingface_hub import ModelCard as HfModelCard

from cxrflow.evaluation import EvaluationInputs, evaluate, report_results_from_dict
from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.keys import SecretKey
from cxrflow.modelcard import (
    License,
    attach_model_card,
    build_model_card,
    find_phi,
    safe_hyperparameters,
    write_model_card,
)
from cxrflow.modelcard.build import CARD_DIR, JSON_NAME
from cxrflow.modelcard.card import RAD_DINO_BIBTEX
from cxrflow.modelcard.monai import METADATA_NAME
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from cxrflow.provenance import PHANTOM_SOURCE
from cxrflow.registry import ENCODER_MODEL, lineage_for, register_candidate
from cxrflow.registry.versions import MAX_DESCRIPTION, shorten_description
from cxrflow.tags import TAG_DATA_SOURCE, TAG_DATA_VERSION, TAG_GIT_COMMIT, TAG_MODEL_CARD
from tests.registry.helpers import PROFILE, stage, upstream

KEY = SecretKey(b"model-card-test-key-0123456789-0123456789")
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
METRICS = {"cls.auprc.macro": 0.52, "cls.auprc_std.macro": 0.03, "seg.linear.dice.lung_left": 0.9}
TINY_PARAMS = {"model": "vit_tiny", "image_size": "112", "patch_size": "14", "steps": "10"}
# The front matter stays a header: long structured data go to model_card.json.
MAX_FRONT_MATTER_LINES = 45


def front_matter(markdown: str) -> list[str]:
    _, header, _ = markdown.split("---\n", 2)
    return header.strip().splitlines()


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
        tags={TAG_DATA_SOURCE: "synthetic:cxrflow-phantom"},
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
            **TINY_PARAMS,
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
    text = card.to_markdown() + card.to_json() + json.dumps(card.monai_metadata())
    # the fixed citation names real authors (a phantom first name can be one of them)
    assert RAD_DINO_BIBTEX in text
    text = text.replace(RAD_DINO_BIBTEX, "")
    assert find_phi(text, phi) == []
    assert find_phi(text, [str(p) for p in gt["patient_id"].dropna()]) == []
    assert KEY.value.decode() not in text
    assert "inbox" not in card.hyperparameters and "ground_truth" not in card.hyperparameters
    assert card.hyperparameters == {"batch_size": "8", **TINY_PARAMS}
    # the check itself works
    assert find_phi(text + f" {phi[-1]} ", phi) == [phi[-1]]


def test_card_follows_the_hugging_face_layout(phantom_card):
    card, _, _ = phantom_card
    md = card.to_markdown()
    loaded = HfModelCard(md)  # the YAML loads as Hugging Face reads it
    assert len(front_matter(md)) <= MAX_FRONT_MATTER_LINES
    meta = loaded.data.to_dict()
    assert meta["license"] == "mit" and "license_name" not in meta
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "image-feature-extraction"
    assert meta["datasets"] == [f"cxrflow-data-{MD5[:12]}"]
    assert "chest-x-ray" in meta["tags"] and "synthetic-data" in meta["tags"]
    results = {r.metric_name: r for r in loaded.data.eval_results}
    assert results["cls.auprc.macro"].metric_value == 0.52
    assert results["cls.auprc.macro"].dataset_type == MD5
    body = loaded.text
    for section in (
        "## Model details",
        "## Uses",
        "### Out-of-scope use",
        "## Bias, risks and limitations",
        "## Training details",
        "### Training data",
        "#### Preprocessing (input specification)",
        "#### Compute",
        "## Evaluation",
        "### Fairness",
        "## Technical specifications",
        "## Lineage",
        "## Citation",
        "## How to load",
    ):
        assert section in body, section
    assert "Not for clinical decisions" in body
    assert MD5 in body and f"cxrflow data checkout {MD5}" in body
    assert "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile" in body
    assert "retain_patient_characteristics=True" in body
    assert "AutoModel.from_pretrained" in body and "AutoImageProcessor" in body
    assert "Cohort characteristics" in body and "Fairness (C.6)" in body
    assert "worst group" in body
    assert "arXiv:2401.10815" in body and "@article{" in body and "```bibtex" in body
    doc = json.loads(card.to_json())
    assert doc["data_version"] == MD5 and doc["split_digest"] == "split0001"


def test_card_states_architecture_input_and_compute(phantom_card):
    card, _, _ = phantom_card
    body = card.to_markdown()
    # vit_tiny at 112 px, patch 14: counted on the meta device
    assert "ViT-Ti/14 (`vit_tiny`): patch 14, embedding dimension 192, 6 blocks, 3 heads" in body
    assert "Parameters (backbone): 2," in body
    assert "Input: 112 x 112 pixels, 3 channels" in body and "8-bit or 16-bit" in body
    assert "Steps: 10; global batch: 8" in body
    assert "Wall time: " in body and "Wall time: not recorded" not in body
    assert "Device: not recorded" in body  # not recorded by pre-training: said, not guessed


def test_synthetic_data_is_stated(phantom_card):
    card, _, _ = phantom_card
    body = card.to_markdown()
    assert card.provenance.kind == "synthetic" and card.provenance.source == "cxrflow-phantom"
    assert "**The training and evaluation images are synthetic** (cxrflow-phantom)" in body
    assert "Trained and evaluated on synthetic (phantom) images only" in card.summary()
    assert "synthetic" in card.monai_metadata()["data_source"]


def test_card_is_attached_and_becomes_the_version_description(phantom_card, tracking, tmp_path):
    card, _, _ = phantom_card
    uri = attach_model_card(card)
    mv = tracking.get_model_version(card.name, card.version)
    assert mv.tags[TAG_MODEL_CARD] == uri
    assert mlflow.artifacts.load_text(uri) == card.to_markdown()
    run_id = uri.split("/")[1]
    folder = f"{CARD_DIR}/{card.name}-v{card.version}"
    listed = {a.path for a in tracking.list_artifacts(run_id, folder)}
    assert {f"{folder}/{JSON_NAME}", f"{folder}/{METADATA_NAME}"} <= listed
    meta = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{folder}/{METADATA_NAME}"))
    assert meta["monai_version"] == "n/a" and meta["version"] == card.version
    assert set(meta["network_data_format"]) == {"inputs", "outputs"}
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [112, 112]
    assert any("2401.10815" in r for r in meta["references"])
    # the description is the card (no YAML), shortened to MLflow's limit with a pointer
    body = HfModelCard(card.to_markdown()).text.strip()
    assert len(body) > MAX_DESCRIPTION
    assert len(mv.description) <= MAX_DESCRIPTION
    assert mv.description.startswith(f"# {card.name} (version {card.version})")
    assert card.summary() in mv.description and uri in mv.description
    assert body.startswith(mv.description.split("\n\n---\n*Shortened")[0])
    out = write_model_card(card, tmp_path / "kfp" / "card.md", tmp_path / "kfp" / "card.json")
    assert out.read_text() == card.to_markdown()
    assert json.loads((tmp_path / "kfp" / "card.json").read_text())["version"] == card.version


def test_a_short_card_is_the_description_whole():
    text = "# m (version 1)\n\nshort card\n"
    assert shorten_description(text, "runs:/r/README.md") == text
    long = "# m\n\n" + "\n".join(f"## section {i}\n\n" + "x" * 400 for i in range(30))
    short = shorten_description(long, "runs:/r/README.md")
    assert len(short) <= MAX_DESCRIPTION and "runs:/r/README.md" in short
    assert short.split("\n\n---\n")[0].rstrip().endswith("x")  # cut at a section boundary


def test_safe_hyperparameters_drop_paths():
    params = {"lr": "0.001", "data_dir": "x", "init_from": "/models/rad-dino", "note": "a\\b"}
    assert safe_hyperparameters(params) == {"lr": "0.001"}


def test_license_fields_are_consistent():
    with pytest.raises(ValueError, match="license_name and license_link"):
        License("other")
    with pytest.raises(ValueError, match="go with 'other' only"):
        License("mit", name="mit")
    with pytest.raises(ValueError, match="SPDX"):
        License("Apache 2.0")
    lic = License("other", "cxrflow-research", "https://example.org/LICENSE")
    assert lic.describe() == "cxrflow-research (see https://example.org/LICENSE)"


# ------------------------------------------------------------------ cards from hand-made runs


def _encoder_card(
    init_tags: dict[str, str],
    evaluation: dict | None = None,
    *,
    license: License | str | None = "apache-2.0",
    ingest_tags: dict[str, str] | None = None,
    pipeline: str = "kfp-9",
    parents: tuple = (),
):
    upstream(pipeline, MD5, "s" * 16)
    if ingest_tags is not None:
        stage("ingest", pipeline, tags=ingest_tags, params={"deid_profile": PROFILE})
    run = stage(
        "pretrain",
        pipeline,
        tags={TAG_DATA_VERSION: MD5, TAG_GIT_COMMIT: "1" * 40, **init_tags},
        params=TINY_PARAMS,
        artifacts={"model/README.txt": "stand-in"},
    )
    lineage = lineage_for(pipeline, "encoder", params_digest="p", parents=list(parents))
    mv = register_candidate(f"runs:/{run}/model", ENCODER_MODEL, lineage)
    return build_model_card(ENCODER_MODEL, f":{mv.version}", evaluation=evaluation, license=license)


RANDOM = {"cxrflow.init_from": "random", "cxrflow.init.source": "random"}


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
    assert "Continual pre-training from a `hf` checkpoint" in md
    assert "Registered parent: `cxrflow-encoder:4`" in md
    assert f"Weights sha256: `{'ab' * 32}`" in md
    assert "Departs from the preset: img_size 112 -> 518" in md
    assert "patient-named-folder" not in md + continual.to_json()  # file names stay out


def test_a_random_init_card_never_says_continual(tracking):
    scratch = _encoder_card(RANDOM)
    text = scratch.to_markdown() + json.dumps(scratch.monai_metadata())
    assert "Trained from random initialisation" in text
    assert "continual" not in text.lower().replace("not continual pre-training", "")


def test_an_unrecorded_init_is_not_called_continual(tracking):
    card = _encoder_card({})
    text = card.to_markdown()
    assert "The initialisation is not recorded" in text
    assert "continual pre-training from" not in text.lower()


def _cohort(female: int, male: int) -> dict:
    return {
        "key": "table5_cohort",
        "title": "Cohort characteristics",
        "columns": ["", "train", "test", "all"],
        "rows": [
            ["images", "0", "0", str(female + male)],
            ["sex F", "0", "0", str(female)],
            ["sex M", "0", "0", str(male)],
            ["sex unknown", "0", "0", "5"],
        ],
        "caption": "",
    }


def test_a_demographic_probe_below_the_majority_rate_is_not_called_encoded(tracking):
    evaluation = {
        "metrics": {"demo.accuracy.sex": 0.547, "demo.accuracy_std.sex": 0.02},
        "tables": [_cohort(female=71, male=54)],  # 71 / 125 = 56.8% always answer F
    }
    card = _encoder_card(RANDOM, evaluation)
    (probe,) = card.demographics
    assert probe.majority_rate == pytest.approx(71 / 125) and probe.majority_class == "F"
    md = card.to_markdown()
    assert "sex: accuracy 54.7% ± 2.0, at or below the majority-class rate 56.8%" in md
    assert "no evidence that the features encode sex" in md
    lowered = md.lower()
    assert "strongly" not in lowered and "is weakly encoded" not in lowered
    assert "predict sex better than" not in lowered


def test_a_demographic_probe_well_above_the_majority_rate_is_strong(tracking):
    evaluation = {
        "metrics": {"demo.accuracy.sex": 0.90, "demo.accuracy_std.sex": 0.02},
        "tables": [_cohort(female=60, male=40)],
    }
    md = _encoder_card(RANDOM, evaluation).to_markdown()
    assert "+30.0 points above the majority-class rate 60.0%" in md
    assert "sex is strongly encoded" in md
    assert "predict sex better than the majority-class rate" in md


def test_an_auroc_on_three_positives_is_flagged(tracking):
    evaluation = {
        "metrics": {
            "cls.auprc.pneumothorax": 0.05,
            "cls.auroc.pneumothorax": 0.20,
            "cls.positives.pneumothorax": 3,
            "cls.labelled.pneumothorax": 40,
            "cls.auprc.effusion": 0.80,
            "cls.auroc.effusion": 0.90,
            "cls.positives.effusion": 30,
            "cls.labelled.effusion": 60,
            "cls.auprc.macro": 0.425,
            "cls.auroc.macro": 0.55,
        }
    }
    card = _encoder_card(RANDOM, evaluation)
    md = card.to_markdown()
    row = next(line for line in md.splitlines() if line.startswith("| pneumothorax"))
    assert "not interpretable: 3 positives" in row and "3 / 40" in row and "20.0%" in row
    assert "better than chance" not in row
    effusion = next(line for line in md.splitlines() if line.startswith("| effusion"))
    assert "better than chance" in effusion and "30 / 60" in effusion
    assert "1 of 2 findings have fewer than 10 test positives" in md
    assert "The macro average (42.5% AUPRC) includes them" in md


def test_results_without_counts_are_not_judged(tracking):
    card = _encoder_card(RANDOM, {"metrics": {**METRICS, "cls.auprc.effusion": 0.7}})
    md = card.to_markdown()
    assert "counts not recorded: cannot judge" in md
    assert "better than chance" not in md


def test_unrecorded_provenance_is_said_and_recorded_real_is_stated(tracking):
    unknown = _encoder_card(RANDOM).to_markdown()
    assert "are synthetic or real is not recorded" in unknown
    real = _encoder_card(RANDOM, ingest_tags={TAG_DATA_SOURCE: "real:hospital-a"}).to_markdown()
    assert "real, de-identified chest radiographs (hospital-a)" in real
    assert "synthetic" not in real.split("## Training details")[0].lower()
    mixed = _encoder_card(
        RANDOM, ingest_tags={TAG_DATA_SOURCE: "mixed:cxrflow-phantom,dicom"}
    ).to_markdown()
    assert "Some of the images are synthetic** (sources: cxrflow-phantom,dicom)" in mixed
    assert "synthetic-data" in HfModelCard(mixed).data.to_dict()["tags"]


def test_license_other_carries_name_and_link(tracking):
    lic = License("other", "cxrflow-research", "https://example.org/LICENSE")
    md = _encoder_card(RANDOM, license=lic).to_markdown()
    meta = HfModelCard(md).data.to_dict()
    assert meta["license"] == "other"
    assert meta["license_name"] == "cxrflow-research"
    assert meta["license_link"] == "https://example.org/LICENSE"
    with pytest.raises(ValueError, match="license_name"):
        _encoder_card(RANDOM, license="other")


def test_a_single_group_is_not_called_worst(phantom_card):
    card, _, _ = phantom_card
    md = card.to_markdown()
    # the phantom's 5 test images are all F: nothing to compare, so no "worst group" claim
    line = re.search(r"report_generation rouge_l by sex: (.*)", md)
    assert line is not None
    assert re.fullmatch(r"one group only \(F [\d.]+ \(n = 5\)\): no comparison\.", line.group(1))


def test_architecture_and_input_come_from_the_registered_export(tracking, tmp_path):
    import torch

    from cxrflow.models import DinoViT, ViTConfig, save_hf_dinov2
    from cxrflow.serving import log_encoder_model

    torch.manual_seed(0)
    cfg = ViTConfig(img_size=56, embed_dim=48, depth=2, num_heads=3)
    export = save_hf_dinov2(
        DinoViT(cfg), tmp_path / "enc", image_mean=0.45, image_std=0.22, image_size=56
    )
    upstream("kfp-3", MD5, "s" * 16)
    mlflow.set_experiment("cxrflow")
    with mlflow.start_run(
        tags={"cxrflow.stage": "pretrain", "cxrflow.pipeline_run": "kfp-3", **RANDOM}
    ):
        info = log_encoder_model(export)
    mv = register_candidate(
        info.model_uri, ENCODER_MODEL, lineage_for("kfp-3", "encoder", params_digest="p")
    )
    card = build_model_card(ENCODER_MODEL, f":{mv.version}")
    assert card.architecture is not None and card.input_spec is not None
    assert card.architecture.embed_dim == 48 and card.architecture.depth == 2
    assert card.architecture.parameters == sum(p.numel() for p in DinoViT(cfg).parameters())
    assert (card.input_spec.mean, card.input_spec.std, card.input_spec.image_size) == (
        pytest.approx(0.45),
        pytest.approx(0.22),
        56,
    )
    md = card.to_markdown()
    assert "Normalisation: `(x - 0.45) / 0.22` on pixels scaled to [0, 1]" in md
    assert "the registered Hugging Face export" in md


def test_weights_trained_on_a_research_use_dataset_carry_its_terms(tracking):
    def card(source: str, **kwargs):
        ingest = {TAG_DATA_SOURCE: source}
        return _encoder_card(RANDOM, ingest_tags=ingest, license=None, **kwargs).to_markdown()

    chexpert = card("real:chexpert,chestxray14")
    meta = HfModelCard(chexpert).data.to_dict()
    assert meta["license"] == "other"
    assert meta["license_name"] == "dataset-terms-chexpert"
    assert meta["license_link"] == "https://stanfordmlgroup.github.io/competitions/chexpert/"
    assert "Data terms (chexpert): Stanford CheXpert Dataset Research Use Agreement" in chexpert
    assert "Data terms (chestxray14)" not in chexpert  # NIH's terms are unrestricted use
    # Open data, or a site's own images (whose governance cxrflow cannot know, said in the text).
    assert HfModelCard(card("real:chestxray14")).data.to_dict()["license"] == "apache-2.0"
    site = card(f"mixed:{PHANTOM_SOURCE},dicom")
    assert HfModelCard(site).data.to_dict()["license"] == "apache-2.0"
    assert "Data terms (dicom): the data owner's governance" in site


def test_a_model_continued_from_a_bound_parent_stays_bound(tracking):
    from cxrflow.registry.tags import ParentModel
    from cxrflow.tags import TAG_DATA_TERMS

    parent = _encoder_card(RANDOM, ingest_tags={TAG_DATA_SOURCE: "real:padchest"}, license=None)
    attach_model_card(parent)
    recorded = mlflow.MlflowClient().get_model_version(ENCODER_MODEL, parent.version).tags
    assert recorded[TAG_DATA_TERMS] == "padchest"
    child = _encoder_card(
        RANDOM,
        ingest_tags={TAG_DATA_SOURCE: "real:chestxray14"},  # open data, continued from padchest
        license=None,
        pipeline="kfp-10",
        parents=(ParentModel(ENCODER_MODEL, parent.version),),
    )
    assert child.data_terms == ("padchest",)
    assert child.license_.name == "dataset-terms-padchest"
    assert "through the parent model's weights" in child.to_markdown()
