"""``restore web`` as a user starts it: a subprocess that announces its URL and serves the page (no browser
needed; see test_browser.py for the browser tests)."""

from __future__ import annotations

import json
import os
import signal
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


def _default_sigint() -> None:
    """In the server process: Ctrl-C as a terminal delivers it. A shell starts background jobs (``cmd &``, nohup)
    with SIGINT ignored and children inherit that, so a test suite run in the background would otherwise send a
    SIGINT that the server never sees (Python keeps an ignored SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Server:
    """``python -m restore web`` in a subprocess on a free loopback port, its
    output collected by a thread; :meth:`stop` ends it (terminate, then kill) and is safe to call twice."""

    def __init__(self, weights_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "restore", "web", "--port", str(self.port),
                                      "--weights-dir", str(weights_dir), "--device", "cpu"], cwd=REPO,
                                     env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=_default_sigint if os.name == "posix" else None)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            self.lines.append(line)

    def wait_ready(self) -> float:
        """Seconds from start until the URL was announced (fails if the process exits or takes too long)."""
        while not any("serving on" in ln for ln in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.perf_counter() - self.t0 < STARTUP_LIMIT_S, f"no URL after {STARTUP_LIMIT_S} s: {self.lines}"
            time.sleep(0.1)
        return time.perf_counter() - self.t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def test_restore_web_starts_in_seconds(weights_dir: Path) -> None:
    """``python -m restore web`` announces its URL and serves the page within
    seconds (the bound is loose for busy CI machines; the time is printed); the junk file in the weights folder
    is one warning line, not a failed start."""
    server = Server(weights_dir)
    try:
        elapsed = server.wait_ready()
        with urllib.request.urlopen(f"{server.url}config", timeout=10) as r:
            config = json.loads(r.read())
        assert config["title"] == "restore demo" and config["analytics_enabled"] is False
        print(f"restore web served its page {elapsed:.1f} s after start")
    finally:
        server.stop()
    shipped = len(json.loads(MANIFEST.read_text())["models"]) if MANIFEST.is_file() else 0  # the subprocess sees them
    assert f"serving on http://127.0.0.1:{server.port}/ ({3 + shipped} model(s)" in server.output
    warnings = [ln for ln in server.lines if "warning" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("restore web: warning: skipped notes.pth: "), warnings


@pytest.mark.shipped
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_stop_signal_removes_the_work_folder(weights_dir: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM (``kill``, ``docker stop``, systemd) stops the server exactly like Ctrl-C (SIGINT): it exits with
    status 0 and the work folder, with the result of the request made before, is gone; so are Gradio's copies
    of the upload and the result (its cache is inside the work folder)."""
    gradio_client = pytest.importorskip("gradio_client")
    from restore import io
    from tests.web.conftest import gradient_image

    tmp = tmp_path / "tmp"  # the server's temporary folder: its work folder and Gradio's cache go here
    tmp.mkdir()
    image = io.write_image(tmp_path / "in.png", gradient_image(12, 10))
    server = Server(weights_dir, env={"TMPDIR": str(tmp)})
    try:
        server.wait_ready()
        (workdir,) = tmp.glob("restore-web-*")
        client = gradio_client.Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
        result = client.predict(gradio_client.handle_file(str(image)), 2, api_name="/upscale")
        assert io.read_image(result).shape == (20, 24, 3)
        assert [p.name for p in workdir.glob("run-*/*")] == ["in_x2.png"]
        server.proc.send_signal(sig)
        t = time.perf_counter()
        try:
            rc = server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 30 s after {sig.name}; its output:\n{server.output}")
        assert rc == 0, server.output
        print(f"stopped {time.perf_counter() - t:.1f} s after {sig.name}")
    finally:
        server.stop()
    assert not workdir.exists(), server.output
    assert not [p for p in tmp.rglob("*") if p.is_file()], sorted(tmp.rglob("*"))
