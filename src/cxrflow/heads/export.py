"""Trained heads as self-contained files: a `torch.export` program plus a JSON card.

Each head directory holds `head.pt2` (`torch.export.save`; TorchScript is deprecated in this
torch), `head.json` (what the outputs mean, what input the head takes, which encoder made that
input) and `weights.safetensors` (the raw weights). Loading needs only torch, no cxrflow::

    import json, torch
    meta = json.load(open("head/head.json"))
    head = torch.export.load("head/head.pt2").module()
    probs = head(inputs)          # names of the output channels: meta["names"]

Inputs (fp32, batch first; `meta["input"]` says which):
- `features` (B, F): the encoder's final-norm CLS token, the mean of its final-norm patch
  tokens, or both concatenated ("cls+mean_patch", CLS first);
- `maps` (B, L, D, h, w): final-norm patch tokens of the blocks `meta["layers"]` reshaped to
  the patch grid. With transformers: `out = Dinov2Model(...)(pixels, output_hidden_states=True)`,
  block i is `model.layernorm(out.hidden_states[i + 1])[:, 1 + registers:]`.
Pixels are prepared as `meta["preprocessing"]` says (grey [0, 1] -> fit -> (x - mean) / std,
three channels). Outputs: sigmoid probabilities (findings; structures at the image size), or
softmax class probabilities (demographics).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.pipeline import Pipeline
from torch import nn

PROGRAM_FILE = "head.pt2"
CARD_FILE = "head.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1


class Sigmoid(nn.Module):
    """A logits head with sigmoid outputs."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(x))


class SoftmaxLinear(nn.Module):
    """Standardise, then a linear layer and softmax: a fitted logistic-regression pipeline."""

    def __init__(
        self, mean: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear((x - self.mean) / self.scale), dim=1)


def logistic_module(pipeline: Pipeline) -> nn.Module:
    """A `SoftmaxLinear` equal to a fitted StandardScaler + LogisticRegression pipeline."""
    scaler, lr = pipeline.steps[0][1], pipeline.steps[-1][1]
    w = torch.tensor(lr.coef_, dtype=torch.float32)
    b = torch.tensor(lr.intercept_, dtype=torch.float32)
    if w.shape[0] == 1:  # binary: sklearn keeps one row for class 1; softmax([0, z]) = sigmoid
        w, b = torch.cat([torch.zeros_like(w), w]), torch.cat([torch.zeros_like(b), b])
    mean = torch.tensor(scaler.mean_, dtype=torch.float32)
    scale = torch.tensor(scaler.scale_, dtype=torch.float32)
    return SoftmaxLinear(mean, scale, w, b).eval()


@dataclass(frozen=True)
class HeadCard:
    """What a head predicts, from what input, made by which encoder."""

    kind: str  # classification | segmentation-linear | segmentation-upernet | demographics-*
    names: list[str]  # output channel names
    input: str  # "features" | "maps"
    input_shape: list[int]  # without the batch dimension
    encoder_digest: str
    encoder_version: str = ""
    data_version: str = ""
    feature_kind: str = ""  # for input "features"
    layers: list[int] = field(default_factory=list)  # for input "maps"
    preprocessing: dict[str, Any] = field(default_factory=dict)
    output: str = "sigmoid"  # or "softmax"
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


def export_head(module: nn.Module, card: HeadCard, out_dir: Path) -> Path:
    """Write `head.pt2`, `head.json`, `weights.safetensors`; the batch size stays dynamic."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    module = module.eval().cpu()
    example = torch.zeros(2, *card.input_shape)
    program = torch.export.export(
        module, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},)
    )
    torch.export.save(program, out_dir / PROGRAM_FILE)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    (out_dir / CARD_FILE).write_text(json.dumps(asdict(card), indent=2, default=_json))
    return out_dir


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def load_head(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The exported program as a module and its card (what the module docstring shows)."""
    path = Path(path)
    meta = json.loads((path / CARD_FILE).read_text())
    return torch.export.load(path / PROGRAM_FILE).module(), meta
