"""The card's Markdown sections, in the Hugging Face model-card order."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
- Not for inferring protected attributes (sex, age, ethnicity) of people: the encoder
  captures them (Table 5), which is a risk, not a feature.
- Not for re-identifying patients or linking images to people."""

RISKS = """\
- The encoder encodes demographics (sex, age) strongly; downstream models can learn
  shortcuts through them. Check the fairness section on your own data.
- Labels derived from reports are noisy; rare findings have few positives and wide
  uncertainty.
- Generated reports can state findings that are not in the image (hallucinations) and miss
  ones that are; lexical metrics (ROUGE-L, BLEU-4) do not measure clinical correctness.
- Performance on another hospital's data is unknown until measured (distribution shift:
  devices, protocols, patient mix)."""

_PROCEDURE = {
    "encoder": "DINOv2 self-supervised pre-training (image-level DINO loss, "
    "patch-level iBOT masked image modelling, KoLeo regulariser) of a ViT with patch size 14 "
    "on the train split only; no labels and no report text are used.",
    "head": "A task head (linear probe, segmentation decoder or demographics classifier) "
    "trained on the frozen encoder's features of the train split, selected on val, "
    "reported on test.",
    "report_generator": "A LLaVA-style generator: the frozen encoder, a two-layer MLP "
    "projector and a language model fine-tuned to write the Findings section, trained on the "
    "train split and evaluated on test with bootstrap intervals.",
}


# The placeholder the "How to load" snippet reads; a reader replaces it with an image.
EXAMPLE_IMAGE = "chest_xray.png"


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


def _initialisation_section(init: dict[str, str]) -> list[str]:
    """Where the encoder's training started, and what of the preset the start overrode."""
    out = ["### Initialisation", ""]
    source = init.get("source", "")
    if not source:
        return [*out, "Not recorded.", ""]
    if source == "random":
        out.append(
            "- Random initialisation: not continual training (RAD-DINO's Table B.1 puts the "
            "cost at 6.9 macro AUPRC points)" + (f"; {init['note']}" if init.get("note") else "")
        )
    else:
        out.append(f"- Continual training from a `{source}` checkpoint")
        if init.get("model"):
            out.append(f"- Registered parent: `{init['model']}`")
        out.append(f"- Weights sha256: `{init.get('sha256', 'not recorded')}`")
    if init.get("init"):
        out.append(f"- Requested as: `{init['init']}`")
    departures = {k.split(".", 1)[1]: v for k, v in init.items() if k.startswith("departure.")}
    for name, change in sorted(departures.items()):
        out.append(f"- Departs from the preset: {name} {change} (the checkpoint's architecture)")
    return [*out, ""]


def render_sections(card: ModelCard) -> str:
    """Everything below the front matter."""
    opts = ", ".join(f"{k}={v}" for k, v in sorted(card.deid_options.items())) or "not recorded"
    out = [
        f"# {card.name} (version {card.version})",
        "",
        card.description,
        "",
        "## Model details",
        "",
        f"- Kind: {card.kind}",
        f"- Registered model: `{card.name}`, version `{card.version}`"
        + (f", aliases: {', '.join(card.aliases)}" if card.aliases else ""),
        f"- Parent models: {', '.join(card.parents) or 'none'}",
        f"- Code: git commit `{card.git_commit}`",
        f"- License: {card.license}",
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "### Out-of-scope use",
        "",
        OUT_OF_SCOPE,
        "",
        "## Training data",
        "",
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
    out += [
        "## Training procedure",
        "",
        _PROCEDURE.get(card.kind, "See the lineage below."),
        "",
    ]
    if card.kind == "encoder":
        out += _initialisation_section(card.initialisation)
    out += ["### Hyper-parameters", ""]
    if card.hyperparameters:
        out += ["| parameter | value |", "| --- | --- |"]
        out += [f"| {k} | {v} |" for k, v in card.hyperparameters.items()]
    else:
        out.append("Not recorded.")
    out += ["", "## Evaluation", ""]
    out += [t.to_markdown() for t in card.tables] or ["No evaluation recorded.\n"]
    out += ["## Fairness", ""]
    out += [t.to_markdown() for t in card.fairness_tables] or [
        "No stratified analysis recorded (it needs per-image scores and demographics).\n"
    ]
    out += ["## Limitations and risks", "", RISKS]
    out += [f"- {x}" for x in card.limitations]
    out += [
        "",
        "## Lineage",
        "",
        f"- KFP run: `{card.pipeline_run}`",
        f"- Pipeline parameters digest: `{card.pipeline_params_digest}`",
        f"- Data version: `{card.data_version}`; split digest `{card.split_digest}`",
        f"- Git commit: `{card.git_commit}`",
        f"- Parents: {', '.join(card.parents) or 'none'}",
        f"- Full tree: `cxrflow lineage model {card.name} :{card.version}`",
        "",
        "## How to load",
        "",
        _load_section(card),
    ]
    return "\n".join(out)
