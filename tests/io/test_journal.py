"""restore.io.journal: one JSON line per result, appended in one write each, readable while it grows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from restore.io.journal import Entry, Journal, read_journal


def test_lines_are_appended_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "out" / "restore-journal.jsonl"
    with Journal(path, run="first") as j:
        j.append(Entry("in/a.png", "out/a_x2.png", "written", None, 0.123456))
        j.append(Entry("in/b.png", "out/b_x2.png", "failed", "in/b.png: not an image", 0.01))
    with Journal(path, run="second") as j:
        j.append(Entry("in/a.png", "out/a_x2.png", "skipped", "exists", 0.0))
    records = read_journal(path)
    assert [(r["input"], r["status"], r["run"]) for r in records] == [
        ("in/a.png", "written", "first"), ("in/b.png", "failed", "first"), ("in/a.png", "skipped", "second")]
    assert records[0] == {"input": "in/a.png", "output": "out/a_x2.png", "status": "written", "error": None,
                          "seconds": 0.1235, "run": "first"}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_each_line_is_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real(fd, data))
    with Journal(tmp_path / "j.jsonl") as j:
        j.append(Entry("ü/a b.png", None, "failed", "line\nbreak in a message", 1.0))
    assert len(writes) == 1 and writes[0].endswith(b"\n") and writes[0].count(b"\n") == 1
    assert read_journal(tmp_path / "j.jsonl")[0]["error"] == "line\nbreak in a message"


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.append(Entry("a", "b", "written", None, 0.0))
    with open(path, "a") as f:
        f.write('{"input": "c", "outp')
    assert [r["input"] for r in read_journal(path)] == ["a"]


def test_append_outside_with_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        Journal(tmp_path / "j.jsonl").append(Entry("a", "b", "written", None, 0.0))
