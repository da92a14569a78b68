"""``restore bench``: parameters, FLOPs, peak memory, latency and NTIRE ESR score (:mod:`restore.bench`)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from typing import Any

from restore.cli.args import device_arg, size
from restore.registry import PRESETS

DEFAULT_MODELS = ("imdn", "cfsr", "dscf", "espcn")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("bench", help="params, FLOPs, peak memory, latency and NTIRE ESR score",
                       description="Parameters, FLOPs, peak memory, latency and the NTIRE ESR score of SR models "
                                   "(see restore.bench).")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="M",
                   help=f"shipped model names, presets ({', '.join(PRESETS)}) or checkpoint files "
                        f"(default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--size", type=size, default=(256, 256), help="LR input HxW (default 256x256)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="scale for presets (default 4)")
    p.add_argument("--device", default="cpu", type=device_arg, metavar="DEVICE",
                   help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"),
                   help="fp32 (default); fp16 on cuda; bf16; int8: the CPU fast path (ONNX Runtime), calibrated on "
                        "--calib or on crops of the benchmark input, with its accuracy plan reported")
    p.add_argument("--calib", default=None, metavar="DIR", help="int8: a folder of typical input images")
    p.add_argument("--runs", type=int, default=None, help="timed runs (default 10 on cuda, 5 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5 on cuda, 1 on cpu)")
    p.add_argument("--optimize", action="store_true", help="CPU fast path (ONNX Runtime when installed)")
    p.add_argument("--baseline", default=None, help="model the score is relative to (default: the first)")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_bench)


def _finite(row: dict) -> dict:
    """JSON has no infinity: a score that overflowed (a model hundreds of times slower than the baseline) is null."""
    if row.get("score") is not None and math.isinf(row["score"]):
        row["score"] = None
    return row


def cmd_bench(args: argparse.Namespace) -> int:
    if args.list:
        for name, preset in PRESETS.items():
            print(f"{name:<10} {preset.description}")
        return 0
    import torch

    from restore.bench import add_scores, bench_one
    from restore.engine.restorer import resolve_device

    dev = resolve_device(args.device)  # one-line error for a device that is not there
    if args.precision == "fp16" and dev.type == "cpu":
        raise ValueError("--precision fp16 is for --device cuda (use bf16 on CPU)")
    if args.precision == "int8" and dev.type != "cpu":
        raise ValueError("--precision int8 runs on the CPU (ONNX Runtime); use --device cpu")
    cuda = dev.type == "cuda"
    runs = args.runs if args.runs is not None else (10 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if runs < 1 or warmup < 0:
        raise ValueError("--runs must be >= 1 and --warmup >= 0")
    results = [
        bench_one(spec, size=args.size, scale=args.scale, device=args.device, precision=args.precision,
                  runs=runs, warmup=warmup, optimize=args.optimize, calibration=args.calib)
        for spec in args.models
    ]
    base = add_scores(results, args.baseline)
    if args.json:
        print(json.dumps({"baseline": base.model, "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "results": [_finite(asdict(r)) for r in results]}))
        return 0
    h, w = args.size
    print(f"LR input {h}x{w}, {args.device} {args.precision}, {runs} runs after {warmup} warm-up, "
          f"{torch.get_num_threads()} threads; score vs {base.model} (NTIRE 2025 ESR, lower is better)")
    print(f"{'model':<22} {'scale':>5} {'params':>10} {'FLOPs(G)':>9} {'peak MB':>9} {'median ms':>10} "
          f"{'score':>7}  backend")
    for r in results:
        mem = "n/a" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.1f}"
        print(f"{r.model:<22} {r.scale:>5} {r.params:>10,} {r.macs / 1e9:>9.2f} {mem:>9} "
              f"{r.runtime_ms:>10.1f} {r.score:>7.3f}  {r.path}")
    return 0
