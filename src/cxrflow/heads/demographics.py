"""Patient demographics from frozen embeddings (Section 3.6, E.3.4, Table 5).

Logistic regression (scikit-learn, default settings) predicts sex and five bins each of age,
weight and BMI (Table E.1 edges); five-fold cross-validation grouped by subject, so no
subject's images are on both sides of a fold; accuracy mean and std over the folds.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrflow.heads.config import DemographicsConfig
from cxrflow.heads.metrics import mean_std

log = logging.getLogger(__name__)

# Table E.1: lower edges of bins 2..5 (bin 1 is below the first edge, bin 5 above the last).
AGE_EDGES: Final = (20.0, 40.0, 60.0, 80.0)  # years
WEIGHT_EDGES: Final = (50.0, 65.0, 80.0, 95.0)  # kg
BMI_EDGES: Final = (18.5, 25.0, 30.0, 35.0)  # kg/m^2
EDGES: Final = {"age": AGE_EDGES, "weight": WEIGHT_EDGES, "bmi": BMI_EDGES}
UNITS: Final = {"age": "years", "weight": "kg", "bmi": "kg/m2"}


def bin_labels(edges: tuple[float, ...]) -> list[str]:
    """Names of the five bins: "<20", "20-40", ..., ">80"."""
    e = [f"{x:g}" for x in edges]
    return [f"<{e[0]}", *(f"{a}-{b}" for a, b in pairwise(e)), f">{e[-1]}"]


def binned(values: pd.Series, edges: tuple[float, ...]) -> pd.Series:
    """Bin index 0..4 (a value on an edge goes to the upper bin); NaN stays NaN."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    out = np.digitize(v, edges).astype(np.float64)
    out[np.isnan(v)] = np.nan
    return pd.Series(out, index=values.index)


def target_values(df: pd.DataFrame, target: str) -> tuple[pd.Series, list[str]] | str:
    """(class index per row, NaN if unknown; class names), or why the target is skipped."""
    if target == "sex":
        if "sex" not in df.columns:
            return "the manifest has no sex column"
        sex = df["sex"].astype("string").str.upper().str.strip()
        codes = sex.map({"F": 0.0, "M": 1.0}).astype("float64")
        return codes, ["F", "M"]
    column = {"age": "age_years", "weight": "weight_kg"}.get(target)
    if target == "bmi":
        needed = ["weight_kg", "height_m"]
        if any(c not in df.columns for c in needed):
            return "BMI needs the weight_kg and height_m columns"
        w = pd.to_numeric(df["weight_kg"], errors="coerce")
        h = pd.to_numeric(df["height_m"], errors="coerce")
        bmi = (w / (h * h)).where(h > 0)
        if bmi.isna().all():
            return "BMI needs weight_kg and height_m, and no image has both"
        return binned(bmi, BMI_EDGES), bin_labels(BMI_EDGES)
    if column not in df.columns or df[column].isna().all():
        return f"the manifest has no {column} values"
    return binned(df[column], EDGES[target]), bin_labels(EDGES[target])


@dataclass(frozen=True)
class DemographicScore:
    """Cross-validated accuracy of one target."""

    target: str
    accuracy: float
    std: float
    images: int
    classes: list[str]
    folds: int
    # What always guessing the commonest class scores: the bar the accuracy must clear.
    majority_rate: float = float("nan")


@dataclass
class DemographicsResult:
    """Scores of the targets that could be evaluated, reasons for the others, fitted models."""

    scores: dict[str, DemographicScore]
    skipped: dict[str, str]
    models: dict[str, Pipeline]


def _model(cfg: DemographicsConfig, seed: int) -> Pipeline:
    # Standardising the features keeps lbfgs' default 100 iterations enough for any encoder.
    return make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=cfg.max_iter, random_state=seed)
    )


def run_demographics(
    features: np.ndarray,
    df: pd.DataFrame,
    cfg: DemographicsConfig,
    *,
    seed: int = 0,
) -> DemographicsResult:
    """Grouped k-fold accuracy per target; then a model per target fitted on all rows."""
    scores: dict[str, DemographicScore] = {}
    skipped: dict[str, str] = {}
    models: dict[str, Pipeline] = {}
    groups_all = df["subject_id"].astype(str).to_numpy()
    for target in cfg.targets:
        got = target_values(df, target)
        if isinstance(got, str):
            skipped[target] = got
            log.warning("demographics: skipping %s: %s", target, got)
            continue
        y_all, classes = got
        known = ~np.isnan(y_all.to_numpy())
        x, y, groups = features[known], y_all.to_numpy()[known].astype(int), groups_all[known]
        reason = _unfit_reason(y, groups, cfg.folds)
        if reason:
            skipped[target] = reason
            log.warning("demographics: skipping %s: %s", target, reason)
            continue
        cv = StratifiedGroupKFold(n_splits=cfg.folds, shuffle=True, random_state=seed)
        accs = []
        with warnings.catch_warnings():
            # small folds may miss a rare bin; the accuracy is still well defined
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            for tr, te in cv.split(x, y, groups):
                model = _model(cfg, seed).fit(x[tr], y[tr])
                accs.append(float((model.predict(x[te]) == y[te]).mean()))
            models[target] = _model(cfg, seed).fit(x, y)
        m, s = mean_std(accs)
        majority = float(np.bincount(y).max() / len(y))
        scores[target] = DemographicScore(
            target, m, s, int(known.sum()), classes, cfg.folds, majority_rate=majority
        )
    return DemographicsResult(scores, skipped, models)


def _unfit_reason(y: np.ndarray, groups: np.ndarray, folds: int) -> str:
    """Why grouped k-fold logistic regression cannot run on these labels, or ""."""
    if len(np.unique(y)) < 2:
        return f"only one class among {len(y)} labelled images"
    n_groups = len(np.unique(groups))
    if n_groups < folds:
        return f"{n_groups} subjects with a value, fewer than the {folds} folds"
    return ""
