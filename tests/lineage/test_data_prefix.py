"""A data version given by a prefix: resolved against what MLflow knows, never guessed."""

import pytest
from typer.testing import CliRunner

from cxrflow.cli import app
from cxrflow.lineage.data import known_data_versions, resolve_data_version
from tests.registry.helpers import stage

A = "abcdef012345" + "0" * 20
B = "abcdef012345" + "1" * 20
C = "0123456789ab" + "c" * 20


@pytest.fixture
def versions(tracking):
    """Three data versions tagged on stage runs, two of them sharing a 12-digit prefix."""
    for run, md5 in (("p1", A), ("p2", B), ("p3", f"{C}.dir")):
        stage("data_version", run, tags={"cxrflow.data_version": md5})
    stage("ingest", "p4")  # untagged runs are ignored
    return tracking


def test_known_versions_come_from_run_tags_and_are_normalised(versions):
    assert known_data_versions(versions, "abcdef012345") == [A, B]
    assert known_data_versions(versions, "0123456789ab") == [C]


def test_a_unique_prefix_resolves_and_a_full_md5_is_taken_as_is(versions):
    assert resolve_data_version("0123456789AB", client=versions) == C
    assert resolve_data_version(A[:13], client=versions) == A
    assert resolve_data_version("9" * 32, client=versions) == "9" * 32  # nothing trained on it


def test_an_ambiguous_prefix_lists_the_candidates(versions):
    with pytest.raises(ValueError, match=f"ambiguous.*{A}, {B}"):
        resolve_data_version("abcdef012345", client=versions)
    result = CliRunner(env={"COLUMNS": "40"}).invoke(app, ["lineage", "data", "abcdef012345"])
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert A in line and B in line


@pytest.mark.parametrize("given", ["", "abcdef01234", "abcdef01234g", "abc def 012345", "'; --"])
def test_malformed_versions_are_refused_before_mlflow_is_asked(given):
    with pytest.raises(ValueError, match="not a data version"):
        resolve_data_version(given, client=object())  # asking it would fail differently
