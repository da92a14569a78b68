"""A video cut at keyframes into segments, each decoded on its own, and the encoded pieces joined by stream copy.

The container side of ``restore video --segments`` / ``--ray`` (the orchestration is
:mod:`restore.engine.video_segments`):

- :func:`scan_packets` reads the first video stream's packets without decoding them (timestamps, keyframe
  flags, in decode order): one pass over the file's bytes, no decoder.
- :func:`plan_segments` picks up to N cut points among the keyframes, balanced by duration. A keyframe is a
  cut point when every packet before it in decode order is displayed before it (its pts is below the
  keyframe's), so the frames displayed from the keyframe on are exactly those decodable from it; leading
  pictures of an open GOP (decoded after the keyframe but displayed before it) belong to the segment before.
  Segment k holds the frames whose pts is in [start_k, start_{k+1}); its frame count is the number of packets
  with such a pts (one frame per packet).
- :func:`read_segment` seeks to the segment's keyframe (the file's own index: MP4 sample table, Matroska cues;
  landing on an earlier keyframe only costs time) and yields the decoded frames of the segment, exactly: it
  stops when it has them all, or at the first keyframe after the next segment's start (by then every leading
  picture of that keyframe has been decoded), so no frame is lost or duplicated between segments.
- Segment files are written in OUT's container. MP4 / MOV keep a stream that does not start at 0 through an edit
  list whose delay is rounded to the movie's millisecond timescale, so for them (:func:`rebases`) a segment is
  written shifted back to start where the source starts (``Segment.shift``) and shifted forward again when
  joined: every timestamp stays exact. Matroska / WebM / AVI store absolute timestamps and are not shifted.
- :func:`concat_segments` writes the encoded segments' video packets one after the other (no re-encode) into
  one file, with the source's audio / subtitle / data streams copied once for the whole duration and its
  container and stream tags; packets of the two sides are interleaved by time. The segments must come from
  encoders with the same settings (same codec, size, pixel format and stream headers), which is checked.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from restore.errors import VideoError
from restore.io.video import (
    DecodedFrame,
    ReadStats,
    _av,
    _decode_video,
    _ffmpeg_reason,
    _open_input,
    _video_stream,
    add_copied_streams,
    frame_image,
)


@dataclass(frozen=True)
class PacketIndex:
    """The first video stream's packets in decode order: ``pts`` / ``dts`` (None where the container has none),
    ``key`` (keyframe flag), ``duration`` (0: unknown), all in ``time_base``."""

    source: str
    time_base: Fraction
    pts: tuple[int | None, ...]
    dts: tuple[int | None, ...]
    key: tuple[bool, ...]
    duration: tuple[int, ...]


@dataclass(frozen=True)
class Segment:
    """Segment ``index`` (0-based) of ``count``: the frames whose pts is in [``start``, ``end``) (None: open),
    ``frames`` of them. ``seek``: the timestamp to seek to (its keyframe's smaller of dts and pts; None for the
    first segment: decode from the start); ``until_dts``: the dts of the first keyframe after ``end`` in decode
    order (decoding can stop there; None: to the end of the file). ``seconds``: duration of the segment.
    ``shift``: ``start`` minus the source's first pts (what :func:`rebases` containers shift the segment by)."""

    index: int
    count: int
    start: int | None
    end: int | None
    seek: int | None
    until_dts: int | None
    frames: int
    seconds: float
    shift: int = 0

    def contains(self, pts: int) -> bool:
        return (self.start is None or pts >= self.start) and (self.end is None or pts < self.end)

    @property
    def name(self) -> str:
        """1-based, as users count: ``3/8``."""
        return f"{self.index + 1}/{self.count}"


def rebases(suffix: str) -> bool:
    """Whether segments written in a container of this suffix are shifted to start where the source starts
    (containers whose non-zero start goes through a rounded edit list: MP4, M4V, MOV)."""
    return suffix.lower() in (".mp4", ".m4v", ".mov")


def scan_packets(source: str | Path) -> PacketIndex:
    """Demux ``source``'s first video stream without decoding (see :class:`PacketIndex`); empty packets (the
    demuxer's flush packets) are left out."""
    av = _av()
    s = str(source)
    pts: list[int | None] = []
    dts: list[int | None] = []
    key: list[bool] = []
    dur: list[int] = []
    with _open_input(s) as c:
        vs = _video_stream(c, s)
        tb = Fraction(vs.time_base or Fraction(1, 90000))  # type: ignore[attr-defined]
        try:
            for p in c.demux(vs):  # type: ignore[attr-defined]
                if not p.size:
                    continue
                pts.append(p.pts)
                dts.append(p.dts)
                key.append(bool(p.is_keyframe))
                dur.append(int(p.duration or 0))
        except av.error.FFmpegError as e:
            raise VideoError(f"{s}: cannot be split into segments (damaged at packet {len(pts)}: "
                             f"{_ffmpeg_reason(e)})") from None
    return PacketIndex(source=s, time_base=tb, pts=tuple(pts), dts=tuple(dts), key=tuple(key), duration=tuple(dur))


def _frame_step(pts: Sequence[int], durations: Sequence[int]) -> int:
    """The usual frame duration: the packets' own when they have one, else the smallest gap between frames."""
    known = [d for d in durations if d > 0]
    if known:
        return sorted(known)[len(known) // 2]
    s = sorted(pts)
    gaps = [b - a for a, b in zip(s, s[1:], strict=False) if b > a]
    return min(gaps) if gaps else 1


def cut_points(index: PacketIndex) -> list[int]:
    """Positions (in decode order) of the keyframes a video can be cut at (see the module docstring)."""
    out = []
    seen_max: int | None = None
    for i, (p, k) in enumerate(zip(index.pts, index.key, strict=True)):
        if k and i > 0 and seen_max is not None and p is not None and p > seen_max:
            out.append(i)
        if p is not None:
            seen_max = p if seen_max is None else max(seen_max, p)
    return out


def plan_segments(index: PacketIndex, n: int) -> list[Segment]:
    """Up to ``n`` segments of about equal duration, cut at keyframes (fewer when the video has fewer cut
    points). Raises VideoError when the video has no frames or packets without timestamps."""
    s = index.source
    if n < 1:
        raise ValueError(f"segments must be >= 1, got {n}")
    if not index.pts:
        raise VideoError(f"{s}: no video packets to split")
    if any(p is None for p in index.pts):
        raise VideoError(f"{s}: video packets without timestamps cannot be split into segments (remux it to .mkv "
                         f"or .mp4 first, or run without segments)")
    pts: list[int] = list(index.pts)  # type: ignore[arg-type]
    step = _frame_step(pts, index.duration)
    first, end = min(pts), max(pts) + step
    candidates = cut_points(index)
    cuts: list[int] = []  # positions in decode order
    for j in range(1, n):
        target = first + (end - first) * j / n
        after = [i for i in candidates if not cuts or pts[i] > pts[cuts[-1]]]
        if not after:
            break
        cuts.append(min(after, key=lambda i: (abs(pts[i] - target), pts[i])))
    keys = [i for i, k in enumerate(index.key) if k]
    bounds: list[int | None] = [None, *(pts[i] for i in cuts), None]
    segments = []
    count = len(cuts) + 1
    for k in range(count):
        start, stop = bounds[k], bounds[k + 1]
        seek = None if k == 0 else min(x for x in (pts[cuts[k - 1]], index.dts[cuts[k - 1]]) if x is not None)
        until = None
        if k < count - 1:
            nxt = next((i for i in keys if i > cuts[k]), None)
            until = index.dts[nxt] if nxt is not None else None
        frames = sum(1 for p in pts if (start is None or p >= start) and (stop is None or p < stop))
        t0, t1 = (first if start is None else start), (end if stop is None else stop)
        segments.append(Segment(index=k, count=count, start=start, end=stop, seek=seek, until_dts=until,
                                frames=frames, seconds=float((t1 - t0) * index.time_base),
                                shift=0 if start is None else start - first))
    return segments


def read_segment(source: str | Path, segment: Segment, *, pixels: str, size: tuple[int, int], full_range: bool,
                 stats: ReadStats | None = None, shift: bool = False) -> Iterator[DecodedFrame]:
    """The frames of ``segment`` as :class:`~restore.io.video.DecodedFrame` (``pixels``, ``size`` and
    ``full_range`` as :func:`~restore.io.video.frame_image`; ``index`` counts from 0 in the segment), in display
    order, with the source's timestamps (minus ``segment.shift`` when ``shift``)."""
    av = _av()
    s = str(source)
    stats = stats if stats is not None else ReadStats()
    with _open_input(s) as c:
        vs = _video_stream(c, s)
        tb = Fraction(vs.time_base or Fraction(1, 90000))  # type: ignore[attr-defined]
        rate = vs.average_rate or vs.guessed_rate  # type: ignore[attr-defined]
        default_dur = max(1, round(1 / (rate * tb))) if rate else 1
        if segment.seek is not None:
            try:
                c.seek(segment.seek, stream=vs, backward=True, any_frame=False)  # type: ignore[attr-defined]
            except av.error.FFmpegError as e:
                raise VideoError(f"{s}: cannot seek to segment {segment.name} ({_ffmpeg_reason(e)})") from None
        n = 0
        last: int | None = None
        for frame in _decode_video(c, vs, s, stats, [], until_dts=segment.until_dts):
            pts = frame.pts if frame.pts is not None else (last + default_dur if last is not None else 0)
            last = pts
            if not segment.contains(pts):
                continue
            dur = int(frame.duration) if frame.duration else None
            yield DecodedFrame(index=n, image=frame_image(frame, pixels, size, full_range),
                               pts=pts - segment.shift if shift else pts, duration=dur)
            n += 1
            if n == segment.frames:
                return


def _signature(stream: object) -> tuple[object, ...]:
    cc = stream.codec_context  # type: ignore[attr-defined]
    return cc.name, cc.width, cc.height, cc.pix_fmt, bytes(cc.extradata or b"")


def _describe_difference(a: tuple[object, ...], b: tuple[object, ...]) -> str:
    names = ("codec", "width", "height", "pixel format")
    for name, x, y in zip(names, a, b, strict=False):
        if x != y:
            return f"{name} {y} instead of {x}"
    return "other stream headers (encoder settings or version)"


def _video_packets(parts: Sequence[Path], ref: tuple[object, ...], label: str,
                   shifts: Sequence[Fraction]) -> Iterator[object]:
    """The parts' video packets in order, shifted; a missing dts (Matroska keeps none for the first packets of a
    stream with B-frames) becomes one tick after the previous packet's, which stays below its pts (a segment's
    packets are all shown after the previous segment's) and keeps the muxer's dts increasing."""
    last: int | None = None
    for part, shift in zip(parts, shifts, strict=True):
        with _open_input(part) as c:
            vs = _video_stream(c, str(part))
            sig = _signature(vs)
            if sig != ref:
                raise VideoError(f"{label}: segment {part.name} cannot be joined to the others: "
                                 f"{_describe_difference(ref, sig)}; delete it and process it again")
            for p in c.demux(vs):  # type: ignore[attr-defined]
                if p.size:
                    if shift:
                        d = shift / p.time_base
                        if d.denominator != 1:
                            raise VideoError(f"{label}: segment {part.name}: a shift of {shift} s is not a whole "
                                             f"number of its time base {p.time_base}")
                        p.pts = None if p.pts is None else p.pts + int(d)
                        p.dts = None if p.dts is None else p.dts + int(d)
                    if p.dts is None and last is not None:
                        p.dts = last + 1
                    last = p.dts if p.dts is not None else last
                    yield p


def _copied_packets(source: str, streams: set[int]) -> Iterator[object]:
    if not streams:
        return
    with _open_input(source) as c:
        for p in c.demux([st for st in c.streams if st.index in streams]):  # type: ignore[attr-defined]
            if p.size:
                yield p


def _packet_key(p: object) -> Fraction:
    t = p.dts if p.dts is not None else p.pts  # type: ignore[attr-defined]
    return Fraction(t or 0) * p.time_base  # type: ignore[attr-defined]


def concat_segments(parts: Sequence[Path], path: Path, *, source: str | Path, label: str,
                    notes: list[str] | None = None, shifts: Sequence[Fraction] | None = None) -> int:
    """Join the encoded segment files ``parts`` (in order) into ``path`` by stream copy, with the audio /
    subtitle / data streams of ``source`` (copied whole) and its tags; returns the number of video packets.
    ``shifts``: seconds added to each part's timestamps (the segments' shifts, for :func:`rebases` containers).
    ``label`` names the output in errors; notes (streams not copied) go to ``notes``. On failure ``path`` is
    removed."""
    av = _av()
    notes = notes if notes is not None else []
    if not parts:
        raise VideoError(f"{label}: no segments to join")
    try:
        out = av.open(str(path), "w")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{label}: cannot create ({_ffmpeg_reason(e)})") from None
    n = 0
    try:
        with _open_input(parts[0]) as first:
            tmpl = _video_stream(first, str(parts[0]))
            ref = _signature(tmpl)
            vout = out.add_stream_from_template(tmpl)
            vout.time_base = tmpl.time_base  # type: ignore[attr-defined]
            vout.disposition = tmpl.disposition  # type: ignore[attr-defined]
        copies = add_copied_streams(out, vout, source, label=label, notes=notes)
        moved = list(shifts) if shifts is not None else [Fraction(0)] * len(parts)
        tagged = ((_packet_key(p), 0, k, p) for k, p in enumerate(_video_packets(parts, ref, label, moved)))
        copied = ((_packet_key(p), 1, k, p) for k, p in enumerate(_copied_packets(str(source), set(copies))))
        for _, side, _, packet in heapq.merge(tagged, copied, key=lambda x: x[:3]):
            packet.stream = vout if side == 0 else copies[packet.stream.index]  # type: ignore[attr-defined]
            out.mux(packet)
            n += side == 0
        out.close()
    except av.error.FFmpegError as e:
        _discard(out, path)
        raise VideoError(f"{label}: joining the segments failed ({_ffmpeg_reason(e)})") from None
    except BaseException:
        _discard(out, path)
        raise
    return n


def _discard(container: object, path: Path) -> None:
    try:
        container.close()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the file is deleted anyway
        pass
    path.unlink(missing_ok=True)
