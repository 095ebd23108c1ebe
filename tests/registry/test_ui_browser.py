"""The MLflow UI in a real browser: a registered encoder's page shows its lineage and card."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from cxrflow.registry import LineageTags, register_candidate
from tests.registry.ui_checks import missing_on_page, version_page_expectations

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".cxrflow" / "test-artifacts"

# `make test` installs chromium (as root, as in CI); elsewhere without it the test is skipped.
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1100",
        "--virtual-time-budget=20000",
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def server(tmp_path):
    db = tmp_path / "mlflow.db"
    artifacts = tmp_path / "artifacts"
    port = _free_port()
    uri = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            uri,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start on loopback within 60 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_registered_encoder_page_shows_lineage_tags_and_model_card(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    mlflow.set_tracking_uri(server)
    # Another test in this process may have left an active experiment of another store.
    mlflow.set_experiment("ui-browser-test")
    card = tmp_path / "README.md"
    card.write_text("# cxrflow-encoder\n\nIntended use: research on chest X-ray representations.\n")
    with mlflow.start_run() as run:
        mlflow.log_text("encoder weights placeholder for the UI test", "encoder/config.txt")
        mlflow.log_artifact(str(card), "model_card")
    lineage = LineageTags(
        kind="encoder",
        data_version="d" * 32,
        split_digest="5" * 16,
        git_commit="c" * 40,
        pipeline_run="cxrflow-training-ui-test",
        pipeline_params_digest="p" * 16,
        deid_profile="DICOM PS3.15 E.1 Basic Profile",
        deid_options={"clean_descriptors": True},
    )
    mv = register_candidate(
        f"runs:/{run.info.run_id}/encoder",
        "cxrflow-encoder",
        lineage,
        extra_tags={"cxrflow.model_card": f"runs:/{run.info.run_id}/model_card/README.md"},
    )
    expected = version_page_expectations(server, mv)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mlflow-encoder-version.png"
    page = _chromium(["--dump-dom", expected.url], tmp_path / "profile-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    assert not missing_on_page(page.stdout, expected), missing_on_page(page.stdout, expected)
    assert "cxrflow.model_card" in page.stdout
    _chromium([f"--screenshot={shot}", expected.url], tmp_path / "profile-shot")
    assert shot.is_file() and shot.stat().st_size > 10_000
    # The card itself, in the run's artifact viewer.
    artifact_url = (
        f"{server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        "/artifacts/model_card/README.md"
    )
    viewer = _chromium(["--dump-dom", artifact_url], tmp_path / "profile-card")
    assert "Intended use: research on chest X-ray representations." in viewer.stdout
