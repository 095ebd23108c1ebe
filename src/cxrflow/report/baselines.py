"""Non-learnt baselines: the most frequent training report, and the nearest training image's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from cxrflow.report.data import findings_text

Pooling = Literal["mean", "cls"]


def most_frequent_report(train_reports: Sequence[str]) -> str:
    """The most frequent Findings text of the training set (ties: first seen)."""
    texts = [findings_text(r) for r in train_reports]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("no training report with a Findings text")
    return Counter(texts).most_common(1)[0][0]


def pool_tokens(tokens: torch.Tensor, pooling: Pooling, num_prefix_tokens: int) -> torch.Tensor:
    """(B, D) image embeddings from all final tokens (B, T, D): CLS, or mean of patches."""
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return tokens[:, num_prefix_tokens:].mean(dim=1)
    raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")


def nearest_neighbour_reports(
    query: torch.Tensor, train: torch.Tensor, train_reports: Sequence[str]
) -> list[str]:
    """Report of the training image with the highest cosine similarity to each query."""
    if len(train) != len(train_reports):
        raise ValueError("one training embedding per training report")
    sims = F.normalize(query.float(), dim=-1) @ F.normalize(train.float(), dim=-1).T
    best = sims.argmax(dim=1).tolist()
    return [findings_text(train_reports[i]) for i in best]
