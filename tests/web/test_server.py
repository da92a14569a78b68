"""``restore web`` as a user starts it: a subprocess that announces its URL and serves the page (no browser
needed; see test_browser.py for the browser tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from restore.weights import MANIFEST  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.web.conftest import free_port  # noqa: E402

STARTUP_LIMIT_S = 60


def test_restore_web_starts_in_seconds(weights_dir: Path) -> None:
    """``python -m restore.cli.web`` (what ``restore web`` runs) announces its URL and serves the page within
    seconds (the bound is loose for busy CI machines; the time is printed)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "restore.cli.web", "--port", str(port), "--weights-dir",
                             str(weights_dir), "--device", "cpu"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout or ():
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not any("serving on" in ln for ln in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.perf_counter() - t0 < STARTUP_LIMIT_S, f"no URL after {STARTUP_LIMIT_S} s: {lines}"
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10) as r:
            config = json.loads(r.read())
        assert config["title"] == "restore demo" and config["analytics_enabled"] is False
        print(f"restore web served its page {elapsed:.1f} s after start")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    shipped = len(json.loads(MANIFEST.read_text())["models"]) if MANIFEST.is_file() else 0  # the subprocess sees them
    assert f"serving on http://127.0.0.1:{port}/ ({3 + shipped} model(s)" in "".join(lines)
