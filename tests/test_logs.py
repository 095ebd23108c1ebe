"""Logging set-up: what a pipeline log (not a terminal) shows."""

import subprocess
import sys

LOAD_A_MODEL = """
import sys
from cxrflow.logs import setup_logging
if sys.argv[1] == "setup":
    setup_logging()
from transformers import Dinov2Config, Dinov2Model
config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, image_size=28, patch_size=14)
Dinov2Model(config).save_pretrained(sys.argv[2])
Dinov2Model.from_pretrained(sys.argv[2])
"""


def _stderr(tmp_path, mode: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_A_MODEL, mode, str(tmp_path / mode)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return done.stderr


def test_no_weight_loading_bars_in_a_log(tmp_path):
    # Without the set-up, transformers draws its bar into the log (the check is not vacuous).
    assert "Loading weights" in _stderr(tmp_path, "bare")
    assert "Loading weights" not in _stderr(tmp_path, "setup")
