"""The card's Markdown sections, in the Hugging Face model-card order, computed from its facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrflow.data_terms import terms_of
from cxrflow.evaluation.tables import Table
from cxrflow.modelcard.card import RAD_DINO_ARXIV, RAD_DINO_BIBTEX
from cxrflow.modelcard.claims import (
    classification_row,
    classification_summary,
    demographic_sentence,
    encodes_demographics,
    fairness_sentence,
    initialisation_sentence,
    pct,
    provenance_sentence,
    report_sentence,
)
from cxrflow.modelcard.facts import MIN_GROUP_IMAGES, MIN_POSITIVES

if TYPE_CHECKING:
    from cxrflow.modelcard.card import ModelCard

INTENDED_USE = """\
- Research and development of chest X-ray models: a frozen image encoder for linear probes,
  segmentation decoders and report generation, trained and evaluated as in RAD-DINO.
- Evaluation and comparison of models on the same, versioned data and split."""

OUT_OF_SCOPE = """\
- **Not for clinical decisions**: no diagnosis, triage, treatment or screening without a
  prospective clinical validation and the regulatory clearance the setting requires.
- Not for populations, devices, views or image types unlike the training data (paediatric
  images, CT, non-chest radiographs) without evaluating it on them first.
- Not for inferring protected attributes (sex, age, ethnicity) of people.
- Not for re-identifying patients or linking images to people."""

RISKS = """\
- Labels derived from reports are noisy; rare findings have few positives and wide
  uncertainty (see the counts beside every result).
- Generated reports can state findings that are not in the image (hallucinations) and miss
  ones that are; lexical metrics (ROUGE-L, BLEU-4) do not measure clinical correctness.
- Performance on another hospital's data is unknown until measured (distribution shift:
  devices, protocols, patient mix)."""

REFERENCES = (
    f"Pérez-García et al., Exploring scalable medical image encoders beyond text supervision "
    f"(RAD-DINO), Nature Machine Intelligence 2025, arXiv:{RAD_DINO_ARXIV}",
    "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, arXiv:2304.07193",
)

_PROCEDURE = {
    "encoder": "DINOv2 self-supervised pre-training (image-level DINO loss, patch-level iBOT "
    "masked image modelling, KoLeo regulariser) on the train split only; no labels and no "
    "report text are used.",
    "head": "A task head (linear probe, segmentation decoder or demographics classifier) "
    "trained on the frozen encoder's features of the train split, selected on val, "
    "reported on test.",
    "report_generator": "A LLaVA-style generator: the frozen encoder, a two-layer MLP "
    "projector and a language model fine-tuned to write the Findings section, trained on the "
    "train split and evaluated on test with bootstrap intervals.",
}
_WHAT = {
    "encoder": "A RAD-DINO-style chest X-ray image encoder (DINOv2 self-supervised ViT)",
    "head": "A task head on a frozen cxrflow chest X-ray encoder",
    "report_generator": "A LLaVA-style chest X-ray report generator (Findings section) on a "
    "frozen cxrflow encoder",
}

# The placeholder the "How to load" snippet reads; a reader replaces it with an image.
EXAMPLE_IMAGE = "chest_xray.png"


def summary_paragraph(card: ModelCard) -> str:
    """What the model is, where its training started and what data it saw, in one paragraph."""
    arch = f", {card.architecture.label}" if card.architecture else ""
    parts = [f"{_WHAT.get(card.kind, card.description)}{arch}, trained by cxrflow."]
    if card.kind == "encoder":
        parts.append(initialisation_sentence(card.init))
    if card.provenance.kind == "synthetic":
        parts.append("Trained and evaluated on synthetic (phantom) images only, not patients.")
    elif card.provenance.kind == "mixed":
        parts.append("Trained on a mix of synthetic (phantom) and real images.")
    elif card.provenance.kind == "unknown":
        parts.append("Whether its data are synthetic or real is not recorded.")
    else:
        parts.append("Trained on real, de-identified chest radiographs.")
    return " ".join(parts)


def _load_section(card: ModelCard) -> str:
    ref = f"models:/{card.name}/{card.version}"
    if card.kind == "encoder":
        return f"""\
The registered version is an MLflow model whose `artifacts/` folder holds the encoder in
Hugging Face format (a `Dinov2Model` and its `preprocessor_config.json`). Prepare pixels with
cxrflow's `load_image`, the function training used: it scales 8-bit PNGs by 255, 16-bit PNGs
by 65535, reads DICOM through the ingest's display pipeline and takes uint8, uint16 or
[0, 1] float arrays, then resizes, crops and normalises as the config says.

```python
from pathlib import Path

import mlflow
import torch
from transformers import AutoModel

from cxrflow.models.preprocessing import load_image, read_preprocessing

local = Path(mlflow.artifacts.download_artifacts("{ref}"))
path = next((local / "artifacts").iterdir())  # the Hugging Face export
model = AutoModel.from_pretrained(path).eval()
prep = read_preprocessing(path)  # input size and normalisation, never hard-coded

image = "{EXAMPLE_IMAGE}"  # 8/16-bit PNG, DICOM file, or a numpy array
pixels = load_image(image, prep)[None]  # (1, 3, S, S)
with torch.no_grad():
    tokens = model(pixel_values=pixels).last_hidden_state
cls = tokens[:, 0]  # image embedding (CLS)
patches = tokens[:, 1:]  # patch embeddings
```

Do not use `AutoImageProcessor` or `Image.open(...).convert("RGB")` on the dataset's 16-bit
images: both make 8-bit RGB first, which saturates most pixels and gives different
embeddings. `mlflow.pyfunc.load_model("{ref}").predict(frame)` does the same as above for a
DataFrame with an `image` column (base64 PNG/DICOM bytes) or an `image_path` column.
"""
    return f"""\
```python
import mlflow

model = mlflow.pyfunc.load_model("{ref}")  # or models:/{card.name}@champion
```

It expects the features (or images) of the parent encoder version
{", ".join(card.parents) or "(see lineage)"}: load that encoder as its own card shows.
"""


def _initialisation_lines(card: ModelCard) -> list[str]:
    init = card.init
    out = [f"- {initialisation_sentence(init)}"]
    if init.continual:
        if init.parent_model:
            out.append(f"- Registered parent: `{init.parent_model}`")
        out.append(f"- Weights sha256: `{init.sha256 or 'not recorded'}`")
    if init.requested:
        out.append(f"- Requested as: `{init.requested}`")
    for name, change in sorted(init.departures.items()):
        out.append(f"- Departs from the preset: {name} {change} (the checkpoint's architecture)")
    return out


def _input_lines(card: ModelCard) -> list[str]:
    spec = card.input_spec
    if spec is None:
        return ["Not recorded."]
    norm = (
        f"`(x - {spec.mean:g}) / {spec.std:g}` on pixels scaled to [0, 1]"
        if spec.mean is not None and spec.std is not None
        else "mean/std not recorded"
    )
    depths = " or ".join(f"{b}-bit" for b in spec.bit_depths)
    return [
        f"- Input: {spec.image_size} x {spec.image_size} pixels, {spec.channels} channels "
        "(the grey radiograph replicated), float32",
        f"- Normalisation: {norm}",
        f"- Accepted images: {depths} grey PNG (each scaled by its own range: /255, /65535), "
        "DICOM (Modality LUT, VOI LUT, MONOCHROME1 inverted), uint8/uint16/[0, 1] arrays",
        "- Geometry: shortest edge resized (bicubic, antialiased) to the input size, then "
        "centre-cropped",
        "- One definition: `cxrflow.models.preprocessing.load_image` (training, the pyfunc, "
        "the Hugging Face export and the snippet below)",
        f"- Recorded in: {spec.evidence or 'not recorded'}",
    ]


def _architecture_lines(card: ModelCard) -> list[str]:
    a = card.architecture
    if a is None:
        return ["Not recorded."]
    params = f"{a.parameters:,} ({a.parameters / 1e6:.1f} M)" if a.parameters else "not computed"
    return [
        f"- {a.label} (`{a.name}`): patch {a.patch_size}, embedding dimension {a.embed_dim}, "
        f"{a.depth} blocks, {a.num_heads} heads, {a.num_register_tokens} register tokens",
        f"- Parameters (backbone): {params}",
        "- Outputs: `last_hidden_state`, CLS token (image embedding) then patch tokens",
        f"- Recorded in: {a.evidence}",
    ]


def _compute_lines(card: ModelCard) -> list[str]:
    c = card.compute

    def known(v: object) -> str:
        return "not recorded" if v is None or v == "" else str(v)

    wall = (
        f"{c.wall_seconds:.0f} s ({c.wall_seconds / 3600:.2f} h) for the pre-training stage run "
        "(training, export, attention maps, probe)"
        if c.wall_seconds is not None
        else "not recorded"
    )
    lines = [
        f"- Device: {known(c.device)}",
        f"- Steps: {known(c.steps)}; global batch: {known(c.batch_size)}",
        f"- Wall time: {wall}",
    ]
    if c.amp:
        lines.append(f"- Mixed precision: {c.amp}")
    return lines


def _classification_section(card: ModelCard) -> list[str]:
    if not card.classification:
        return []
    findings = sum(r.finding != "macro" for r in card.classification)
    table = Table(
        "table1_classification",
        "Table 1: image classification (linear probe, frozen encoder, test split)",
        (
            "finding",
            "AUPRC",
            "AUROC",
            "AUROC 95% CI",
            "positives / labelled",
            "prevalence",
            "reading",
        ),
        tuple(classification_row(r, findings) for r in card.classification),
        "Percent, mean ± standard deviation over the probe repeats. The 95% interval is "
        "Hanley-McNeil's from the test counts; the chance level of AUPRC is the prevalence, of "
        f"AUROC 50%. Fewer than {MIN_POSITIVES} positives: not interpretable.",
    )
    return [
        table.to_markdown(),
        *[f"- {s}" for s in classification_summary(list(card.classification))],
        "",
    ]


def _demographics_section(card: ModelCard) -> list[str]:
    if not card.demographics:
        return []
    rows = tuple(
        (
            p.target,
            pct(p.accuracy) + (f" ± {100 * p.std:.1f}" if p.std is not None else ""),
            pct(p.majority_rate),
            "n/a" if p.margin is None else f"{100 * p.margin:+.1f}",
            str(p.images) if p.images is not None else "not recorded",
        )
        for p in card.demographics
    )
    table = Table(
        "table5_demographics",
        "Table 5: patient demographics from frozen features (linear classifier)",
        ("target", "accuracy", "majority-class rate", "difference (points)", "images"),
        rows,
        "Accuracy: mean ± standard deviation over the cross-validation folds. The majority-class "
        "rate is what always answering the commonest class scores.",
    )
    return [table.to_markdown(), *[f"- {demographic_sentence(p)}" for p in card.demographics], ""]


def _risk_lines(card: ModelCard) -> list[str]:
    out = []
    encoded = encodes_demographics(list(card.demographics))
    if encoded:
        out.append(
            f"- The frozen features predict {', '.join(encoded)} better than the majority-class "
            "rate (Table 5): downstream models can learn shortcuts through them."
        )
    elif card.demographics:
        out.append(
            "- No demographic probe beats its majority-class rate by more than its fold "
            "variation (Table 5); that does not show the features are free of demographics."
        )
    for g in card.fairness:
        out.append(f"- {fairness_sentence(g)}")
    return out


def _data_terms_lines(card: ModelCard) -> list[str]:
    """One line per data source whose terms bind the weights (a parent's data included)."""
    own = set(card.provenance.sources)
    out = []
    for source in card.data_terms:
        terms = terms_of(source)
        where = f" ({terms.link})" if terms.link else ""
        via = "" if source in own else ", through the parent model's weights"
        out.append(f"- Data terms ({source}): {terms.terms}{where}; they bind these weights{via}")
    return out


def render_sections(card: ModelCard) -> str:
    """Everything below the front matter."""
    opts = ", ".join(f"{k}={v}" for k, v in sorted(card.deid_options.items())) or "not recorded"
    lic = card.license_
    out = [
        f"# {card.name} (version {card.version})",
        "",
        summary_paragraph(card),
        "",
        "## Model details",
        "",
        "### Model description",
        "",
        f"- Kind: {card.kind}"
        + (f"; architecture {card.architecture.label}" if card.architecture else ""),
        f"- Developed by: cxrflow pipeline run `{card.pipeline_run}`, git commit "
        f"`{card.git_commit}`",
        f"- Registered model: `{card.name}`, version `{card.version}`"
        + (f", aliases: {', '.join(card.aliases)}" if card.aliases else ""),
        f"- Parent models: {', '.join(card.parents) or 'none'}",
        f"- License: {lic.describe()}",
        *_data_terms_lines(card),
        f"- Method: RAD-DINO (arXiv:{RAD_DINO_ARXIV}); see Citation",
        "",
        "## Uses",
        "",
        "### Direct use",
        "",
        INTENDED_USE,
        "",
        "### Out-of-scope use",
        "",
        OUT_OF_SCOPE,
        "",
        "## Bias, risks and limitations",
        "",
        f"- {provenance_sentence(card.provenance, card.data_version)}",
        *_risk_lines(card),
        RISKS,
        *[f"- {x}" for x in card.limitations],
        "",
        "## Training details",
        "",
        "### Training data",
        "",
        f"- Provenance: {provenance_sentence(card.provenance, card.data_version)}",
        f"- Data version (DVC md5): `{card.data_version}`; restore it with "
        f"`cxrflow data checkout {card.data_version}`",
        f"- Split digest (subject-level train/val/test): `{card.split_digest}`",
        f"- De-identification: {card.deid_profile}",
        f"- De-identification options: {opts}",
        "- Identifiers are keyed pseudonyms; dates are shifted per patient; no image, name or "
        "identifier is part of this card.",
        "",
    ]
    out += [t.to_markdown() for t in card.cohort_tables]
    out += ["### Training procedure", "", _PROCEDURE.get(card.kind, "See the lineage below."), ""]
    if card.kind == "encoder":
        out += ["#### Initialisation", "", *_initialisation_lines(card), ""]
        out += ["#### Preprocessing (input specification)", "", *_input_lines(card), ""]
    out += ["#### Hyper-parameters", ""]
    if card.hyperparameters:
        out += ["| parameter | value |", "| --- | --- |"]
        out += [f"| {k} | {v} |" for k, v in card.hyperparameters.items()]
    else:
        out.append("Not recorded.")
    out += ["", "#### Compute", "", *_compute_lines(card), ""]
    out += [
        "## Evaluation",
        "",
        f"Test split of data version `{card.data_version}`. Every number below is computed; "
        "counts and intervals are given where the evaluation recorded them.",
        "",
    ]
    results = _classification_section(card)
    results += [r.to_markdown() for r in card.tables]
    if card.report:
        results += [f"- {report_sentence(r)}" for r in card.report] + [""]
    results += _demographics_section(card)
    out += results or ["No evaluation recorded.", ""]
    out += [f"- Note: {n}" for n in card.evaluation_notes]
    out += ["", "### Fairness", ""]
    if card.fairness:
        out += [f"- {fairness_sentence(g)}" for g in card.fairness] + [""]
        out += [t.to_markdown() for t in card.fairness_tables]
        out.append(
            f"_Worst group: the lowest group mean among groups with a known value; groups under "
            f"{MIN_GROUP_IMAGES} images are flagged._\n"
        )
    else:
        out.append(
            "No stratified analysis recorded (it needs per-image scores and demographics).\n"
        )
    if card.kind == "encoder":
        out += ["## Technical specifications", "", "### Model architecture and objective", ""]
        out += [*_architecture_lines(card), ""]
    out += [
        "## Lineage",
        "",
        f"- KFP run: `{card.pipeline_run}`",
        f"- Pipeline parameters digest: `{card.pipeline_params_digest}`",
        f"- Data version: `{card.data_version}`; split digest `{card.split_digest}`",
        f"- Git commit: `{card.git_commit}`",
        f"- Parents: {', '.join(card.parents) or 'none'}",
        f"- Full tree: `cxrflow lineage model {card.name} :{card.version}`",
        "- Structured facts: `model_card.json`; MONAI bundle fields: `metadata.json` (beside "
        "this card)",
        "",
        "## Citation",
        "",
        "```bibtex",
        RAD_DINO_BIBTEX,
        "```",
        "",
        "## How to load",
        "",
        _load_section(card),
    ]
    return "\n".join(out)
