"""The journal of a batch run: one JSON object per line, appended as each input's result is known (standard
library only).

``OUT/restore-journal.jsonl`` holds, per input, ``{"input", "output", "status", "error", "seconds", "run"}``:
``status`` is ``written``, ``skipped`` (the output exists) or ``failed``; ``error`` is the one-line reason (null when
written); ``run`` names the run (UTC start time, process id, a random tag), so reruns that resume a batch append
their own lines and the latest line of an input is its state. Each line is one ``write`` on a descriptor opened with
``O_APPEND``: a line is never interleaved with another or half-written by this process, even when several runs
append to the same journal on one machine. The journal is the one file the project appends to rather than
publishes (:mod:`restore.io.files`): a record that grows while the run goes on, not a result.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from restore.io.files import ensure_folder

JOURNAL_NAME = "restore-journal.jsonl"


@dataclass(frozen=True)
class Entry:
    input: str
    output: str | None
    status: str
    error: str | None
    seconds: float


def run_id() -> str:
    """A name for this run: its UTC start time, the process id and a random tag."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"/{os.getpid()}/{secrets.token_hex(3)}"


class Journal:
    """``with Journal(folder / JOURNAL_NAME) as j: j.append(entry)``; the file and its folder are created."""

    def __init__(self, path: str | Path, run: str | None = None) -> None:
        self.path = Path(path)
        self.run = run or run_id()
        self._fd: int | None = None

    def __enter__(self) -> Journal:
        ensure_folder(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        return self

    def append(self, entry: Entry) -> None:
        """One line, in one write."""
        if self._fd is None:
            raise RuntimeError("Journal.append outside 'with'")
        record = {"input": entry.input, "output": entry.output, "status": entry.status, "error": entry.error,
                  "seconds": round(entry.seconds, 4), "run": self.run}
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: say so rather than leave a torn line unnoticed
            raise OSError(28, f"journal line cut short ({written} of {len(data)} bytes)", str(self.path))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


def read_journal(path: str | Path) -> list[dict[str, object]]:
    """The journal's records, in order (a torn last line, from a crash mid-write, is left out)."""
    records: list[dict[str, object]] = []
    for line in Path(path).read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
