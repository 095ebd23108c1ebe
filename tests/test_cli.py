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


# --- issue 16: plain JSON, errors on stderr, inputs checked before anything is created --------
import json  # noqa: E402

import pytest  # noqa: E402

from cxrflow import __version__  # noqa: E402

# A 40-column terminal: rich would wrap long strings (paths) and so break the JSON.
narrow = CliRunner(env={"COLUMNS": "40"})
LONG = "a-directory-name-long-enough-for-rich-to-wrap-it-at-forty-columns"


def test_version_option_and_command_print_the_package_version():
    for args in (["--version"], ["version"], ["--version", "lineage"]):
        result = narrow.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"{__version__}\n"


def test_phantom_prints_plain_json_on_a_narrow_terminal(tmp_path):
    out = tmp_path / LONG
    args = ["phantom", "--out", str(out), "--subjects", "2", "--min-side", "64"]
    result = narrow.invoke(app, [*args, "--max-side", "64", "--no-faulty"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["out_dir"] == str(out) and doc["n_subjects"] == 2


def test_ingest_json_and_locate_lines_survive_a_narrow_terminal(tmp_path):
    key = tmp_path / "k"
    key.write_bytes(bytes(range(65, 105)))
    inbox = tmp_path / LONG
    write(make_dataset(), inbox / "IM1")
    (inbox / "bad").write_bytes(b"nope")
    out = tmp_path / "out"
    args = ["ingest", "--input", str(inbox), "--output", str(out), "--key-file", str(key)]
    result = narrow.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["quarantined"] == 1
    import pandas as pd

    fk = pd.read_parquet(out / "quarantine.parquet")["file_key"].iloc[0]
    result = narrow.invoke(app, [*args, "--locate", fk])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{fk}\t{inbox / 'bad'}"]


MISSING_INPUTS = {
    "ingest --input": ["ingest", "--input", "{missing}", "--output", "{out}"],
    "split --data-dir": ["split", "--data-dir", "{missing}"],
    "pretrain --data-dir": ["pretrain", "--data-dir", "{missing}", "--out-dir", "{out}"],
    "heads --data-dir": [
        *("heads", "--data-dir", "{missing}", "--encoder-dir", "{present}", "--out-dir", "{out}"),
    ],
    "heads --encoder-dir": [
        *("heads", "--data-dir", "{present}", "--encoder-dir", "{missing}", "--out-dir", "{out}"),
    ],
    "report --encoder-dir": [
        *("report", "--data-dir", "{present}", "--encoder-dir", "{missing}", "--out-dir", "{out}"),
    ],
    "report --lm-dir": [
        *("report", "--data-dir", "{present}", "--encoder-dir", "{present}", "--out-dir", "{out}"),
        *("--lm-dir", "{missing}"),
    ],
    "run --inbox": ["run", "--local", "--inbox", "{missing}", "--data-dir", "{out}"],
    "watch --inbox": ["watch", "--local", "--once", "--inbox", "{missing}", "--data-dir", "{out}"],
}


@pytest.mark.parametrize("case", sorted(MISSING_INPUTS))
def test_a_missing_input_is_a_usage_error_and_creates_nothing(case, tmp_path):
    present = tmp_path / "present"
    present.mkdir()
    paths = {"missing": tmp_path / "missing", "present": present, "out": tmp_path / "out"}
    args = [a.format(**paths) for a in MISSING_INPUTS[case]]
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, args)
    assert result.exit_code == 2, result.output
    option = case.split()[1]
    assert f"'{option}'" in result.stderr and "does not exist" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["present"]


def test_a_user_error_is_one_line_on_stderr_with_exit_1(tmp_path, tracking):
    empty = tmp_path / LONG
    empty.mkdir()
    result = narrow.invoke(app, ["split", "--data-dir", str(empty)])
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and str(empty) in line
    assert "Traceback" not in result.stderr


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    from cxrflow.stages import split as split_stage

    def broken(params):
        raise RuntimeError("a bug")

    monkeypatch.setattr(split_stage, "run", broken)
    result = narrow.invoke(app, ["split", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
