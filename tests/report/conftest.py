from pathlib import Path

import pytest

from tests.report.helpers import make_encoder


@pytest.fixture(scope="session")
def encoder(tmp_path_factory):
    """(directory, DinoViT) of a random vit_tiny at 56 px: 16 patch tokens."""
    return make_encoder(Path(tmp_path_factory.mktemp("encoder")) / "enc")


@pytest.fixture(scope="session")
def encoder_dir(encoder) -> Path:
    return encoder[0]
