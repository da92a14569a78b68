"""Video super-resolution: ``restore video`` (file to file) and :func:`stream` (frames in, frames out).

One concern, kept whole (hence near 600 lines): the threaded decode -> network -> encode pipeline. Its command
line is :mod:`restore.cli.video`.

Pipeline (:func:`upscale_video`): three stages run at the same time and hand frames over through bounded
buffers, so memory stays flat whatever the length of the video:

1. decode (a thread): PyAV demuxes the source, decodes the first video stream to HxWx3 **uint8** RGB
   (**uint16** RGB for sources of more than 8 bits, see "Bit depth and HDR" below) and hands the packets of
   every audio / subtitle / data stream on untouched (:func:`restore.io.read_video`);
2. super-resolve (a thread): frames are grouped in batches of ``batch`` (:func:`default_batch`) and go through
   :meth:`Restorer.run_batch <restore.engine.restorer.Restorer.run_batch>` — the same engine as images, so
   colour handling (Y-channel models such as ESPCN included), precision and per-frame tiling are the
   engine's; frames become float only inside it and come back as uint8 (uint16);
3. encode (the calling thread): :class:`restore.io.VideoWriter` encodes the frames with their source
   timestamps and stream-copies the other streams' packets (remux, not re-encode: the audio is
   bit-identical), then the temporary file is renamed to the output name.

Colour path (``color_path`` / ``--color-path``): models that see only luma (``meta.color_space == "y_full"``,
e.g. ESPCN) take the **Y-plane path** ("yuv") when the source is 4:2:0 (yuv420p / yuvj420p, or 10-bit
yuv420p10le) with even sizes and the output has the same format: frames are decoded as their planes, the
Y plane alone goes through the network (mapped to the model's full-range Y, :func:`restore.io.yuv_luma_for_model`),
U and V are upscaled bilinearly, and the planes go to the encoder directly (:func:`restore.io.yuv_from_luma`),
with no RGB conversion anywhere; colour range and tags stay the source's. Decoded outputs equal the RGB path's within a
few code values (the RGB path converts YUV -> RGB -> YCrCb -> RGB -> YUV, rounding and clipping at each step;
see tests/engine/test_video_yuv.py). Every other case (RGB models, 4:2:2 / 4:4:4 / RGB sources, odd sizes,
an encoder without the source's 4:2:0 format) takes the **RGB path** ("rgb"): frames decoded to RGB and run
through :meth:`Restorer.run_batch`, whose colour handling is the engine's. ``"auto"`` (default) picks the
Y-plane path where it applies; ``"rgb"`` forces the RGB path; ``"yuv"`` insists on the Y-plane path (an error
where it does not apply). :attr:`VideoResult.color_path` says which one ran. Tiling, precision and batching
are the engine's on both paths, except that ``precision="auto"`` on a CPU with native bfloat16 (AMX /
AVX512-BF16) runs half-safe models in bf16 (:func:`video_precision`: 2x faster for ESPCN at the same output
PSNR). ``restore video`` also sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set) before torch loads, so idle
OpenMP workers sleep instead of spinning on the cores the decoder and encoder threads need (ESPCN x2
360p->720p bf16 on 2 cores: 24.6 vs 20.6 fps end to end); :func:`stream` users set it themselves.

What is kept: every frame (same count, same timestamps, so variable frame rate and A/V sync survive), the
audio / subtitle / data streams (copied packets), rotation metadata (the display matrix; pixels are not
rotated), colour range / matrix / primaries / transfer tags, sample aspect ratio, container and stream tags
(title, language). What changes: the video codec (``--codec``, default libx264, ``--crf`` 18, ``--preset``
veryfast; libvpx-vp9 for .webm), the pixel format (yuv420p, or yuv444p for 4:4:4 sources; 10-bit sources
keep their depth, below), and an odd output width/height is cropped by one pixel for 4:2:0 (only possible
with ``--scale 3`` on an odd-sized source). ``--frames A:B`` takes frames A to B-1 (0-based, frame-exact;
audio cut at packet boundaries, timestamps shifted so the clip starts where the source started).

Bit depth and HDR (``bit_depth`` / ``--bit-depth``): a source of more than 8 bits (e.g. yuv420p10le HEVC) stays
so end to end unless ``bit_depth=8``: the RGB path decodes it to 16-bit RGB (swscale, the stream's matrix),
the network runs in float on it and its output comes back as 16-bit, the encoder gets 10-bit YUV; the
Y-plane path keeps the 10-bit planes (Y to float as ``(Y - 64) / 876``, back to 10-bit code values; U / V
upscaled at 10 bits). No step rounds to 8 bits (tests/engine/test_video_hdr.py compares with the 8-bit
pipeline). The encoder is x265 Main 10, or the source codec's own 10-bit profile (libx264 High 10, VP9 profile
2) when it has one (:func:`restore.io.video.default_video_codec`). Primaries / transfer / matrix tags (e.g.
BT.2020 + PQ or HLG) are copied as for any source, and the HDR10 static metadata (mastering display, content
light level), read from the first decoded frame's side data, is written by libx265 (``x265-params``); with
another encoder a note says it is dropped. The network sees the coded signal (PQ / HLG code values), not
linear light, as it sees gamma-coded SDR frames. ``VideoResult.bit_depth`` says what ran.

Long videos across workers: :mod:`restore.engine.video_segments` (``--segments`` / ``--ray``) runs this
pipeline on one segment of the source at a time (``segment=``: its frames exactly, video only) and joins the
encoded segments by stream copy.

Temporal stability: none of the supported networks is recurrent or looks at neighbouring frames; every frame
is restored on its own, deterministically (the same input frame gives the same output frame, up to float
summation order when batched). Flicker in the output therefore only follows changes in the input (e.g.
compression noise that differs from frame to frame); there is no temporal smoothing.

Bounded latency (:func:`stream`): at most ``2 * buffer + batch + 1`` frames are between the source and the
consumer at any time (one being read, ``buffer`` waiting, ``batch`` in the network, ``buffer`` done). With
``drop=True`` a full input buffer drops its oldest frame instead of blocking the source, so a live camera
is never slowed down and the delay stays bounded in time too.

Live mode (``restore video --live``): the source is treated as real-time. Capture devices (``/dev/video0``)
and URLs (``rtsp://...``) are read as they come; a file is read at its own frame rate (paced by its
timestamps, as if it were a camera). Frames are batched greedily (whatever is waiting, up to ``--batch``)
and dropped when the network cannot keep up, and the progress line shows the measured output fps, the
dropped frames and the delay from reading a frame to having it upscaled. ``-o`` is optional there (without
it nothing is written: a measurement of whether a model keeps up in real time); Ctrl-C ends a live run and
keeps what was written. Without ``--live`` nothing is dropped and the run goes as fast as it can.

Real-time factor (final line): seconds of video processed per second of wall time (``> 1``: faster than
real time).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from torch import nn

    from restore.engine.restorer import Restorer
    from restore.io import VideoInfo
    from restore.io.video_segments import Segment

from restore.engine.policy import COLOR_PATHS, GPU_BATCH

__all__ = ["stream", "upscale_video", "VideoResult", "PipelineStats", "max_in_flight", "default_batch",
           "default_threads", "video_precision", "choose_color_path", "make_restorer", "COLOR_PATHS", "GPU_BATCH"]

DEFAULT_BUFFER = 4
MAX_PACKETS = 4096  # copied packets allowed to wait in one buffer (beside the frames)
JOIN_TIMEOUT = 5.0


def default_batch(device: object) -> int:
    """Frames per network call when none is given: 4 on CUDA, 1 on the CPU. On the 2-core CPU of
    docs/benchmarks.md batching 4 frames made ESPCN (1-channel input) up to 2.5x faster, while SPAN-tiny and
    IMDN-RTC ran at 0.5-0.7x, so on the CPU it is left to ``--batch``."""
    return GPU_BATCH if getattr(device, "type", str(device)) == "cuda" else 1


def default_threads() -> int:
    """Torch CPU threads for ``restore video``: every core. On the 2-core machine of docs/benchmarks.md (idle,
    OpenMP passive, conv + activation fused) ESPCN x2 360p->720p bf16 ran 29.7 fps end to end with two threads
    against 26.3 with one (preset veryfast; 32.0 vs 29.9 at ultrafast). On a machine shared with other busy
    processes fewer threads (``--threads 1``) can be faster: a torch thread that is preempted holds up the
    others."""
    import os

    return max(1, os.cpu_count() or 1)


def choose_color_path(meta: Any, info: VideoInfo, request: str = "auto", out_pix_fmt: str | None = "yuv420p"
                      ) -> tuple[str, str]:
    """``(path, why)``: ``"yuv"`` (Y-plane path) or ``"rgb"`` for a model with ``meta`` on a source described
    by ``info`` writing ``out_pix_fmt`` (None: nothing is written), as asked by ``request`` (one of
    :data:`COLOR_PATHS`; see the module docstring). ``"yuv"`` asked where it cannot run raises ValueError."""
    from restore import io

    if request not in COLOR_PATHS:
        raise ValueError(f"color_path must be one of {', '.join(COLOR_PATHS)}; got {request!r}")
    if request == "rgb":
        return "rgb", "asked for"
    from restore.io.video import yuv_pixels

    why = ""
    planes = yuv_pixels(info.pix_fmt)
    if getattr(meta, "color_space", None) != "y_full" or getattr(meta, "in_channels", 1) != 1:
        why = f"the model is not Y-only (colour space {getattr(meta, 'color_space', '?')})"
    elif not io.yuv420_supported(info.pix_fmt, info.width, info.height):
        why = (f"the source is {info.pix_fmt} {info.width}x{info.height} (the Y-plane path needs 8- or 10-bit "
               f"4:2:0 with even sizes)")
    elif out_pix_fmt is not None and out_pix_fmt != planes:
        why = f"the encoder writes {out_pix_fmt}, not {planes}"
    if not why:
        return "yuv", "Y-only model on a 4:2:0 source"
    if request == "yuv":
        raise ValueError(f"{info.source}: color path 'yuv' cannot be used: {why}; use 'auto' or 'rgb'")
    return "rgb", why


def max_in_flight(batch: int, buffer: int) -> int:
    """Largest number of frames that can be read from the source but not yet handed to the consumer."""
    return 2 * buffer + batch + 1


# ------------------------------------------------------------------------------------------ pipeline


class _Aborted(Exception):
    """Internal: a buffer was aborted (an error or the consumer stopped)."""


class _Buffer:
    """Bounded FIFO between two threads: at most ``capacity`` frames (plus up to ``MAX_PACKETS`` other items,
    which are small). ``drop_oldest`` puts evict the oldest waiting frame instead of blocking."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[tuple[bool, Any]] = deque()
        self._frames = 0
        self._others = 0
        self._cond = threading.Condition()
        self._aborted = False
        self.dropped = 0

    def put(self, item: Any, *, frame: bool, drop_oldest: bool = False, force: bool = False) -> None:
        with self._cond:
            while True:
                if self._aborted:
                    raise _Aborted
                if frame and drop_oldest and self._frames >= self.capacity:
                    for k, (is_frame, _) in enumerate(self._items):
                        if is_frame:
                            del self._items[k]
                            self._frames -= 1
                            self.dropped += 1
                            break
                full = self._frames >= self.capacity if frame else self._others >= MAX_PACKETS
                if force or not full:
                    break
                self._cond.wait()
            self._items.append((frame, item))
            if frame:
                self._frames += 1
            else:
                self._others += 1
            self._cond.notify_all()

    def get(self, *, block: bool = True) -> tuple[bool, Any] | None:
        """The oldest ``(is_frame, item)``; None when empty and ``block`` is False."""
        with self._cond:
            while not self._items:
                if self._aborted:
                    raise _Aborted
                if not block:
                    return None
                self._cond.wait()
            if self._aborted:
                raise _Aborted
            frame, item = self._items.popleft()
            if frame:
                self._frames -= 1
            else:
                self._others -= 1
            self._cond.notify_all()
            return frame, item

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._items.clear()
            self._cond.notify_all()


_END = object()


@dataclass
class PipelineStats:
    """Live counters of a running pipeline (read them from the consumer thread)."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    batches: int = 0
    sr_seconds: float = 0.0
    latency: float = 0.0  # seconds from reading the latest output frame to its upscaled result
    max_latency: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def fps(self) -> float:
        secs = time.perf_counter() - self.started
        return self.frames_out / secs if secs > 0 else 0.0


class _Pipeline:
    """read (thread) -> inbox -> process in batches (thread) -> outbox -> iteration by the consumer.

    Items that are not frames (``is_frame(item)`` false: copied packets) skip the processing and keep their
    place relative to the batch they arrived with. Any exception in a stage stops the others and is raised
    to the consumer; leaving the iteration early (break, an exception, Ctrl-C) stops both threads.
    """

    def __init__(self, source: Iterable[Any], process: Callable[[list[Any]], list[Any]], *,
                 is_frame: Callable[[Any], bool], batch: int, buffer: int, greedy: bool = False,
                 drop: bool = False) -> None:
        if batch < 1 or buffer < 1:
            raise ValueError(f"batch and buffer must be >= 1, got {batch} and {buffer}")
        self.source, self.process, self.is_frame = source, process, is_frame
        self.batch, self.greedy, self.drop = batch, greedy, drop
        self.inbox, self.outbox = _Buffer(buffer), _Buffer(buffer)
        self.stats = PipelineStats()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, name="restore-decode", daemon=True),
                         threading.Thread(target=self._work, name="restore-sr", daemon=True)]

    def _fail(self, err: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = err
        self.inbox.abort()
        self.outbox.abort()

    def _read(self) -> None:
        it = iter(self.source)
        try:
            for item in it:
                frame = self.is_frame(item)
                if frame:
                    self.stats.frames_in += 1
                self.inbox.put((time.perf_counter(), item), frame=frame, drop_oldest=self.drop)
                self.stats.dropped = self.inbox.dropped
            self.inbox.put(_END, frame=False, force=True)
        except _Aborted:
            pass
        except BaseException as e:  # noqa: B036 - handed to the consumer thread
            self._fail(e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def _next_batch(self) -> tuple[list[tuple[float, Any]], list[Any], bool]:
        frames: list[tuple[float, Any]] = []
        others: list[Any] = []
        block = True
        while len(frames) < self.batch:
            got = self.inbox.get(block=block)
            if got is None:
                break
            is_frame, entry = got
            if entry is _END:
                return frames, others, True
            if is_frame:
                frames.append(entry)
                block = not self.greedy
            else:
                others.append(entry[1])
        return frames, others, False

    def _work(self) -> None:
        try:
            while True:
                frames, others, end = self._next_batch()
                for item in others:
                    self.outbox.put(item, frame=False)
                if frames:
                    t0 = time.perf_counter()
                    outs = self.process([item for _, item in frames])
                    now = time.perf_counter()
                    self.stats.sr_seconds += now - t0
                    self.stats.batches += 1
                    for (t_read, _), out in zip(frames, outs, strict=True):
                        self.outbox.put((t_read, out), frame=True)
                if end:
                    self.outbox.put(_END, frame=False, force=True)
                    return
        except _Aborted:
            pass
        except BaseException as e:  # noqa: B036 - handed to the consumer thread
            self._fail(e)

    def __iter__(self) -> Iterator[Any]:
        for t in self._threads:
            t.start()
        try:
            while True:
                try:
                    is_frame, entry = self.outbox.get()  # type: ignore[misc]
                except _Aborted:
                    break
                if entry is _END:
                    break
                if is_frame:
                    t_read, item = entry
                    s = self.stats
                    s.frames_out += 1
                    s.latency = time.perf_counter() - t_read
                    s.max_latency = max(s.max_latency, s.latency)
                    yield item
                else:
                    yield entry
            if self.error is not None:
                raise self.error
        finally:
            self.close()

    def close(self) -> None:
        self.inbox.abort()
        self.outbox.abort()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(JOIN_TIMEOUT)


# ------------------------------------------------------------------------------------------ stream API


def make_restorer(model: nn.Module | Restorer | str | Path, *, device: str, precision: str,
              tile: int | str | None, calibration: object = None) -> Restorer:
    from restore.engine.restorer import Restorer

    if isinstance(model, Restorer):
        return model
    if isinstance(model, str | Path):
        from restore.weights import load_model

        model = load_model(model)
    precision = video_precision(precision, device, model.meta)  # type: ignore[union-attr]
    return Restorer(model, device=device, precision=precision, tile=tile,  # type: ignore[arg-type]
                    calibration=calibration)


def video_precision(precision: str, device: str, meta: Any) -> str:
    """``"auto"`` for video on the CPU: bf16 where the CPU computes it natively (AMX / AVX512-BF16,
    :func:`restore.engine.cpu_paths.native_bf16`) and the model is half-safe, else what ``"auto"`` means for images
    (fp32 on the CPU, fp16 on CUDA). On the 2-core Xeon of docs/benchmarks.md bf16 ran ESPCN x2 360p 2x
    faster than the fastest fp32 path at the same output Y-PSNR (31.28 dB both, after CRF 18 encoding)."""
    from restore.engine.restorer import resolve_device

    if precision != "auto" or resolve_device(device).type != "cpu" or not getattr(meta, "half_safe", False):
        return precision
    from restore.engine.cpu_paths import native_bf16

    return "bf16" if native_bf16() else precision


def stream(frames: Iterable[np.ndarray], *, model: nn.Module | Restorer | str | Path, device: str = "auto",
           precision: str = "auto", tile: int | str | None = None, batch: int = 1, buffer: int = 2,
           drop: bool = False, stats: PipelineStats | None = None,
           calibration: object = None) -> Iterator[np.ndarray]:
    """Upscale a stream of frames: ``for out in stream(frames, model=...)`` yields one restored frame per input
    frame, in order (fewer with ``drop=True``), while the next frames are read and processed in background
    threads.

    ``frames``: any iterable of HxW / HxWxC arrays (uint8, uint16 or float in [0, 1], as
    :meth:`Restorer.run`), e.g. a webcam generator; it is consumed by a background thread. ``model``: an
    ``nn.Module`` with ``meta``, a weights file, or a ready :class:`~restore.engine.restorer.Restorer`
    (``device`` / ``precision`` / ``tile`` then come from it). ``batch``: frames per network call (taken
    greedily: whatever is waiting, up to ``batch``, so a slow source is never waited for). ``buffer``: frames
    that may wait before and after the network; at most :func:`max_in_flight` frames are in flight.
    ``drop``: for live sources, drop the oldest waiting frame instead of blocking the source when the network
    falls behind. ``stats``: a :class:`PipelineStats` to fill (fps, latency, drops). ``precision`` /
    ``calibration``: as :class:`~restore.engine.restorer.Restorer` (``"int8"`` without calibration images
    calibrates on crops of the first frames). Errors in the background are raised here; breaking out of the
    loop stops the threads.
    """
    runner = make_restorer(model, device=device, precision=precision, tile=tile, calibration=calibration)
    pipe = _Pipeline(frames, lambda imgs: runner.run_batch(imgs, batch_size=batch), is_frame=lambda _: True,
                     batch=batch, buffer=buffer, greedy=True, drop=drop)
    if stats is not None:
        pipe.stats = stats
    return iter(pipe)


# ------------------------------------------------------------------------------------------ files


@dataclass
class VideoResult:
    """What :func:`upscale_video` did. ``video_seconds``: span of the processed frames' timestamps."""

    source: str
    output: str | None
    frames: int
    seconds: float
    video_seconds: float
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    dropped: int = 0
    sr_seconds: float = 0.0  # time spent in the network stage (the rest overlaps with it or is decode/encode)
    notes: list[str] = field(default_factory=list)
    color_path: str = "rgb"  # "yuv" (Y-plane path) or "rgb", see the module docstring
    bit_depth: int = 8  # bits per sample from decoder to encoder (10 for 10-bit sources, unless forced to 8)
    expected_frames: int = 0  # set when fewer frames were decoded than the container announces (see announced_frames)

    @property
    def truncated(self) -> bool:
        """Fewer frames decoded than the container announces (a file cut short, damaged data)."""
        return self.expected_frames > 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        return self.video_seconds / self.seconds if self.seconds > 0 else 0.0


TRUNCATION_SHARE = 0.9  # without a frame count in the header, fewer than 90% of duration x fps is a cut-short file


def announced_frames(info: VideoInfo, start: int = 0, stop: int | None = None) -> tuple[int, bool]:
    """Frames of ``start:stop`` that the container promises: (count, exact). Exact from the header's frame count;
    else an estimate from its duration and frame rate; (0, False) when it says neither (or for live sources)."""
    if info.live:
        return 0, False
    total, exact = (info.n_frames, True) if info.n_frames else (info.estimated_frames(), False)
    if not total:
        return 0, False
    return max(0, min(total, stop if stop is not None else total) - start), exact


def _paced(items: Iterable[Any], time_base: Any) -> Iterator[Any]:
    """Yield ``items``, holding each frame back until its timestamp is due (a file read like a camera)."""
    from restore.io import DecodedFrame

    origin: float | None = None
    for item in items:
        if isinstance(item, DecodedFrame):
            t = float(item.pts * time_base)
            now = time.perf_counter()
            if origin is None:
                origin = now - t
            delay = origin + t - now
            if delay > 0:
                time.sleep(delay)
        yield item


def check_output(src: str | Path, dst: Path, *, overwrite: bool, live: bool = False) -> None:
    """VideoError before any work when the output video ``dst`` is the input ``src`` (a file source), a folder, or
    an existing file without ``overwrite``."""
    from restore import io

    if not live and io.same_file(src, dst):
        raise io.VideoError(f"{dst}: the output would overwrite the input")
    if dst.is_dir():
        raise io.VideoError(f"{dst}: is a folder; give a file name (e.g. {dst / 'out'}{dst.suffix})")
    if dst.exists() and not overwrite:
        raise io.VideoError(f"{dst}: exists (use --overwrite)")


def upscale_video(source: str | Path, output: str | Path | None, model: nn.Module | Restorer | str | Path, *,
                  codec: str | None = None, crf: int | None = None, preset: str | None = None, start: int = 0,
                  stop: int | None = None, batch: int | None = None, buffer: int = DEFAULT_BUFFER,
                  overwrite: bool = False,
                  live: bool = False, device: str = "auto", precision: str = "auto", tile: int | str | None = None,
                  progress: Callable[[PipelineStats], None] | None = None,
                  on_start: Callable[[VideoInfo, int], None] | None = None, calibration: object = None,
                  color_path: str = "auto", encoder_threads: int | None = None, bit_depth: int | None = None,
                  segment: Segment | None = None) -> VideoResult:
    """Upscale the video ``source`` into ``output`` (see the module docstring); returns a :class:`VideoResult`.

    ``model``: as for :func:`stream`. ``start``/``stop``: frame range (0-based, ``stop`` exclusive). ``batch``:
    frames per network call (None: :func:`default_batch`). ``color_path``: "auto", "yuv" or "rgb" (see the
    module docstring and :func:`choose_color_path`). ``encoder_threads``: the video encoder's threads (None:
    FFmpeg's choice; on the 2-core machine of docs/benchmarks.md 1 or 2 threads were not faster).
    ``live``: real-time mode (pace files, greedy batches, drop frames when behind; ``output`` may be None and
    Ctrl-C ends the run normally). ``progress`` is called after every written frame; ``on_start`` once with
    the source's :class:`~restore.io.VideoInfo` and the expected number of frames (0: unknown).
    ``bit_depth``: None keeps the source's depth (10-bit stays 10-bit when the encoder has a 10-bit format);
    8 runs the 8-bit pipeline whatever the source. ``segment``: only that segment of the source
    (:mod:`restore.io.video_segments`; video only, source timestamps, no audio: the pieces are joined by
    :mod:`restore.engine.video_segments`).
    """
    from restore import io
    from restore.io.video import read_video_pixels

    src = str(source)
    if color_path not in COLOR_PATHS:
        raise ValueError(f"color_path must be one of {', '.join(COLOR_PATHS)}; got {color_path!r}")
    if bit_depth not in (None, 8):
        raise ValueError(f"bit_depth must be None (the source's) or 8; got {bit_depth!r}")
    if segment is not None and (start or stop is not None or live):
        raise ValueError("a segment cannot be combined with a frame range or live mode")
    runner = make_restorer(model, device=device, precision=precision, tile=tile, calibration=calibration)
    batch = batch or default_batch(runner.device)
    scale = runner.meta.scale
    info = io.probe_video(src)
    dst = Path(output) if output is not None else None
    if dst is not None:
        if dst.suffix.lower() not in io.VIDEO_SUFFIXES:
            raise io.VideoError(f"{dst}: unsupported output container {dst.suffix or '(no suffix)'!r}; use one of "
                                f"{', '.join(io.VIDEO_SUFFIXES)}")
        check_output(src, dst, overwrite=overwrite, live=info.live)
    known = 0 if info.live else info.estimated_frames()
    if segment is not None:
        known = segment.frames
    end = known if stop is None else (min(stop, known) if known else stop)
    width, height = info.width * scale, info.height * scale
    writer = None
    if dst is not None:
        io.ensure_writable_folder(dst.parent)  # fail now, not after the last frame
        writer = io.VideoWriter(io.video_temp_path(dst), info=info, width=width, height=height, codec=codec,
                                crf=io.DEFAULT_CRF if crf is None else crf,
                                preset=io.DEFAULT_PRESET if preset is None else preset,
                                copy_from=None if info.live or segment is not None else src, label=dst,
                                threads=encoder_threads, bit_depth=bit_depth)
    try:
        path, _ = choose_color_path(runner.meta, info, color_path, writer.pix_fmt if writer is not None else None)
    except ValueError:
        if writer is not None:
            writer.abort()
        raise
    depth = min(info.bit_depth, writer.bit_depth if writer is not None else bit_depth or info.bit_depth)
    pixels = read_video_pixels(info, path == "yuv", depth)
    depth = 8 if pixels in ("rgb24", "yuv420p") else depth
    read_stats = io.ReadStats()
    n = 0
    first_pts = last_end = None
    t0 = time.perf_counter()
    try:
        if on_start is not None:
            on_start(info, max(0, end - start) if end else 0)
        items: Iterable[Any]
        if segment is not None:
            from restore.io.video_segments import read_segment, rebases

            items = read_segment(src, segment, pixels=pixels, size=(info.width, info.height), stats=read_stats,
                                 full_range=info.color_range == 2 or info.pix_fmt == "yuvj420p",
                                 shift=dst is not None and rebases(dst.suffix))
        else:
            items = io.read_video(src, start=start, stop=stop, rebase=info.live, stats=read_stats,
                                  copy_streams=writer is not None and not info.live, pixels=pixels)
        if live and not info.live:
            items = _paced(items, info.time_base)
        sr = _sr_frames_yuv if path == "yuv" else _sr_frames
        pipe = _Pipeline(items, lambda frames: sr(runner, frames, batch), is_frame=_is_frame, batch=batch,
                         buffer=buffer, greedy=live, drop=live)
        t0 = time.perf_counter()
        try:
            for item in pipe:
                if isinstance(item, io.DecodedFrame):
                    if writer is not None:
                        writer.write(item.image, item.pts, item.duration)
                    n += 1
                    first_pts = item.pts if first_pts is None else min(first_pts, item.pts)
                    item_end = item.pts + (item.duration or 0)
                    last_end = item_end if last_end is None else max(last_end, item_end)
                    if progress is not None:
                        progress(pipe.stats)
                elif writer is not None:
                    writer.copy(item)
        except KeyboardInterrupt:
            if not live:
                raise
        if n == 0:
            what = f"frames {start}:{'' if stop is None else stop} select no frame" if start or stop else \
                "no decodable video frame"
            raise io.VideoError(f"{src}: {what} (the video has {known or 'an unknown number of'} frames)")
        if writer is not None:
            writer.close()
            try:
                io.publish_video(writer.path, dst, overwrite=overwrite)  # type: ignore[arg-type]
            except FileExistsError:
                raise io.VideoError(f"{dst}: created by someone else meanwhile (use --overwrite)") from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    seconds = time.perf_counter() - t0
    span = float((last_end - first_pts) * info.time_base) if n and last_end is not None else 0.0
    if span <= 0 and info.fps:
        span = n / info.fps
    notes = list(writer.notes) if writer is not None else []
    if read_stats.decode_errors:
        notes.append(f"{read_stats.decode_errors} damaged packet(s) of the source could not be decoded and were "
                     f"skipped")
    if read_stats.truncated:
        notes.append(f"the source {read_stats.truncated}; the frames before it were processed")
    if info.bit_depth > 8 and bit_depth == 8:  # an encoder without a deeper format is noted by the writer
        notes.append(f"the source is {info.bit_depth}-bit ({info.pix_fmt}); it was processed and written at 8 bits "
                     f"(asked for)")
    header, exact = (segment.frames, True) if segment is not None else announced_frames(info, start, stop)
    decoded = n + pipe.stats.dropped
    if stop is not None and segment is None and not live and start + decoded < stop:
        notes.append(f"frames {start}:{stop} asked, the video ends at frame {start + decoded}: frames "
                     f"{start}:{start + decoded} were processed")
    if header and (decoded < header if exact else decoded < TRUNCATION_SHARE * header - 1):
        what = "header announces" if exact else f"duration ({info.duration:.3g} s at {info.fps:.3g} fps) implies about"
        notes.append(f"{src}: truncated: the container {what} {header} frame(s), {decoded} could be decoded; the "
                     "output has only those")
    else:
        header = 0
    out_size = (writer.width, writer.height) if writer is not None else (width, height)
    return VideoResult(source=src, output=str(dst) if dst is not None else None, frames=n, seconds=seconds,
                       video_seconds=span, in_size=(info.width, info.height), out_size=out_size,
                       dropped=pipe.stats.dropped, sr_seconds=pipe.stats.sr_seconds, notes=notes, color_path=path,
                       expected_frames=header, bit_depth=depth)


def _is_frame(item: Any) -> bool:
    from restore.io import DecodedFrame

    return isinstance(item, DecodedFrame)


def _sr_frames(runner: Restorer, frames: list[Any], batch: int) -> list[Any]:
    outs = runner.run_batch([f.image for f in frames], batch_size=batch)
    for f, out in zip(frames, outs, strict=True):
        f.image = out
    return frames


def _sr_frames_yuv(runner: Restorer, frames: list[Any], batch: int) -> list[Any]:
    """Y-plane path: the network on each frame's full-range Y (float32 HxW: a gray input to a Y-only model is
    its Y, so tiling / precision / batching are the engine's), U / V upscaled, planes rebuilt."""
    from restore import io

    outs = runner.run_batch([io.yuv_luma_for_model(f.image) for f in frames], batch_size=batch)
    for f, out in zip(frames, outs, strict=True):
        f.image = io.yuv_from_luma(out, f.image, runner.meta.scale)
    return frames
