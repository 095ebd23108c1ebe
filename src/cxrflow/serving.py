"""MLflow pyfunc wrappers so that registered models load and predict with MLflow alone.

The encoder is stored as a Hugging Face `Dinov2Model` directory (the interchange format);
this wrapper loads it with `transformers` (no cxrflow training code) and returns embeddings.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


class EncoderPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a column `image_path` of grayscale images; output: CLS embeddings."""

    def load_context(self, context: Any) -> None:
        from transformers import AutoImageProcessor, AutoModel

        path = context.artifacts["encoder"]
        self.model = AutoModel.from_pretrained(path).eval()
        self.processor = AutoImageProcessor.from_pretrained(path)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        import torch
        from PIL import Image

        images = [Image.open(p).convert("RGB") for p in model_input["image_path"]]
        with torch.no_grad():
            batch = self.processor(images=images, return_tensors="pt")
            return self.model(**batch).last_hidden_state[:, 0].numpy()
