"""The red-team findings on the web demo, one test each: bad checkpoints (folder and upload), the bomb message,
the precisions offered, truncated videos and one-line errors. (SIGTERM: test_server.py; the API listing and
live requests: test_api.py, test_api_robustness.py.)"""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")

from restore import io  # noqa: E402
from restore.web import app as webapp  # noqa: E402
from restore.web import ui as webui  # noqa: E402
from restore.web.catalogue import MAX_MESSAGE_CHARS, tidy_message  # noqa: E402
from tests.web.conftest import bad_checkpoints, free_port, gradient_image, near_identity_espcn, png_header  # noqa: E402

SERVER_DIR = re.compile(r"(?<![\w.:/])/[\w.-]+/")  # an absolute directory (not a URL's //host/ or a relative path)


def _one_line_about(msg: str, name: str, *hidden: Path) -> None:
    """``msg`` is one line, starts with the file's base name and shows none of the server's folders."""
    assert "\n" not in msg and msg.startswith(name), msg
    assert len(msg) <= MAX_MESSAGE_CHARS and "Traceback" not in msg, msg
    for folder in hidden:
        assert str(folder) not in msg, msg
    assert not SERVER_DIR.search(msg), msg


@pytest.fixture()
def bad_dir(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """A weights folder with one good ESPCN x2 and every bad kind of checkpoint; (folder, bad names, marker)."""
    d = tmp_path / "weights"
    marker = tmp_path / "unpickled"
    bad = bad_checkpoints(d, marker)
    torch.save(near_identity_espcn(2).state_dict(), d / "good_x2.pth")
    return d, bad, marker


def test_bad_checkpoints_in_the_weights_dir_are_skipped(bad_dir: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    """Each bad file is skipped with one line naming it (whatever the loader raises: PyTorch's unpickler raises
    KeyError / IndexError / struct.error on text; NaN/inf weights load but would write garbage); the good model is
    offered and the unsafe pickle never ran."""
    d, bad, marker = bad_dir
    app = webapp.DemoApp(weights_dir=d, device="cpu", workdir=tmp_path / "work")
    assert [e.key for e in app.models] == ["weights/good_x2.pth"]
    assert len(app.skipped) == len(bad), app.skipped
    for name, line in zip(bad, app.skipped, strict=True):
        _one_line_about(line, name, d, tmp_path)
    skipped = dict(line.split(":", 1) for line in app.skipped)
    assert "NaN/infinite" in skipped["nan.pth"] and "NaN/infinite" in skipped["inf.pth"]
    assert "directory" in skipped["folder.pth"]
    assert not marker.exists()


def test_server_starts_with_bad_checkpoints_and_warns(bad_dir: tuple[Path, list[str], Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``launch`` (what ``restore web --weights-dir`` runs) starts, lists the good model and prints one warning
    line per skipped file."""
    d, bad, _ = bad_dir
    port = free_port()
    demo, app = webui.launch(port=port, weights_dir=d, device="cpu", block=False, quiet=True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10) as r:
            config = r.read().decode()
    finally:
        demo.close()
        app.close()
    assert "weights/good_x2.pth" in config and str(d) not in config
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("restore web: warning: skipped ")]
    assert [ln.removeprefix("restore web: warning: skipped ").split(":")[0] for ln in warnings] == bad


def test_bad_uploaded_checkpoints_give_one_line_errors(bad_dir: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    """A bad checkpoint uploaded in the page: a one-line gr.Error with its base name (never Gradio's upload
    folder), and the page keeps working (the good upload afterwards is added)."""
    d, bad, marker = bad_dir
    app = webapp.DemoApp(device="cpu", workdir=tmp_path / "work")
    upload_dir = tmp_path / "gradio" / "5f3e9a"  # where Gradio keeps uploads
    upload_dir.mkdir(parents=True)
    for name in bad:
        src, dst = d / name, upload_dir / name
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
        with pytest.raises(gr.Error) as e:
            app.add_checkpoint(str(dst), {}, "sr", 2, "25")
        _one_line_about(e.value.message, name, upload_dir, tmp_path)
    shutil.copy(d / "good_x2.pth", upload_dir / "good_x2.pth")
    uploads = app.add_checkpoint(str(upload_dir / "good_x2.pth"), {}, "sr", 2, "25")[0]
    assert list(uploads) == ["uploaded/good_x2.pth"] and not marker.exists()


def test_bomb_error_says_what_the_page_accepts(tmp_path: Path) -> None:
    """A 60000x60000 PNG header: the page's own limit is named (not the command line's --allow-large); a header
    between the page's and the library's limit gets the page's size message."""
    app = webapp.DemoApp(device="cpu", workdir=tmp_path / "work")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(60000, 60000))
    for handler in (app.inspect_image, lambda p: app.api_upscale(p, 2)):
        with pytest.raises(gr.Error) as e:
            handler(str(bomb))
        msg = e.value.message
        assert msg.startswith("bomb.png") and "allow-large" not in msg and "4.0 MP" in msg, msg
    mid = tmp_path / "mid.png"
    mid.write_bytes(png_header(10000, 10000))
    with pytest.raises(gr.Error) as e:
        app.inspect_image(str(mid))
    assert e.value.message.startswith("mid.png is 10000×10000 (100.0 MP); this demo accepts images up to 4.0 MP")


def test_only_working_precisions_are_offered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No fp16 on a CPU server; bf16 only where the CPU has native bf16 convolutions (not on this AVX2-only
    machine); the page lists exactly those, and a request for another is a one-line error."""
    from restore.engine import cpu_paths

    cpu = torch.device("cpu")
    expected = ("auto", "fp32", "bf16") if cpu_paths.native_bf16() and cpu_paths.bf16_convolutions() else (
        "auto", "fp32")
    assert webapp.offered_precisions(cpu) == expected
    monkeypatch.setattr(cpu_paths, "native_bf16", lambda *a: False)
    assert webapp.offered_precisions(cpu) == ("auto", "fp32")
    monkeypatch.setattr(cpu_paths, "native_bf16", lambda *a: True)
    monkeypatch.setattr(cpu_paths, "bf16_convolutions", lambda *a: True)
    assert webapp.offered_precisions(cpu) == ("auto", "fp32", "bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert webapp.offered_precisions(torch.device("cuda")) == ("auto", "fp32", "fp16")
    monkeypatch.undo()

    app = webapp.DemoApp(device="cpu", workdir=tmp_path / "work")
    assert app.precisions == expected and "fp16" not in app.precisions
    radios = [b for b in webui.build_ui(app).blocks.values() if isinstance(b, gr.Radio) and b.label == "Precision"]
    assert radios and all([v for _, v in r.choices] == list(expected) for r in radios)
    with pytest.raises(gr.Error) as e:
        app.run_image(str(io.write_image(tmp_path / "in.png", gradient_image(8, 8))), "sr", "weights/x.pth", "auto",
                      "fp16", "25", False, {"weights/x.pth": _entry(tmp_path)})
    assert e.value.message == f"precision 'fp16' is not available on this server; use one of {', '.join(expected)}."


def _entry(tmp_path: Path) -> webapp.ModelEntry:
    torch.save(near_identity_espcn(2).state_dict(), tmp_path / "x.pth")
    return webapp.entry_from_file(tmp_path / "x.pth", source="weights folder")


def _faststart_clip(path: Path, frames: int = 20) -> Path:
    """An MP4 with its index first (``movflags=faststart``): its header announces every frame."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        vs = c.add_stream("libx264", rate=12)
        vs.width, vs.height, vs.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            img = (np.random.default_rng(i).random((24, 32, 3)) * 255).astype(np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    return path


def test_truncated_video_is_noted(tmp_path: Path) -> None:
    """A faststart MP4 cut in half (header: 20 frames, about half decodable): the page says so, with both counts."""
    app = webapp.DemoApp(device="cpu", workdir=tmp_path / "work")
    if app.video is None:
        pytest.skip("restore.engine.video / PyAV not available: the page has no video tab")
    full = _faststart_clip(tmp_path / "full.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 2])
    assert io.probe_video(cut).n_frames == 20
    entry = _entry(tmp_path)
    _, status = app.run_video(str(cut), entry.key, "auto", "fp32", {entry.key: entry}, progress=lambda *a, **k: None)
    decoded = int(re.search(r"\*\*(\d+) frames", status).group(1))
    assert 0 < decoded < 20 and re.search(rf"truncated: .*\b20 frame.*\b{decoded}\b.*decoded", status), status
    assert str(tmp_path) not in status and not SERVER_DIR.search(status), status
    _, status = app.run_video(str(_faststart_clip(tmp_path / "ok.mp4", 6)), entry.key, "auto", "fp32",
                              {entry.key: entry}, progress=lambda *a, **k: None)
    assert "truncated" not in status and "**6 frames" in status


def test_truncation_note_without_the_engines_count() -> None:
    """Engines whose VideoResult has no ``expected_frames``: the page compares with the header's frame count."""
    from types import SimpleNamespace

    info = SimpleNamespace(n_frames=20)
    assert webapp.truncation_note(SimpleNamespace(frames=10), info, 300) == \
        "the clip looks truncated: expected 20 frames, decoded 10"
    assert webapp.truncation_note(SimpleNamespace(frames=20), info, 300) == ""
    assert webapp.truncation_note(SimpleNamespace(frames=8), info, 8) == ""  # the demo's frame limit
    assert webapp.truncation_note(SimpleNamespace(frames=5), info, 8).endswith(
        "expected 8 frames, decoded 5 (the header announces 20; the demo processes the first 8)")
    assert webapp.truncation_note(SimpleNamespace(frames=5), SimpleNamespace(n_frames=0), 8) == ""


def test_every_error_is_one_short_line() -> None:
    """Whatever a handler raises (multi-line, very long, with server paths) reaches the user as one short line."""
    long = "/srv/models/ckpt.pth: Weights only load failed. " + "In PyTorch 2.6 we changed things. " * 40
    assert len(tidy_message(long)) <= MAX_MESSAGE_CHARS and tidy_message(long).startswith("ckpt.pth: Weights")

    @webapp.readable_errors
    def boom() -> None:
        raise IndexError("index out of range\n  File \"/srv/x.py\", line 3\nTraceback")

    with pytest.raises(gr.Error) as e:
        boom()
    assert e.value.message == "Unexpected error (IndexError): index out of range"
    for value in ("5", "abc", None, "", 2.5, "9" * 400):
        with pytest.raises(gr.Error) as e:
            webapp.api_scale(value)
        assert "\n" not in e.value.message and len(e.value.message) < 100
    assert [webapp.api_scale(v) for v in (4, "4", "x3", 2.0, " 2 ")] == [4, 4, 3, 2, 2]
    assert [webapp.api_sigma(v) for v in (25, "25", 15.0, "blind", " 50 ", "Auto")] == ["25", "25", "15", "blind", "50",
                                                                                    "auto"]
    for value in (30, "abc", None, "inf", "nan", 1e300):
        with pytest.raises(gr.Error) as e:
            webapp.api_sigma(value)
        assert e.value.message.startswith("sigma must be one of 15, 25, 50, blind, auto, not ")


def test_cli_device_without_cuda_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``restore web --device cuda`` on a machine without CUDA: one error line and exit 2 (no traceback)."""
    import argparse

    from restore.cli.web import add_parsers

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ap = argparse.ArgumentParser()
    add_parsers(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["web", "--device", "cuda", "--port", str(free_port())])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("restore: error: device 'cuda': no CUDA device") and "\n" not in err, err


@pytest.mark.parametrize(("host", "says"), [("999.1.1.1", "not a host name or address"),
                                            ("192.0.2.1", "no interface of this machine has this address")])
def test_a_host_this_machine_cannot_listen_on_is_named(host: str, says: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from restore.cli import main

    assert main(["web", "--host", host, "--port", "7999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"restore: error: --host {host}: {says}"), err
