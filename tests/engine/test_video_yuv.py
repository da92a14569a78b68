"""Y-plane path of ``restore video`` (Y-only models such as ESPCN on 4:2:0 sources: the network on the Y plane,
U/V upscaled, planes straight to the encoder). Tiny clips made here with PyAV (tests/engine/test_video.py)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from restore import io  # noqa: E402
from restore.archs.base import ModelMeta  # noqa: E402
from restore.archs.espcn import ESPCN  # noqa: E402
from restore.engine import video  # noqa: E402
from restore.engine.restorer import Restorer  # noqa: E402
from tests.engine.test_video import FPS, _main, _Nearest, _packets, make_clip  # noqa: E402


class _YNearest(nn.Module):
    """x2 nearest-neighbour 'network' on full-range Y (a Y-only model whose output is its input, upscaled)."""

    @property
    def meta(self) -> ModelMeta:
        return ModelMeta(family="test", variant="y_nearest", task="sr", scale=2, in_channels=1, out_channels=1,
                         color_space="y_full", receptive_field=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class _YBicubic(_YNearest):
    """x2 bicubic on Y: a stand-in for a trained Y-only network (smooth, with over/undershoot at edges); a
    random-weight ESPCN's output is not an image, and its luma pushed far out of range makes the RGB path's
    gamut clipping dominate any comparison."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


@pytest.fixture(scope="module")
def espcn() -> nn.Module:
    torch.manual_seed(0)
    return ESPCN(scale=2).eval()


def _planes(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Decoded Y, U, V planes (int) of every frame."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            w, h = f.width, f.height
            flat = f.to_ndarray(format="yuv420p").reshape(-1).astype(np.int32)
            n = w * h
            out.append((flat[:n].reshape(h, w), flat[n:n * 5 // 4].reshape(h // 2, w // 2),
                        flat[n * 5 // 4:].reshape(h // 2, w // 2)))
    return out


def _times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


# ------------------------------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("color_range", [1, 2])
def test_yuv_path_equals_rgb_path(tmp_path, color_range):
    """Same clip, same Y-only model (:class:`_YBicubic`), lossless output (CRF 0): the Y-plane path's decoded
    planes equal the RGB path's within a few code values.

    Tolerance and why: the RGB path goes YUV -> RGB (swscale) -> YCrCb (OpenCV) -> network -> RGB -> YUV
    (swscale), rounding to 8 bits at every step; swscale's default (not ACCURATE_RND) conversions are biased by
    about -0.4 code values each way (measured: the RGB path's Y is on average ~0.8 lower), so the mean
    absolute Y difference is ~1 and allowed up to 1.5. Where the 4:2:0 picture is out of the RGB gamut (the
    synthetic clip's hard colour edges), the RGB path clips R/G/B and its luma moves by up to ~30 there:
    such pixels must stay under 1% (|dY| > 3). Chroma: the RGB path resamples U/V three times (nearest up in
    swscale, bilinear x2, 2x2 down) where the Y-plane path resizes once bilinearly: mean |dU|, |dV| < 1.5."""
    src = make_clip(tmp_path / "in.mp4", n=6, w=64, h=48, audio=False, color_range=color_range)
    res = {}
    for path in ("rgb", "yuv"):
        r = video.upscale_video(src, tmp_path / f"{path}.mp4", _YBicubic(), device="cpu", crf=0,
                                color_path=path)
        assert r.color_path == path and r.frames == 6
        res[path] = _planes(tmp_path / f"{path}.mp4")
        assert io.probe_video(tmp_path / f"{path}.mp4").color_range == io.probe_video(src).color_range
    for (y0, u0, v0), (y1, u1, v1) in zip(res["rgb"], res["yuv"], strict=True):
        assert y0.shape == y1.shape == (96, 128)
        dy = np.abs(y0 - y1)
        assert dy.mean() < 1.5 and (dy > 3).mean() < 0.01
        assert np.abs(u0 - u1).mean() < 1.5 and np.abs(v0 - v1).mean() < 1.5
        assert abs(float((y0 - y1).mean())) < 1.5  # no systematic range error (e.g. limited taken as full)


@pytest.mark.parametrize("color_range", [1, 2])
def test_range_mapping_is_exact(tmp_path, color_range):
    """Identity Y model: output Y = input Y upscaled (nearest), exactly, in the source's own range (limited
    16-235 is expanded to the model's full range and mapped back without loss; values outside 16-235 are
    clipped as the RGB path would); U/V are the input's, bilinearly upscaled (OpenCV)."""
    src = make_clip(tmp_path / "in.mp4", n=4, w=64, h=48, audio=False, color_range=color_range)
    dst = tmp_path / "out.mp4"
    res = video.upscale_video(src, dst, _YNearest(), device="cpu", crf=0)
    assert res.color_path == "yuv"
    # limited range may read back as 0 (unspecified: H.264 in mp4 without a colour description) or 1
    assert io.probe_video(dst).color_range == io.probe_video(src).color_range in ((0, 1) if color_range == 1 else (2,))
    lo, hi = (0, 255) if color_range == 2 else (16, 235)
    for (yi, ui, vi), (yo, uo, vo) in zip(_planes(src), _planes(dst), strict=True):
        np.testing.assert_array_equal(yo, np.clip(yi, lo, hi).repeat(2, 0).repeat(2, 1))
        for a, b in ((ui, uo), (vi, vo)):
            up = cv2.resize(a.astype(np.uint8), (b.shape[1], b.shape[0]), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_array_equal(b, up)


def test_luma_lut_and_inverse():
    f = io.YuvFrame(4, 2, full_range=False)
    f.y[...] = [[0, 16, 17, 126], [234, 235, 236, 255]]
    y = io.yuv_luma_for_model(f)
    np.testing.assert_allclose(y, np.clip((f.y.astype(np.float64) - 16) / 219, 0, 1), atol=1e-7)
    out = io.yuv_from_luma(cv2.resize(y, (8, 4), interpolation=cv2.INTER_NEAREST), f, 2)
    np.testing.assert_array_equal(out.y[::2, ::2], np.clip(f.y, 16, 235))
    full = io.YuvFrame(4, 2, full_range=True)
    full.y[...] = [[0, 1, 127, 128], [200, 253, 254, 255]]
    yf = io.yuv_luma_for_model(full)
    assert np.array_equal(yf, full.y.astype(np.float32) * np.float32(1 / 255))  # dnn_superres's convention
    back = io.yuv_from_luma(np.array([[-0.5, 1.5] * 4] * 4, np.float32), full, 2)
    assert back.y.min() == 0 and back.y.max() == 255  # clipped to the model's [0, 1] before mapping
    with pytest.raises(ValueError, match="even"):
        io.YuvFrame(5, 4, full_range=False)


# ------------------------------------------------------------------------------------------ pipeline


def test_cli_yuv_path_keeps_frames_timing_audio(tmp_path, monkeypatch, capsys, espcn):
    weights = tmp_path / "espcn_x2.pth"
    torch.save(espcn.state_dict(), weights)
    pts = [0, 1, 2, 5, 6, 9, 10, 11, 15, 16, 18, 23]  # variable frame rate
    src = make_clip(tmp_path / "in.mp4", n=len(pts), pts=pts, rotation=90, color_range=2)
    dst = tmp_path / "out.mp4"
    rc = _main(["video", str(src), "-o", str(dst), "--weights", str(weights), "--device", "cpu", "--threads", "1",
                "--batch", "3"], monkeypatch)
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"{len(pts)} frames" in line and "yuv path" in line
    a, b = io.probe_video(src), io.probe_video(dst)
    assert (b.width, b.height) == (128, 96) and b.pix_fmt in io.YUV420_FORMATS
    assert _times(dst) == _times(src) == [Fraction(p, FPS) for p in pts]
    assert _packets(dst, "audio") == _packets(src, "audio")
    assert b.rotation == a.rotation == 90 and b.color_range == a.color_range == 2
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
    # forced RGB path through the CLI
    rc = _main(["video", str(src), "-o", str(tmp_path / "rgb.mp4"), "--weights", str(weights), "--device", "cpu",
                "--threads", "1", "--color-path", "rgb"], monkeypatch)
    assert rc == 0 and "rgb path" in capsys.readouterr().out.strip().splitlines()[-1]
    assert _times(tmp_path / "rgb.mp4") == _times(src)


def test_frames_clip_and_tiling_on_the_yuv_path(tmp_path, espcn):
    src = make_clip(tmp_path / "in.mkv", n=12, subtitles=True)
    whole = video.upscale_video(src, tmp_path / "whole.mkv", Restorer(espcn, device="cpu", tile=None), crf=0,
                                start=3, stop=9)
    tiled = video.upscale_video(src, tmp_path / "tiled.mkv", Restorer(espcn, device="cpu", tile=16), crf=0,
                                start=3, stop=9, batch=2)
    assert whole.color_path == tiled.color_path == "yuv" and whole.frames == tiled.frames == 6
    a, b = _planes(tmp_path / "whole.mkv"), _planes(tmp_path / "tiled.mkv")
    assert len(a) == len(b) == 6
    for pa, pb in zip(a, b, strict=True):  # exact tiles (finite receptive field): same planes
        for x, y in zip(pa, pb, strict=True):
            assert np.abs(x - y).max() <= 1
    audio = _packets(tmp_path / "whole.mkv", "audio")
    assert audio and all(0 <= t < Fraction(6, FPS) for _, t in audio)


def test_fallbacks_to_rgb_path(tmp_path, espcn):
    # odd size (4:2:0 needs even sizes): ffv1 can store a 63x47 yuv420p stream
    odd = make_clip(tmp_path / "odd.mkv", n=3, w=63, h=47, codec="ffv1", pix_fmt="yuv420p", audio=False)
    assert io.probe_video(odd).pix_fmt == "yuv420p"
    res = video.upscale_video(odd, tmp_path / "odd_out.mkv", espcn, device="cpu")
    assert res.color_path == "rgb" and res.frames == 3 and res.out_size == (126, 94)
    with pytest.raises(ValueError, match="color path 'yuv'"):
        video.upscale_video(odd, tmp_path / "forced.mkv", espcn, device="cpu", color_path="yuv")
    assert not (tmp_path / "forced.mkv").exists() and not [p for p in tmp_path.iterdir() if ".part" in p.name]
    # 4:4:4 source (output stays 4:4:4) and an RGB model: RGB path
    s444 = make_clip(tmp_path / "s444.mkv", n=3, pix_fmt="yuv444p", audio=False)
    assert video.upscale_video(s444, tmp_path / "o444.mkv", espcn, device="cpu").color_path == "rgb"
    even = make_clip(tmp_path / "even.mp4", n=3, audio=False)
    assert video.upscale_video(even, tmp_path / "nn.mp4", _Nearest(), device="cpu").color_path == "rgb"
    assert video.upscale_video(even, tmp_path / "forced_rgb.mp4", espcn, device="cpu",
                               color_path="rgb").color_path == "rgb"
    with pytest.raises(ValueError, match="color_path"):
        video.upscale_video(even, tmp_path / "x.mp4", espcn, device="cpu", color_path="bgr")


def test_choose_color_path():
    meta = ESPCN(scale=2).meta
    info = io.VideoInfo(source="s", width=64, height=48, codec="h264", pix_fmt="yuvj420p", time_base=Fraction(1, 24),
                        frame_rate=Fraction(24), n_frames=1, duration=None, start_time=0.0)
    assert video.choose_color_path(meta, info)[0] == "yuv"
    assert video.choose_color_path(meta, info, out_pix_fmt=None)[0] == "yuv"  # live, nothing written
    assert video.choose_color_path(meta, info, out_pix_fmt="rgb24")[0] == "rgb"
    assert video.choose_color_path(meta, info, "rgb")[0] == "rgb"
    for pix_fmt in ("yuv420p10le", "nv12", "yuv422p", "rgb24"):
        other = io.VideoInfo(**{**info.__dict__, "pix_fmt": pix_fmt})
        path, why = video.choose_color_path(meta, other)
        assert path == "rgb" and pix_fmt in why
