"""Long videos across workers (issue "Past one machine", part 3): the video split at keyframes into segments,
each upscaled on its own, joined by stream copy with the source's audio copied once; resumable per segment;
``--segments K/N | N | concat`` and ``--ray``. Clips: 64x48, 40 frames, GOP 8 with B-frames, AAC audio.

What "equal to a single-process run" means here: the same frame count, the same pts of every frame, the same
audio packets (bytes and timestamps); decoded pixels equal exactly at CRF 0 (lossless x264: the network outputs
are the same, so the decoded frames are) and within the encoder's tolerance at the default CRF 18 (each segment
starts with a keyframe of its own, so the encoded packets differ from the single encode's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from restore import io  # noqa: E402
from restore.engine import video  # noqa: E402
from restore.engine import video_segments as segs  # noqa: E402
from restore.errors import VideoError  # noqa: E402
from restore.io import video_segments as iosegs  # noqa: E402
from tests.engine.test_video import FPS, SR, _frame, _main, _Nearest, _packets  # noqa: E402

N_FRAMES, GOP = 40, 8


def make_gop_clip(path: Path, *, n: int = N_FRAMES, gop: int = GOP, audio: bool = True, w: int = 64,
                  h: int = 48) -> Path:
    """x264 (2 B-frames, a keyframe every ``gop`` frames exactly) + a 440 Hz AAC track as long as the video."""
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=FPS, options={"crf": "10", "preset": "ultrafast", "g": str(gop),
                                                    "keyint_min": str(gop), "sc_threshold": "0", "bf": "2"})
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    a = out.add_stream("aac", rate=SR) if audio else None
    if a is not None:
        a.layout = "mono"
    for i in range(n):
        f = av.VideoFrame.from_ndarray(_frame(i, w, h), format="rgb24").reformat(format="yuv420p")
        f.pts = i
        out.mux(v.encode(f))
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


class _Counting(_Nearest):
    """:class:`_Nearest` that counts the frames the network sees (full 48x64 frames only). Run it with
    ``precision="fp32"``: on a CPU with native bf16 the default runs a bf16 copy, which this count never sees."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (48, 64):
            self.frames += x.shape[0]
        return super().forward(x)


class _FailAfter(_Counting):
    """Raises once it has seen ``limit`` frames (a worker that dies mid-job)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frames >= self.limit:
            raise RuntimeError("worker lost")
        return super().forward(x)


def _decoded(path: Path) -> tuple[list[int], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = [(f.pts, f.to_ndarray(format="rgb24").astype(np.int16)) for f in c.decode(video=0)]
    return [p for p, _ in frames], [a for _, a in frames]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gop_clip(tmp_path_factory.mktemp("seg") / "gop8.mp4")


@pytest.fixture(scope="module")
def single(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Single-process outputs of the clip (by CRF), made once."""
    folder = tmp_path_factory.mktemp("single")
    out = {}
    for crf in (0, 18):
        out[crf] = folder / f"single{crf}.mp4"
        video.upscale_video(clip, out[crf], _Nearest(), device="cpu", precision="fp32", crf=crf)
    return out


def _assert_like_single(dst: Path, ref: Path, clip: Path, *, exact: bool) -> None:
    a_pts, a = _decoded(ref)
    b_pts, b = _decoded(dst)
    assert len(b) == len(a) == N_FRAMES
    assert b_pts == a_pts == list(range(0, N_FRAMES * 512, 512))  # pts in the mp4 time base 1/12288
    assert _packets(dst, "audio") == _packets(ref, "audio") == _packets(clip, "audio")  # bytes and timestamps
    diff = [np.abs(x - y) for x, y in zip(a, b, strict=True)]
    if exact:
        assert max(d.max() for d in diff) == 0
    else:  # CRF 18: measured max 27, mean 0.97 code values on this clip
        assert np.mean([d.mean() for d in diff]) < 2.0 and max(d.max() for d in diff) < 64


# ------------------------------------------------------------------------------------------ planning (io only)


def test_plan_cuts_at_keyframes_balanced_by_duration(clip):
    index = iosegs.scan_packets(clip)
    keys = [p for p, k in zip(index.pts, index.key, strict=True) if k]
    assert keys == [0, 4096, 8192, 12288, 16384]  # GOP 8 at 1/12288
    plan = iosegs.plan_segments(index, 3)
    assert [(s.start, s.end, s.frames) for s in plan] == [(None, 8192, 16), (8192, 12288, 8), (12288, None, 16)]
    assert all(s.start in keys for s in plan[1:]) and sum(s.frames for s in plan) == N_FRAMES
    assert [s.frames for s in iosegs.plan_segments(index, 5)] == [8] * 5
    assert len(iosegs.plan_segments(index, 9)) == 5  # no more segments than keyframes
    assert len(iosegs.plan_segments(index, 1)) == 1


def test_segments_decode_every_frame_once_with_open_gop(tmp_path):
    """HEVC open GOP (CRA keyframes with leading pictures decoded after the keyframe but shown before it): the
    leading pictures belong to the segment before, read past its end; each frame comes out exactly once."""
    src = tmp_path / "open.mkv"
    out = av.open(str(src), "w")
    v = out.add_stream("libx265", rate=FPS, options={"preset": "ultrafast", "x265-params": (
        "log-level=error:keyint=8:min-keyint=8:open-gop=1:bframes=3:scenecut=0")})
    v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
    for i in range(N_FRAMES):
        f = av.VideoFrame.from_ndarray(_frame(i, 64, 48), format="rgb24").reformat(format="yuv420p")
        f.pts = i
        out.mux(v.encode(f))
    out.mux(v.encode())
    out.close()
    index = iosegs.scan_packets(src)
    assert any(p < index.pts[i] for i in iosegs.cut_points(index) for p in index.pts[i + 1:i + 4]), \
        "no leading pictures: the clip does not test what it should"
    with av.open(str(src)) as c:
        whole = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    pieces = []
    for seg in iosegs.plan_segments(index, 4):
        got = list(iosegs.read_segment(src, seg, pixels="rgb24", size=(64, 48), full_range=False))
        assert len(got) == seg.frames
        pieces += [(f.pts, f.image) for f in got]
    assert [p for p, _ in pieces] == [p for p, _ in whole]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(pieces, whole, strict=True))


# ------------------------------------------------------------------------------------------ equal to one process


@pytest.mark.parametrize("crf", [0, 18])
def test_segments_equal_single_process(clip, single, tmp_path, crf):
    dst = tmp_path / "out.mp4"
    res = segs.upscale_video_segments(clip, dst, _Nearest(), segments=3, device="cpu", crf=crf)
    assert (res.joined, res.segments, res.processed, res.reused, res.frames) == (True, 3, [0, 1, 2], [], N_FRAMES)
    assert res.out_size == (128, 96) and res.output == str(dst)
    _assert_like_single(dst, single[crf], clip, exact=crf == 0)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # work folder and temporaries gone


def test_matroska_segments_keep_absolute_timestamps(tmp_path):
    """Matroska is joined without the MP4 shift; pts (ms) and audio equal a single-process run's."""
    src = make_gop_clip(tmp_path / "in.mkv")
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    video.upscale_video(src, one, _Nearest(), device="cpu", crf=0)
    segs.upscale_video_segments(src, many, _Nearest(), segments=4, device="cpu", crf=0)
    (a_pts, a), (b_pts, b) = _decoded(one), _decoded(many)
    assert b_pts == a_pts and len(b) == N_FRAMES and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert _packets(many, "audio") == _packets(one, "audio")


def test_hdr10_segments_stay_10_bit(tmp_path):
    """A 10-bit HDR10 source in segments: the joined file is Main 10 with the tags and HDR10 metadata, all frames."""
    from tests.engine.test_video_hdr import HDR, make_hdr_clip

    src = make_hdr_clip(tmp_path / "hdr.mp4", n=16, gop=4, lossless=False)
    dst = tmp_path / "out.mp4"
    res = segs.upscale_video_segments(src, dst, _Nearest(), segments=3, device="cpu")
    assert res.joined and res.bit_depth == 10 and res.segments == 3
    a, b = io.probe_video(src), io.probe_video(dst)
    assert (b.pix_fmt, b.hdr, b.color_trc, b.color_primaries) == ("yuv420p10le", HDR, a.color_trc, a.color_primaries)
    assert _decoded(dst)[0] == _decoded(src)[0]


# ------------------------------------------------------------------------------------------ resume


def test_only_missing_segments_are_processed_on_rerun(clip, single, tmp_path):
    """Segment 1 of 3 made first (as a ``--segments 1/3`` job would), then the whole job: only segments 0 and 2
    go through the network (counted frames), and the result equals the single-process output."""
    dst = tmp_path / "out.mp4"
    first = _Counting()
    res = segs.upscale_video_segments(clip, dst, first, segments=3, only=1, device="cpu", precision="fp32", crf=0)
    assert (res.processed, res.joined, res.done, first.frames) == ([1], False, 1, 8)
    assert not dst.exists()
    work = segs.work_folder(clip, dst)
    assert work.is_dir() and work.name.startswith(".out.mp4.") and work.name.endswith(".segments")
    records = sorted(work.glob("*-of-*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["frames"] == 8

    rest = _Counting()
    res = segs.upscale_video_segments(clip, dst, rest, segments=3, device="cpu", precision="fp32", crf=0)
    assert (res.processed, res.reused, res.joined) == ([0, 2], [1], True)
    assert rest.frames == N_FRAMES - 8 == res.frames
    _assert_like_single(dst, single[0], clip, exact=True)
    assert not work.exists()


def test_interrupted_job_resumes_at_segment_granularity(clip, single, tmp_path):
    """A run that dies in its third segment keeps the two finished ones; the rerun processes the third only."""
    dst = tmp_path / "out.mp4"
    dying = _FailAfter(limit=16 + 8 + 3)  # segments hold 16, 8, 16 frames
    with pytest.raises(RuntimeError, match="worker lost"):
        segs.upscale_video_segments(clip, dst, dying, segments=3, device="cpu", precision="fp32", crf=0)
    work = segs.work_folder(clip, dst)
    assert len(list(work.glob("*-of-*.json"))) == 2 and not dst.exists()
    assert not list(work.glob(".*part*"))  # the broken segment's temporary file was removed

    again = _Counting()
    res = segs.upscale_video_segments(clip, dst, again, segments=3, device="cpu", precision="fp32", crf=0)
    assert (res.processed, res.reused, again.frames) == ([2], [0, 1], 16)
    _assert_like_single(dst, single[0], clip, exact=True)


def test_other_settings_never_mix_their_segments(clip, tmp_path):
    dst = tmp_path / "out.mp4"
    segs.upscale_video_segments(clip, dst, _Nearest(), segments=3, only=0, device="cpu", precision="fp32", crf=0)
    other = _Counting()
    res = segs.upscale_video_segments(clip, dst, other, segments=3, only=0, device="cpu", precision="fp32", crf=20)
    assert res.processed == [0] and other.frames == 16  # CRF 20 is another job: its own segment 0
    assert len(segs.find_plans(clip, dst)) == 2


# ------------------------------------------------------------------------------------------ command line


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    return _main(["video", *argv], monkeypatch)


def test_cli_segments_k_of_n_joins_when_the_last_is_done(clip, single, tmp_path, espcn_weights, monkeypatch,
                                                          capsys):
    dst = tmp_path / "out.mp4"
    common = ["-o", str(dst), "--weights", str(espcn_weights), "--device", "cpu", "--threads", "1", "--crf", "0"]
    assert _run([str(clip), *common, "--segments", "1/2"], monkeypatch) == 0
    out = capsys.readouterr()
    line = out.out.strip().splitlines()[-1]
    assert "fps" in line and "real-time factor" in line and "1 processed" in line and "1 of 2 done" in line
    assert not dst.exists()

    rc = _run([str(clip), *common, "--segments", "concat"], monkeypatch)  # segment 0 missing: one line, exit 1
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("restore: error: ") and "segment(s) 0 of 2 not done" in err[-1]

    assert _run([str(clip), *common, "--segments", "0/2"], monkeypatch) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"-> {dst}" in line and "joined into" in line and "2 of 2 done" in line
    assert len(_decoded(dst)[0]) == N_FRAMES and _packets(dst, "audio") == _packets(clip, "audio")
    assert not segs.work_folder(clip, dst).exists()


def test_cli_segments_lock_then_concat_explicitly(clip, tmp_path, espcn_weights, monkeypatch, capsys):
    """The last ``--segments K/N`` run does not join while another process holds the join lock; ``--segments
    concat`` then joins (taking the lock over) and removes the work folder."""
    dst = tmp_path / "out.mkv"
    common = ["-o", str(dst), "--weights", str(espcn_weights), "--device", "cpu", "--threads", "1"]
    assert _run([str(clip), *common, "--segments", "0/2"], monkeypatch) == 0
    work = segs.work_folder(clip, dst)
    (work / segs.LOCK_NAME).write_text("elsewhere 1\n")  # as if another process were joining
    assert _run([str(clip), *common, "--segments", "1/2"], monkeypatch) == 0
    out = capsys.readouterr()
    assert not dst.exists() and "another process is joining" in out.err and "2 of 2 done" in out.out
    assert _run([str(clip), *common, "--segments", "concat"], monkeypatch) == 0
    assert "joined 2 segments by stream copy" in capsys.readouterr().out
    assert len(_decoded(dst)[0]) == N_FRAMES
    assert [b for b, _ in _packets(dst, "audio")] == [b for b, _ in _packets(clip, "audio")]  # MP4 -> MKV: ms times
    assert not work.exists()


def test_cli_segments_n_all_here(clip, tmp_path, espcn_weights, monkeypatch, capsys):
    dst = tmp_path / "all.mkv"
    assert _run([str(clip), "-o", str(dst), "--weights", str(espcn_weights), "--device", "cpu", "--threads", "1",
                 "--segments", "3"], monkeypatch) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "3 processed, 0 reused, 3 of 3 done" in line and f"{N_FRAMES} frames" in line and "fps" in line
    assert len(_decoded(dst)[0]) == N_FRAMES


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2"], "--workers is for --ray"),
    (["--segments", "2", "--frames", "0:5"], "not with --live or --frames"),
    (["--segments", "2", "--ray"], "--ray and --segments are alternatives"),
])
def test_cli_usage_errors(clip, tmp_path, espcn_weights, monkeypatch, capsys, argv, message):
    rc = _run([str(clip), "-o", str(tmp_path / "o.mp4"), "--weights", str(espcn_weights), *argv], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]


@pytest.mark.parametrize("spec", ["3/3", "x", "0", "-1/2"])
def test_cli_bad_segment_spec(clip, tmp_path, monkeypatch, capsys, spec):
    with pytest.raises(SystemExit) as e:
        _run([str(clip), "-o", str(tmp_path / "o.mp4"), f"--segments={spec}"], monkeypatch)
    assert e.value.code == 2 and "--segments takes K/N" in capsys.readouterr().err


def test_cli_ray_without_ray_names_the_extra(clip, tmp_path, espcn_weights, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = _run([str(clip), "-o", str(tmp_path / "o.mp4"), "--weights", str(espcn_weights), "--ray"], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install 'restore[cluster]'" in err[0]
    assert not (tmp_path / "o.mp4").exists()


def test_join_refuses_segments_of_another_encoder(clip, tmp_path):
    """A segment file replaced by one of another size cannot be joined: one line naming it, nothing written."""
    dst = tmp_path / "out.mp4"
    for k in (0, 1):
        segs.upscale_video_segments(clip, dst, _Nearest(), segments=3, only=k, device="cpu", crf=0)
    plan = segs.find_plans(clip, dst)[0]
    small = make_gop_clip(tmp_path / "small.mp4", n=16, w=32, h=24, audio=False)
    video.upscale_video(small, plan.part(plan.segments[1]), _Nearest(), device="cpu", crf=0, overwrite=True)
    with pytest.raises(VideoError, match=r"cannot be joined to the others: width 64 instead of 128"):
        segs.upscale_video_segments(clip, dst, _Nearest(), segments=3, device="cpu", crf=0)
    assert not dst.exists() and not [p for p in tmp_path.iterdir() if ".part" in p.name]


# ------------------------------------------------------------------------------------------ Ray


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray instance for this module (2 CPUs), shut down at the end; the engine uses the
    connection it finds instead of starting its own."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (the 'cluster' extra: pip install "
                                            "'restore[cluster]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (the 'cluster' extra)")
    if ray.is_initialized():
        pytest.skip("a Ray connection is already open in this process")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_local_cluster_equals_single_process(local_ray, clip, single, tmp_path, espcn_weights,
                                                 monkeypatch, capsys):
    """``restore video IN -o OUT --ray --workers 2``: two segments as Ray tasks (one CPU each) on the local
    instance, joined here; output equal to the single-process one (nearest model: frames exact at CRF 0)."""
    ref = tmp_path / "ref.mp4"
    video.upscale_video(clip, ref, espcn_weights, device="cpu", crf=0, precision="fp32")
    dst = tmp_path / "ray.mp4"
    rc = _run([str(clip), "-o", str(dst), "--weights", str(espcn_weights), "--device", "cpu", "--precision", "fp32",
               "--crf", "0", "--ray", "--workers", "2"], monkeypatch)
    out = capsys.readouterr()
    assert rc == 0, out.err
    line = out.out.strip().splitlines()[-1]
    assert "Ray: 2 worker(s) x 1 CPU" in line and "2 processed" in line and "real-time factor" in line
    (a_pts, a), (b_pts, b) = _decoded(ref), _decoded(dst)
    assert b_pts == a_pts and len(b) == N_FRAMES
    assert max(np.abs(x - y).max() for x, y in zip(a, b, strict=True)) <= 1  # fp32 summation order aside
    assert _packets(dst, "audio") == _packets(clip, "audio")
    assert ray_is_still_up(local_ray)


def test_ray_failed_segments_are_one_line(local_ray, clip, tmp_path):
    """Segments that fail on their workers (here: weights that do not load) end the run with one VideoError line
    naming the output and the first failure; nothing is written."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    dst = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match=r"out\.mp4: 2 of 2 segment\(s\) failed \(segment \d: .*bad\.pth") as e:
        segs.upscale_video_segments(clip, dst, bad, ray=True, workers=2, device="cpu")
    assert "\n" not in str(e.value) and not dst.exists()


def ray_is_still_up(ray) -> bool:
    return ray.is_initialized() and ray.cluster_resources().get("CPU", 0) == 2


@pytest.fixture(scope="module")
def espcn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from restore.archs.espcn import ESPCN

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "espcn_x2.pth"
    torch.save(ESPCN(scale=2).state_dict(), p)
    return p


def test_segment_beyond_the_keyframes_is_empty(clip, tmp_path):
    """7 segments asked of a clip with 5 keyframes: the plan has 5; 'segment 6 of 7' has nothing to do."""
    res = segs.upscale_video_segments(clip, tmp_path / "o.mp4", _Nearest(), segments=7, only=6, device="cpu")
    assert (res.processed, res.segments, res.joined) == ([], 5, False)
    assert any("segment 6 of 7 is empty" in n for n in res.notes)
