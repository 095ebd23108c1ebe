"""Prompt template, label masking, image preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image

from cxrflow.models import EncoderPreprocessing
from cxrflow.models.preprocessing import load_image
from cxrflow.report.data import (
    IGNORE_INDEX,
    PROMPT,
    ReportCollator,
    encode_prompt,
    encode_sample,
    findings_text,
    prompt_text,
)
from cxrflow.report.tokenizer import IMAGE_TOKEN, train_bpe_tokenizer
from tests.report.helpers import REPORTS

N_PATCHES = 16


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer([findings_text(r) for r in REPORTS], vocab_size=300)


def test_prompt_is_the_vicuna_v1_template_with_the_paper_prompt():
    text = prompt_text()
    assert text.endswith(f" USER: {IMAGE_TOKEN}\n{PROMPT} ASSISTANT:")
    assert PROMPT == "Provide a description of the findings in the radiology image."
    assert findings_text("FINDINGS:  Small  effusion. ") == "Small effusion."


def test_prompt_and_image_positions_are_masked_and_answer_plus_eos_supervised(tokenizer):
    report = "FINDINGS: Small left pleural effusion. No pneumothorax."
    sample = encode_sample(tokenizer, report, N_PATCHES, max_length=512)
    prompt = encode_prompt(tokenizer, N_PATCHES)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert sample.input_ids[: len(prompt)] == prompt
    assert prompt[0] == tokenizer.bos_token_id
    assert sample.input_ids.count(image_id) == N_PATCHES  # <image> expanded once per patch
    assert all(label == IGNORE_INDEX for label in sample.labels[: len(prompt)])
    answer = sample.labels[len(prompt) :]
    assert answer == sample.input_ids[len(prompt) :] and IGNORE_INDEX not in answer
    assert answer[-1] == tokenizer.eos_token_id
    assert sample.supervised == len(answer) >= 2
    assert tokenizer.decode(answer, skip_special_tokens=True) == " " + findings_text(report)


def test_truncation_keeps_the_sample_and_no_room_raises(tokenizer):
    prompt_len = len(encode_prompt(tokenizer, N_PATCHES))
    sample = encode_sample(tokenizer, REPORTS[1], N_PATCHES, max_length=prompt_len + 2)
    assert sample.truncated and sample.supervised == 2
    with pytest.raises(ValueError, match="no supervised token"):
        encode_sample(tokenizer, REPORTS[1], N_PATCHES, max_length=prompt_len)
    with pytest.raises(ValueError, match="empty Findings"):
        encode_sample(tokenizer, "FINDINGS: ", N_PATCHES, max_length=512)


def test_collator_pads_labels_with_ignore_even_when_pad_equals_eos(tokenizer):
    # SmolLM2-style tokenizers have pad == eos: the answer's end token must stay supervised.
    long = encode_sample(tokenizer, REPORTS[1], N_PATCHES, 512)
    short = encode_sample(tokenizer, REPORTS[0], N_PATCHES, 512)
    eos = tokenizer.eos_token_id
    batch = ReportCollator(pad_token_id=eos)(
        [
            {
                "input_ids": torch.tensor(s.input_ids),
                "labels": torch.tensor(s.labels),
                "pixel_values": torch.zeros(3, 56, 56),
            }
            for s in (long, short)
        ]
    )
    n = len(short.input_ids)
    assert batch["labels"][1, n - 1] == eos  # supervised end token
    assert (batch["labels"][1, n:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][1, n:] == 0).all() and batch["attention_mask"][0].all()


def test_images_use_the_encoder_mean_and_std_on_the_16_bit_range(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.full((40, 60), 32768, dtype=np.uint16)).save(path)
    prep = EncoderPreprocessing(mean=0.3, std=0.2, image_size=28)
    x = load_image(path, prep)
    assert x.shape == (3, 28, 28)
    torch.testing.assert_close(x, torch.full_like(x, (32768 / 65535 - 0.3) / 0.2))
