"""Video pipeline (restore.engine.video + the VIDEO section of restore.io): clips made here with PyAV (tiny,
CPU). Checks frame count, duration, bit-identical audio / subtitle packets, scaled sizes, rotation and colour
range kept, odd sizes, --frames, corrupt input, no partial output, and the streaming API's bounded latency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

av = pytest.importorskip("av")

from restore import cli, io  # noqa: E402
from restore.archs.base import ModelMeta  # noqa: E402
from restore.archs.espcn import ESPCN  # noqa: E402
from restore.engine import video  # noqa: E402
from restore.engine.restorer import Restorer  # noqa: E402
from tests.conftest import REPO  # noqa: E402

FPS = 24
SR = 16000


def _frame(i: int, w: int, h: int) -> np.ndarray:
    """Frame i: a moving ramp plus a flat blue level 40 + 8 i, so the frame is recognisable after coding."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 4 + i * 3) % 256, (yy * 5) % 256, np.full_like(xx, 40 + 8 * i)], -1).astype(np.uint8)


def make_clip(path: Path, *, n: int = 24, w: int = 64, h: int = 48, codec: str = "libx264", pix_fmt: str = "yuv420p",
              audio: bool = True, rotation: int | None = None, color_range: int = 1, subtitles: bool = False,
              pts: list[int] | None = None) -> Path:
    """A clip of ``n`` frames (:func:`_frame`), timestamps ``pts`` in 1/FPS units (default 0..n-1), with a
    440 Hz AAC track as long as the video, optional subtitles, rotation and colour range."""
    out = av.open(str(path), "w")
    v = out.add_stream(codec, rate=FPS, options={"crf": "10", "preset": "ultrafast"} if codec == "libx264" else {})
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    v.codec_context.color_range = color_range
    if rotation is not None:
        v.set_display_rotation(rotation)
    a = out.add_stream("aac", rate=SR) if audio else None
    if a is not None:
        a.layout = "mono"
    s = out.add_mux_stream("subrip") if subtitles else None
    for i in range(n):
        f = av.VideoFrame.from_ndarray(_frame(i, w, h), format="rgb24")
        if pix_fmt != "rgb24":
            f = f.reformat(format=pix_fmt, dst_color_range=color_range)
        f.pts = i if pts is None else pts[i]
        out.mux(v.encode(f))
        if s is not None and i % 8 == 0:
            pkt = av.Packet(f"line {i}".encode())
            pkt.stream, pkt.time_base = s, Fraction(1, 1000)
            pkt.pts = pkt.dts = i * 1000 // FPS
            pkt.duration = 200
            out.mux(pkt)
    out.mux(v.encode())
    if a is not None:
        t = np.arange(SR * n // FPS) / SR
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, wave.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, k:k + 1024]), format="flt", layout="mono")
            af.sample_rate, af.pts = SR, k
            out.mux(a.encode(af))
        out.mux(a.encode())
    out.close()
    return path


def _packets(path: Path, kind: str) -> list[tuple[bytes, Fraction | None]]:
    with av.open(str(path)) as c:
        st = [s for s in c.streams if s.type == kind][0]
        return [(bytes(p), p.pts * p.time_base if p.pts is not None else None) for p in c.demux(st) if p.size]


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def espcn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "espcn_x2.pth"
    torch.save(ESPCN(scale=2).state_dict(), p)
    return p


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``restore.cli.main`` (``restore video ...``)."""
    return cli.main(argv)


class _Nearest(nn.Module):
    """x2 nearest-neighbour "network": output frame k is exactly input frame k, upscaled."""

    @property
    def meta(self) -> ModelMeta:
        return ModelMeta(family="test", variant="nearest", task="sr", scale=2, in_channels=3, out_channels=3,
                         receptive_field=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


# ------------------------------------------------------------------------------------------ files


def test_cli_keeps_frames_timing_audio_rotation_range(tmp_path, espcn_weights, monkeypatch, capsys):
    src = make_clip(tmp_path / "in.mp4", rotation=90, color_range=2)
    dst = tmp_path / "out.mp4"
    rc = _main(["video", str(src), "-o", str(dst), "--scale", "2", "--weights", str(espcn_weights),
                "--device", "cpu", "--batch", "4", "--threads", "1"], monkeypatch)
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "24 frames" in line and "fps" in line and "real-time factor" in line
    a, b = io.probe_video(src), io.probe_video(dst)
    assert (b.width, b.height) == (2 * a.width, 2 * a.height) == (128, 96)
    assert len(_decoded(dst)) == 24
    assert abs(b.duration - a.duration) <= 1 / FPS + 1e-6
    assert b.rotation == a.rotation == 90 and b.display_matrix == a.display_matrix
    assert b.color_range == a.color_range == 2
    assert _packets(dst, "audio") == _packets(src, "audio")  # bytes and timestamps
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_subtitles_copied_and_limited_range_kept(tmp_path):
    src = make_clip(tmp_path / "in.mkv", n=16, subtitles=True, color_range=1)
    dst = tmp_path / "out.mkv"
    res = video.upscale_video(src, dst, ESPCN(scale=2), device="cpu", batch=3)
    assert res.frames == 16 and res.out_size == (128, 96)
    assert _packets(dst, "subtitle") == _packets(src, "subtitle") and len(_packets(src, "subtitle")) == 2
    assert _packets(dst, "audio") == _packets(src, "audio")
    assert io.probe_video(dst).color_range == 1


def test_pixels_follow_the_source(tmp_path):
    """Nearest-neighbour 'model': decoded output frames are the decoded input frames, upscaled (codec noise
    aside), so colour matrix / range conversions are consistent both ways."""
    src = make_clip(tmp_path / "in.mp4", n=6, audio=False)
    dst = tmp_path / "out.mp4"
    video.upscale_video(src, dst, _Nearest(), device="cpu", crf=0)
    ins, outs = _decoded(src), _decoded(dst)
    for x, y in zip(ins, outs, strict=True):
        up = x.repeat(2, axis=0).repeat(2, axis=1).astype(np.float32)
        assert np.abs(up - y).mean() < 2.0


def _frame_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


def test_variable_frame_rate_timestamps_kept(tmp_path):
    pts = [0, 1, 2, 5, 6, 9, 10, 11, 15, 16, 18, 23]  # irregular gaps (in 1/24 s)
    src = make_clip(tmp_path / "vfr.mp4", n=len(pts), pts=pts, audio=False)
    res = video.upscale_video(src, tmp_path / "out.mp4", _Nearest(), device="cpu", batch=5)
    assert res.frames == len(pts)
    assert _frame_times(tmp_path / "out.mp4") == _frame_times(src) == [Fraction(p, FPS) for p in pts]


def test_read_video_rebase_starts_at_zero(tmp_path):
    src = make_clip(tmp_path / "late.mp4", n=6, pts=list(range(2, 8)))  # video starts 1/12 s after the audio
    items = list(io.read_video(src, rebase=True))
    frames = [x for x in items if isinstance(x, io.DecodedFrame)]
    assert [f.pts * io.probe_video(src).time_base for f in frames] == [Fraction(i, FPS) for i in range(6)]
    assert len(frames) == 6 and all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    packets = [x.packet for x in items if isinstance(x, io.CopiedPacket)]
    assert packets and min(p.pts * p.time_base for p in packets) >= 0


@pytest.mark.parametrize(("codec", "pix_fmt", "suffix", "scale", "out_size"), [
    ("libx264", "yuv444p", ".mkv", 2, (126, 94)),  # 4:4:4 source, 4:4:4 output: exact size
    ("png", "rgb24", ".mov", 3, (188, 140)),  # RGB source -> yuv420p: 189x141 cropped to even
])
def test_odd_sizes(tmp_path, codec, pix_fmt, suffix, scale, out_size):
    src = make_clip(tmp_path / f"odd{suffix}", n=5, w=63, h=47, codec=codec, pix_fmt=pix_fmt, audio=False)
    torch.manual_seed(0)
    dst = tmp_path / f"out{suffix}"
    res = video.upscale_video(src, dst, ESPCN(scale=scale), device="cpu")
    info = io.probe_video(dst)
    assert (info.width, info.height) == res.out_size == out_size
    assert res.frames == 5 and len(_decoded(dst)) == 5
    assert any("cropped" in n for n in res.notes) == (out_size != (63 * scale, 47 * scale))


def test_frames_clip(tmp_path, espcn_weights, monkeypatch):
    src = make_clip(tmp_path / "in.mp4")
    dst = tmp_path / "clip.mp4"
    res = video.upscale_video(src, dst, _Nearest(), device="cpu", start=5, stop=15)
    assert res.frames == 10 and abs(res.video_seconds - 10 / FPS) < 1e-6
    frames = _decoded(dst)
    assert len(frames) == 10
    levels = [round((f[..., 2].mean() - 40) / 8) for f in frames]  # the blue level says which frame it is
    assert levels == list(range(5, 15))
    with av.open(str(dst)) as c:
        assert c.streams.video[0].start_time == 0
    audio = _packets(dst, "audio")
    assert 0 < len(audio) < len(_packets(src, "audio"))
    assert all(0 <= t < Fraction(10, FPS) for _, t in audio)
    # the CLI spelling, open-ended
    rc = _main(["video", str(src), "-o", str(tmp_path / "tail.mp4"), "--weights", str(espcn_weights),
                "--device", "cpu", "--frames", "20:", "--threads", "1"], monkeypatch)
    assert rc == 0 and len(_decoded(tmp_path / "tail.mp4")) == 4


@pytest.mark.parametrize("kind", ["random", "truncated", "no_video"])
def test_corrupt_or_unsupported_is_one_line_error(tmp_path, espcn_weights, monkeypatch, capsys, kind):
    bad = tmp_path / "bad.mp4"
    if kind == "random":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":  # mp4 whose index (moov, written last) is cut off
        good = make_clip(tmp_path / "good.mp4").read_bytes()
        bad.write_bytes(good[: len(good) // 2])
    else:
        c = av.open(str(bad), "w")
        a = c.add_stream("aac", rate=SR)
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        af.sample_rate, af.pts = SR, 0
        c.mux(a.encode(af))
        c.mux(a.encode())
        c.close()
    dst = tmp_path / "out.mp4"
    rc = _main(["video", str(bad), "-o", str(dst), "--weights", str(espcn_weights), "--device", "cpu",
                "--threads", "1"], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("restore: error: ") and str(bad) in err[0]
    assert ("no video stream" if kind == "no_video" else "not a readable video") in err[0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))) == []


def test_failure_midway_leaves_no_output(tmp_path):
    src = make_clip(tmp_path / "in.mp4", audio=False)
    calls = []

    class Boom(_Nearest):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("boom")
            return super().forward(x)

    with pytest.raises(RuntimeError, match="boom"):
        video.upscale_video(src, tmp_path / "out.mp4", Boom(), device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    with pytest.raises(io.VideoError, match="overwrite the input"):
        video.upscale_video(src, src, Boom(), device="cpu")


_KILL_SCRIPT = """
import sys
from restore import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_killed_run_leaves_nothing_at_the_final_name(tmp_path, espcn_weights):
    src = make_clip(tmp_path / "in.mp4", n=300, audio=False)
    dst = tmp_path / "out.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, "video", str(src), "-o", str(dst), "--weights",
                             str(espcn_weights), "--device", "cpu"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".out.") and p.stat().st_size for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # no output, no temporary file


# ------------------------------------------------------------------------------------------ stream API


class _Slow(_Nearest):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return super().forward(x)


@pytest.mark.parametrize(("batch", "buffer"), [(1, 1), (3, 2)])
def test_stream_order_and_bounded_latency(batch, buffer):
    frames = [_frame(i, 16, 12) for i in range(30)]
    pulled = []

    def source() -> Iterator[np.ndarray]:
        for f in frames:
            pulled.append(1)
            yield f

    runner = Restorer(_Slow(0.005), device="cpu")
    outs = []
    bound = video.max_in_flight(batch, buffer)
    for out in video.stream(source(), model=runner, batch=batch, buffer=buffer):
        outs.append(out)
        assert len(pulled) - len(outs) <= bound
    assert len(outs) == 30
    for f, o in zip(frames, outs, strict=True):
        np.testing.assert_array_equal(o, f.repeat(2, axis=0).repeat(2, axis=1))


def test_stream_drop_keeps_latency_bounded_for_fast_sources():
    frames = (_frame(i, 16, 12) for i in range(40))
    stats = video.PipelineStats()
    outs = list(video.stream(frames, model=_Slow(0.02), device="cpu", buffer=2, drop=True, stats=stats))
    assert stats.dropped > 0 and len(outs) + stats.dropped == 40
    ups = [_frame(i, 16, 12).repeat(2, axis=0).repeat(2, axis=1) for i in range(40)]
    order = [next(i for i, u in enumerate(ups) if np.array_equal(u, o)) for o in outs]
    assert order == sorted(order) and order[-1] == 39  # in order, and the newest frame is never dropped


def test_stream_errors_and_early_exit_stop_the_threads():
    def bad() -> Iterator[np.ndarray]:
        yield _frame(0, 16, 12)
        raise OSError("camera unplugged")

    before = threading.active_count()
    with pytest.raises(OSError, match="camera unplugged"):
        list(video.stream(bad(), model=_Nearest(), device="cpu"))
    gen = video.stream((_frame(i, 16, 12) for i in range(1000)), model=_Nearest(), device="cpu")
    next(gen)
    gen.close()
    time.sleep(0.1)
    assert threading.active_count() <= before


def test_frames_argument_parsing():
    from restore.cli.args import frame_range

    assert frame_range("5:15") == (5, 15)
    assert frame_range("5:") == (5, None) and frame_range(":7") == (0, 7)
    for bad in ("5", "7:3", "-1:4", "a:b", "3:3"):
        with pytest.raises(Exception, match="--frames"):
            frame_range(bad)


def test_import_restore_stays_light():
    code = "import sys, restore, restore.engine.video; print([m for m in ('av', 'torch', 'cv2') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert r.stdout.strip() == "[]"


def test_video_precision_auto_is_bf16_only_on_native_bf16_cpus(monkeypatch):
    from restore.engine import cpu_paths as cpu

    half_safe = ModelMeta(family="t", variant="t", task="sr", scale=2, in_channels=1, out_channels=1)
    unsafe = ModelMeta(family="t", variant="t", task="sr", scale=2, in_channels=1, out_channels=1, half_safe=False)
    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    assert video.video_precision("auto", "cpu", half_safe) == "bf16"
    assert video.video_precision("auto", "cpu", unsafe) == "auto"
    assert video.video_precision("fp32", "cpu", half_safe) == "fp32"  # an explicit choice is kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert video.video_precision("auto", "cuda", half_safe) == "auto"  # fp16 there, decided by the engine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    assert video.video_precision("auto", "cpu", half_safe) == "auto"


def test_cli_video_sets_passive_openmp_before_torch_loads():
    code = ("import os, sys; from restore import cli; cli._early_environment(sys.argv[1:]); "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for argv, expected in ((["video", "a.mp4"], "PASSIVE False"), (["upscale", "a.png"], "None False")):
        r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True, cwd=REPO,
                           env=env)
        assert r.stdout.strip() == expected
    r = subprocess.run([sys.executable, "-c", code, "video"], capture_output=True, text=True, check=True, cwd=REPO,
                       env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert r.stdout.strip() == "ACTIVE False"  # the user's setting wins


def test_writer_thread_count(tmp_path):
    info = io.VideoInfo(source="x", width=32, height=16, codec="h264", pix_fmt="yuv420p", time_base=Fraction(1, 24),
                        frame_rate=Fraction(24), n_frames=0, duration=None, start_time=0.0)
    w = io.VideoWriter(tmp_path / "t.mp4", info=info, width=32, height=16, threads=1)
    assert w.container.streams.video[0].codec_context.thread_count == 1
    for i in range(3):
        w.write(_frame(i, 32, 16), i, 1)
    w.close()
    assert len(_decoded(tmp_path / "t.mp4")) == 3
