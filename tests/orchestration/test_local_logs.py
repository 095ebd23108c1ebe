"""The local run's console stream: task messages kept, KFP's executor chatter kept out."""
# ruff: noqa: E501  (the KFP lines are quoted verbatim)

import io

from cxrflow.orchestration.local_logs import TaskLogFilter

# What kfp.local 2.17 printed for one task of `make demo` (shortened, colours included).
KFP_STREAM = """\
14:18:16.303 - INFO - Executing task \x1b[96m'data-gate'\x1b[0m
14:18:16.303 - INFO - Streamed logs:

    [KFP Executor 2026-12-05 14:18:16,351 INFO]: Looking for component `data_gate` in --component_module_path `/tmp/t/ephemeral_component.py`
    [KFP Executor 2026-12-05 14:18:16,351 INFO]: Loading KFP component "data_gate" from /tmp/t/ephemeral_component.py
    [KFP Executor 2026-12-05 14:18:16,352 INFO]: Got executor_input:
    {
        "inputs": {
            "parameterValues": {
                "force": false
            }
        }
    }
    [KFP Executor 2026-12-05 14:18:21,383 INFO]: data version 4d2bb88e4f6f: changed
    [KFP Executor 2026-12-05 14:18:21,383 INFO]: Wrote executor output file to /tmp/t/executor_output.json.



14:18:22.762 - INFO - Task \x1b[96m'data-gate'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
14:18:22.762 - INFO - Task 'data-gate' outputs:
    Output: True
"""


def test_the_console_gets_the_tasks_messages_and_the_log_file_everything() -> None:
    shown, full = io.StringIO(), io.StringIO()
    stream = TaskLogFilter(shown=shown, full=full)
    # kfp prints in pieces, not whole lines
    for i in range(0, len(KFP_STREAM), 37):
        stream.write(KFP_STREAM[i : i + 37])
    stream.close_pending()

    assert full.getvalue() == KFP_STREAM
    assert shown.getvalue().splitlines() == [
        "14:18:16.303 - INFO - Executing task 'data-gate'",
        "14:18:16.303 - INFO - Streamed logs:",
        "",
        "    14:18:21 INFO data version 4d2bb88e4f6f: changed",
        "",
        "14:18:22.762 - INFO - Task 'data-gate' finished with status SUCCESS",
        "14:18:22.762 - INFO - Task 'data-gate' outputs:",
        "    Output: True",
    ]
    assert stream.task == "data-gate"


def test_a_last_line_without_newline_is_not_lost() -> None:
    shown, full = io.StringIO(), io.StringIO()
    stream = TaskLogFilter(shown=shown, full=full)
    stream.write("Traceback (most recent call last):\nRuntimeError: boom")
    stream.close_pending()
    assert shown.getvalue() == "Traceback (most recent call last):\nRuntimeError: boom\n"
