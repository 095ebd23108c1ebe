"""A small phantom shared by the phantom tests (module-scoped: generated once per module)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxrflow.phantom import GROUND_TRUTH_NAME, PhantomSummary, generate_phantom

SMALL = {"subjects": 8, "seed": 7, "min_side": 128, "max_side": 192, "progress": False}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> tuple[PhantomSummary, Path]:
    """A small phantom and its directory."""
    out = tmp_path_factory.mktemp("phantom")
    return generate_phantom(out, **SMALL), out


@pytest.fixture(scope="module")
def gt(phantom):
    """The ground truth as a list of row dicts."""
    _, out = phantom
    return pq.read_table(out / GROUND_TRUTH_NAME).to_pylist()
