"""Prompt template, tokenisation with label masking, images, and the training dataset.

Template (LLaVA-1.5 vicuna_v1): ``{system} USER: <image>\\n{prompt} ASSISTANT: {answer}</s>``
with the paper's prompt. Prompt and answer are tokenised separately and concatenated, so
the supervised span is exactly the answer and the end token (upstream LLaVA re-tokenises the
joined text and silently masks a whole sample on a mismatch). `<image>` is expanded to one
token per encoder patch, which is what LLaVA's forward expects.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from cxrflow.dataset import Dataset as DatasetDir  # torch's Dataset is used here too
from cxrflow.models.preprocessing import EncoderPreprocessing, load_image
from cxrflow.report.tokenizer import IMAGE_TOKEN

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
PROMPT = "Provide a description of the findings in the radiology image."
FRONTAL_VIEWS = ("PA", "AP")
_HEADER = re.compile(r"^\s*findings\s*:\s*", re.IGNORECASE)


def prompt_text(system: str = SYSTEM, prompt: str = PROMPT) -> str:
    """The vicuna_v1 prompt up to and including "ASSISTANT:"."""
    return f"{system} USER: {IMAGE_TOKEN}\n{prompt} ASSISTANT:"


def findings_text(report: str) -> str:
    """The Findings section text: the "FINDINGS:" header removed, whitespace normalised."""
    return " ".join(_HEADER.sub("", report or "").split())


@dataclass(frozen=True)
class EncodedSample:
    """Token ids and labels of one training sample (-100 where not supervised)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def supervised(self) -> int:
        """Number of supervised tokens."""
        return sum(label != IGNORE_INDEX for label in self.labels)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, image_seq_length: int) -> list[int]:
    """Prompt ids (bos first when the tokenizer has one) with `<image>` expanded per patch."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = tokenizer(prompt_text(), add_special_tokens=False)["input_ids"]
    if ids.count(image_id) != 1:
        raise ValueError(f"the prompt must tokenise to exactly one {IMAGE_TOKEN} token: {ids}")
    at = ids.index(image_id)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + ids[:at] + [image_id] * image_seq_length + ids[at + 1 :]


def encode_sample(
    tokenizer: PreTrainedTokenizerBase,
    report: str,
    image_seq_length: int,
    max_length: int,
    prompt_ids: Sequence[int] | None = None,
) -> EncodedSample:
    """Prompt + " answer" + end token; labels -100 on prompt and image positions.

    An answer too long for `max_length` is truncated (flagged), never dropped; a sample
    that would have no supervised token raises.
    """
    prompt_ids = list(prompt_ids or encode_prompt(tokenizer, image_seq_length))
    answer = findings_text(report)
    if not answer:
        raise ValueError("empty Findings text: such rows must be filtered before encoding")
    # The leading space matches how the text continues after "ASSISTANT:" at inference.
    answer_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    answer_ids = [*answer_ids, tokenizer.eos_token_id]
    room = max_length - len(prompt_ids)
    truncated = len(answer_ids) > room
    answer_ids = answer_ids[: max(room, 0)]
    sample = EncodedSample(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        truncated=truncated,
    )
    if sample.supervised < 1:
        raise ValueError(
            f"no supervised token: prompt of {len(prompt_ids)} tokens leaves no room "
            f"in max_length={max_length}"
        )
    return sample


# ---------------------------------------------------------------- dataset


@dataclass(frozen=True)
class ReportRows:
    """Rows of one split usable for report generation, and why the others were left out."""

    rows: pd.DataFrame
    excluded: dict[str, int]


def read_report_rows(data_dir: Path, split: str, limit: int = 0) -> ReportRows:
    """Frontal images of `split` with a non-empty Findings text (as the paper's MIMIC setup)."""
    manifest = DatasetDir(data_dir).manifest()
    if "split" not in manifest.columns:
        raise ValueError(f"{data_dir}: the manifest has no split column; run the split stage")
    rows = manifest[manifest["split"] == split]
    findings = rows["report"].fillna("").map(findings_text)
    frontal = rows["view"].isin(FRONTAL_VIEWS)
    excluded = {
        "not_frontal": int((~frontal).sum()),
        "no_findings": int((frontal & (findings == "")).sum()),
    }
    keep = rows[frontal & (findings != "")].sort_values("image_id", kind="stable")
    if limit:
        excluded["over_limit"] = max(len(keep) - limit, 0)
        keep = keep.head(limit)
    log.info("%s split: %d images, excluded %s", split, len(keep), excluded)
    return ReportRows(keep.reset_index(drop=True), excluded)


class ReportDataset(Dataset):
    """Image + report samples tokenised up front (so problems surface before training)."""

    def __init__(
        self,
        image_paths: Sequence[Path],
        reports: Sequence[str],
        tokenizer: PreTrainedTokenizerBase,
        prep: EncoderPreprocessing,
        image_seq_length: int,
        max_length: int,
        cache_images: bool = False,
    ) -> None:
        if len(image_paths) != len(reports):
            raise ValueError("image_paths and reports must have the same length")
        self.image_paths = [Path(p) for p in image_paths]
        self.prep = prep
        # Decoding and resizing PNGs dominates small CPU runs; a cache keeps one grey copy.
        self._cache: dict[int, torch.Tensor] | None = {} if cache_images else None
        prompt_ids = encode_prompt(tokenizer, image_seq_length)
        self.samples = [
            encode_sample(tokenizer, r, image_seq_length, max_length, prompt_ids) for r in reports
        ]
        self.truncated = sum(s.truncated for s in self.samples)
        if self.truncated:
            log.warning("%d of %d answers truncated to max_length", self.truncated, len(reports))

    @classmethod
    def from_rows(
        cls,
        data_dir: Path,
        rows: pd.DataFrame,
        tokenizer: PreTrainedTokenizerBase,
        prep: EncoderPreprocessing,
        image_seq_length: int,
        max_length: int,
        cache_images: bool = False,
    ) -> ReportDataset:
        """Dataset of manifest rows (paths relative to `data_dir`)."""
        paths = [Path(data_dir) / p for p in rows["image_path"]]
        reports = list(rows["report"])
        return cls(paths, reports, tokenizer, prep, image_seq_length, max_length, cache_images)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample = self.samples[i]
        return {
            "input_ids": torch.tensor(sample.input_ids, dtype=torch.long),
            "labels": torch.tensor(sample.labels, dtype=torch.long),
            "pixel_values": self.pixels(i),
        }

    def pixels(self, i: int) -> torch.Tensor:
        """Encoder input of sample `i` (from the cache when enabled)."""
        if self._cache is None:
            return load_image(self.image_paths[i], self.prep)
        if i not in self._cache:
            self._cache[i] = load_image(self.image_paths[i], self.prep)[:1].clone()
        return self._cache[i].expand(3, -1, -1)


@dataclass(frozen=True)
class ReportCollator:
    """Right-pads ids (pad id) and labels (-100); stacks images."""

    pad_token_id: int

    def __call__(self, batch: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[row, :n], labels[row, :n], mask[row, :n] = b["input_ids"], b["labels"], 1
        return {
            "input_ids": ids,
            "labels": labels,
            "attention_mask": mask,
            "pixel_values": torch.stack([b["pixel_values"] for b in batch]),
        }
