"""An MLflow pyfunc wrapper: image paths in, generated Findings text out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "model_dir"


class ReportGeneratorModel(mlflow.pyfunc.PythonModel):
    """Loads a saved report generator; `predict` takes a DataFrame with an `image_path` column."""

    def __init__(self, max_new_tokens: int = 150, batch_size: int = 8) -> None:
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def load_context(self, context: Any) -> None:
        from cxrflow.report.model import load_report_model

        self.model, self.tokenizer = load_report_model(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> list[str]:
        from cxrflow.report.generate import generate_reports, load_pixels

        pixels = load_pixels(self.model, [Path(p) for p in model_input["image_path"]])
        return generate_reports(
            self.model,
            self.tokenizer,
            pixel_values=pixels,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
        )
