"""Greedy report generation, batched, optionally from precomputed encoder features."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from cxrflow.models.preprocessing import load_image
from cxrflow.report.data import encode_prompt
from cxrflow.report.model import CxrLlavaForConditionalGeneration

log = logging.getLogger(__name__)


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def load_pixels(model: CxrLlavaForConditionalGeneration, paths: Sequence[Path]) -> torch.Tensor:
    """Encoder inputs (B, 3, S, S) of image files, with the model's preprocessing."""
    return torch.stack([load_image(p, model.image_preprocessing) for p in paths])


@torch.no_grad()
def encode_images(
    model: CxrLlavaForConditionalGeneration, pixel_values: torch.Tensor, batch_size: int = 16
) -> torch.Tensor:
    """Frozen-encoder image features (B, N, D) as the model selects them, computed once."""
    device = model.device
    chunks = [
        model.model.vision_features(pixel_values[s].to(device)).cpu()
        for s in _batches(len(pixel_values), batch_size)
    ]
    return torch.cat(chunks)


@torch.no_grad()
def _embeds(
    model: CxrLlavaForConditionalGeneration, input_ids: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """Prompt embeddings with the projected image features at the `<image>` positions."""
    embeds = model.get_input_embeddings()(input_ids)
    projected = model.model.multi_modal_projector(features.to(embeds.device, embeds.dtype))
    mask = (input_ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(mask, projected.to(embeds.dtype))


@torch.no_grad()
def generate_reports(
    model: CxrLlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    *,
    pixel_values: torch.Tensor | None = None,
    image_features: torch.Tensor | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 150,
    stop_at_eos: bool = True,
) -> list[str]:
    """Greedy Findings text for each image, from pixels or from `encode_images` features.

    Every sample has the same prompt, so batches need no padding and batched greedy decoding
    gives the paper's batch-size-1 result (up to floating-point reduction order). Both ways
    run the tower once per batch (transformers encodes `pixel_values` before the prefill and
    drops them afterwards) and decode with the KV cache; precomputed features skip the tower.
    `stop_at_eos=False` always generates `max_new_tokens` (fixed-length timing).
    """
    if (pixel_values is None) == (image_features is None):
        raise ValueError("give exactly one of pixel_values and image_features")
    model.eval()
    device = model.device
    n = len(pixel_values if pixel_values is not None else image_features)
    prompt = torch.tensor(encode_prompt(tokenizer, model.image_seq_length), dtype=torch.long)
    settings = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "eos_token_id": tokenizer.eos_token_id if stop_at_eos else None,
        "pad_token_id": tokenizer.pad_token_id,
    }
    texts: list[str] = []
    for s in _batches(n, batch_size):
        ids = prompt.expand(s.stop - s.start, -1).to(device)
        mask = torch.ones_like(ids)
        if image_features is not None:
            embeds = _embeds(model, ids, image_features[s])
            # With inputs_embeds only, generate returns just the new tokens.
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, **settings)
        else:
            pixels = pixel_values[s].to(device, next(model.parameters()).dtype)
            out = model.generate(
                input_ids=ids, attention_mask=mask, pixel_values=pixels, **settings
            )
            out = out[:, ids.shape[1] :]
        texts += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    return texts
