"""MLflow pyfunc wrappers so that registered models load and predict with MLflow alone.

The encoder is stored as a Hugging Face `Dinov2Model` directory (the interchange format) and
run with `transformers`; its pixels are prepared by `cxrflow.models.preprocessing.load_image`,
the function training and feature extraction use, because the directory's
`preprocessor_config.json` cannot scale 16-bit images (see that module).

Input: a pandas DataFrame with one of two string columns, one row an image:

- ``image``: the base64-encoded bytes of an image file (8/16-bit PNG or DICOM), for REST
  serving (``{"dataframe_split": {"columns": ["image"], "data": [["iVBORw0..."]]}}``);
- ``image_path``: a path to such a file that the serving process can read.

Output: float32 (N, hidden_size) CLS embeddings (the final-norm CLS token), in row order.

Why a pyfunc and not the `mlflow.transformers` flavour: that flavour serves a transformers
pipeline (`image-feature-extraction`), whose `transformers.image_utils.load_image` converts every
input to 8-bit RGB. Measured with transformers 5.23: a 16-bit PNG of uniform noise comes out with
99.5% of its pixels at 255, the saturation this module exists to avoid. Users who want the
transformers interface load the registered `Dinov2Model` directory with `AutoModel` and prepare
pixels with `load_image`, as the model card's snippet shows.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

log = logging.getLogger(__name__)

IMAGE_COLUMN = "image"  # base64 file bytes
PATH_COLUMN = "image_path"  # file path readable by the server
BATCH_SIZE = 16  # images per forward pass: bounds memory on large requests


class EncoderPyfunc(mlflow.pyfunc.PythonModel):
    """Input: column `image` (base64 PNG/DICOM bytes) or `image_path`; output: CLS embeddings."""

    def load_context(self, context: Any) -> None:
        from transformers import AutoModel

        from cxrflow.models.preprocessing import read_preprocessing

        path = context.artifacts["encoder"]
        self.model = AutoModel.from_pretrained(path).eval()
        self.prep = read_preprocessing(path)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        import torch

        from cxrflow.models.preprocessing import load_image

        sources = image_sources(model_input)
        out = []
        with torch.no_grad():
            for start in range(0, len(sources), BATCH_SIZE):
                pixels = torch.stack(
                    [load_image(s, self.prep) for s in sources[start : start + BATCH_SIZE]]
                )
                out.append(self.model(pixel_values=pixels).last_hidden_state[:, 0].numpy())
        hidden = int(self.model.config.hidden_size)
        return np.concatenate(out) if out else np.zeros((0, hidden), dtype=np.float32)


def image_sources(frame: pd.DataFrame) -> list[bytes | Path]:
    """Per row, the image file's bytes (column `image`, base64) or its path (`image_path`)."""
    sources: list[bytes | Path] = []
    for i, row in enumerate(frame.to_dict("records")):
        encoded, path = row.get(IMAGE_COLUMN), row.get(PATH_COLUMN)
        if isinstance(encoded, str) and encoded:
            sources.append(base64.b64decode(encoded, validate=True))
        elif isinstance(encoded, bytes) and encoded:  # a Python caller may pass raw bytes
            sources.append(encoded)
        elif isinstance(path, str) and path:
            sources.append(Path(path))
        else:
            raise ValueError(f"row {i}: give '{IMAGE_COLUMN}' (base64) or '{PATH_COLUMN}'")
    return sources


def encoder_signature(encoder_dir: Path | str) -> ModelSignature:
    """Two optional string columns in; float32 (-1, hidden_size) embeddings out."""
    hidden = int(json.loads((Path(encoder_dir) / "config.json").read_text())["hidden_size"])
    inputs = Schema(
        [
            ColSpec(DataType.string, IMAGE_COLUMN, required=False),
            ColSpec(DataType.string, PATH_COLUMN, required=False),
        ]
    )
    return ModelSignature(inputs, Schema([TensorSpec(np.dtype(np.float32), (-1, hidden))]))


def example_input(side: int = 64) -> pd.DataFrame:
    """One self-contained request: a 16-bit grey ramp PNG, base64-encoded."""
    from PIL import Image

    ramp = np.linspace(0, 65535, side * side).reshape(side, side).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(buf.getvalue()).decode("ascii")]})


def log_encoder_model(encoder_dir: Path | str, name: str = "encoder") -> Any:
    """Log the encoder pyfunc with its signature and input example; returns MLflow's ModelInfo."""
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=EncoderPyfunc(),
        artifacts={"encoder": str(encoder_dir)},
        signature=encoder_signature(encoder_dir),
        input_example=example_input(),
    )
    log.info("logged encoder pyfunc %s", info.model_uri)
    return info
