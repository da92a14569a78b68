"""Video super-resolution speed and quality: fps, real-time factor and Y-PSNR of ``restore video``.

Test clips are built from real photographs: eight Sun-Hays 80 photos (``../shared/data/train/SunHays80_HR``,
centre-cropped to 1024x768) tiled 4x2 into a 4096x1536 canvas, and a camera that pans across it while
zooming out (window 1.0x -> 1.35x the frame size, area-averaged down to the frame size) gives the
ground-truth HR frames (1280x720 for x2, 1920x1080 for x4). The LR frames are the HR frames downscaled with
our MATLAB-exact bicubic (:func:`restore.metrics.imresize.imresize`, what the models were trained on),
encoded with PyAV (libx264, CRF 12, yuv420p, 30 fps) into the clip that is upscaled.

Each model then runs the whole pipeline as ``restore video`` does (decode thread -> SR thread -> encode
libx264 CRF 18, preset ``--preset`` (default: ``restore video``'s); :func:`restore.engine.video.upscale_video`)
on the CPU. ``--color-path`` runs Y-only models (ESPCN) on the Y-plane path (``yuv``: network on the Y plane,
planes straight to the encoder), the RGB path (``rgb``) or what ``restore video`` picks (``auto``); other
models always take the RGB path (one row each). Reported: end-to-end fps
and real-time factor (video seconds per wall second; the clip is 30 fps), the fps of the network stage
alone, and the Y-PSNR (BT.601 Y, ``scale`` px border cropped, mean over frames) of the decoded output video
against the ground truth. A ``bicubic`` row (the same pipeline with bicubic upscaling as the "network") gives
the quality baseline and the decode + encode cost.

Weights: the official ESPCN graphs (``../shared/weights/espcn/ESPCN_x{2,4}.pb``), IMDN-RTC x2
(``imdn/model_RTC.pth``) and SPAN-tiny x4 (NTIRE 2024 team39 ``spantiny_ch26_slim``) where present; the
other combinations (SPAN-tiny x2, IMDN-RTC x4) have no published weights and run with random weights: their
PSNR is meaningless (shown as "—") and only their speed counts.

Each (model, precision, threads) gets one :class:`~restore.engine.restorer.Restorer`, warmed up on the first LR
frame before the timed runs: the one-time setup (the CPU fp32 path choice, ONNX export, int8 calibration on
that frame's crops) is reported apart ("setup s"), not in the fps. ``--precision`` runs the engine's
precisions (auto = what `restore video` runs: bf16 on CPUs with native bf16, else fp32; fp32 = the fastest float32
path; bf16; int8; the Y-PSNR column shows what each costs).
``--pause PATTERN`` stops (SIGSTOP) the processes whose command line matches PATTERN during each timed
``upscale_video`` call only, and resumes them (SIGCONT) right after, even on errors: figures on an otherwise
idle machine while long jobs share it.

    python scripts/bench_video.py                      # 48 frames, both settings, writes docs/benchmarks.md
    python scripts/bench_video.py --frames 24 --settings x2 --models espcn --no-write
    python scripts/bench_video.py --settings x2 --models espcn --precision fp32 bf16 int8 --threads 1 2
    python scripts/bench_video.py --settings x2 --models espcn --color-path rgb yuv --preset veryfast superfast

Not a test: minutes of CPU time, and the figures depend on the machine and its load (reported with them).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# as `restore video` sets it (restore.cli._early_environment), before torch loads: idle OpenMP workers sleep
# instead of spinning on the cores the decoder / encoder threads need
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from doc_sections import markers, write_section  # noqa: E402

SHARED = ROOT.parent / "shared"
PHOTOS = ("img_001", "img_006", "img_011", "img_016", "img_026", "img_031", "img_041", "img_056")
TILE_W, TILE_H = 1024, 768
CLIP_FPS = 30
ZOOM = (1.0, 1.35)
PAN_PX = 1400  # horizontal travel of the window centre over the clip
SETTINGS = {"x2": (2, 1280, 720), "x4": (4, 1920, 1080)}  # scale, HR width, HR height
MODELS = ("espcn", "span_tiny", "imdn_rtc")
SECTION = "bench_video"  # the marked block of --out this script replaces (--section picks another: one per CPU kind)


@dataclass
class Row:
    setting: str
    model: str
    precision: str
    backend: str
    threads: int
    color_path: str
    preset: str
    enc_threads: str
    setup: float
    batch: int
    weights: str
    params: int
    frames: int
    seconds: float
    fps: float
    rtf: float
    sr_fps: float
    psnr: float | None
    official: bool
    macs: int = 0  # multiply-accumulates of the network per LR frame (0: bicubic)


def canvas() -> object:
    import numpy as np

    from restore import io

    folder = SHARED / "data" / "train" / "SunHays80_HR"
    tiles = []
    for name in PHOTOS:
        img = io.read_rgb(folder / f"{name}_SRF_8_HR.png")
        h, w = img.shape[:2]
        y, x = (h - TILE_H) // 2, (w - TILE_W) // 2
        tiles.append(img[y:y + TILE_H, x:x + TILE_W])
    rows = [np.concatenate(tiles[k:k + 4], axis=1) for k in (0, 4)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def hr_frame(canvas_img: object, i: int, n: int, width: int, height: int) -> object:
    """Frame ``i`` of ``n``: the pan/zoom window, area-averaged to ``width`` x ``height``."""
    import cv2

    ch, cw = canvas_img.shape[:2]  # type: ignore[attr-defined]
    t = i / max(1, n - 1)
    z = ZOOM[0] + (ZOOM[1] - ZOOM[0]) * t
    ww, wh = min(cw, round(width * z)), min(ch, round(height * z))
    cx = ww / 2 + (cw - ww) * 0.1 + PAN_PX * t
    cy = ch / 2 + (ch - wh) * 0.25 * (t - 0.5)
    x0 = int(min(max(0, round(cx - ww / 2)), cw - ww))
    y0 = int(min(max(0, round(cy - wh / 2)), ch - wh))
    crop = canvas_img[y0:y0 + wh, x0:x0 + ww]  # type: ignore[index]
    if (ww, wh) == (width, height):
        return crop.copy()
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def make_clip(path: Path, canvas_img: object, n: int, scale: int, width: int, height: int) -> None:
    import av

    from restore.metrics.imresize import imresize

    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=CLIP_FPS, options={"crf": "12", "preset": "medium"})
    vs.width, vs.height, vs.pix_fmt = width // scale, height // scale, "yuv420p"
    vs.codec_context.color_range = 1
    vs.codec_context.colorspace = 6  # BT.601 (SMPTE 170M), what swscale uses for both directions
    for i in range(n):
        lr = imresize(hr_frame(canvas_img, i, n, width, height), 1 / scale)
        frame = av.VideoFrame.from_ndarray(lr, format="rgb24").reformat(format="yuv420p", dst_colorspace="ITU601",
                                                                        dst_color_range=1)
        frame.pts = i
        out.mux(vs.encode(frame))
    out.mux(vs.encode())
    out.close()


def bicubic_model(scale: int) -> object:
    """The bicubic baseline as a 'model' (torch bicubic, align_corners=False, clamped to [0, 1])."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from restore.archs.base import ModelMeta

    class Bicubic(nn.Module):
        @property
        def meta(self) -> ModelMeta:
            return ModelMeta(family="bicubic", variant=f"x{scale}", task="sr", scale=scale, in_channels=3,
                             out_channels=3, receptive_field=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)

    return Bicubic()


def build(name: str, scale: int) -> tuple[object, str, bool]:
    """(model, weights description, official weights?)."""
    import torch

    from restore.weights import load_model

    official = {("espcn", 2): ("espcn", "ESPCN_x2.pb"), ("espcn", 4): ("espcn", "ESPCN_x4.pb"),
                ("imdn_rtc", 2): ("imdn", "model_RTC.pth"),
                ("span_tiny", 4): ("ntire_esr", "2024", "team39_spantiny_ch26_slim.pth")}
    parts = official.get((name, scale))
    if parts is not None and SHARED.joinpath("weights", *parts).is_file():
        path = SHARED.joinpath("weights", *parts)
        return load_model(path), path.name, True
    torch.manual_seed(0)
    if name == "espcn":
        from restore.archs.espcn import ESPCN

        return ESPCN(scale=scale).eval(), "random", False
    if name == "span_tiny":
        from restore.archs.span import SPAN

        return SPAN(feature_channels=26, upscale=scale, form="deploy").eval(), "random", False
    if name == "imdn_rtc":
        from restore.archs.imdn import IMDN_RTC

        return IMDN_RTC(scale=scale).eval(), "random", False
    raise ValueError(name)


def y_psnr(path: Path, canvas_img: object, n: int, scale: int, width: int, height: int) -> float:
    import av
    import numpy as np

    from restore.metrics.psnr_ssim import calculate_psnr

    vals = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            sr = f.to_ndarray(format="rgb24")
            vals.append(calculate_psnr(sr, hr_frame(canvas_img, i, n, width, height), crop_border=scale,
                                       test_y_channel=True))
    if len(vals) != n:
        raise RuntimeError(f"{path}: {len(vals)} frames decoded, expected {n}")
    return float(np.mean(vals))


@contextlib.contextmanager
def paused(pattern: str | None) -> Iterator[None]:
    """SIGSTOP the processes matching ``pattern`` (``pgrep -f``) for the duration, SIGCONT them after."""
    pids: list[int] = []
    if pattern:
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
        mine = _ancestors()
        pids = [int(x) for x in found.split() if int(x) not in mine]
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        if pids:
            time.sleep(0.5)  # let the stopped jobs' last time slices drain
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _ancestors() -> set[int]:
    """This process and its parents (never stopped, even when their command line matches)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def peak_macs(threads: int, n: int = 2048, reps: int = 10, dtype: str = "fp32") -> float:
    """Measured peak of these cores: multiply-accumulates per second of ``torch.mm`` on ``n x n`` matrices of
    ``dtype`` ("fp32" or "bf16") with ``threads`` threads (best of ``reps`` after a warm-up), about the ceiling a
    convolution lowered to a matrix product can reach (measured before and after the runs: the higher one
    counts)."""
    import torch

    torch.set_num_threads(threads)
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    for _ in range(2):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return n**3 / best


def frame_macs(model: object, lr_h: int, lr_w: int) -> int:
    """Multiply-accumulates of ``model`` on one LR frame (convolutions scale with the pixel count: counted on a
    64x64 input and scaled)."""
    import torch
    from torch import nn

    from restore.bench import count_flops

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]  # type: ignore[attr-defined]
    if not convs:
        return 0
    x = torch.zeros(1, convs[0].in_channels, 64, 64)
    return round(count_flops(model, x) / 2 * (lr_h * lr_w) / (64 * 64))  # type: ignore[arg-type]


def first_frame(clip: Path) -> object:
    import av

    with av.open(str(clip)) as c:
        return next(iter(c.decode(video=0))).to_ndarray(format="rgb24")


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    import av
    import torch

    from restore import io
    from restore.engine.cpu_paths import bf16_convolutions, simd_summary
    from restore.engine.restorer import Restorer
    from restore.engine.video import default_threads, upscale_video, video_precision

    threads_list = args.threads or [default_threads()]
    presets = args.preset or [io.DEFAULT_PRESET]
    img = canvas()
    rows: list[Row] = []
    paused_s = 0.0
    env = {"cpu": simd_summary(), "cores": str(os.cpu_count()), "torch": torch.__version__, "av": av.__version__,
           "threads": "/".join(map(str, threads_list)), "load_before": _load(), "python": platform.python_version(),
           "paused": args.pause or "", "presets": "/".join(presets)}
    env["peak"], env["peak_bf16"] = {}, {}
    native = bf16_convolutions()  # the bf16 ceiling is only meaningful where the CPU has bf16 dot products
    for threads in threads_list:
        with paused(args.pause):
            env["peak"][threads] = peak_macs(threads)
            if native:
                env["peak_bf16"][threads] = peak_macs(threads, dtype="bf16")
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        for setting in args.settings:
            scale, width, height = SETTINGS[setting]
            clip = Path(tmp) / f"clip_{setting}.mp4"
            t = time.perf_counter()
            make_clip(clip, img, args.frames, scale, width, height)
            print(f"[{setting}] clip {width // scale}x{height // scale} x{args.frames} frames built in "
                  f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
            frame0 = first_frame(clip)
            for name in ("bicubic", *args.models):
                if name == "bicubic":
                    model, weights, official = bicubic_model(scale), "-", True
                else:
                    model, weights, official = build(name, scale)
                params = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
                macs = 0 if name == "bicubic" else frame_macs(model, height // scale, width // scale)
                for precision in (["fp32"] if name == "bicubic" else args.precision):
                    for threads in threads_list:
                        torch.set_num_threads(threads)
                        prec = video_precision(precision, "cpu", getattr(model, "meta", None))
                        runner = Restorer(model, device="cpu", precision=prec, tile=None)  # type: ignore
                        t = time.perf_counter()
                        with paused(args.pause):
                            runner.run(frame0)  # type: ignore[arg-type]
                        setup = time.perf_counter() - t
                        paused_s += setup if args.pause else 0.0
                        y_only = getattr(model, "meta", None) is not None and model.meta.color_space == "y_full"
                        paths = args.color_path if y_only else ["rgb"]
                        for batch, color_path, preset, enc_threads in itertools.product(
                                args.batch, paths, presets, args.encoder_threads or [None]):
                            out = Path(tmp) / f"out_{setting}_{name}_{batch}.mp4"
                            with paused(args.pause):
                                res = upscale_video(clip, out, runner, batch=batch, overwrite=True,
                                                    color_path=color_path, preset=preset,
                                                    encoder_threads=enc_threads or None)
                            paused_s += res.seconds if args.pause else 0.0
                            psnr = y_psnr(out, img, args.frames, scale, width, height) if official else None
                            row = Row(setting, name, runner.precision, runner.backend, threads, res.color_path,
                                      preset, str(enc_threads or "auto"), setup, batch, weights, params,
                                      res.frames, res.seconds, res.fps,
                                      res.realtime_factor, res.frames / res.sr_seconds if res.sr_seconds else 0.0,
                                      psnr, official, macs)
                            rows.append(row)
                            out.unlink()
                            print(f"[{setting}] {name:<9} {row.precision}/{row.backend} {row.color_path} {preset} "
                                  f"t{threads} e{enc_threads or 'auto'} b{batch} "
                                  f"{weights:<28} setup {setup:4.1f} s {res.frames} frames {res.seconds:6.1f} s "
                                  f"{res.fps:6.2f} fps  RTF {res.realtime_factor:5.2f}  SR-only {row.sr_fps:6.2f} "
                                  f"fps  Y-PSNR {'-' if psnr is None else f'{psnr:.2f}'}", file=sys.stderr)
    for threads in threads_list:
        with paused(args.pause):
            env["peak"][threads] = max(env["peak"][threads], peak_macs(threads))
            if native:
                env["peak_bf16"][threads] = max(env["peak_bf16"][threads], peak_macs(threads, dtype="bf16"))
    env["load_after"] = _load()
    env["paused_s"] = f"{paused_s:.0f}"
    return rows, env


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def markdown(rows: list[Row], env: dict[str, Any], args: argparse.Namespace) -> str:
    labels = {"bicubic": "bicubic (baseline)", "espcn": "ESPCN", "span_tiny": "SPAN-tiny (ch26)",
              "imdn_rtc": "IMDN-RTC"}
    lines = [
        markers(args.section)[0],
        f"## Video super-resolution (`restore video`, CPU: {env['cpu'].split(';')[0]})",
        "",
        "Written by `scripts/bench_video.py` (see its docstring for the method). Clip: pan + zoom across real "
        "photos (Sun-Hays 80), HR ground truth downscaled with our MATLAB bicubic, encoded with libx264 CRF 12 "
        f"at {CLIP_FPS} fps; {args.frames} frames per run. Output: libx264 CRF 18 (preset: column), audio none. "
        "Whole frames (no tiling); batch = frames per network call; threads = torch / ONNX Runtime intra-op "
        "threads (decode and encode run in their own threads beside them); encoder threads = x264's thread "
        "count (`auto`: FFmpeg's choice). OpenMP workers sleep when idle (`OMP_WAIT_POLICY=PASSIVE`, as "
        "`restore video` sets it). Precision/path: what the engine "
        "ran (`auto`/`fp32` = the fastest float32 path it measured: `onnxruntime`, `torch` (channels_last) or "
        "`eager`); colour path: `yuv` = Y-plane path (Y-only models on 4:2:0 input: the network on the Y plane, "
        "U/V upscaled bilinearly, planes straight to the encoder, no RGB conversion), `rgb` = frames decoded "
        "to RGB and encoded from RGB (every model; for ESPCN RGB → YCrCb → network on Y → RGB); setup = the "
        "one-time path choice / ONNX export / int8 calibration on the first frame, done before the timed run.",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, torch {env['torch']}, PyAV {env['av']}, Python "
        f"{env['python']}. Load average (1/5/15 min) before: {env['load_before']}, after: {env['load_after']}. "
        + (f"Other jobs on the machine (`{env['paused']}`) were paused (SIGSTOP) during each timed run "
           f"({env['paused_s']} s in all)." if env["paused"] else
           "Other jobs may have shared the cores: the figures are lower bounds.")
        + (f" {args.note}" if args.note else ""),
        "",
        "| setting | model | weights | params | precision / path | colour path | preset | threads | encoder "
        "threads | batch | setup s | fps (end to end) | real-time factor | fps (network stage) | network limit fps "
        f"({'peak of its precision' if env.get('peak_bf16') else 'fp32 peak'}) | Y-PSNR (dB) |",
        "|---|---|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    titles = {"x2": "x2 640x360 → 1280x720", "x4": "x4 480x270 → 1920x1080"}
    for r in rows:
        psnr = f"{r.psnr:.2f}" if r.psnr is not None else "— (random weights)"
        limit = f"{_peak(env, r.precision, r.threads) / r.macs:.1f}" if r.macs else "—"
        lines.append(f"| {titles[r.setting]} | {labels[r.model]} | {r.weights} | {r.params:,} "
                     f"| {r.precision} / {r.backend} | {r.color_path} | {r.preset} | {r.threads} | {r.enc_threads} "
                     f"| {r.batch} "
                     f"| {r.setup:.1f} | {r.fps:.2f} "
                     f"| {r.rtf:.2f} | {r.sr_fps:.2f} | {limit} | {psnr} |")
    lines += [
        "",
        "fps (end to end): frames / wall time of decode → SR → encode running as three overlapped stages; "
        f"real-time factor: seconds of video per wall second (≥ 1 keeps up with a {CLIP_FPS} fps source); fps "
        "(network stage): frames / time spent in the SR stage (`Restorer.run_batch` + colour / plane "
        "conversion). Y-PSNR: "
        "BT.601 Y of the decoded output video vs the ground-truth frames, `scale` px border cropped, mean over "
        "frames (includes the CRF 18 output encoding). Network limit fps (fp32 peak): the measured fp32 peak of "
        "these cores (`torch.mm` of 2048x2048 float32 matrices, best of 10, before and after the runs: "
        + ", ".join(f"{v / 1e9:.1f} GMAC/s with {t} thread(s)" for t, v in env["peak"].items())
        + ") divided by the network's multiply-accumulates per LR frame: about the most a float32 path can get "
        "from these cores for the network alone (a network stage near it has little left to gain), before "
        "decoding and encoding; bf16 / int8 raise the ceiling only where the CPU has native instructions for them "
        "(AVX512_BF16 / AMX, VNNI)"
        + ("; this CPU has native bf16, so bf16 rows are held to the bf16 peak (`torch.mm` of bfloat16 matrices: "
           + ", ".join(f"{v / 1e9:.1f} GMAC/s with {t} thread(s)" for t, v in env["peak_bf16"].items()) + ")."
           if env.get("peak_bf16") else "."),
        "",
        "Goal (issues 8 and 23): ESPCN x2 360p→720p ≥ 30 fps end to end on this 2-core CPU at ≤ 0.05 dB against "
        "the float32 output; 4K60 output on a GPU for ESPCN and SPAN-tiny (no GPU was available for this run).",
    ]
    espcn = [r for r in rows if r.model == "espcn" and r.setting == "x2"]
    if espcn:
        best = max(espcn, key=lambda r: r.fps)
        verdict = "met" if best.fps >= 30 else "not met"
        lines.append("")
        lines.append(f"Here: {verdict} — best ESPCN x2 run {best.fps:.2f} fps end to end ({best.precision} / "
                     f"{best.backend}, {best.color_path} path, preset {best.preset}, {best.threads} thread(s), "
                     f"encoder threads {best.enc_threads}, "
                     f"batch {best.batch}), network stage alone {best.sr_fps:.2f} fps"
                     + (_ceiling(env, best) if best.macs and best.fps < 30 else "."))
    lines.append(markers(args.section)[1])
    return "\n".join(lines) + "\n"


def _peak(env: dict, precision: str, threads: int) -> float:
    """The ceiling a row is held to: the bf16 peak for bf16 rows where it was measured (native bf16), else fp32."""
    bf16 = env.get("peak_bf16") or {}
    return bf16[threads] if precision == "bf16" and threads in bf16 else env["peak"][threads]


def _ceiling(env: dict, best: Row) -> str:
    """Why the best run falls short of 30 fps, from the measured peaks (the network alone, before decode/encode)."""
    fp32 = env["peak"][best.threads] / best.macs
    bf16 = (env.get("peak_bf16") or {}).get(best.threads)
    if bf16 is None:
        return (f"; the float32 ceiling of the network alone on these cores is about {fp32:.1f} fps, so 30 fps needs "
                "a CPU with native bf16 or int8 dot products (or more cores).")
    return (f"; the ceiling of the network alone on these cores is about {fp32:.1f} fps in float32 and "
            f"{bf16 / best.macs:.1f} fps in bf16 (native here), before decoding and encoding share the same cores.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48, help="frames per clip (default 48)")
    ap.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="frames per network call (default 1 4)")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch / ONNX Runtime threads, one run each (default: as 'restore video')")
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=("auto", "fp32", "bf16", "int8", "fp16"),
                    help="engine precisions to run (default auto: as 'restore video', bf16 on CPUs with native "
                         "bf16, else the fastest float32 path)")
    ap.add_argument("--color-path", nargs="+", default=["auto"], choices=("auto", "yuv", "rgb"),
                    help="colour paths for Y-only models (default auto: what 'restore video' picks)")
    ap.add_argument("--preset", nargs="+", default=None,
                    help="x264 presets, one run each (default: restore video's)")
    ap.add_argument("--encoder-threads", type=int, nargs="+", default=None,
                    help="video encoder threads to try (default 0: FFmpeg's choice, as restore video)")
    ap.add_argument("--pause", metavar="PATTERN", default=None,
                    help="SIGSTOP processes matching PATTERN (pgrep -f) during each timed run, SIGCONT after")
    ap.add_argument("--note", default="", help="a sentence added to the machine paragraph (e.g. other load)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--section", default=SECTION,
                    help=f"the marked block of --out to replace (default {SECTION}; another name keeps the figures of "
                         "another CPU kind beside these)")
    args = ap.parse_args(argv)
    if not (SHARED / "data" / "train" / "SunHays80_HR").is_dir():
        print(f"bench_video: {SHARED / 'data/train/SunHays80_HR'} not found (the photos the clip is made of)",
              file=sys.stderr)
        return 2
    rows, env = run(args)
    section = markdown(rows, env, args)
    print(section)
    if not args.no_write:
        write_section(args.out, section)
        print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
