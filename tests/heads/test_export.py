"""Exported heads load with torch alone (no cxrflow) and reproduce the predictions."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrflow.heads.classification import LinearProbe
from cxrflow.heads.export import HeadCard, Sigmoid, export_head, load_head, logistic_module
from cxrflow.heads.features import default_layers, encode_batch
from cxrflow.heads.segmentation import UPerNetHead
from cxrflow.models import load_encoder

# Runs in a fresh interpreter where importing cxrflow fails: only torch and transformers.
STANDALONE = textwrap.dedent(
    """
    import json, sys
    sys.modules["cxrflow"] = None  # any import of cxrflow now raises ImportError
    import numpy as np, torch
    from transformers import Dinov2Model

    encoder_dir, cls_dir, seg_dir, pixels_path, out_path = sys.argv[1:]
    pixels = torch.from_numpy(np.load(pixels_path))
    model = Dinov2Model.from_pretrained(encoder_dir).eval()
    out = {}
    with torch.no_grad():
        hf = model(pixels, output_hidden_states=True)
        # classification head: CLS + mean patch of the final-norm tokens
        meta = json.load(open(cls_dir + "/head.json"))
        tokens = hf.last_hidden_state
        feats = torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=1)
        head = torch.export.load(cls_dir + "/head.pt2").module()
        out["cls"] = head(feats).tolist()
        # segmentation head: final-norm patch tokens of the card's blocks, on the patch grid
        meta = json.load(open(seg_dir + "/head.json"))
        n, d, h, w = len(pixels), *meta["input_shape"][1:]
        maps = [
            model.layernorm(hf.hidden_states[i + 1])[:, 1:].reshape(n, h, w, d).permute(0, 3, 1, 2)
            for i in meta["layers"]
        ]
        head = torch.export.load(seg_dir + "/head.pt2").module()
        out["seg"] = head(torch.stack(maps, 1)).tolist()
        out["names"] = meta["names"]
    json.dump(out, open(out_path, "w"))
    """
)


def _randomise_batchnorm(module: torch.nn.Module) -> None:
    """Non-trivial running statistics, so that eval-mode export is really tested."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(1 + 0.5 * torch.rand(m.num_features, generator=gen))


def test_export_runs_without_cxrflow_and_reproduces_predictions(encoder_dir, tmp_path):
    encoder, prep = load_encoder(encoder_dir)
    layers = default_layers(encoder.n_blocks)
    torch.manual_seed(0)
    pixels = torch.randn(3, 3, prep.image_size, prep.image_size)
    with torch.no_grad():
        feats = encode_batch(encoder, pixels, layers)
    probe = LinearProbe(2 * 192, 4)
    seg = UPerNetHead(192, 2, prep.image_size, channels=16)
    _randomise_batchnorm(seg)
    seg.eval()
    with torch.no_grad():
        want_cls = torch.sigmoid(probe(torch.cat([feats["cls"], feats["mean_patch"]], 1)))
        want_seg = torch.sigmoid(seg(feats["layers"]))
    cls_dir = export_head(
        Sigmoid(probe),
        HeadCard("classification", list("abcd"), "features", [384], "digest", "enc-v1"),
        tmp_path / "cls",
    )
    seg_dir = export_head(
        Sigmoid(seg),
        HeadCard(
            "segmentation-upernet",
            ["left_lung", "right_lung"],
            "maps",
            [4, 192, 8, 8],
            "digest",
            layers=list(layers),
        ),
        tmp_path / "seg",
    )
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    script = tmp_path / "standalone.py"
    script.write_text(STANDALONE)
    args = [encoder_dir, cls_dir, seg_dir, tmp_path / "pixels.npy", tmp_path / "out.json"]
    subprocess.run([sys.executable, str(script), *map(str, args)], check=True, cwd=tmp_path)
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["names"] == ["left_lung", "right_lung"]
    np.testing.assert_allclose(got["cls"], want_cls.numpy(), atol=1e-4)
    np.testing.assert_allclose(got["seg"], want_seg.numpy(), atol=1e-4)
    # and in-process, through the documented loader
    module, meta = load_head(seg_dir)
    assert meta["layers"] == list(layers) and meta["encoder_digest"] == "digest"
    np.testing.assert_allclose(module(feats["layers"]).detach(), want_seg, atol=1e-5)


def test_logistic_export_equals_sklearn(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32) * 3 + 1
    for n_classes in (2, 4):
        y = rng.integers(0, n_classes, size=60)
        model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
        path = export_head(
            logistic_module(model),
            HeadCard("demographics-x", [str(c) for c in model.classes_], "features", [5], "d"),
            tmp_path / str(n_classes),
        )
        module, _ = load_head(path)
        got = module(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, model.predict_proba(x), atol=1e-5)
