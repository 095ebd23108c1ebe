"""What a local pipeline run prints: the tasks' own messages, without KFP's executor chatter.

`kfp.local` streams each task's stdout and stderr into this process's stdout, with the
executor's bookkeeping around it: the whole executor input as JSON, the component module it
loads, the output file it writes, and ANSI colours whether or not a terminal shows them. The
full stream is kept in a log file; the console gets the task boundaries, the tasks' log lines
and their outputs.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTOR = re.compile(r"^\s*\[KFP Executor \S+ (\d\d:\d\d:\d\d),\d+ (\w+)\]: (.*)$")
# Executor bookkeeping that says nothing about the task's work.
_BOOKKEEPING = (
    "Looking for component ",
    "Loading KFP component ",
    "Wrote executor output file",
)
_INPUT_DUMP = "Got executor_input:"
_TASK = re.compile(r"Executing task '([^']+)'")


class TaskLogFilter(io.TextIOBase):
    """A text stream that keeps everything in `full` and passes the readable part to `shown`."""

    def __init__(self, shown: TextIO, full: TextIO) -> None:
        self.shown, self.full = shown, full
        self._pending = ""
        self._in_dump = False
        self._blank = False
        self.task = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.full.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            kept = self._filter(line)
            if kept is not None:
                self.shown.write(kept + "\n")
        return len(text)

    def flush(self) -> None:
        self.full.flush()
        self.shown.flush()

    def close_pending(self) -> None:
        """Pass on a last line that had no newline."""
        if self._pending:
            kept = self._filter(self._pending)
            if kept is not None:
                self.shown.write(kept + "\n")
            self._pending = ""
        self.flush()

    def _filter(self, raw: str) -> str | None:
        line = _ANSI.sub("", raw.rstrip("\r"))
        if self._in_dump:
            # The executor input is indented JSON under the task's 4-space indent; its closing
            # brace is the one line at exactly that indent.
            self._in_dump = line != "    }"
            return None
        if (task := _TASK.search(line)) is not None:
            self.task = task.group(1)
        executor = _EXECUTOR.match(line)
        if executor is not None:
            clock, level, message = executor.groups()
            if message.startswith(_INPUT_DUMP):
                self._in_dump = True
                return None
            if message.startswith(_BOOKKEEPING):
                return None
            line = f"    {clock} {level} {message}"
        blank = not line.strip()
        if blank and self._blank:
            return None  # one blank line between blocks is enough
        self._blank = blank
        return line


def log_path_for(pipeline_root: Path, stamp: str) -> Path:
    """Where a local run's full task logs go."""
    return pipeline_root / "logs" / f"{stamp}.log"
