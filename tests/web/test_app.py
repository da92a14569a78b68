"""Handlers of the web demo (restore/web/app.py) on tiny images, without a browser."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from restore import Restorer, io, load_model  # noqa: E402
from restore.web import app as webapp  # noqa: E402
from restore.web import pictures  # noqa: E402
from restore.web import ui as webui  # noqa: E402
from tests.web.conftest import gradient_image  # noqa: E402


@pytest.fixture()
def app(weights_dir: Path, tmp_path: Path) -> webapp.DemoApp:
    return webapp.DemoApp(weights_dir=weights_dir, device="cpu", workdir=tmp_path / "work")


def _key(app: webapp.DemoApp, name: str) -> str:
    return next(e.key for e in app.models if Path(e.key).name == name)


def _png(tmp_path: Path, img: np.ndarray, name: str = "in.png") -> str:
    return str(io.write_image(tmp_path / name, img))


@pytest.mark.shipped
def test_catalogue_lists_the_shipped_models_first(tmp_path: Path) -> None:
    from restore.weights import shipped_models

    shipped = [str(m["name"]) for m in shipped_models()]
    if not shipped:
        pytest.skip("no weights shipped in restore/weights yet")
    app = webapp.DemoApp(device="cpu", workdir=tmp_path / "work")
    assert [e.name for e in app.models][: len(shipped)] == shipped
    assert all(e.source == "shipped" for e in app.models[: len(shipped)])


def test_catalogue_from_weights_dir(app: webapp.DemoApp) -> None:
    names = {Path(e.key).name: e for e in app.models}
    assert set(names) == {"espcn_x2.pth", "espcn_x3.pth", "dncnn_tiny.pth"}
    x2, x3, dn = names["espcn_x2.pth"], names["espcn_x3.pth"], names["dncnn_tiny.pth"]
    assert (x2.task, x2.scale, x2.family, x2.source) == ("sr", 2, "espcn", "weights folder")
    assert x2.params > 0 and "not measured" in x2.markdown()
    assert x3.name == "ESPCN x3 (test)" and x3.psnr == (("Set5", 30.5),) and "Set5 30.50 dB" in x3.label
    assert (dn.task, dn.sigma) == ("denoise", "25")
    assert len(app.skipped) == 1 and app.skipped[0].startswith("notes.pth: not a readable PyTorch checkpoint")
    assert "/" not in app.skipped[0].split(":", 1)[1]  # no server paths in what the page shows


def test_filters_and_refresh(app: webapp.DemoApp) -> None:
    assert [e.scale for e in webapp.filter_models(app.models, "sr", 3, None)] == [3]
    assert [e.sigma for e in webapp.filter_models(app.models, "denoise", None, "25")] == ["25"]
    assert webapp.filter_models(app.models, "denoise", None, "50") == []
    assert app.default_selection() == ("sr", 2, _key(app, "espcn_x2.pth"))
    dropdown, info, scale_vis, sigma_vis = app.refresh_models("sr", 3, "25", _key(app, "espcn_x2.pth"))
    assert dropdown["value"] == _key(app, "espcn_x3.pth") and len(dropdown["choices"]) == 1
    assert "ESPCN x3 (test)" in info and scale_vis["visible"] and not sigma_vis["visible"]
    dropdown, info, scale_vis, sigma_vis = app.refresh_models("denoise", 3, "50", None)
    assert dropdown["value"] is None and "No model for denoising at σ 50" in info and sigma_vis["visible"]
    dropdown, info, scale_vis, _ = app.refresh_models("sr", 4, "25", None)
    assert dropdown["choices"] == [] and "--weights-dir" in info and scale_vis["visible"]


def test_run_image_x2_matches_the_api(app: webapp.DemoApp, tmp_path: Path) -> None:
    img = gradient_image(13, 9)
    (before, after), download, status = app.run_image(_png(tmp_path, img), "sr", _key(app, "espcn_x2.pth"), "auto",
                                                      "fp32", "25", False)
    result, info = io.read_image_info(download["value"])
    expected = Restorer(load_model(app.lookup(_key(app, "espcn_x2.pth")).path), device="cpu", precision="fp32").run(img)
    assert result.shape == (18, 26, 3) and result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)  # the page adds nothing: exactly the API's output
    assert Path(download["value"]).name == "in_x2.png" and download["label"] == "Download 26×18 PNG (8-bit)"
    assert io.read_image(before).shape == io.read_image(after).shape == (18, 26, 3)
    np.testing.assert_array_equal(io.read_image(before), np.repeat(np.repeat(img, 2, 0), 2, 1))
    assert "13×9 → 26×18" in status and " s** with espcn_x2.pth on cpu, fp32, whole image" in status


def test_run_image_with_tta_is_the_api_with_tta(app: webapp.DemoApp, tmp_path: Path) -> None:
    img = gradient_image(13, 9)
    key = _key(app, "espcn_x2.pth")
    *_, download, status = app.run_image(_png(tmp_path, img), "sr", key, "auto", "fp32", "25", False, None, None,
                                          True)
    net = load_model(app.lookup(key).path)
    expected = Restorer(net, device="cpu", precision="fp32", tta=True).run(img)
    np.testing.assert_array_equal(io.read_image(download["value"]), expected)
    assert "test-time augmentation" in status
    path = app.lookup(key).path
    assert app.runner(path, "auto", "fp32", True).tta and not app.runner(path, "auto", "fp32").tta  # kept apart


def test_run_image_keeps_16_bit_and_alpha(app: webapp.DemoApp, tmp_path: Path) -> None:
    img = gradient_image(10, 7, dtype=np.uint16, channels=4)
    (before, after), download, status = app.run_image(_png(tmp_path, img, "deep.png"), "sr",
                                                      _key(app, "espcn_x3.pth"), "16", "fp32", "25", False)
    result = io.read_image(download["value"])
    assert result.shape == (21, 30, 4) and result.dtype == np.uint16
    assert "(16-bit)" in download["label"] and "ESPCN x3 (test)" in status
    assert io.read_image(after).dtype == np.uint8  # browser preview is 8-bit; the download keeps 16 bits


def test_denoise_with_added_noise(app: webapp.DemoApp, tmp_path: Path) -> None:
    img = gradient_image(12, 10)
    (before, after), download, status = app.run_image(_png(tmp_path, img), "denoise", _key(app, "dncnn_tiny.pth"),
                                                      "none", "auto", "25", True)
    out = io.read_image(download["value"])
    noisy = pictures.add_gaussian_noise(img, 25.0)
    assert out.shape == img.shape and Path(download["value"]).name == "in_denoised.png"
    np.testing.assert_array_equal(out, noisy)  # the zero DnCNN returns its (noisy) input
    np.testing.assert_array_equal(io.read_image(before), noisy)
    assert "noise σ 25 added" in status and not np.array_equal(noisy, img)


def test_bad_inputs_give_one_line_errors(app: webapp.DemoApp, tmp_path: Path) -> None:
    key = _key(app, "espcn_x2.pth")
    bad = tmp_path / "holiday.png"
    bad.write_text("this is not an image\n")
    with pytest.raises(gr.Error) as e:
        app.run_image(str(bad), "sr", key, "auto", "auto", "25", False)
    assert e.value.message.startswith("holiday.png: not a readable image") and str(tmp_path) not in e.value.message
    with pytest.raises(gr.Error, match="Upload an image first"):
        app.run_image(None, "sr", key, "auto", "auto", "25", False)
    with pytest.raises(gr.Error, match="No model selected"):
        app.run_image(_png(tmp_path, gradient_image(8, 8)), "sr", None, "auto", "auto", "25", False)
    with pytest.raises(gr.Error, match="tile size must be at least 16"):
        app.run_image(_png(tmp_path, gradient_image(8, 8)), "sr", key, "8", "auto", "25", False)
    with pytest.raises(gr.Error) as e:
        app.inspect_image(str(bad))
    assert "not a readable image" in e.value.message


def test_limits(weights_dir: Path, tmp_path: Path) -> None:
    small = webapp.Limits(max_pixels=100, max_upload_bytes=4000)
    app = webapp.DemoApp(weights_dir=weights_dir, device="cpu", limits=small, workdir=tmp_path / "w")
    key = _key(app, "espcn_x2.pth")
    with pytest.raises(gr.Error) as e:
        app.run_image(_png(tmp_path, gradient_image(20, 10), "wide.png"), "sr", key, "auto", "auto", "25", False)
    assert e.value.message.startswith("wide.png is 20×10 (0.0 MP); this demo accepts images up to 0.0 MP")
    noise = (np.random.default_rng(0).random((9, 9, 3)) * 255).astype(np.uint8)
    big = tmp_path / "big.bmp"
    big.write_bytes(b"BM" + bytes(5000))
    with pytest.raises(gr.Error, match=r"big.bmp: the file is 0.0 MB; this demo accepts up to 0 MB"):
        app.run_image(str(big), "sr", key, "auto", "auto", "25", False)
    out = app.run_image(_png(tmp_path, noise), "sr", key, "auto", "auto", "25", False)
    assert io.read_image(out[1]["value"]).shape == (18, 18, 3)


def test_inspect_and_example(app: webapp.DemoApp, tmp_path: Path) -> None:
    shown, text = app.inspect_image(_png(tmp_path, gradient_image(16, 12, dtype=np.uint16), "deep.png"))
    assert io.read_image(shown).shape == (12, 16, 3) and "**deep.png** · 16×12 · PNG · 16-bit RGB" in text
    assert app.inspect_image(None)[0] is None
    ex = app.example_image()
    assert io.read_image(ex).shape == (150, 225, 3) and app.example_image() == ex


def test_uploaded_checkpoint(app: webapp.DemoApp, weights_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "upload" / "mine_x3.pth"
    copy.parent.mkdir()
    copy.write_bytes((weights_dir / "espcn_x3.pth").read_bytes())
    uploads, task, scale, noise, sigma, dropdown, info, note = app.add_checkpoint(str(copy), {}, "denoise", 2, "25")
    key = "uploaded/mine_x3.pth"  # a name, never the server's path
    assert list(uploads) == [key] and uploads[key].source == "uploaded" and uploads[key].path == str(copy.resolve())
    assert task["value"] == "sr" and scale == {"__type__": "update", "value": 3, "visible": True}
    assert noise == {"__type__": "update", "visible": False}
    assert dropdown["value"] == key and key in [k for _, k in dropdown["choices"]] and "mine_x3.pth" in info
    assert "Added **mine_x3.pth**" in note
    assert app.video_choices(uploads)[-1][1] == key and app.video_choices()[-1][1] != key  # this session only
    out = app.run_image(_png(tmp_path, gradient_image(5, 4)), "sr", key, "auto", "auto", "25", False, uploads)
    assert io.read_image(out[1]["value"]).shape == (12, 15, 3)
    junk = tmp_path / "upload" / "junk.pth"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(gr.Error) as e:
        app.add_checkpoint(str(junk), uploads, "sr", 2, "25")
    assert e.value.message.startswith("junk.pth: not a readable PyTorch checkpoint")


def test_helpers() -> None:
    assert webapp.tidy_message("/tmp/gradio/ab12/photo.png: bad\nmore") == "photo.png: bad"
    assert webapp.tidy_message("x: see ./rel/path and 1/2") == "x: see ./rel/path and 1/2"
    assert [webapp.parse_tile(v) for v in ("auto", "none", "64")] == ["auto", None, 64]
    with pytest.raises(ValueError):
        webapp.parse_tile("big")
    deep = gradient_image(6, 5, dtype=np.uint16, channels=2)
    noisy = pictures.add_gaussian_noise(deep, 15.0)
    assert noisy.dtype == np.uint16 and np.array_equal(noisy[..., 1], deep[..., 1])  # alpha untouched
    assert pictures.preview(np.zeros((400, 500, 3), np.uint8), 20_000).shape[:2] == (126, 158)
    small = gradient_image(50, 40, dtype=np.uint16)
    assert pictures.before_preview(small, (160, 200, 3), 20_000).shape == (126, 158, 3)  # same size as the after
    assert pictures.before_preview(small, (120, 150, 3), 20_000).shape == (120, 150, 3)

    @webapp.readable_errors
    def boom() -> None:
        raise KeyError("/srv/secret/x")

    with pytest.raises(gr.Error) as e:
        boom()
    assert e.value.message == "Unexpected error (KeyError): 'x'"

    @webapp.readable_errors
    def oom() -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    with pytest.raises(gr.Error, match="Out of memory: try a smaller tile size"):
        oom()


def test_page_builds(app: webapp.DemoApp) -> None:
    demo = webui.build_ui(app)
    ids = {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert {"image-in", "example-btn", "task", "scale", "sigma", "model", "tile", "precision", "run-btn",
            "compare", "download-btn", "status"} <= ids
    assert ("video-btn" in ids) == (app.video is not None)
    assert isinstance(next(b for b in demo.blocks.values() if b.elem_id == "compare"), gr.ImageSlider)


def _clip(path: Path, *, n: int = 6, w: int = 32, h: int = 24) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=12)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aud = c.add_stream("aac", rate=8000)
        aud.layout = "mono"
        for i in range(n):
            img = gradient_image(w, h)
            img[..., 2] = (40 + 20 * i) % 256
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        samples = np.zeros((1, 8000 * n // 12), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        for p in [*aud.encode(frame), *aud.encode(None)]:
            c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    return path


def test_video_tab(app: webapp.DemoApp, tmp_path: Path) -> None:
    if app.video is None:
        pytest.skip("restore.engine.video / PyAV not available: the page has no video tab")
    av = pytest.importorskip("av")
    src = _clip(tmp_path / "clip.mp4")
    calls: list[tuple[int, int]] = []

    def progress(value: tuple[int, int], desc: str | None = None, unit: str = "steps") -> None:
        calls.append(value)

    out, status = app.run_video(str(src), _key(app, "espcn_x2.pth"), "auto", "fp32", None, progress=progress)
    with av.open(out) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (64, 48)
        assert len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == 6
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)
    assert "6 frames, 32×24 → 64×48" in status and "audio copied" in status
    with pytest.raises(gr.Error, match="not an upscaling model"):
        app.run_video(str(src), _key(app, "dncnn_tiny.pth"), "auto", "fp32", None, progress=progress)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(gr.Error) as e:
        app.run_video(str(bad), _key(app, "espcn_x2.pth"), "auto", "fp32", None, progress=progress)
    assert e.value.message.startswith("bad.mp4") and "Traceback" not in e.value.message


def test_cli_parser_and_light_import() -> None:
    import argparse

    from restore.cli.web import add_parsers, cmd_web

    ap = argparse.ArgumentParser()
    add_parsers(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["web", "--port", "7999", "--weights-dir", "/nonexistent-dir"])
    assert (args.host, args.port, args.func) == ("127.0.0.1", 7999, cmd_web)
    assert cmd_web(args) == 2  # missing folder: one-line error, exit 2
    code = "import sys, restore, restore.cli.web; print('gradio' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_final_size_resamples_the_network_output(app: webapp.DemoApp, tmp_path: Path) -> None:
    """Any output size in the page too: an x2 model, final size 1.5x the input (MATLAB bicubic, antialiased)."""
    img = gradient_image(20, 12)
    (_, _), download, status = app.run_image(_png(tmp_path, img), "sr", _key(app, "espcn_x2.pth"), "auto", "auto",
                                             "25", False, None, 1.5)
    out = io.read_image(download["value"])
    assert out.shape[:2] == (18, 30) and "resampled to ×1.5" in status
    with pytest.raises(gr.Error, match="Final size"):
        app.run_image(_png(tmp_path, img), "sr", _key(app, "espcn_x2.pth"), "auto", "auto", "25", False, None, -1)
