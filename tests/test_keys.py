"""Key hygiene: strength, location and permissions of the de-identification key."""

import base64
import os
import warnings
from pathlib import Path

import pytest

from cxrflow.keys import (
    KeyError_,
    check_key_location,
    check_key_strength,
    create_key_file,
    load_key,
)

STRONG = os.urandom(32).hex().encode()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("CXRFLOW_DEID_KEY", "CXRFLOW_DEID_KEY_FILE", "CXRFLOW_STRICT_KEY_PERMISSIONS"):
        monkeypatch.delenv(var, raising=False)


def test_random_keys_always_pass_the_strength_rule():
    for _ in range(3000):
        raw = os.urandom(32)
        for key in (raw, raw.hex().encode(), base64.b64encode(raw)):
            check_key_strength(key)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"\x00" * 32, "block repeated"),
        (b"k" * 40, "block repeated"),
        (b"ab" * 16, "block repeated"),
        (bytes(range(16)) * 2, "block repeated"),
        (b"0123456789abcdef" * 4, "block repeated"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "bits"),
        (b"passwordpassword1passwordpassword", "bits"),
    ],
)
def test_weak_keys_are_refused_naming_the_rule_not_the_bytes(tmp_path, raw, rule):
    with pytest.raises(KeyError_, match=rule) as err:
        check_key_strength(raw)
    assert raw.decode("latin-1") not in str(err.value)
    path = tmp_path / "weak.key"
    path.write_bytes(raw)
    path.chmod(0o600)
    with pytest.raises(KeyError_, match=rule) as err:
        load_key(path)
    assert str(path) in str(err.value)


def test_weak_key_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("CXRFLOW_DEID_KEY", "0" * 32)
    with pytest.raises(KeyError_, match=r"\$CXRFLOW_DEID_KEY is weak"):
        load_key()


def test_key_inside_input_data_or_repository_is_refused(tmp_path):
    inbox, data, repo = tmp_path / "inbox", tmp_path / "data", tmp_path / "repo"
    for d in (inbox, data / "sub", repo / ".cxrflow", repo / "conf"):
        d.mkdir(parents=True)
    for key in (inbox / "k.key", data / "sub" / "k.key"):
        with pytest.raises(KeyError_, match="never inside the input or data") as err:
            check_key_location(key, inbox, data)
        assert str(key) in str(err.value)
    with pytest.raises(KeyError_, match=r"only its git-ignored \.cxrflow/ folder"):
        check_key_location(repo / "conf" / "k.key", inbox, data, repository=repo)
    # Allowed: outside all of them, and the repository's state folder (make demo's key).
    check_key_location(tmp_path / "k.key", inbox, data, repository=repo)
    check_key_location(repo / ".cxrflow" / "demo.key", inbox, data, repository=repo)
    check_key_location(None, inbox, data)  # key from $CXRFLOW_DEID_KEY: no file


def test_key_location_resolves_links_and_reads_the_environment(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "k.key").write_bytes(STRONG)
    link = tmp_path / "outside.key"
    link.symlink_to(data / "k.key")
    with pytest.raises(KeyError_, match="never inside"):
        check_key_location(link, data)
    monkeypatch.setenv("CXRFLOW_DEID_KEY_FILE", str(data / "k.key"))
    with pytest.raises(KeyError_, match="never inside"):
        check_key_location(None, data)


def test_readable_key_warns_by_default_and_is_refused_when_strict(tmp_path, monkeypatch):
    path = tmp_path / "k.key"
    path.write_bytes(STRONG)
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600") as rec:
        load_key(path)
    assert STRONG.decode() not in str(rec[0].message)
    with pytest.raises(KeyError_, match="group or others"):
        load_key(path, strict_permissions=True)
    monkeypatch.setenv("CXRFLOW_STRICT_KEY_PERMISSIONS", "1")
    with pytest.raises(KeyError_, match=str(path)):
        load_key(path)
    path.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_key(path).value == STRONG


def test_created_key_is_strong_and_private(tmp_path: Path):
    path = tmp_path / ".cxrflow" / "demo.key"
    created = create_key_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_key(path, strict_permissions=True) == created
