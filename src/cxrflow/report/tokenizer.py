"""A small BPE tokenizer learnt on reports and a small Llama, for the demo and tests.

Same code path as a 7B Llama-family model: a `PreTrainedTokenizerFast` with bos/eos/pad/unk
and the `<image>` special token, and a `LlamaForCausalLM`; only the sizes differ.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

IMAGE_TOKEN = "<image>"
BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD, IMAGE_TOKEN)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """Byte-level BPE learnt on `texts`, with `<unk>`, `<s>`, `</s>`, `<pad>` and `<image>`."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    # Byte level: every string round-trips exactly, so generated text compares with references.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",  # batched generation continues from the right end
        clean_up_tokenization_spaces=False,
    )


def add_image_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Id of `<image>`, added as a special token when the tokenizer lacks it."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        # Llama-family tokenizers often have none; labels never rely on pad ids (data.py).
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


def small_llama(
    vocab_size: int,
    *,
    hidden_size: int = 256,
    layers: int = 2,
    heads: int = 4,
    max_position_embeddings: int = 2048,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> LlamaForCausalLM:
    """A randomly initialised `LlamaForCausalLM` of the given size."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def small_llama_for(tokenizer: PreTrainedTokenizerBase, **sizes: int) -> LlamaForCausalLM:
    """`small_llama` whose vocabulary and special ids match `tokenizer`."""
    return small_llama(
        len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )
