"""The offline default language model: a small random Llama with a BPE tokenizer of its own."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cxrflow.report.config import ReportConfig
from cxrflow.report.data import findings_text, prompt_text
from cxrflow.report.tokenizer import small_llama_for, train_bpe_tokenizer


def small_lm_for_reports(
    train_reports: list[str], config: ReportConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A random small Llama and a BPE tokenizer learnt on the training Findings texts.

    The prompt is in the tokenizer's corpus too, so that it compresses to few tokens.
    """
    texts = [findings_text(r) for r in train_reports] + [prompt_text()]
    tokenizer = train_bpe_tokenizer(texts, config.vocab_size)
    lm = small_llama_for(
        tokenizer,
        hidden_size=config.lm_hidden_size,
        layers=config.lm_layers,
        heads=config.lm_heads,
        max_position_embeddings=config.max_length,
    )
    return lm, tokenizer
