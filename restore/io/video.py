"""Video containers with PyAV: probe, read, write (the ``video`` extra).

One concern, kept whole (hence over 500 lines): FFmpeg containers and streams through PyAV.

Video decode / encode / remux with PyAV (FFmpeg inside the wheel; the ``video`` extra). ``av`` is imported by
these functions only, never when ``restore`` or this module is imported.

Reading (:func:`probe_video`, :func:`read_video`): the first video stream is decoded to HxWx3 uint8 RGB with
FFmpeg's swscale, using the matrix and range the stream declares (BT.601 when it declares none), or to HxWx3
uint16 RGB (``pixels="rgb48"``: 16-bit samples, for sources of more than 8 bits), or, with ``pixels="yuv420p"``
/ ``"yuv420p10le"``, kept as its 4:2:0 planes (:class:`YuvFrame`, 8 or 10 bits, no colour conversion); every
audio, subtitle and data stream is demuxed and handed on as packets, untouched, to be copied into the output.
:func:`probe_video` also reports the bit depth and the HDR static metadata (mastering display, content light
level: :mod:`restore.io.hdr`) of the first frame.
Frames keep their own timestamps (variable frame rate survives); a frame whose size differs from the first
one (a mid-stream resolution change) is scaled to the first frame's size. Frame side data that describes
the picture (the display matrix, i.e. rotation/flip metadata) is reported in :class:`VideoInfo`.

Writing (:class:`VideoWriter`): one encoded video stream (default libx264, CRF 18, preset ``veryfast``;
libvpx-vp9 for ``.webm``) with the source's time base and timestamps, frame-rate, sample aspect ratio,
colour range / matrix / primaries / transfer tags and display matrix, plus a stream-copy of every audio,
subtitle and data stream of the source (the packets' bytes are written as read). The output pixel format
is yuv420p (yuv444p when the source is 4:4:4 and the codec allows it; the codec's own format when it has
no yuv420p, e.g. ``png``). Sources of more than 8 bits keep their depth (:func:`default_video_codec`: the
source codec's own encoder when it has a 10-bit profile, e.g. libx264 High 10 for H.264, libx265 Main 10 for
HEVC, libvpx-vp9 profile 2 for VP9; libx265 otherwise; the pixel format is the source's when the encoder
takes it, else yuv420p10le / yuv444p10le), and their HDR10 metadata (mastering display, content light level)
is written by libx265 (``x265-params``; other encoders cannot be given it through PyAV: a note says so).
:meth:`VideoWriter.write` takes uint8 or uint16 RGB, or a :class:`YuvFrame`, whose planes go to the
encoder as they are (no RGB round trip). 4:2:0 / 4:2:2 need even dimensions: an odd output width or height
is cropped by one pixel (the last column / row), which :attr:`VideoWriter.cropped` reports. The file is
written under a hidden temporary name in the destination folder (:func:`video_temp_path`) and renamed to its
final name by :func:`publish_video` only when complete, so a failed or killed run never leaves a partial file
at the final name.

Y-plane path (Y-channel models such as ESPCN, whose colour space is OpenCV's full-range YCrCb: only Y goes
through the network): :func:`yuv_luma_for_model` maps a frame's Y plane to the model's full-range Y in
[0, 1] (limited range: ``(Y - 16) / 219``, clipped; full range: ``Y / 255``; at 10 bits ``(Y - 64) / 876``
and ``Y / 1023``) and :func:`yuv_from_luma` maps the restored Y back to the frame's range (clipped to
[0, 1] first, then ``16 + 219 y`` or ``255 y`` (10 bits: ``64 + 876 y``, ``1023 y``), rounded) and upscales U
and V bilinearly (OpenCV, as the RGB path does with Cr/Cb), into one contiguous yuv420p (yuv420p10le) buffer
that the encoder takes without a copy (8 bits; PyAV copies 10-bit planes once). The colour range and tags stay
the source's. The network sees the stream's own luma (its matrix, e.g. BT.709), where the RGB path recomputes a
BT.601 luma from RGB: for BT.601 sources the two agree up to rounding; for others the luma weights differ
slightly.

Every failure to open, decode or write is a :class:`VideoError` whose message starts with the file name.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from restore.errors import VideoError
from restore.io import files
from restore.io.hdr import HdrMetadata, hdr_from_side_data

video_temp_path = files.temp_path  # a hidden temporary name beside the output (same suffix: same container)
publish_video = files.publish  # fsync'ed atomic rename of the finished temporary file

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
"""Containers :class:`VideoWriter` writes (the suffix picks the container)."""

DEFAULT_VIDEO_CODEC = "libx264"
DEFAULT_CRF = 18
DEFAULT_PRESET = "veryfast"
_CODEC_FOR_SUFFIX = {".webm": "libvpx-vp9"}
_CRF_CODECS = ("libx264", "libx265", "libvpx", "libvpx-vp9", "libsvtav1", "libaom-av1")
_PRESET_CODECS = ("libx264", "libx265")
_COPY_TYPES = ("audio", "subtitle", "data")
_SKIP_TAGS = ("major_brand", "minor_version", "compatible_brands", "encoder", "handler_name", "duration",
              "vendor_id")  # written by the muxer / encoder itself (compared case-insensitively)
# AVColorSpace (what streams declare) -> swscale matrix name used for the RGB <-> YUV conversions
_SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
YUV420_FORMATS = ("yuv420p", "yuvj420p")
"""Source pixel formats :func:`read_video` can hand on as planes (``pixels="yuv420p"``) without conversion."""
YUV420_10_FORMATS = ("yuv420p10le",)
"""10-bit source pixel formats :func:`read_video` hands on as planes (``pixels="yuv420p10le"``)."""
PIXELS = ("rgb24", "rgb48", "yuv420p", "yuv420p10le")
"""What :func:`read_video` can decode frames to (see its docstring)."""
# the encoder of a codec's own family, for sources of more than 8 bits (when it is built with high bit depth)
_HIGH_DEPTH_ENCODER = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
HIGH_DEPTH_CODEC = "libx265"
"""Encoder for sources of more than 8 bits whose own codec has no 10-bit encoder here (x265 Main 10)."""
_WEBM_ENCODERS = ("libvpx", "libvpx-vp9", "libsvtav1", "libaom-av1")
_MAX_DECODE_ERRORS = 50


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file, as :func:`probe_video` found it (after decoding its first frame).

    ``time_base`` is the unit of the timestamps :func:`read_video` returns; ``frame_rate`` the average rate
    (None when the container does not know it); ``n_frames`` the frame count of the header (0: unknown, see
    :meth:`estimated_frames`); ``duration`` seconds (None: unknown). Colour fields are FFmpeg's enum values
    (``color_range`` 1 = limited/MPEG, 2 = full/JPEG, 0 = unspecified). ``display_matrix`` is the 3x3
    rotation/flip matrix (9 int32, FFmpeg's layout) or None; ``rotation`` its counter-clockwise angle.
    ``streams`` describes the other streams (those a :class:`VideoWriter` copies). ``bit_depth``: bits per
    sample of the decoded format (8, 10, 12, ...); ``hdr``: the HDR10 static metadata of the first frame.
    """

    source: str
    width: int
    height: int
    codec: str
    pix_fmt: str
    time_base: Fraction
    frame_rate: Fraction | None
    n_frames: int
    duration: float | None
    start_time: float
    color_range: int = 0
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2
    sample_aspect_ratio: Fraction | None = None
    display_matrix: tuple[int, ...] | None = None
    rotation: int = 0
    streams: tuple[str, ...] = ()
    live: bool = False
    bit_depth: int = 8
    hdr: HdrMetadata | None = None

    @property
    def fps(self) -> float:
        return float(self.frame_rate) if self.frame_rate else 0.0

    def estimated_frames(self) -> int:
        """Frame count from the header, else duration x frame rate; 0 when neither is known."""
        if self.n_frames:
            return self.n_frames
        if self.duration and self.frame_rate:
            return max(1, round(self.duration * self.fps))
        return 0


class YuvFrame:
    """A 4:2:0 picture as its three planes in one contiguous buffer (``data``: (3H/2)xW, Y then U then V, as
    FFmpeg lays out yuv420p / yuv420p10le with no padding): uint8 at ``depth`` 8, uint16 (10 significant bits,
    little-endian as the machine) at ``depth`` 10; ``y`` HxW, ``u`` / ``v`` (H/2)x(W/2) are views of it.
    ``full_range``: JPEG range (0-255 / 0-1023); else limited / MPEG range (Y 16-235, U/V 16-240, times 4 at
    10 bits). Width and height must be even."""

    __slots__ = ("data", "depth", "full_range", "height", "width")

    def __init__(self, width: int, height: int, *, full_range: bool, data: np.ndarray | None = None,
                 depth: int = 8) -> None:
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise ValueError(f"yuv420p needs even sizes of at least 2, got {width}x{height}")
        if depth not in (8, 10):
            raise ValueError(f"YuvFrame holds 8- or 10-bit planes, not {depth}-bit")
        dtype = np.uint8 if depth == 8 else np.uint16
        self.width, self.height, self.full_range, self.depth = width, height, full_range, depth
        if data is None:
            data = np.empty((height * 3 // 2, width), dtype)
        elif data.shape != (height * 3 // 2, width) or data.dtype != dtype or not data.flags.c_contiguous:
            raise ValueError(f"{self.pix_fmt} buffer must be a C-contiguous {np.dtype(dtype).name} "
                             f"{(height * 3 // 2, width)} array")
        self.data = data

    @property
    def pix_fmt(self) -> str:
        """FFmpeg's name of the buffer's layout."""
        return "yuv420p" if self.depth == 8 else "yuv420p10le"

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width), as an image's ``shape[:2]``."""
        return self.height, self.width

    @property
    def y(self) -> np.ndarray:
        return self.data[:self.height]

    def _chroma(self, k: int) -> np.ndarray:
        n = self.width * self.height
        q = n // 4
        return self.data.reshape(-1)[n + k * q:n + (k + 1) * q].reshape(self.height // 2, self.width // 2)

    @property
    def u(self) -> np.ndarray:
        return self._chroma(0)

    @property
    def v(self) -> np.ndarray:
        return self._chroma(1)


def pix_fmt_depth(pix_fmt: str) -> int:
    """Bits per sample of an FFmpeg pixel format (8 for yuv420p, 10 for yuv420p10le / p010le, 32 for float
    formats); 8 when PyAV does not know the name."""
    try:
        import av

        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ImportError, ValueError, TypeError):
        return 8


def yuv420_supported(pix_fmt: str, width: int, height: int) -> bool:
    """Whether frames of this format and size can take the Y-plane path (planar 4:2:0 of 8 or 10 bits, even
    sizes)."""
    return (pix_fmt in YUV420_FORMATS + YUV420_10_FORMATS and width % 2 == 0 and height % 2 == 0 and width >= 2
            and height >= 2)


def yuv_pixels(pix_fmt: str) -> str:
    """The ``pixels`` of :func:`read_video` that keeps a source of ``pix_fmt`` as its 4:2:0 planes."""
    return "yuv420p10le" if pix_fmt in YUV420_10_FORMATS else "yuv420p"


def read_video_pixels(info: VideoInfo, planes: bool, depth: int) -> str:
    """The ``pixels`` of :func:`read_video` for a pipeline of ``depth`` bits on the source ``info``: its 4:2:0
    planes (``planes``: the Y-plane path) or RGB, 16-bit (``"rgb48"``) above 8 bits."""
    if planes:
        return yuv_pixels(info.pix_fmt)
    return "rgb48" if depth > 8 else "rgb24"


def _luma_lut(full_range: bool, depth: int = 8) -> np.ndarray:
    top = (1 << depth) - 1
    v = np.arange(top + 1, dtype=np.float32)
    if full_range:  # as rgb_to_ycrcb_full: uint8 times float32(1/255)
        return v * np.float32(1.0 / top)
    lo, span = (16 << (depth - 8)), (219 << (depth - 8))
    return np.clip((v - np.float32(lo)) / np.float32(span), 0.0, 1.0).astype(np.float32)


_LUMA_LUT = {(r, d): _luma_lut(r, d) for r in (True, False) for d in (8, 10)}


def yuv_luma_for_model(frame: YuvFrame) -> np.ndarray:
    """The Y plane as a Y-channel model's input: HxW float32 full-range Y in [0, 1] (limited range is
    expanded from 16-235 (64-940 at 10 bits) and clipped, like the RGB path's clipped RGB)."""
    lut = _LUMA_LUT[frame.full_range, frame.depth]
    if frame.depth == 8:
        return cv2.LUT(frame.y, lut)
    return np.take(lut, frame.y, mode="clip")  # 10 significant bits; anything above 1023 counts as 1023


def yuv_from_luma(y: np.ndarray, frame: YuvFrame, scale: int) -> YuvFrame:
    """The upscaled picture: restored full-range Y (``scale`` x the frame's size, float in [0, 1], HxW or
    HxWx1) mapped back to ``frame``'s range and depth, and ``frame``'s U / V upscaled bilinearly (OpenCV,
    half-pixel centres, integer rounding) — one contiguous buffer, same range and depth as ``frame``."""
    h, w = frame.height * scale, frame.width * scale
    y = y.reshape(y.shape[:2])
    if y.shape != (h, w):
        raise ValueError(f"restored Y is {y.shape[1]}x{y.shape[0]}, expected {w}x{h}")
    out = YuvFrame(w, h, full_range=frame.full_range, depth=frame.depth)
    yc = np.clip(y, 0.0, 1.0, dtype=np.float32)
    if frame.depth == 8:
        # x255 (full) or x219 + 16 (limited), round half to even, saturate: one OpenCV pass into the buffer
        if frame.full_range:
            cv2.convertScaleAbs(yc, dst=out.y, alpha=255.0)
        else:
            cv2.convertScaleAbs(yc, dst=out.y, alpha=219.0, beta=16.0)
    else:
        alpha, beta = (1023.0, 0.0) if frame.full_range else (876.0, 64.0)
        np.rint(yc * np.float32(alpha) + np.float32(beta), out=yc)
        out.y[...] = yc
    for src, dst in ((frame.u, out.u), (frame.v, out.v)):
        cv2.resize(src, (w // 2, h // 2), dst=dst, interpolation=cv2.INTER_LINEAR)
    return out


def _frame_to_yuv(frame: object, width: int, height: int, full_range: bool, depth: int = 8) -> YuvFrame:
    """A decoded av.VideoFrame as a :class:`YuvFrame` of ``width`` x ``height`` in the given range and depth
    (frames of another size or format, e.g. after a mid-stream change, are converted by swscale first)."""
    fmt = frame.format.name  # type: ignore[attr-defined]
    want = "yuv420p" if depth == 8 else "yuv420p10le"
    ok = YUV420_FORMATS if depth == 8 else YUV420_10_FORMATS
    src_full = frame.color_range == 2 or fmt == "yuvj420p"  # type: ignore[attr-defined]
    if fmt not in ok or (frame.width, frame.height) != (width, height) or src_full != full_range:  # type: ignore[attr-defined]
        frame = frame.reformat(width=width, height=height, format=want,  # type: ignore[attr-defined]
                               src_color_range=2 if src_full else 1, dst_color_range=2 if full_range else 1)
    out = YuvFrame(width, height, full_range=full_range, depth=depth)
    item = out.data.itemsize
    for plane, dst in zip(frame.planes, (out.y, out.u, out.v), strict=True):  # type: ignore[attr-defined]
        rows, cols = dst.shape
        src = np.frombuffer(plane, out.data.dtype)
        dst[...] = np.lib.stride_tricks.as_strided(src, (rows, cols), (abs(plane.line_size), item))
    return out


@dataclass
class DecodedFrame:
    """One decoded video frame: ``image`` HxWx3 uint8 (uint16 for ``pixels="rgb48"``) RGB, or a
    :class:`YuvFrame` when :func:`read_video` was asked for planes; ``pts`` / ``duration`` in the stream's
    time base (already shifted when a clip was asked for); ``index`` counts decoded frames from 0."""

    index: int
    image: np.ndarray | YuvFrame
    pts: int
    duration: int | None = None


@dataclass
class CopiedPacket:
    """A packet of a stream that is copied, not decoded: ``stream`` is its index in the source file."""

    stream: int
    packet: object


@dataclass
class ReadStats:
    """What :func:`read_video` skipped: packets the decoder refused, and why the stream ended early."""

    decode_errors: int = 0
    truncated: str = ""


def _av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise VideoError("video support needs PyAV: pip install 'restore[video]' (or pip install av)") from None
    return av


def is_live_source(source: str | Path) -> bool:
    """Capture devices (``/dev/video*``) and network URLs (``rtsp://``, ``udp://``, ...)."""
    s = str(source)
    return s.startswith("/dev/") or ("://" in s and not s.startswith("file://"))


def _ffmpeg_reason(err: BaseException) -> str:
    msg = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return str(msg).strip().splitlines()[0].rstrip(":")


@contextmanager
def _open_input(source: str | Path) -> Iterator[object]:
    av = _av()
    s = str(source)
    live = is_live_source(s)
    if not live:
        p = Path(s)
        if not p.exists():
            raise VideoError(f"{s}: no such file")
        if p.is_dir():
            raise VideoError(f"{s}: is a directory")
        if p.stat().st_size == 0:
            raise VideoError(f"{s}: not a readable video (empty file, 0 bytes)")
    kwargs: dict[str, object] = {"format": "v4l2"} if s.startswith("/dev/video") else {}
    try:
        container = av.open(s, "r", metadata_errors="ignore", **kwargs)
    except av.error.FFmpegError as e:
        raise VideoError(f"{s}: not a readable video ({_ffmpeg_reason(e)})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoError(f"{s}: cannot open ({_ffmpeg_reason(e)})") from None
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: object, source: str) -> object:
    streams = container.streams.video  # type: ignore[attr-defined]
    if not streams:
        kinds = ", ".join(sorted({st.type for st in container.streams})) or "no streams"  # type: ignore[attr-defined]
        raise VideoError(f"{source}: no video stream ({kinds})")
    vs = streams[0]
    if vs.codec_context is None:
        raise VideoError(f"{source}: no decoder for the video codec of stream #{vs.index}")
    vs.thread_type = "AUTO"
    return vs


def _describe_stream(st: object) -> str:
    cc = st.codec_context  # type: ignore[attr-defined]
    name = cc.name if cc is not None else (st.codec_tag or "?")  # type: ignore[attr-defined]
    text = f"#{st.index} {st.type} {name}"  # type: ignore[attr-defined]
    if st.type == "audio" and cc is not None:  # type: ignore[attr-defined]
        text += f" {cc.sample_rate} Hz {getattr(cc.layout, 'name', '')}".rstrip()
    lang = st.metadata.get("language")  # type: ignore[attr-defined]
    return text + (f" [{lang}]" if lang and lang != "und" else "")


def _display_matrix(frame: object) -> tuple[int, ...] | None:
    av = _av()
    try:
        sd = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)  # type: ignore[attr-defined]
    except (AttributeError, KeyError, ValueError):
        return None
    if sd is None:
        return None
    raw = bytes(sd)
    return struct.unpack("<9i", raw[:36]) if len(raw) >= 36 else None


def frame_hdr(frame: object) -> HdrMetadata | None:
    """The HDR10 static metadata attached to a decoded frame (side data), or None."""
    av = _av()
    kinds = av.sidedata.sidedata.Type
    raw: dict[object, bytes] = {}
    for kind in (kinds.MASTERING_DISPLAY_METADATA, kinds.CONTENT_LIGHT_LEVEL):
        try:
            sd = frame.side_data.get(kind)  # type: ignore[attr-defined]
        except (AttributeError, KeyError, ValueError):
            sd = None
        if sd is not None:
            raw[kind] = bytes(sd)
    return hdr_from_side_data(raw.get(kinds.MASTERING_DISPLAY_METADATA), raw.get(kinds.CONTENT_LIGHT_LEVEL))


def probe_video(source: str | Path) -> VideoInfo:
    """Open ``source``, decode its first video frame and describe the stream (see :class:`VideoInfo`)."""
    s = str(source)
    with _open_input(s) as c:
        vs = _video_stream(c, s)
        stats = ReadStats()
        first = next(_decode_video(c, vs, s, stats, []), None)
        if first is None:
            why = f" ({stats.truncated})" if stats.truncated else ""
            raise VideoError(f"{s}: not a readable video (no decodable video frame{why})")
        frame = first
        tb = vs.time_base or Fraction(1, 90000)
        rate = vs.average_rate or vs.guessed_rate or None
        dur = float(vs.duration * tb) if vs.duration else (c.duration / 1e6 if c.duration else None)
        start = float(vs.start_time * tb) if vs.start_time is not None else 0.0
        matrix = _display_matrix(frame)
        return VideoInfo(
            source=s, width=frame.width, height=frame.height, codec=vs.codec_context.name,
            pix_fmt=frame.format.name, time_base=Fraction(tb), frame_rate=Fraction(rate) if rate else None,
            n_frames=int(vs.frames or 0), duration=dur, start_time=start,
            color_range=int(frame.color_range), colorspace=int(frame.colorspace),
            color_primaries=int(frame.color_primaries), color_trc=int(frame.color_trc),
            sample_aspect_ratio=vs.sample_aspect_ratio, display_matrix=matrix,
            rotation=int(frame.rotation) if matrix is not None else 0,
            streams=tuple(_describe_stream(st) for st in c.streams if st.index != vs.index),
            live=is_live_source(s), bit_depth=pix_fmt_depth(frame.format.name), hdr=frame_hdr(frame))


def _decode_video(container: object, vs: object, source: str, stats: ReadStats, copy: list[object],
                  until_dts: int | None = None) -> Iterator[object]:
    """Demux ``vs`` and the ``copy`` streams: decoded frames of ``vs`` (av.VideoFrame) and ``CopiedPacket``s,
    in file order. Packets the decoder rejects are skipped and counted; a demuxer error ends the stream
    (recorded in ``stats.truncated``). ``until_dts``: stop demuxing at the first keyframe packet of ``vs``
    whose dts is at least this (the decoder is flushed: the frames before it in display order come out)."""
    av = _av()
    copy_index = {st.index for st in copy}  # type: ignore[attr-defined]
    demux = container.demux([vs, *copy])  # type: ignore[attr-defined]
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except av.error.FFmpegError as e:
            stats.truncated = f"stopped at a damaged part of the file: {_ffmpeg_reason(e)}"
            break
        idx = packet.stream.index
        if until_dts is not None and idx == vs.index and packet.is_keyframe and packet.dts is not None \
                and packet.dts >= until_dts:  # type: ignore[attr-defined]
            break
        if idx in copy_index:
            if packet.size:  # skip the empty flush packets demux() adds at the end
                yield CopiedPacket(idx, packet)
            continue
        try:
            frames = vs.decode(packet)  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            stats.decode_errors += 1
            if stats.decode_errors > _MAX_DECODE_ERRORS:
                raise VideoError(f"{source}: not a readable video (more than {_MAX_DECODE_ERRORS} "
                                 f"undecodable packets: {_ffmpeg_reason(e)})") from None
            continue
        yield from frames
    try:
        yield from vs.decode(None)  # type: ignore[attr-defined]
    except av.error.EOFError:  # already flushed by the empty packet demux() ends with
        pass
    except av.error.FFmpegError:
        stats.decode_errors += 1


def _packet_time(packet: object) -> Fraction | None:
    t = packet.pts if packet.pts is not None else packet.dts  # type: ignore[attr-defined]
    return None if t is None or packet.time_base is None else t * packet.time_base  # type: ignore[attr-defined]


def _shift_packet(packet: object, shift: Fraction) -> None:
    if not shift:
        return
    d = round(shift / packet.time_base)  # type: ignore[attr-defined]
    if packet.pts is not None:  # type: ignore[attr-defined]
        packet.pts -= d  # type: ignore[attr-defined]
    if packet.dts is not None:  # type: ignore[attr-defined]
        packet.dts -= d  # type: ignore[attr-defined]


def read_video(source: str | Path, *, start: int = 0, stop: int | None = None, copy_streams: bool = True,
               rebase: bool = False, stats: ReadStats | None = None,
               pixels: str = "rgb24") -> Iterator[DecodedFrame | CopiedPacket]:
    """Decode frames ``start`` .. ``stop - 1`` (0-based, all by default) of the first video stream of
    ``source`` as :class:`DecodedFrame` (uint8 RGB, frame size of the first frame), interleaved in file order
    with :class:`CopiedPacket`s of every audio / subtitle / data stream (``copy_streams``).

    ``pixels="rgb48"``: HxWx3 uint16 RGB (16-bit samples: no 8-bit rounding of 10-bit sources).
    ``pixels="yuv420p"`` / ``"yuv420p10le"``: frames come as :class:`YuvFrame` planes, untouched when the stream
    is 4:2:0 of that depth (:data:`YUV420_FORMATS`, :data:`YUV420_10_FORMATS`) with even sizes (check with
    :func:`yuv420_supported`), in the colour range of the first frame (frames in another format, size or
    range are converted to it by swscale).

    Clips (``start > 0`` or ``stop``): frames before ``start`` are decoded and dropped (frame-exact); copied
    packets are kept when they start inside [time of frame ``start``, end of frame ``stop - 1``) (whole
    packets: audio is cut at packet granularity); with ``start > 0`` every timestamp is shifted so the clip
    starts where the source started. ``rebase``: shift every timestamp so the first frame returned is at 0
    (live sources, whose timestamps are wall-clock times).
    """
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"frame range {start}:{stop} is empty or negative")
    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {', '.join(PIXELS)}; got {pixels!r}")
    s = str(source)
    stats = stats if stats is not None else ReadStats()
    clip = start > 0 or stop is not None or rebase
    with _open_input(s) as c:
        vs = _video_stream(c, s)
        tb = Fraction(vs.time_base or Fraction(1, 90000))
        copy = [st for st in c.streams if st.index != vs.index and st.type in _COPY_TYPES] if copy_streams else []
        rate = vs.average_rate or vs.guessed_rate
        default_dur = max(1, round(1 / (rate * tb))) if rate else 1
        size: tuple[int, int] | None = None
        full_range = False
        index = -1
        t_first: Fraction | None = None  # time of frame 0
        t_start: Fraction | None = None  # time of frame `start` (None until decoded)
        t_end: Fraction | None = None  # end of frame `stop - 1` (None until decoded)
        t_before = Fraction(-(10**9))  # time of the latest frame before `start`
        shift = Fraction(0)
        # clips: copied packets wait here until the decoded video has caught up with them (the decoder delays
        # frames behind their packets), then go out if they start inside the clip
        pending: list[tuple[Fraction, CopiedPacket]] = []
        copy_left = {st.index for st in copy}  # copied streams not yet past t_end
        last_pts: int | None = None

        def inside(t: Fraction) -> bool:
            return (start == 0 and not rebase) or (t_start is not None and t >= t_start)

        for item in _decode_video(c, vs, s, stats, copy):
            if isinstance(item, CopiedPacket):
                t = _packet_time(item.packet)
                if not clip:
                    yield item
                elif t is None:
                    continue
                elif t_end is None:
                    if t_start is None:
                        pending = [(qt, q) for qt, q in pending if qt >= t_before]
                    pending.append((t, item))
                elif t >= t_end:
                    copy_left.discard(item.stream)
                    if not copy_left:
                        break
                elif inside(t):
                    _shift_packet(item.packet, shift)
                    yield item
                continue
            index += 1
            if t_end is not None:  # video done; only the copied streams are still read
                continue
            pts = item.pts if item.pts is not None else (last_pts + default_dur if last_pts is not None else 0)
            last_pts = pts
            t = pts * tb
            if t_first is None:
                t_first = t
            if index < start:
                t_before = t
                continue
            if index == start:
                t_start = t
                shift = t if rebase else t - t_first
            if size is None:
                size = (item.width, item.height)
                full_range = item.color_range == 2 or item.format.name == "yuvj420p"
                if pixels.startswith("yuv") and (item.width % 2 or item.height % 2):
                    raise VideoError(f"{s}: {pixels} planes need even sizes, the video is {item.width}x{item.height}")
            image = frame_image(item, pixels, size, full_range)
            dur = int(item.duration) if item.duration else None
            yield DecodedFrame(index=index - start, image=image, pts=pts - round(shift / tb), duration=dur)
            if not clip:
                continue
            frame_end = t + (dur or default_dur) * tb
            last = stop is not None and index == stop - 1
            keep: list[tuple[Fraction, CopiedPacket]] = []
            for qt, q in pending:
                if qt < frame_end:
                    if inside(qt):
                        _shift_packet(q.packet, shift)
                        yield q
                elif last:
                    copy_left.discard(q.stream)
                else:
                    keep.append((qt, q))
            pending = keep
            if last:
                t_end = frame_end
                if not copy_left:
                    break
        for qt, q in pending:  # the video ended first (clip 'A:' or a stop past the end)
            if inside(qt):
                _shift_packet(q.packet, shift)
                yield q


def frame_image(frame: object, pixels: str, size: tuple[int, int], full_range: bool) -> np.ndarray | YuvFrame:
    """A decoded av.VideoFrame as ``pixels`` (one of :data:`PIXELS`) at ``size`` (width, height): RGB through
    swscale with the frame's declared matrix and range, or planes (:class:`YuvFrame`) in range ``full_range``."""
    w, h = size
    if pixels == "yuv420p":
        return _frame_to_yuv(frame, w, h, full_range)
    if pixels == "yuv420p10le":
        return _frame_to_yuv(frame, w, h, full_range, depth=10)
    fmt = "rgb48le" if pixels == "rgb48" else "rgb24"
    return frame.to_ndarray(format=fmt, width=w, height=h)  # type: ignore[attr-defined]


def _tags(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if k.lower() not in _SKIP_TAGS}


def _chroma_subsampling(pix_fmt: str) -> tuple[int, int]:
    """Horizontal and vertical chroma subsampling of a planar YUV format (1, 1 for RGB / 4:4:4)."""
    for key, sub in (("420", (2, 2)), ("nv12", (2, 2)), ("nv21", (2, 2)), ("422", (2, 1)), ("nv16", (2, 1)),
                     ("411", (4, 1)), ("410", (4, 4)), ("440", (1, 2))):
        if key in pix_fmt:
            return sub
    return 1, 1


def _choose_pix_fmt(codec: object, source_pix_fmt: str, depth: int = 8) -> str:
    """The encoder's pixel format for a source of ``source_pix_fmt`` written at ``depth`` bits: 4:4:4 stays
    4:4:4, everything else becomes 4:2:0; above 8 bits the source's own format when the encoder takes it (and
    it is 4:2:0 or 4:4:4 YUV), else the 10-bit one; 8 bits when the encoder has no format of that depth."""
    formats = [f.name for f in (codec.video_formats or [])]  # type: ignore[attr-defined]
    if not formats:
        return "yuv420p" if depth <= 8 else "yuv420p10le"
    if depth > 8:
        if source_pix_fmt in formats and source_pix_fmt.startswith(("yuv420p", "yuv444p")) and \
                pix_fmt_depth(source_pix_fmt) > 8:
            return source_pix_fmt
        for f in (("yuv444p10le",) if "444" in source_pix_fmt else ()) + ("yuv420p10le",):
            if f in formats:
                return f
    if "444" in source_pix_fmt and "yuv444p" in formats:
        return "yuv444p"
    if "yuv420p" in formats:
        return "yuv420p"
    return next((f for f in formats if f in ("rgb24", "yuv444p", "bgr0", "gbrp")), formats[0])


def _has_high_depth(name: str) -> bool:
    """Whether the encoder ``name`` exists here and takes a YUV format of more than 8 bits."""
    av = _av()
    if name not in av.codecs_available:
        return False
    try:
        formats = av.Codec(name, "w").video_formats or []
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return any(f.name.startswith("yuv") and pix_fmt_depth(f.name) > 8 for f in formats)


def default_video_codec(suffix: str, info: VideoInfo | None = None, depth: int | None = None) -> str:
    """The encoder :class:`VideoWriter` uses when none is asked for: libx264 (libvpx-vp9 for ``.webm``); for
    output of more than 8 bits (``depth``, default the source's) the source codec's own encoder when it is
    built with 10-bit support (libx264 High 10, libx265 Main 10, libvpx-vp9 profile 2, libsvtav1), else
    libx265 (.webm: libvpx-vp9), else the 8-bit default."""
    base = _CODEC_FOR_SUFFIX.get(suffix.lower(), DEFAULT_VIDEO_CODEC)
    depth = depth if depth is not None else (info.bit_depth if info is not None else 8)
    if depth <= 8:
        return base
    webm = suffix.lower() == ".webm"
    for name in (_HIGH_DEPTH_ENCODER.get(info.codec) if info is not None else None, base if webm else HIGH_DEPTH_CODEC):
        if name and (not webm or name in _WEBM_ENCODERS) and _has_high_depth(name):
            return name
    return base


def add_copied_streams(container: object, video: object, source: str | Path, *, label: str,
                       notes: list[str]) -> dict[int, object]:
    """Give the output ``container`` the container tags of ``source``, its first video stream's tags (onto the
    output's ``video`` stream) and one stream per audio / subtitle / data stream to be stream-copied; returns
    {source stream index: output stream}. Streams of other types are skipped with a note in ``notes``."""
    suffix = Path(str(container.name)).suffix.lower()  # type: ignore[attr-defined]
    out_map: dict[int, object] = {}
    with _open_input(source) as c:
        vidx = c.streams.video[0].index if c.streams.video else -1  # type: ignore[attr-defined]
        container.metadata.update(_tags(c.metadata))  # type: ignore[attr-defined]
        for st in c.streams:  # type: ignore[attr-defined]
            if st.index == vidx:
                video.metadata.update(_tags(st.metadata))  # type: ignore[attr-defined]
            if st.index == vidx or st.type not in _COPY_TYPES:
                if st.index != vidx:
                    notes.append(f"stream {_describe_stream(st)} not copied (type {st.type})")
                continue
            try:
                out = container.add_stream_from_template(st)  # type: ignore[attr-defined]
            except (ValueError, NotImplementedError) as e:
                raise VideoError(
                    f"{label}: stream {_describe_stream(st)} of {source} cannot be copied into a {suffix} "
                    f"file without re-encoding ({_ffmpeg_reason(e)}); use the source's container "
                    f"({Path(str(source)).suffix or 'same format'})") from None
            out.metadata.update(_tags(st.metadata))
            out.disposition = st.disposition
            out_map[st.index] = out
    return out_map


class VideoWriter:
    """Encode RGB frames into ``path`` and copy the source's other streams (see the module notes above).

    ``width`` x ``height`` is the size of the frames to be written (cropped to even sizes for 4:2:0/4:2:2);
    ``info`` the source's :class:`VideoInfo` (time base, rate, colour, display matrix); ``copy_from`` the
    source file whose audio / subtitle / data streams are copied (None: video only); ``label`` the name used
    in error messages (default ``path``; e.g. the final name when ``path`` is a temporary file); ``threads``
    the encoder's thread count (None: FFmpeg's choice, for x264 1.5x the cores plus lookahead threads).
    ``bit_depth``: bits per sample wanted (None: the source's, ``info.bit_depth``; 8 forces an 8-bit output);
    :attr:`bit_depth` is what the encoder writes (8 when it has no deeper format: a note says so). The source's
    HDR10 metadata (``info.hdr``) is written when the encoder is libx265; libx265 also logs errors only.
    """

    def __init__(self, path: str | Path, *, info: VideoInfo, width: int, height: int, codec: str | None = None,
                 crf: int | None = DEFAULT_CRF, preset: str | None = DEFAULT_PRESET,
                 copy_from: str | Path | None = None, label: str | Path | None = None,
                 threads: int | None = None, bit_depth: int | None = None) -> None:
        av = _av()
        self.path = Path(path)
        self._threads = threads
        self.label = str(label if label is not None else path)
        path = self.label
        self.notes: list[str] = []
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise VideoError(f"{path}: unsupported output container {suffix or '(no suffix)'!r}; use one of "
                             f"{', '.join(VIDEO_SUFFIXES)}")
        want_depth = info.bit_depth if bit_depth is None else bit_depth
        name = codec or default_video_codec(suffix, info, want_depth)
        try:
            codec_obj = av.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            raise VideoError(f"{path}: unknown or unavailable video encoder {name!r}") from None
        if codec_obj.type != "video":
            raise VideoError(f"{path}: {name!r} is not a video encoder")
        self.pix_fmt = _choose_pix_fmt(codec_obj, info.pix_fmt, want_depth)
        self.bit_depth = pix_fmt_depth(self.pix_fmt)
        if info.bit_depth > 8 and self.bit_depth < min(want_depth, info.bit_depth):
            self.notes.append(f"the {name} encoder writes no {want_depth}-bit format: the {info.bit_depth}-bit source "
                              f"is written as {self.pix_fmt} ({self.bit_depth} bits)")
        sx, sy = _chroma_subsampling(self.pix_fmt)
        self.width, self.height = width - width % sx, height - height % sy
        self.cropped = (self.width, self.height) != (width, height)
        if self.cropped:
            self.notes.append(f"{self.pix_fmt} needs sizes divisible by {sx}x{sy}: output cropped from "
                              f"{width}x{height} to {self.width}x{self.height}")
        options: dict[str, str] = {}
        if crf is not None and name in _CRF_CODECS:
            options["crf"] = str(crf)
            if name.startswith("libvpx"):
                options["b"] = "0"  # constant quality
        elif crf is not None and codec:
            self.notes.append(f"--crf is ignored by the {name} encoder")
        if preset and name in _PRESET_CODECS:
            options["preset"] = preset
        if name == "libx265":
            # log-level: x265 prints its banner and settings to stderr otherwise; info=0: no SEI naming the encoder's
            # settings (it includes the thread count, which would make segments encoded on different machines
            # differ in their stream headers, see restore.io.video_segments)
            x265 = ["log-level=error", "info=0"]
            if info.hdr:
                x265 += info.hdr.x265_params()
            options["x265-params"] = ":".join(x265)
        elif info.hdr:
            self.notes.append(f"HDR metadata of the source ({info.hdr.describe()}) not written: only libx265 "
                              f"writes it here (--codec libx265); colour tags are kept")
        self.time_base = info.time_base
        self._range = info.color_range if info.color_range in (1, 2) else 0
        self._matrix = _SWS_MATRIX.get(info.colorspace, "ITU601")
        self._info = info
        self._map: dict[int, object] = {}
        self._frames = 0
        self.container = self._open(av, self.path, self.label)
        try:
            self._add_video(av, name, options, codec_obj, suffix)
            if copy_from is not None:
                self._add_copies(copy_from, suffix)
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def _open(av: ModuleType, path: Path, label: str) -> object:
        try:
            return av.open(str(path), "w")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{label}: cannot create ({_ffmpeg_reason(e)})") from None

    def _add_video(self, av: ModuleType, name: str, options: dict[str, str], codec_obj: object, suffix: str) -> None:
        info = self._info
        rate = info.frame_rate or Fraction(25)
        try:
            vs = self.container.add_stream(name, rate=rate, options=options)  # type: ignore[attr-defined]
        except ValueError as e:
            raise VideoError(f"{self.label}: cannot write {name} into a {suffix} file ({_ffmpeg_reason(e)})") from None
        vs.width, vs.height, vs.pix_fmt = self.width, self.height, self.pix_fmt
        vs.time_base = info.time_base
        cc = vs.codec_context
        cc.time_base = info.time_base
        cc.framerate = rate
        cc.thread_type = "AUTO"
        if self._threads:
            cc.thread_count = int(self._threads)
        for attr in ("color_range", "colorspace", "color_primaries", "color_trc"):
            setattr(cc, attr, getattr(info, attr))
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        if info.display_matrix is not None:
            vs.set_display_matrix(list(info.display_matrix))
        self.stream = vs

    def _add_copies(self, source: str | Path, suffix: str) -> None:
        self._map = add_copied_streams(self.container, self.stream, source, label=self.label, notes=self.notes)

    def write(self, image: np.ndarray | YuvFrame, pts: int | None = None, duration: int | None = None) -> None:
        """Encode one HxWx3 uint8 or uint16 RGB frame (at least ``width`` x ``height``; extra rows/columns are
        cropped) with timestamp ``pts`` in the source time base (None: frame count). A :class:`YuvFrame` of
        exactly ``width`` x ``height`` goes to the encoder as it is when the output has its format (zero copy at
        8 bits; its range is taken to be the source's), else it is converted by swscale."""
        av = _av()
        if isinstance(image, YuvFrame):
            if image.shape != (self.height, self.width):
                raise VideoError(f"{self.label}: a {image.width}x{image.height} {image.pix_fmt} frame for a "
                                 f"{self.width}x{self.height} video")
            if image.depth == 8:
                frame = av.VideoFrame.from_numpy_buffer(image.data, format="yuv420p")
            else:  # PyAV takes 10-bit planes by copy only
                frame = av.VideoFrame.from_ndarray(image.data, format=image.pix_fmt)
            if self.pix_fmt != image.pix_fmt:
                frame.color_range = 2 if image.full_range else 1
                frame = frame.reformat(format=self.pix_fmt, dst_color_range=self._range or 1)
        else:
            img = image[:self.height, :self.width]
            fmt = "rgb48le" if img.dtype == np.uint16 else "rgb24"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt)
            if self.pix_fmt != fmt:
                frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self._matrix, dst_color_range=self._range)
        info = self._info
        frame.color_range, frame.colorspace = info.color_range, info.colorspace
        frame.color_primaries, frame.color_trc = info.color_primaries, info.color_trc
        frame.pts = pts if pts is not None else self._frames
        frame.time_base = self.time_base
        if duration:
            frame.duration = duration
        self._frames += 1
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.label}: encoding failed ({_ffmpeg_reason(e)})") from None

    def copy(self, item: CopiedPacket) -> None:
        """Write a packet of a copied stream as it is (timestamps rebased by the muxer only)."""
        out = self._map.get(item.stream)
        if out is None:
            return
        av = _av()
        packet = item.packet
        packet.stream = out  # type: ignore[attr-defined]
        try:
            self.container.mux(packet)  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.label}: writing stream #{item.stream} failed ({_ffmpeg_reason(e)})") from None

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        av = _av()
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)  # type: ignore[attr-defined]
            self.container.close()  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.label}: finishing the file failed ({_ffmpeg_reason(e)})") from None

    def abort(self) -> None:
        """Close without flushing and delete the file (after an error or an interrupt)."""
        try:
            self.container.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the file is deleted anyway
            pass
        self.path.unlink(missing_ok=True)
