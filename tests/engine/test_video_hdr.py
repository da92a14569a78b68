"""10-bit and HDR video (issue "what users ask for", item 6): a 10-bit HEVC source tagged BT.2020 / PQ with HDR10
metadata (mastering display + content light level) stays 10-bit end to end, keeps its tags and metadata, and
really uses the 10 bits (compared with the explicit 8-bit pipeline). Clips are tiny (64x48, 12 frames) and made
here with PyAV / libx265."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from restore import io  # noqa: E402
from restore.engine import video  # noqa: E402
from restore.io import video as iov  # noqa: E402
from restore.io.hdr import ContentLight, HdrMetadata, MasteringDisplay  # noqa: E402
from tests.engine.test_video import _main, _Nearest  # noqa: E402
from tests.engine.test_video_yuv import _YNearest  # noqa: E402

W, H, N = 64, 48, 12
# BT.2020 primaries, D65, 0.0001-1000 cd/m2 (x265 units: 0.00002 for xy, 0.0001 cd/m2 for luminance)
MASTER_DISPLAY = "G(8500,39850)B(6550,2300)R(35400,14600)WP(15635,16450)L(10000000,1)"
MAX_CLL = "1000,400"
BT2020, PQ, BT2020_NCL = 9, 16, 9
HDR = HdrMetadata(
    mastering=MasteringDisplay(red=(Fraction(35400, 50000), Fraction(14600, 50000)),
                               green=(Fraction(8500, 50000), Fraction(39850, 50000)),
                               blue=(Fraction(6550, 50000), Fraction(2300, 50000)),
                               white_point=(Fraction(15635, 50000), Fraction(16450, 50000)),
                               min_luminance=Fraction(1, 10000), max_luminance=Fraction(1000)),
    light=ContentLight(max_cll=1000, max_fall=400))


def luma(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame i's 10-bit limited-range Y: a ramp with a step of one 10-bit code value every few pixels (an 8-bit
    pipeline cannot hold it: it keeps one level in four)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return 64 + (xx * 11 + yy * 3 + i * 5) % 876


def make_hdr_clip(path: Path, *, n: int = N, gop: int | None = None, lossless: bool = True) -> Path:
    """A 10-bit HEVC clip (yuv420p10le, Main 10) tagged BT.2020 / PQ / BT.2020 NCL, limited range, with the HDR10
    SEI messages of :data:`HDR`; ``lossless`` (x265 lossless) so that the decoded source is exactly :func:`luma`."""
    params = ["log-level=error", f"master-display={MASTER_DISPLAY}", f"max-cll={MAX_CLL}"]
    params += ["lossless=1"] if lossless else []
    params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"] if gop else []
    out = av.open(str(path), "w")
    v = out.add_stream("libx265", rate=24, options={"preset": "ultrafast", "x265-params": ":".join(params)})
    v.width, v.height, v.pix_fmt = W, H, "yuv420p10le"
    cc = v.codec_context
    cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = BT2020, PQ, BT2020_NCL, 1
    for i in range(n):
        u = np.full((H // 2, W // 2), 512 - 40 + i)
        w_ = np.full((H // 2, W // 2), 512 + 30 - i)
        planes = np.concatenate([luma(i).ravel(), u.ravel(), w_.ravel()]).astype(np.uint16).reshape(H * 3 // 2, W)
        f = av.VideoFrame.from_ndarray(planes, format="yuv420p10le")
        f.pts = i
        f.color_primaries, f.color_trc, f.colorspace, f.color_range = BT2020, PQ, BT2020_NCL, 1
        out.mux(v.encode(f))
    out.mux(v.encode())
    out.close()
    return path


@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hdr_clip(tmp_path_factory.mktemp("hdr") / "hdr10.mp4")


def _y10(path: Path) -> list[np.ndarray]:
    """Decoded Y planes as 10-bit code values (an 8-bit file is converted by swscale, as a player would)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="yuv420p10le")[:f.height].astype(np.int32) for f in c.decode(video=0)]


def _rgb48(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb48le") for f in c.decode(video=0)]


def _pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def _profile(path: Path) -> str:
    with av.open(str(path)) as c:
        return str(c.streams.video[0].codec_context.profile)


def _y_error(path: Path) -> float:
    """Mean |output Y (every other pixel of the x2 output) - source Y| in 10-bit code values."""
    outs = _y10(path)
    assert len(outs) == N
    return float(np.mean([np.abs(y[::2, ::2] - luma(i)).mean() for i, y in enumerate(outs)]))


# ------------------------------------------------------------------------------------------ metadata


def test_probe_reads_depth_tags_and_hdr10(hdr_clip):
    info = io.probe_video(hdr_clip)
    assert (info.pix_fmt, info.bit_depth, info.codec) == ("yuv420p10le", 10, "hevc")
    assert (info.color_primaries, info.color_trc, info.colorspace, info.color_range) == (BT2020, PQ, BT2020_NCL, 1)
    assert info.hdr == HDR
    assert info.hdr.x265_params() == [f"master-display={MASTER_DISPLAY}", f"max-cll={MAX_CLL}"]  # round trip
    assert "1000 cd/m2" in info.hdr.describe() and "MaxCLL 1000" in info.hdr.describe()


def test_default_encoder_keeps_the_depth():
    base = dict(source="x", width=64, height=48, pix_fmt="yuv420p10le", time_base=Fraction(1, 24), frame_rate=None,
                n_frames=0, duration=None, start_time=0.0, bit_depth=10)
    assert iov.default_video_codec(".mp4", io.VideoInfo(codec="hevc", **base)) == "libx265"
    assert iov.default_video_codec(".mkv", io.VideoInfo(codec="h264", **base)) == "libx264"  # High 10
    assert iov.default_video_codec(".mp4", io.VideoInfo(codec="prores", **base)) == "libx265"  # Main 10
    assert iov.default_video_codec(".mp4", io.VideoInfo(codec="hevc", **base), depth=8) == "libx264"
    eight = io.VideoInfo(codec="hevc", **{**base, "pix_fmt": "yuv420p", "bit_depth": 8})
    assert iov.default_video_codec(".mp4", eight) == "libx264" and iov.default_video_codec(".webm", eight) == \
        "libvpx-vp9"


# ------------------------------------------------------------------------------------------ end to end


def test_hdr10_stays_10_bit_with_tags_and_metadata(hdr_clip, tmp_path):
    """RGB path (a 3-channel model): frames decoded to 16-bit RGB, the network in float, x265 Main 10 out; tags
    and HDR10 metadata equal the source's (read back from the output's decoded frames), frame count and pts
    equal; and the 10 bits are used: the 8-bit pipeline (``bit_depth=8``) on the same clip gives decoded 16-bit
    RGB that is all multiples of 257 (8-bit values) and a Y error about 4x larger."""
    dst = tmp_path / "out.mp4"
    res = video.upscale_video(hdr_clip, dst, _Nearest(), device="cpu", crf=0)
    assert (res.frames, res.bit_depth, res.color_path) == (N, 10, "rgb") and not res.notes
    a, b = io.probe_video(hdr_clip), io.probe_video(dst)
    assert (b.pix_fmt, b.bit_depth, b.codec, _profile(dst)) == ("yuv420p10le", 10, "hevc", "Main 10")
    assert (b.color_primaries, b.color_trc, b.colorspace, b.color_range) == \
        (a.color_primaries, a.color_trc, a.colorspace, a.color_range) == (BT2020, PQ, BT2020_NCL, 1)
    assert b.hdr == a.hdr == HDR
    assert _pts(dst) == _pts(hdr_clip) == list(range(0, N * 512, 512))
    ys = _y10(dst)
    assert np.mean([(y % 4 != 0).mean() for y in ys]) > 0.6  # an 8-bit round trip would leave multiples of 4
    assert not all((x % 257 == 0).all() for x in _rgb48(dst))
    err10 = _y_error(dst)

    dst8 = tmp_path / "out8.mp4"
    res8 = video.upscale_video(hdr_clip, dst8, _Nearest(), device="cpu", crf=0, bit_depth=8)
    assert (res8.frames, res8.bit_depth) == (N, 8)
    assert any("processed and written at 8 bits (asked for)" in n for n in res8.notes)
    c = io.probe_video(dst8)
    assert (c.pix_fmt, c.bit_depth) == ("yuv420p", 8)
    assert (c.color_primaries, c.color_trc, c.colorspace) == (BT2020, PQ, BT2020_NCL)  # tags kept even so
    assert all((x % 257 == 0).all() for x in _rgb48(dst8))  # 8-bit samples, however decoded
    err8 = _y_error(dst8)
    assert err10 < 0.5 and err8 > 1.0 and err8 > 3 * err10, (err10, err8)


def test_y_plane_path_at_10_bits(hdr_clip, tmp_path):
    """A Y-only model (ESPCN's colour handling) takes the Y-plane path at 10 bits: the 10-bit Y plane goes to the
    network as float ((Y - 64) / 876), comes back as 10-bit code values, U / V are upscaled at 10 bits; no RGB
    anywhere. Lossless source, nearest-neighbour model: output Y equals the source Y within the encoder's
    rounding at CRF 0."""
    dst = tmp_path / "y.mkv"
    # fp32: on a CPU with native bf16, restore video's default is bf16, whose 8-bit mantissa rounds 10-bit codes
    res = video.upscale_video(hdr_clip, dst, _YNearest(), device="cpu", crf=0, precision="fp32")
    assert (res.color_path, res.bit_depth, res.frames) == ("yuv", 10, N)
    b = io.probe_video(dst)
    assert (b.pix_fmt, b.codec, b.hdr) == ("yuv420p10le", "hevc", HDR)
    assert _y_error(dst) < 0.5
    assert np.mean([(y % 4 != 0).mean() for y in _y10(dst)]) > 0.6


@pytest.mark.parametrize("full_range", [False, True])
def test_10_bit_luma_mapping_round_trips(full_range):
    """Every 10-bit code value of the range survives Y -> model's float Y -> Y exactly (no 8-bit step)."""
    lo, hi = (0, 1023) if full_range else (64, 940)
    vals = np.arange(lo, hi + 1)
    y = np.resize(vals, 32 * 30).reshape(30, 32).astype(np.uint16)
    frame = io.YuvFrame(32, 30, full_range=full_range, depth=10)
    frame.y[...] = y
    frame.u[...] = 512
    frame.v[...] = 300
    f = io.yuv_luma_for_model(frame)
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    back = io.yuv_from_luma(f, frame, 1)
    assert back.depth == 10 and back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.y, y)
    np.testing.assert_array_equal(back.v, 300)


def test_other_encoder_keeps_depth_and_tags_and_says_hdr_is_dropped(hdr_clip, tmp_path):
    """--codec libx264 on the HDR10 source: 10-bit H.264 (High 10) with the colour tags; the mastering display /
    content light SEI cannot be given to x264 through PyAV, and a note says so."""
    dst = tmp_path / "h264.mkv"
    res = video.upscale_video(hdr_clip, dst, _Nearest(), device="cpu", codec="libx264")
    b = io.probe_video(dst)
    assert (b.codec, b.pix_fmt, res.bit_depth) == ("h264", "yuv420p10le", 10)
    assert (b.color_primaries, b.color_trc, b.colorspace) == (BT2020, PQ, BT2020_NCL)
    assert b.hdr is None and any("HDR metadata of the source" in n and "libx265" in n for n in res.notes)


def test_cli_summary_on_hdr10(hdr_clip, tmp_path, espcn_weights, monkeypatch, capsys):
    """``restore video`` on the HDR10 clip with ESPCN: the summary line keeps fps and the real-time factor and
    says 10-bit; the output is Main 10 with the HDR10 metadata."""
    dst = tmp_path / "cli.mp4"
    rc = _main(["video", str(hdr_clip), "-o", str(dst), "--weights", str(espcn_weights), "--device", "cpu",
                "--threads", "1"], monkeypatch)
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"{N} frames" in line and " fps" in line and "real-time factor" in line
    assert "yuv path, 10-bit" in line
    b = io.probe_video(dst)
    assert (b.pix_fmt, b.hdr, b.color_trc) == ("yuv420p10le", HDR, PQ)


@pytest.fixture(scope="module")
def espcn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from restore.archs.espcn import ESPCN

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "espcn_x2.pth"
    torch.save(ESPCN(scale=2).state_dict(), p)
    return p
