"""Speed ratios of the fast paths against the plain PyTorch code (medians of interleaved runs).

    python scripts/bench_kernels.py [--cpu] [--cuda] [--rounds N] [--threads N] [--calib DIR] [--json]
    python scripts/bench_kernels.py --fusion     # CPU conv + activation fusion table -> docs/kernels.md
    python scripts/bench_kernels.py --cpu --tiny --json   # smoke run: every input a few dozen pixels, 1 round

CUDA (when a GPU is present; Triton kernels vs PyTorch/cuDNN, fp16):
  * ``lk_dwconv`` 9x9 depthwise, 48 channels, 1920x1080, NCHW and channels_last: forward, and forward+backward;
  * ``conv_pixelshuffle`` DSCF tail (26 -> 48 channels, x4, 480x270 -> 1920x1080) vs conv + PixelShuffle;
  * DSCF x4 480x270 -> 1080p end to end, ``RESTORE_KERNELS=auto`` vs ``reference``.
CPU (this is what most users have): per network, the eager float32 forward as the official test scripts run it
(``torch.no_grad``, NCHW; our modules are bit-identical to the official code) vs
:func:`restore.engine.cpu_paths.optimize_for_inference` at fp32 / bf16 / int8 (int8 only with ``--calib DIR`` of
training images). x4 nets on a 320x180 input (-> 1280x720); ESPCN x2 on 640x360 and x4 on 480x270 (the sizes
of the OpenCV dnn_superres comparison; OpenCV itself is timed when ``cv2.dnn_superres`` exists).

``--tiny`` shrinks every input (same aspect, longer side :data:`TINY_SIDE` px) and defaults to one round: a smoke
run of the same code paths in seconds (scripts/gpu_check.py ``--dry-run``), not a measurement; ``--fusion --tiny``
never writes docs/kernels.md.

Random weights are used (speed does not depend on them). On a shared machine the numbers are noisy: every
variant runs once per round, in turn, and the median per variant is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
from restore.bench import time_ms  # noqa: E402

Fn = Callable[[], Any]
TINY_SIDE = 48
"""``--tiny``: the longer side of every input, in pixels."""


def hw(h: int, w: int, tiny: bool = False) -> tuple[int, int]:
    """The input size ``(h, w)``; with ``tiny``, the same aspect shrunk so the longer side is :data:`TINY_SIDE`."""
    if not tiny:
        return h, w
    f = TINY_SIDE / max(h, w)
    return max(8, round(h * f)), max(8, round(w * f))


def tiny_tag(x: torch.Tensor, tiny: bool) -> str:
    """A title suffix naming the shrunk input size under ``--tiny`` (the CUDA titles name the full sizes)."""
    return f" [--tiny: {x.shape[-1]}x{x.shape[-2]}]" if tiny else ""


def interleaved(fns: dict[str, Fn], rounds: int, warmup: int = 2, cuda: bool = False) -> dict[str, float]:
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k] += time_ms(f, runs=1, warmup=0, cuda=cuda)  # one call per round, in turn
    return {k: statistics.median(v) for k, v in times.items()}


def report(title: str, med: dict[str, float], base: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    for k, v in med.items():
        ratio = med[base] / v
        print(f"  {k:<28} {v:10.2f} ms   x{ratio:5.2f} vs {base}")
        rows.append({"case": title, "variant": k, "ms": round(v, 3), "speedup_vs_" + base: round(ratio, 3)})


# ----------------------------------------------------------------------------------------------- CUDA


def _lk_case(fmt: torch.memory_format, rounds: int, rows: list[dict[str, Any]], tiny: bool = False) -> None:
    from restore.ops.lk_dwconv import lk_dwconv_triton

    dev, dt = torch.device("cuda"), torch.float16
    x = torch.randn(1, 48, *hw(1080, 1920, tiny), device=dev, dtype=dt).to(memory_format=fmt)
    w = torch.randn(48, 1, 9, 9, device=dev, dtype=dt) * 0.05
    b = torch.randn(48, device=dev, dtype=dt)
    name = "channels_last" if fmt is torch.channels_last else "NCHW"
    with torch.inference_mode():
        med = interleaved({"cudnn F.conv2d": lambda: F.conv2d(x, w, b, 1, 4, 1, 48),
                           "triton lk_dwconv": lambda: lk_dwconv_triton(x, w, b)}, rounds, cuda=True)
    report(f"lk_dwconv 9x9 dw, 48ch 1080p fp16 {name}, forward{tiny_tag(x, tiny)}", med, "cudnn F.conv2d", rows)
    xg, wg, bg = (t.detach().clone().requires_grad_() for t in (x, w, b))

    def train(fn: Callable[..., torch.Tensor]) -> Fn:
        def step() -> None:
            fn().float().sum().backward()
        return step

    med = interleaved({"cudnn F.conv2d": train(lambda: F.conv2d(xg, wg, bg, 1, 4, 1, 48)),
                       "triton lk_dwconv": train(lambda: lk_dwconv_triton(xg, wg, bg))}, rounds, cuda=True)
    report(f"lk_dwconv 9x9 dw, 48ch 1080p fp16 {name}, forward+backward{tiny_tag(x, tiny)}", med,
           "cudnn F.conv2d", rows)


def cuda_benchmarks(rounds: int, rows: list[dict[str, Any]], tiny: bool = False) -> None:
    from restore.ops.conv_pixelshuffle import conv_pixelshuffle_triton

    dev, dt = torch.device("cuda"), torch.float16
    torch.backends.cudnn.benchmark = True
    for fmt in (torch.contiguous_format, torch.channels_last):
        _lk_case(fmt, rounds, rows, tiny)
    lr = hw(270, 480, tiny)
    x = torch.randn(1, 26, *lr, device=dev, dtype=dt)
    w = torch.randn(48, 26, 3, 3, device=dev, dtype=dt) * 0.05
    b = torch.randn(48, device=dev, dtype=dt)
    skip = torch.randn(1, 3, *lr, device=dev, dtype=dt)
    with torch.inference_mode():
        med = interleaved({
            "eager conv+shuffle+skip": lambda: F.pixel_shuffle(F.conv2d(x, w, b, 1, 1), 4)
            + skip.repeat_interleave(4, 2).repeat_interleave(4, 3),
            "triton conv_pixelshuffle": lambda: conv_pixelshuffle_triton(x, w, b, 4, skip_lr=skip),
        }, rounds, cuda=True)
    report(f"conv_pixelshuffle DSCF tail 26->3x4x4, 480x270 -> 1080p fp16 (+ nearest LR skip){tiny_tag(x, tiny)}", med,
           "eager conv+shuffle+skip", rows)
    from restore.bench import build_preset

    net = build_preset("dscf", 4).to(dev, dt)
    x = torch.rand(1, 3, *lr, device=dev, dtype=dt)

    def run(mode: str) -> Fn:
        def step() -> None:
            os.environ["RESTORE_KERNELS"] = mode
            with torch.inference_mode():
                net(x)
        return step

    med = interleaved({"reference (cuDNN)": run("reference"), "auto (Triton tail)": run("auto")}, rounds, cuda=True)
    os.environ.pop("RESTORE_KERNELS", None)
    report(f"DSCF x4 480x270 -> 1920x1080 fp16, end to end{tiny_tag(x, tiny)}", med, "reference (cuDNN)", rows)


# ------------------------------------------------------------------------------------------------ CPU


def opencv_espcn(scale: int, weights: Path | None, tiny: bool = False) -> Fn | None:
    try:
        import cv2

        sr = cv2.dnn_superres.DnnSuperResImpl_create()
    except (ImportError, AttributeError):
        return None
    pb = weights / "espcn" / f"ESPCN_x{scale}.pb" if weights else None
    if pb is None or not pb.exists():
        return None
    import numpy as np

    sr.readModel(str(pb))
    sr.setModel("espcn", scale)
    h, w = hw(*((360, 640) if scale == 2 else (270, 480)), tiny)
    img = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    return lambda: sr.upsample(img)


def cpu_benchmarks(rounds: int, calib: str | None, weights: Path | None, rows: list[dict[str, Any]],
                   tiny: bool = False) -> None:
    from restore.bench import build_preset
    from restore.engine.cpu_paths import bf16_convolutions, onnxruntime_available, optimize_for_inference

    cases = [("imdn", 4, (180, 320)), ("cfsr", 4, (180, 320)), ("dscf", 4, (180, 320)),
             ("espcn", 2, (360, 640)), ("espcn", 4, (270, 480))]
    for name, scale, size in cases:
        h, w = hw(*size, tiny)
        net = build_preset(name, scale)
        x = torch.rand(1, net.meta.in_channels, h, w)

        def eager(net: torch.nn.Module = net, x: torch.Tensor = x) -> None:
            with torch.no_grad():
                net(x)

        fns: dict[str, Fn] = {"eager fp32 (official-style)": eager}
        for precision in ("fp32", "bf16", "int8"):
            if precision == "int8" and (calib is None or not onnxruntime_available()):
                continue
            if precision == "bf16" and not bf16_convolutions():  # oneDNN raises on e.g. AVX2-only CPUs
                continue
            fast = optimize_for_inference(net, precision=precision, calibration=calib)
            fns[f"optimized {precision} ({fast.backend})"] = lambda fast=fast, x=x: fast(x)
        if name == "espcn":
            cv = opencv_espcn(scale, weights, tiny)
            if cv is not None:
                fns["OpenCV dnn_superres upsample"] = cv
        report(f"{name} x{scale}, LR {w}x{h}, CPU {torch.get_num_threads()} threads", interleaved(fns, rounds),
               "eager fp32 (official-style)", rows)


def cpu_fusion_benchmarks(rounds: int, rows: list[dict[str, Any]], tiny: bool = False) -> str:
    """conv + activation as one oneDNN call (:func:`restore.engine.cpu_paths.fuse_conv_activations`) vs the same fused
    (deploy-form) network in channels_last with separate activation passes, fp32 and bf16; a markdown table."""
    import copy

    from restore.archs.dncnn import DnCNN
    from restore.bench import build_preset
    from restore.engine.cpu_paths import bf16_convolutions, cpu_info, deploy_copy, fuse_conv_activations, native_bf16

    cases = [("ESPCN x2", build_preset("espcn", 2), (360, 640)),
             ("IMDN-RTC x2", build_preset("imdn-rtc", 2), (360, 640)),
             ("SPAN-tiny (26 ch) x4", build_preset("dscf", 4), (180, 320)),
             ("IMDN x4", build_preset("imdn", 4), (180, 320)), ("CFSR x4", build_preset("cfsr", 4), (180, 320)),
             ("DnCNN-S (17 layers)", DnCNN(in_channels=1, num_layers=17), (256, 256))]
    lines = ["| network | LR input | dtype | convs fused | separate ms | fused ms | speed-up |",
             "|---|---|---|---:|---:|---:|---:|"]
    for label, net, size in cases:
        h, w = hw(*size, tiny)
        for dtype in (torch.float32, torch.bfloat16) if bf16_convolutions() else (torch.float32,):
            plain = deploy_copy(net).to(dtype).to(memory_format=torch.channels_last)
            fused = fuse_conv_activations(copy.deepcopy(plain))
            n = sum(type(m).__name__ == "ConvAct" for m in fused.modules())
            x = torch.rand(1, net.meta.in_channels, h, w).to(dtype).contiguous(memory_format=torch.channels_last)

            def run(m: torch.nn.Module, x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    m(x)

            name = f"{label} {str(dtype).removeprefix('torch.')}"
            med = interleaved({"separate": lambda m=plain: run(m), "fused": lambda m=fused: run(m)}, rounds)
            report(f"{name}, LR {w}x{h}, CPU {torch.get_num_threads()} threads", med, "separate", rows)
            lines.append(f"| {label} | {w}x{h} | {str(dtype).removeprefix('torch.')} | {n} | {med['separate']:.1f} "
                         f"| {med['fused']:.1f} | {med['separate'] / med['fused']:.2f}x |")
    head = (f"Written by `python scripts/bench_kernels.py --fusion`: {cpu_info()[0]}, {torch.get_num_threads()} "
            f"threads, torch {torch.__version__}, native bf16: {'yes' if native_bf16() else 'no'}; median of "
            f"{rounds} interleaved rounds, random weights, one image, channels_last.")
    return "\n".join([head, "", *lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="CPU benchmarks only")
    ap.add_argument("--cuda", action="store_true", help="CUDA benchmarks only")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; 1 with --tiny)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--calib", default=None, help="directory of training images: enables the int8 CPU row")
    ap.add_argument("--weights", default=str(REPO.parent / "shared" / "weights"),
                    help="weights folder holding espcn/ESPCN_x{2,4}.pb for the OpenCV rows")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fusion", action="store_true",
                    help="only the CPU conv+activation fusion table, written into docs/kernels.md")
    ap.add_argument("--no-write", action="store_true", help="--fusion: print the table only")
    ap.add_argument("--tiny", action="store_true",
                    help=f"smoke run: every input shrunk to {TINY_SIDE} px on its longer side, 1 round by default "
                         "(checks the code paths in seconds; the timings mean nothing)")
    args = ap.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.tiny else 7
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    if args.fusion:
        from doc_sections import block, write_section

        table = cpu_fusion_benchmarks(args.rounds, rows, args.tiny)
        print("\n" + table)
        if not (args.no_write or args.tiny):
            write_section(REPO / "docs" / "kernels.md", block("cpu-fusion", table))
        return 0
    do_cuda = not args.cpu and torch.cuda.is_available()
    if args.cuda and not torch.cuda.is_available():
        print("no CUDA device: the Triton kernel benchmarks need a GPU", file=sys.stderr)
        return 2
    if do_cuda:
        cuda_benchmarks(args.rounds, rows, args.tiny)
    elif not args.cpu:
        print("(no CUDA device: skipping the Triton kernel benchmarks)")
    if not args.cuda:
        weights = Path(args.weights) if Path(args.weights).is_dir() else None
        cpu_benchmarks(args.rounds, args.calib, weights, rows, args.tiny)
    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
