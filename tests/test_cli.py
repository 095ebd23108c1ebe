from typer.testing import CliRunner

from cxrflow.cli import app
from tests.factory import make_dataset, write

runner = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"})


def test_ingest_without_a_key_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv("CXRFLOW_DEID_KEY", raising=False)
    monkeypatch.delenv("CXRFLOW_DEID_KEY_FILE", raising=False)
    (tmp_path / "in").mkdir()
    result = runner.invoke(
        app, ["ingest", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    )
    assert result.exit_code != 0
    assert "no de-identification key" in result.output
    assert not (tmp_path / "out").exists()


def test_short_key_and_bad_parameters_are_refused(tmp_path):
    (tmp_path / "in").mkdir()
    short = tmp_path / "short.key"
    short.write_bytes(b"too short\n")
    args = [
        "ingest",
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "o"),
        "--key-file",
        str(short),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "at least 32 bytes" in result.output
    good = tmp_path / "good.key"
    good.write_bytes(bytes(range(65, 97)) + b"\n")
    args[-1] = str(good)
    result = runner.invoke(app, [*args, "--png-bits", "12"])
    assert result.exit_code != 0 and "--png-bits" in result.output


def test_ingest_and_locate_round_trip(tmp_path):
    key = tmp_path / "k"
    key.write_bytes(bytes(range(65, 105)))
    write(make_dataset(), tmp_path / "in" / "deep" / "IM1")
    (tmp_path / "in" / "bad").write_bytes(b"nope")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["ingest", "--input", str(tmp_path / "in"), "--output", str(out), "--key-file", str(key)],
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    fk = pd.read_parquet(out / "quarantine.parquet")["file_key"].iloc[0]
    result = runner.invoke(
        app,
        [
            "ingest",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(out),
            "--key-file",
            str(key),
            "--locate",
            fk,
        ],
    )
    assert result.exit_code == 0 and str(tmp_path / "in" / "bad") in result.output


def test_submit_refuses_unknown_parameters_and_names_an_unreachable_host():
    result = runner.invoke(app, ["submit", "--host", "http://127.0.0.1:9", "-p", "nonsense=1"])
    assert result.exit_code != 0 and "nonsense" in result.output
    args = ["submit", "--host", "http://127.0.0.1:9", "-p", "inbox=/in", "-p", "data_dir=/d"]
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "http://127.0.0.1:9" in result.output
