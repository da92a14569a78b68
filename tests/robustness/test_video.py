"""Videos cut short: the output keeps what could be decoded, and the run says how many frames were expected and
decoded (exit 1 unless --allow-truncated); an unreadable video fails with one line (exit 1, as an image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.robustness.conftest import assert_clean_failure, digest, no_partial_files

av = pytest.importorskip("av", reason="the video extra (PyAV) is not installed")


def clip(path: Path, n: int = 20, *, faststart: bool = True) -> Path:
    opts = {"movflags": "+faststart"} if faststart and path.suffix == ".mp4" else {}
    out = av.open(str(path), "w", options=opts)
    v = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
    v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
        f = f.reformat(format="yuv420p")
        f.pts = i
        out.mux(v.encode(f))
    out.mux(v.encode())
    out.close()
    return path


def cut(path: Path) -> Path:
    data = path.read_bytes()
    half = path.with_name("cut_" + path.name)
    half.write_bytes(data[: len(data) * 2 // 3])
    return half


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.mark.parametrize("name", ["fast.mp4", "clip.mkv"])
def test_truncated_is_reported_with_counts(run_cli, espcn_pth: Path, tmp_path: Path, name: str) -> None:
    (tmp_path / "in").mkdir()
    src = cut(clip(tmp_path / "in" / name))
    before = digest(tmp_path / "in")
    out = tmp_path / "out" / ("up_" + name)
    r = run_cli("video", src, "--weights", espcn_pth, "-o", out)
    assert_clean_failure(r, src.name, rc=1)
    decoded = frames_in(out)
    assert 0 < decoded < 20 and f"20 frames expected, {decoded} decoded" in r.error_lines[0]
    r = run_cli("video", src, "--weights", espcn_pth, "-o", out, "--overwrite", "--allow-truncated")
    assert r.rc == 0 and not r.error_lines and "truncated" in r.err
    assert digest(tmp_path / "in") == before and no_partial_files(tmp_path)


def test_whole_file_is_not_flagged(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = clip(tmp_path / "whole.mp4")
    r = run_cli("video", src, "--weights", espcn_pth, "-o", tmp_path / "up.mp4")
    assert r.rc == 0 and "truncated" not in r.err and frames_in(tmp_path / "up.mp4") == 20


def test_unreadable_video_exits_1_with_one_line(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = cut(clip(tmp_path / "slow.mp4", faststart=False))  # moov atom at the end: nothing is readable
    r = run_cli("video", src, "--weights", espcn_pth, "-o", tmp_path / "up.mp4")
    assert_clean_failure(r, src.name, rc=1)
    assert not (tmp_path / "up.mp4").exists() and no_partial_files(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    assert_clean_failure(run_cli("video", text, "--weights", espcn_pth, "-o", tmp_path / "t.mp4"), text.name, rc=1)


def test_video_device_cuda_without_cuda(run_cli, espcn_pth: Path, tmp_path: Path, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    src = clip(tmp_path / "a.mp4", n=3)
    r = run_cli("video", src, "--weights", espcn_pth, "--device", "cuda", "-o", tmp_path / "up.mp4")
    assert_clean_failure(r, "cuda", rc=2)


def test_file_in_place_of_the_output_folder(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = clip(tmp_path / "in.mp4", n=3)
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    r = run_cli("video", src, "--weights", espcn_pth, "-o", blocker / "up.mp4")
    assert_clean_failure(r, src.name, rc=1)
    assert f"{blocker} is a file, not a folder" in r.error_lines[0]
    assert blocker.read_text() == "a file" and no_partial_files(tmp_path)


def test_a_folder_at_the_output_name(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = clip(tmp_path / "in.mp4", n=3)
    (tmp_path / "up.mp4").mkdir()
    for extra in ([], ["--overwrite"]):
        r = run_cli("video", src, "--weights", espcn_pth, "-o", tmp_path / "up.mp4", *extra)
        assert_clean_failure(r, "up.mp4", rc=1)
        assert "is a folder" in r.error_lines[0]


def test_frames_past_the_end_are_noted(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = clip(tmp_path / "in.mp4", n=5)
    r = run_cli("video", src, "--weights", espcn_pth, "-o", tmp_path / "a.mp4", "--frames", "3:10")
    assert r.rc == 0 and "frames 3:10 asked, the video ends at frame 5: frames 3:5 were processed" in r.err, r.err
    assert frames_in(tmp_path / "a.mp4") == 2
    r = run_cli("video", src, "--weights", espcn_pth, "-o", tmp_path / "b.mp4", "--frames", "1:3")
    assert r.rc == 0 and "asked, the video ends" not in r.err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a Linux /proc (a folder no file can be made in)")
def test_an_unwritable_output_folder_fails_before_the_first_frame(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = clip(tmp_path / "in.mp4", n=3)
    r = run_cli("video", src, "--weights", espcn_pth, "-o", "/proc/restore-out.mp4")
    assert_clean_failure(r, "/proc/restore-out.mp4", rc=1)
    # the stream line is printed when decoding starts: before, the run decoded and upscaled every frame and then
    # failed to publish the file
    assert "64x48 h264" not in r.err, r.err
