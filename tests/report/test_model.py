"""LLaVA assembly: image tokens, feature selection, frozen encoder, save/load, generation."""

import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from cxrflow.report.data import ReportCollator, encode_prompt, encode_sample
from cxrflow.report.generate import encode_images, generate_reports
from cxrflow.report.model import (
    MODEL_TYPE,
    CxrLlavaForConditionalGeneration,
    load_report_model,
    save_report_model,
)
from cxrflow.report.tokenizer import IMAGE_TOKEN
from tests.report.helpers import REPORTS, tiny_model


def _batch(tokenizer, n_patches, pixels):
    samples = [encode_sample(tokenizer, r, n_patches, 512) for r in REPORTS[: len(pixels)]]
    items = [
        {
            "input_ids": torch.tensor(s.input_ids),
            "labels": torch.tensor(s.labels),
            "pixel_values": p,
        }
        for s, p in zip(samples, pixels, strict=True)
    ]
    return ReportCollator(tokenizer.pad_token_id)(items)


def test_image_tokens_match_the_encoder_patch_count(encoder_dir):
    model, tokenizer = tiny_model(encoder_dir)
    assert model.config.model_type == MODEL_TYPE
    assert model.image_seq_length == 16  # (56 / 14) ** 2, CLS excluded
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert model.config.image_token_id == image_id
    assert encode_prompt(tokenizer, model.image_seq_length).count(image_id) == 16


def test_vision_features_are_the_final_layer_normed_patch_tokens(encoder):
    encoder_dir, vit = encoder
    model, tokenizer = tiny_model(encoder_dir)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        want = vit.forward_features(x)["x_norm_patchtokens"]
        out = model.model.get_image_features(pixel_values=x)
        torch.testing.assert_close(out.last_hidden_state, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            torch.stack(out.pooler_output), model.model.multi_modal_projector(want)
        )
        # What plain LLaVA would take (hidden_states[-1]) is the pre-norm output: not this.
        pre_norm = model.model.vision_tower(x, output_hidden_states=True).hidden_states[-1]
        assert not torch.allclose(pre_norm[:, 1:], want, atol=1e-3)

        # Through the full forward: the LM receives the projected features at <image> positions.
        seen = {}
        hook = model.model.language_model.register_forward_pre_hook(
            lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True
        )
        batch = _batch(tokenizer, 16, x)
        model(**batch)
        hook.remove()
    image = batch["input_ids"] == model.config.image_token_id
    torch.testing.assert_close(
        seen["inputs_embeds"][image].view(2, 16, -1), model.model.multi_modal_projector(want)
    )


def test_encoder_is_frozen_and_projector_and_lm_learn(encoder_dir):
    model, tokenizer = tiny_model(encoder_dir)
    tower = {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}
    proj = model.model.multi_modal_projector.linear_1.weight.clone()
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    model.train()
    assert not model.model.vision_tower.training  # frozen tower stays in eval mode
    batch = _batch(tokenizer, 16, torch.randn(2, 3, 56, 56))
    losses = []
    for _ in range(5):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for k, v in model.model.vision_tower.state_dict().items():
        assert torch.equal(v, tower[k]), k
    assert not torch.equal(model.model.multi_modal_projector.linear_1.weight, proj)


def test_save_load_round_trip_and_precomputed_features_generate_the_same_text(
    encoder_dir, tmp_path
):
    model, tokenizer = tiny_model(encoder_dir, seed=1)
    pixels = torch.randn(3, 3, 56, 56)
    direct = generate_reports(model, tokenizer, pixel_values=pixels, max_new_tokens=12)
    features = encode_images(model, pixels)
    assert features.shape == (3, 16, 192)
    cached = generate_reports(
        model, tokenizer, image_features=features, batch_size=2, max_new_tokens=12
    )
    assert cached == direct and any(direct)

    save_report_model(model, tokenizer, tmp_path / "saved")
    loaded, loaded_tokenizer = load_report_model(tmp_path / "saved")
    assert isinstance(loaded, CxrLlavaForConditionalGeneration)
    assert (
        generate_reports(loaded, loaded_tokenizer, pixel_values=pixels, max_new_tokens=12) == direct
    )
    # The Auto classes resolve the custom model type, never a plain LLaVA with pre-norm features.
    assert AutoConfig.from_pretrained(tmp_path / "saved").model_type == MODEL_TYPE
    auto = AutoModelForImageTextToText.from_pretrained(tmp_path / "saved")
    assert isinstance(auto, CxrLlavaForConditionalGeneration)


def test_generation_runs_the_tower_once_per_batch_and_decodes_with_the_kv_cache(encoder_dir):
    model, tokenizer = tiny_model(encoder_dir, seed=2)
    pixels = torch.randn(5, 3, 56, 56)
    features = encode_images(model, pixels)
    tower_calls, lm_lengths = [], []
    model.model.vision_tower.register_forward_hook(lambda *a: tower_calls.append(1))
    model.model.language_model.register_forward_hook(
        lambda m, args, kwargs, out: lm_lengths.append(kwargs["inputs_embeds"].shape[:2]),
        with_kwargs=True,
    )
    prompt = len(encode_prompt(tokenizer, model.image_seq_length))
    texts = generate_reports(
        model, tokenizer, pixel_values=pixels, batch_size=3, max_new_tokens=6, stop_at_eos=False
    )
    # Two batches (3 + 2): one tower call and one prefill each, then one token per step.
    assert len(tower_calls) == 2 and len(texts) == 5
    assert lm_lengths == [(3, prompt)] + [(3, 1)] * 5 + [(2, prompt)] + [(2, 1)] * 5
    tower_calls.clear(), lm_lengths.clear()
    cached = generate_reports(
        model, tokenizer, image_features=features, batch_size=3, max_new_tokens=6, stop_at_eos=False
    )
    assert not tower_calls and len(lm_lengths) == 12 and cached == texts
