"""The web demo's state and handlers (:class:`DemoApp`); the page is :mod:`restore.web.ui`, the model list
:mod:`restore.web.catalogue`. ``restore web [--host 127.0.0.1] [--port 7860] [--weights-dir DIR]``.

A thin layer over the Python API: :func:`restore.load_model` builds the network (through
:func:`restore.web.catalogue.load_checked`: one-line errors, NaN/inf weights refused), :class:`restore.Restorer`
runs it, :mod:`restore.io` decodes uploads and writes results, and the video tab calls
:func:`restore.engine.video.upscale_video` when that module (and PyAV) can be imported. Nothing here knows
about architectures; the page only picks a checkpoint, passes the user's settings through and shows the
result.

Models offered: the shipped models (``restore.weights.shipped_models()``), every checkpoint in ``--weights-dir``
(``.pth``/``.pt``/``.pb``/``.safetensors``; a ``<stem>.json`` next to one may give ``{"psnr": {"Set5": 32.1},
"sigma": "25", "name": "..."}``) and checkpoints uploaded in the page (kept for that browser session only);
one that cannot be loaded is skipped with one warning line (shown in the page too). The task / scale /
noise-level controls filter that list; parameters and PSNR (when known) are shown. Models are known to the
browser by name (``weights/x.pth``), never by their path on the server.

Image tab: the result is shown in a before/after slider at the same zoom (the input is enlarged with
nearest-neighbour to the output size, so its pixels stay visible); the full-resolution result is a PNG
written by :func:`restore.io.write_image` (16-bit input stays 16-bit, ICC/EXIF kept). The time shown is the
engine's run time.

Offline and bounded: no analytics (see :mod:`web`), no share link, no server-side rendering, a theme that
uses system fonts only (no font downloads); uploads are limited in bytes (Gradio refuses larger ones, and
the handlers check again) and in pixels (checked from the header before decoding); one inference runs at a
time across both tabs and the API (a shared concurrency id) behind a bounded queue. Every error a user can
cause is shown in the page as one line (``gr.Error``, server paths stripped); unexpected ones are logged with
their traceback on the server and shown as one line too. Only the precisions that work on the serving device
are offered (:func:`offered_precisions`). The work folder is removed by :meth:`DemoApp.close` (``launch``
calls it on Ctrl-C and SIGTERM) and at exit.

HTTP API (:meth:`DemoApp.api_upscale`, :meth:`DemoApp.api_denoise`, the page's ``/upscale`` and ``/denoise``
endpoints): an image file and a scale / noise level in, an image file out, with the shipped default model
that ``restore upscale --scale S`` / ``restore denoise --sigma S`` would pick.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import gradio as gr
import numpy as np

from restore import io
from restore.engine.policy import PRECISIONS as ENGINE_PRECISIONS
from restore.engine.policy import parse_tile
from restore.web.catalogue import (
    ModelEntry,
    entry_from_file,
    filter_models,
    first_line,
    load_checked,
    scan_weights_dir,
    shipped_entries,
    tidy_message,
)
from restore.web.pictures import add_gaussian_noise, before_preview, header_size, make_example, preview

log = logging.getLogger(__name__)

TASKS = (("Upscale", "sr"), ("Denoise", "denoise"))
SCALES = (2, 3, 4)
SIGMAS = ("15", "25", "50")
API_SIGMAS = (*SIGMAS, "blind", "auto")
TILES = ("auto", "none", "64", "128", "256", "512")
PRECISIONS = tuple(p for p in ENGINE_PRECISIONS if p != "int8")  # int8 needs calibration images: CLI only
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"]
MODEL_CACHE_SIZE = 3
RUN_DIR_MAX_AGE_S = 2 * 3600
CONCURRENCY_ID = "inference"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. ``max_pixels``: input width x height (images); video frames are limited
    by ``max_video_pixels`` and only the first ``max_video_frames`` frames are processed. Previews in the
    slider are downscaled (both sides alike) above ``preview_max_pixels``; the download is always full size."""

    max_upload_bytes: int = 50 * 2**20
    max_pixels: int = 4_000_000
    max_video_frames: int = 300
    max_video_pixels: int = 1280 * 720
    preview_max_pixels: int = 8_000_000
    queue_size: int = 8


# ------------------------------------------------------------------------------------------ small helpers


def _user_errors() -> tuple[type[BaseException], ...]:
    from restore.weights import ModelLoadError

    return (io.ImageReadError, ModelLoadError, ValueError, FileNotFoundError, OSError)


def readable_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn everything a handler raises into a one-line ``gr.Error`` shown in the page (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from restore.engine.restorer import is_oom

        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except MemoryError:
            raise gr.Error("Out of memory: try a smaller tile size or a smaller input.", print_exception=False) \
                from None
        except RuntimeError as e:
            if is_oom(e):
                raise gr.Error("Out of memory: try a smaller tile size or a smaller input.",
                               print_exception=False) from None
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error: {tidy_message(first_line(e))}", print_exception=False) from None
        except _user_errors() as e:
            raise gr.Error(tidy_message(first_line(e)), print_exception=False) from None
        except Exception as e:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error ({type(e).__name__}): {tidy_message(first_line(e))}",
                           print_exception=False) from None

    return wrapper


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def offered_precisions(device: Any) -> tuple[str, ...]:
    """The page's precisions that work on ``device`` (a ``torch.device``): fp16 on CUDA only (the CPU runs it
    emulated, eager and slow), bf16 on GPUs that support it and on CPUs with native bf16 convolutions
    (:func:`restore.engine.cpu_paths.native_bf16`: AVX512-BF16 / AMX; an AVX2-only CPU cannot run them at all)."""
    if device.type == "cuda":
        import torch

        bf16 = torch.cuda.is_bf16_supported()
        return tuple(p for p in PRECISIONS if p != "bf16" or bf16)
    if device.type == "cpu":
        from restore.engine.cpu_paths import bf16_convolutions, native_bf16

        bf16 = native_bf16() and bf16_convolutions()
        return tuple(p for p in PRECISIONS if p != "fp16" and (p != "bf16" or bf16))
    return tuple(p for p in PRECISIONS if p in ("auto", "fp32"))


def video_module() -> ModuleType | None:
    """:mod:`restore.engine.video` when it and PyAV import and it has ``upscale_video``; else None."""
    try:
        import av  # noqa: F401

        from restore.engine import video
    except ImportError:
        return None
    return video if hasattr(video, "upscale_video") and hasattr(io, "probe_video") else None


# ------------------------------------------------------------------------------------------ the app


class DemoApp:
    """The page's state and handlers (plain methods, so they can be tested without a browser)."""

    def __init__(self, *, weights_dir: str | Path | None = None, device: str = "auto", limits: Limits | None = None,
                 workdir: str | Path | None = None) -> None:
        from restore.engine.restorer import resolve_device

        self.limits = limits or Limits()
        self.device = device
        self.precisions = offered_precisions(resolve_device(device))  # a missing CUDA device: one-line ValueError
        self.models, self.skipped = shipped_entries()
        if weights_dir is not None:
            found, skipped = scan_weights_dir(weights_dir)
            self.models += found
            self.skipped += skipped
        self._own_workdir = workdir is None
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="restore-web-")
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.video = video_module()
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._runners: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Remove the work folder (users' inputs and results) when this app made it; safe to call twice."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def device_name(self) -> str:
        from restore.engine.restorer import resolve_device

        dev = resolve_device(self.device)
        if dev.type == "cuda":
            import torch

            return f"cuda: {torch.cuda.get_device_name(dev)}"
        return dev.type

    def check_precision(self, precision: str) -> None:
        """A one-line error for a precision this server does not offer (the page lists only those it does)."""
        if precision not in self.precisions:
            raise gr.Error(f"precision {precision!r} is not available on this server; use one of "
                           f"{', '.join(self.precisions)}.", print_exception=False)

    # ---------------------------------------------------------------------------- models

    def all_models(self, uploads: dict[str, ModelEntry] | None = None) -> list[ModelEntry]:
        return self.models + list((uploads or {}).values())

    def lookup(self, key: str | None, uploads: dict[str, ModelEntry] | None = None) -> ModelEntry:
        if not key:
            raise gr.Error("No model selected: pick one in the Model list (or add a checkpoint).",
                           print_exception=False)
        for e in self.all_models(uploads):
            if e.key == key:
                return e
        raise gr.Error("Pick a model from the Model list.", print_exception=False)

    def model(self, entry: ModelEntry) -> Any:
        """The loaded network of ``entry``."""
        return self.network(entry.path)

    def network(self, path: str | Path) -> Any:
        """The network in the checkpoint at ``path`` (:func:`restore.web.catalogue.load_checked`; a few kept in
        memory, least recently used dropped first)."""
        key = str(path)
        with self._lock:
            m = self._cache.pop(key, None)
            if m is None:
                m = load_checked(key)
            self._cache[key] = m
            while len(self._cache) > MODEL_CACHE_SIZE:
                self._cache.popitem(last=False)
        return m

    def runner(self, path: str | Path, tile: str, precision: str, tta: bool = False) -> Any:
        """A :class:`restore.Restorer` for the checkpoint at ``path`` with these settings (``tta``: test-time
        augmentation), kept (a few, least recently used dropped first) so that its CPU fast path is built once, not
        on every request."""
        from restore.engine.restorer import Restorer

        key = (str(path), str(tile), str(precision), bool(tta))
        with self._lock:
            r = self._runners.pop(key, None)
        if r is None:
            r = Restorer(self.network(path), device=self.device, tile=parse_tile(tile), precision=precision,
                         tta=bool(tta))
        with self._lock:
            self._runners[key] = r
            while len(self._runners) > MODEL_CACHE_SIZE:
                self._runners.popitem(last=False)
        return r

    def default_selection(self) -> tuple[str, int, str | None]:
        """Initial (task, scale, model key): the first SR model's scale, else the first denoiser."""
        sr = [e for e in self.models if e.task == "sr"]
        if sr:
            return "sr", sr[0].scale, sr[0].key
        dn = [e for e in self.models if e.task == "denoise"]
        return ("denoise", 2, dn[0].key) if dn else ("sr", 2, None)

    def no_model_text(self, task: str, scale: int | str | None, sigma: str | None) -> str:
        what = f"×{scale} upscaling" if task == "sr" else f"denoising at σ {sigma}"
        hint = "put checkpoints in the folder given to `restore web --weights-dir DIR`, or add one below"
        return f"No model for {what} yet: {hint}."

    @readable_errors
    def refresh_models(self, task: str, scale: int | str | None, sigma: str | None, current: str | None,
                       uploads: dict[str, ModelEntry] | None = None) -> tuple[Any, str, Any, Any]:
        """Task / scale / noise level changed: the matching models (keeping the current one when it still
        matches), its description, and which of the scale / noise controls are shown."""
        matches = filter_models(self.all_models(uploads), task, scale, sigma)
        keys = [e.key for e in matches]
        value = current if current in keys else (keys[0] if keys else None)
        info = self.model_info(value, uploads) if value else self.no_model_text(task, scale, sigma)
        return (gr.update(choices=[(e.label, e.key) for e in matches], value=value), info,
                gr.update(visible=task == "sr"), gr.update(visible=task == "denoise"))

    @readable_errors
    def model_info(self, key: str | None, uploads: dict[str, ModelEntry] | None = None) -> str:
        if not key:
            return "No model selected."
        entry = next((e for e in self.all_models(uploads) if e.key == key), None)
        return entry.markdown() if entry else "No model selected."

    @readable_errors
    def add_checkpoint(self, path: str | None, uploads: dict[str, ModelEntry] | None,
                       task: str, scale: int, sigma: str) -> tuple[Any, ...]:
        """A checkpoint uploaded in the page: describe it, keep it for this session and select it (switching
        task / scale to the model's)."""
        uploads = dict(uploads or {})
        if not path:
            return (uploads, *(gr.update() for _ in range(6)), "")
        p = Path(path)
        self._check_upload_size(p, "checkpoint")
        entry = entry_from_file(p, source="uploaded", name=p.name)
        uploads[entry.key] = entry
        task = entry.task
        if task == "sr":
            scale = entry.scale
        elif entry.sigma in SIGMAS:
            sigma = entry.sigma
        dropdown, info, scale_update, noise_update = self.refresh_models(task, scale, sigma, entry.key, uploads)
        note = f"Added **{entry.name}** ({entry.family} {entry.variant}) for this session."
        return (uploads, gr.update(value=task), {**scale_update, "value": scale}, noise_update, gr.update(value=sigma),
                dropdown, info, note)

    # ---------------------------------------------------------------------------- images

    def _check_upload_size(self, p: Path, what: str) -> None:
        size = p.stat().st_size
        limit = self.limits.max_upload_bytes
        if size > limit:
            raise gr.Error(f"{p.name}: the {what} is {size / 2**20:.1f} MB; this demo accepts up to "
                           f"{limit / 2**20:.0f} MB.", print_exception=False)

    def read_upload(self, path: str | Path) -> tuple[np.ndarray, io.ImageInfo]:
        """Decode an uploaded image with :func:`restore.io.decode_image` after the byte and pixel limits."""
        p = Path(path)
        self._check_upload_size(p, "file")
        data = p.read_bytes()
        size = header_size(data)
        if size is not None:
            self._check_pixels(p.name, *size)
        try:
            img, info = io.decode_image(data, name=p.name)
        except io.ImageTooLargeError:  # its advice (--allow-large) is the command line's, not the page's
            raise gr.Error(f"{p.name} is larger than this demo accepts (images up to "
                           f"{_megapixels(self.limits.max_pixels)}). Crop or downscale it, or use `restore upscale` "
                           f"on the command line for large images.", print_exception=False) from None
        self._check_pixels(p.name, info.width, info.height)
        return img, info

    def _check_pixels(self, name: str, w: int, h: int) -> None:
        limit = self.limits.max_pixels
        if w * h > limit:
            raise gr.Error(f"{name} is {w}×{h} ({_megapixels(w * h)}); this demo accepts images up to "
                           f"{_megapixels(limit)}. Crop or downscale it, or use `restore upscale` on the command "
                           f"line for large images.", print_exception=False)

    @readable_errors
    def example_image(self) -> str:
        """Path of the bundled example photo (written once into the work folder)."""
        p = self.workdir / "example_chelsea.png"
        if not p.exists():
            io.write_image(p, make_example())
        return str(p)

    @readable_errors
    def inspect_image(self, path: str | None) -> tuple[str | None, str]:
        """An upload arrived: a preview and one line about it (or a readable error)."""
        if not path:
            return None, "Upload an image (PNG, JPEG, WebP, TIFF, BMP) or try the example."
        img, info = self.read_upload(path)
        run_dir = self._new_run_dir()
        shown = io.write_image(run_dir / "input_preview.png", preview(img, self.limits.preview_max_pixels))
        alpha = " + alpha" if info.has_alpha else ""
        notes = f" · {'; '.join(info.notes)}" if info.notes else ""
        return str(shown), (f"**{Path(path).name}** · {info.width}×{info.height} · {info.format} · "
                            f"{info.bit_depth}-bit {'gray' if info.channels in (1, 2) else 'RGB'}{alpha}{notes}")

    def _new_run_dir(self) -> Path:
        self._sweep()
        return Path(tempfile.mkdtemp(prefix="run-", dir=self.workdir))

    def _sweep(self) -> None:
        """Remove results older than :data:`RUN_DIR_MAX_AGE_S` (the work folder never grows without bound)."""
        now = time.time()
        for d in self.workdir.glob("run-*"):
            try:
                if now - d.stat().st_mtime > RUN_DIR_MAX_AGE_S:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                continue

    @readable_errors
    def run_image(self, path: str | None, task: str, key: str | None, tile: str, precision: str, sigma: str,
                  add_noise: bool, uploads: dict[str, ModelEntry] | None = None,
                  outscale: float | None = None, tta: bool = False) -> tuple[Any, Any, str]:
        """Restore the uploaded image: (before/after pair for the slider, download button, status line).
        ``outscale`` (upscaling): the final size as a multiple of the input's (the network runs at its own scale,
        then the result is resampled: MATLAB bicubic, antialiased when shrinking); None or 0: the model's.
        ``tta``: test-time augmentation (the 8 flips / rotations averaged)."""
        from restore.engine.restorer import RunStats

        if not path:
            raise gr.Error("Upload an image first (or press “Use the example photo”).", print_exception=False)
        entry = self.lookup(key, uploads)
        self.check_precision(precision)
        img, info = self.read_upload(path)
        noisy = task == "denoise" and add_noise
        if noisy:
            img = add_gaussian_noise(img, float(sigma))
        restorer = self.runner(entry.path, tile, precision, tta)
        stats = RunStats()
        t0 = time.perf_counter()
        out = restorer.run(img, stats=stats)
        resized = entry.task == "sr" and bool(outscale) and float(outscale) != entry.scale
        if resized:
            from restore.engine.resample import resample, target_size

            try:
                out = resample(out, target_size(img.shape[0], img.shape[1], outscale=float(outscale)))
            except ValueError as e:
                raise gr.Error(str(e).replace("--outscale", "Final size"), print_exception=False) from None
        seconds = time.perf_counter() - t0

        run_dir = self._new_run_dir()
        stem = Path(path).stem
        suffix = (f"x{float(outscale):g}" if resized else f"x{entry.scale}") if entry.task == "sr" else "denoised"
        result = io.write_image(run_dir / f"{stem}_{suffix}.png", out, info=info)
        pmax = self.limits.preview_max_pixels
        after_p = io.write_image(run_dir / "after.png", preview(out, pmax))
        before_p = io.write_image(run_dir / "before.png", before_preview(img, out.shape, pmax))

        h, w = img.shape[:2]
        oh, ow = out.shape[:2]
        bits = 16 if out.dtype == np.uint16 else 8
        tiles = f"tiles of {stats.tiles[-1]} px" if stats.tiles and stats.tiles[-1] < max(h, w) else "whole image"
        extra = []
        if noisy:
            extra.append(f"Gaussian noise σ {sigma} added to the input first")
        if resized:
            extra.append(f"×{entry.scale} network output resampled to ×{float(outscale):g} (bicubic)")
        if tta:
            extra.append("test-time augmentation (8 passes averaged)")
        if stats.fp32_retries:
            extra.append(f"{stats.fp32_retries} tile(s) re-run in fp32")
        if oh * ow > pmax:
            extra.append("the slider shows a downscaled preview; the download is full size")
        status = (f"**{w}×{h} → {ow}×{oh}** in **{seconds:.2f} s** with {entry.name} on "
                  f"{restorer.device.type}, {stats.precision}, {tiles}" + "".join(f" · {x}" for x in extra))
        download = gr.update(value=str(result), label=f"Download {ow}×{oh} PNG ({bits}-bit)", interactive=True)
        return (str(before_p), str(after_p)), download, status

    # ---------------------------------------------------------------------------- video

    def video_choices(self, uploads: dict[str, ModelEntry] | None = None) -> list[tuple[str, str]]:
        return [(e.label, e.key) for e in self.all_models(uploads) if e.task == "sr"]

    @readable_errors
    def refresh_video_models(self, current: str | None, uploads: dict[str, ModelEntry] | None = None) -> Any:
        choices = self.video_choices(uploads)
        keys = [k for _, k in choices]
        return gr.update(choices=choices, value=current if current in keys else (keys[0] if keys else None))

    @readable_errors
    def run_video(self, path: str | None, key: str | None, tile: str, precision: str,
                  uploads: dict[str, ModelEntry] | None = None,
                  progress: Any = gr.Progress()) -> tuple[str, str]:  # noqa: B008 (Gradio's progress idiom)
        """Upscale a short clip with :func:`restore.engine.video.upscale_video` (audio copied); progress bar."""
        if self.video is None:
            raise gr.Error("Video support is not installed: pip install 'restore[video]'.", print_exception=False)
        if not path:
            raise gr.Error("Upload a video clip first.", print_exception=False)
        entry = self.lookup(key, uploads)
        if entry.task != "sr":
            raise gr.Error(f"{entry.name} is not an upscaling model.", print_exception=False)
        self.check_precision(precision)
        src = Path(path)
        self._check_upload_size(src, "video")
        if src.suffix.lower() not in io.VIDEO_SUFFIXES:
            raise gr.Error(f"{src.name}: unsupported video type; use one of {', '.join(io.VIDEO_SUFFIXES)}.",
                           print_exception=False)
        info = io.probe_video(src)
        if info.width * info.height > self.limits.max_video_pixels:
            raise gr.Error(f"{src.name}: frames are {info.width}×{info.height}; this demo accepts clips up to "
                           f"{_megapixels(self.limits.max_video_pixels)} per frame.", print_exception=False)
        known = info.estimated_frames()
        stop = self.limits.max_video_frames
        total = min(known, stop) if known else stop
        progress((0, total), desc="Upscaling frames", unit="frames")

        def on_frame(stats: Any) -> None:
            progress((stats.frames_out, total), desc="Upscaling frames", unit="frames")

        out = self._new_run_dir() / f"{src.stem}_x{entry.scale}{src.suffix.lower()}"
        res = self.video.upscale_video(src, out, self.model(entry), stop=stop, device=self.device,
                                       precision=precision, tile=parse_tile(tile), progress=on_frame)
        notes = [tidy_message(n) for n in res.notes]  # the engine's notes name the source by its server path
        if known > stop:
            notes.append(f"only the first {stop} of {known} frames were processed (demo limit)")
        if not hasattr(res, "expected_frames"):  # an engine without its own truncation note
            notes += [n for n in [truncation_note(res, info, stop)] if n]
        audio = "audio copied" if any("audio" in s.split() for s in info.streams) else "no audio track"
        status = (f"**{res.frames} frames, {res.in_size[0]}×{res.in_size[1]} → {res.out_size[0]}×{res.out_size[1]}**"
                  f" in **{res.seconds:.1f} s** ({res.fps:.1f} frames/s) with {entry.name} · {audio}"
                  + "".join(f" · {n}" for n in notes))
        return str(out), status

    # ---------------------------------------------------------------------------- HTTP API

    @readable_errors
    def api_upscale(self, image: str | None, scale: str | int | float | None) -> str:
        """``/upscale``: the image file enlarged ``scale`` times (2, 3 or 4) by the shipped default model for that
        scale (what ``restore upscale --scale S`` picks); a PNG path back (16-bit stays 16-bit, ICC/EXIF kept)."""
        s = api_scale(scale)
        img, info = self._api_input(image)
        out = self._api_run(img, task="sr", scale=s, sigma=None, color="rgb")
        return self._api_output(image, f"x{s}", out, info)

    @readable_errors
    def api_denoise(self, image: str | None, sigma: str | int | float | None) -> str:
        """``/denoise``: the image file denoised by the shipped default model for noise level ``sigma`` (15, 25, 50,
        blind, or auto: the level estimated on the image, as ``restore denoise`` without --sigma; gray models for
        gray images, as ``restore denoise --sigma S`` picks); a same-size PNG back."""
        level = api_sigma(sigma)
        img, info = self._api_input(image)
        color = "gray" if img.ndim == 2 or img.shape[2] == 2 else "rgb"
        if level == "auto":
            from restore.weights import auto_sigma

            level = auto_sigma(img, color)[0]
        out = self._api_run(img, task="denoise", scale=None, sigma=level, color=color)
        return self._api_output(image, "denoised", out, info)

    def _api_input(self, image: str | None) -> tuple[np.ndarray, io.ImageInfo]:
        if not image:
            raise gr.Error("No image: send an image file (PNG, JPEG, WebP, TIFF, BMP).", print_exception=False)
        return self.read_upload(image)

    def _api_run(self, img: np.ndarray, *, task: str, scale: int | None, sigma: str | None,
                 color: str) -> np.ndarray:
        from restore.errors import ModelLoadError
        from restore.weights import resolve_model

        try:
            path = resolve_model(None, task=task, scale=scale, sigma=sigma, color=color)
        except ModelLoadError:
            what = f"×{scale} upscaling" if task == "sr" else f"denoising at σ {sigma}"
            raise gr.Error(f"This server has no default model for {what}.", print_exception=False) from None
        return self.runner(path, "auto", "auto").run(img)

    def _api_output(self, image: str, suffix: str, out: np.ndarray, info: io.ImageInfo) -> str:
        stem = Path(image).stem or "image"
        return str(io.write_image(self._new_run_dir() / f"{stem}_{suffix}.png", out, info=info))


def api_scale(value: str | int | float | None) -> int:
    """The API's scale (2, 3 or 4; ``4``, ``"4"``, ``"x4"`` or ``4.0``), else a one-line error."""
    text = str(value).strip().lower().removeprefix("x") if value is not None else ""
    try:
        n = float(text)
    except ValueError:
        n = 0.0
    if n not in SCALES:
        raise gr.Error(f"scale must be one of {', '.join(map(str, SCALES))}, not {str(value)[:40]!r}.",
                       print_exception=False)
    return int(n)


def api_sigma(value: str | int | float | None) -> str:
    """The API's noise level (15, 25, 50, blind or auto; ``25``, ``"25"`` or ``25.0``), else a one-line error."""
    text = str(value).strip().lower() if value is not None else ""
    try:
        text = str(int(float(text))) if float(text).is_integer() else text
    except (ValueError, OverflowError):
        pass
    if text not in API_SIGMAS:
        raise gr.Error(f"sigma must be one of {', '.join(API_SIGMAS)}, not {str(value)[:40]!r}.",
                       print_exception=False)
    return text


def truncation_note(result: Any, info: io.VideoInfo, stop: int) -> str:
    """A note when fewer frames came out than the source's header announces (up to the demo's frame limit): the
    file is cut short (a partial upload or download); '' otherwise. For engines whose :class:`VideoResult` has no
    ``expected_frames`` (newer ones note it themselves): the header's count from :func:`restore.io.probe_video`."""
    expected = int(info.n_frames or 0)
    want = min(expected, stop)
    done = int(result.frames)
    if not expected or done >= want:
        return ""
    limit = f" (the header announces {expected}; the demo processes the first {stop})" if expected > stop else ""
    return f"the clip looks truncated: expected {want} frames, decoded {done}{limit}"
