"""``restore bench``: parameters, FLOPs, peak memory, latency and the NTIRE ESR score of SR models.

    restore bench [--models M ...] [--size 256x256] [--scale 4] [--device cpu|cuda] [--json]
                  [--runs N] [--warmup N] [--precision fp32|fp16|bf16] [--optimize] [--baseline M]

``--models`` takes architecture presets (random weights: speed does not depend on the values; see
``restore bench --list``) or checkpoint files (anything ``restore info`` detects). Per model:

* params: every parameter of the deploy form (re-parameterisations fused, LoRA merged, as the ESR challenges
  count them);
* FLOPs: counted with ``torch.utils.flop_counter`` on one forward at ``--size`` (convolutions and matrix
  products; reported as multiply-accumulates, "G", which is what the NTIRE ESR tables call FLOPs, e.g. EFDN's
  16.70 G at 256x256; ``flops`` in the JSON is twice that);
* peak memory: CUDA -- ``torch.cuda.max_memory_allocated`` during one forward, minus the weights; CPU -- the
  peak of live tensor storage (inputs, activations and output; weights excluded) tracked op by op;
* runtime: median wall time of ``--runs`` forwards after ``--warmup`` (CUDA synchronised), under
  ``torch.inference_mode``;
* score: NTIRE 2025 ESR, ``0.7 exp(2 R / R_b) + 0.15 exp(2 F / F_b) + 0.15 exp(2 P / P_b)`` against
  ``--baseline`` (default: the first model; the baseline scores e^2 = 7.389; lower is better).

``--optimize`` runs the CPU fast path (:func:`restore.ops.cpu.optimize_for_inference`: ONNX Runtime when
installed) instead of eager PyTorch. Timings on a shared or busy machine are noisy: compare medians of
several runs, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

PRESETS: dict[str, str] = {
    "imdn": "IMDN (nf 64, 6 IMDBs)",
    "imdn-rtc": "IMDN_RTC (nf 12, 5 blocks)",
    "cfsr": "CFSR (embed 48, depths 6+6, 9x9 mixer)",
    "span": "SPAN ch48 (deploy form)",
    "span-ch28": "SPAN ch28 (NTIRE 2024 team38)",
    "dscf": "DSCF / SPAN-tiny ch26 (NTIRE 2025 winner)",
    "espcn": "ESPCN (Y channel, 64/32)",
}
DEFAULT_MODELS = ("imdn", "cfsr", "dscf", "espcn")


def build_preset(name: str, scale: int) -> nn.Module:
    from restore.archs.cfsr import CFSR
    from restore.archs.espcn import ESPCN
    from restore.archs.imdn import IMDN, IMDN_RTC
    from restore.archs.span import SPAN

    builders: dict[str, Callable[[], nn.Module]] = {
        "imdn": lambda: IMDN(scale=scale),
        "imdn-rtc": lambda: IMDN_RTC(scale=scale),
        "cfsr": lambda: CFSR(scale=scale),
        "span": lambda: SPAN(feature_channels=48, upscale=scale, form="deploy"),
        "span-ch28": lambda: SPAN(feature_channels=28, upscale=scale, form="deploy"),
        "dscf": lambda: SPAN(feature_channels=26, upscale=scale, form="deploy"),
        "espcn": lambda: ESPCN(scale=scale),
    }
    if name not in builders:
        raise ValueError(f"unknown model {name!r}: a checkpoint file or one of {', '.join(PRESETS)}")
    torch.manual_seed(0)
    return builders[name]().eval()


def load(spec: str, scale: int) -> tuple[str, nn.Module]:
    """(label, deploy-form eval model) for a checkpoint path, a shipped model's name or a preset name."""
    from restore.ops.cpu import deploy_copy
    from restore.weights import load_model, resolve_model, shipped_models

    if Path(spec).exists():
        model = load_model(spec)
        label = Path(spec).stem
    elif any(m["name"] == spec for m in shipped_models()):
        model, label = load_model(resolve_model(spec, task="sr")), spec
    else:
        model, label = build_preset(spec, scale), spec
    return label, deploy_copy(model)


def parse_size(text: str) -> tuple[int, int]:
    """'256x256' or '256' -> (height, width) of the LR input."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes HxW in LR pixels (e.g. 256x256), not {text!r}") from None
    if len(parts) > 2 or h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"--size takes HxW in LR pixels (e.g. 256x256), not {text!r}")
    return h, w


# ------------------------------------------------------------------------------------------- measures


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs (2 per multiply-accumulate) of convolutions and matrix products in one forward."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())


def _storages(obj: Any) -> list[Any]:
    from torch.utils._pytree import tree_flatten

    return [t.untyped_storage() for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def cpu_peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of live tensor storage (not counting parameters/buffers) during one forward, tracked at
    every aten op; the input counts."""
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode

    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}

    class Tracker(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, tuple[StorageWeakRef, int]] = {}
            self.current = self.peak = 0

        def add(self, storage: Any) -> None:
            key = storage.data_ptr()
            if key and key not in weights and key not in self.live:
                n = storage.nbytes()
                self.live[key] = (StorageWeakRef(storage), n)
                self.current += n
                self.peak = max(self.peak, self.current)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            for key, (ref, n) in list(self.live.items()):
                if ref.expired():
                    del self.live[key]
                    self.current -= n
            for s in _storages(out):
                self.add(s)
            return out

    tracker = Tracker()
    with torch.inference_mode(), tracker:
        tracker.add(x.untyped_storage())
        y = model(x)
        tracker.add(y.untyped_storage())
    return tracker.peak


def cuda_peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(x.device)
    return int(torch.cuda.max_memory_allocated(x.device) - base + x.numel() * x.element_size())


def time_ms(fn: Callable[[], Any], *, runs: int, warmup: int, cuda: bool) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def ntire_score(runtime: float, flops: float, params: float, base: tuple[float, float, float]) -> float:
    """NTIRE 2025 ESR final score (lower is better; the baseline itself scores e^2)."""
    r, f, p = base
    return 0.7 * math.exp(2 * runtime / r) + 0.15 * math.exp(2 * flops / f) + 0.15 * math.exp(2 * params / p)


@dataclass
class BenchResult:
    model: str
    family: str
    scale: int
    input: str
    device: str
    precision: str
    backend: str
    params: int
    flops: int  # 2 x multiply-accumulates
    macs: int
    peak_mem_mb: float | None  # None for the ONNX Runtime backend (allocations outside torch)
    runtime_ms: float  # median
    runtime_runs_ms: list[float]
    score: float | None = None


def bench_one(spec: str, *, size: tuple[int, int], scale: int, device: str, precision: str, runs: int,
              warmup: int, optimize: bool) -> BenchResult:
    label, model = load(spec, scale)
    meta = model.meta
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    dev = torch.device(device)
    h, w = size
    m = max(1, int(meta.size_multiple))
    h, w = -(-h // m) * m, -(-w // m) * m
    x32 = torch.rand(1, meta.in_channels, h, w, generator=torch.Generator().manual_seed(0)) * meta.input_range
    params = count_params(model)
    flops = count_flops(model, x32)
    backend = "eager"
    if optimize:
        if dev.type != "cpu":
            raise ValueError("--optimize is the CPU fast path; use it with --device cpu")
        from restore.ops.cpu import optimize_for_inference

        runner: nn.Module = optimize_for_inference(model, precision=precision)
        backend = runner.backend
        x = x32
    else:
        runner = model.to(device=dev, dtype=dtype)
        x = x32.to(device=dev, dtype=dtype)
    if dev.type == "cuda":
        peak: int | None = cuda_peak_bytes(runner, x)
    elif backend == "onnxruntime":
        peak = None
    else:
        peak = cpu_peak_bytes(runner if not optimize else model, x)

    def step() -> None:
        with torch.inference_mode():
            runner(x)

    ts = time_ms(step, runs=runs, warmup=warmup, cuda=dev.type == "cuda")
    return BenchResult(
        model=label, family=meta.family, scale=meta.scale, input=f"{meta.in_channels}x{h}x{w}", device=str(dev),
        precision=precision, backend=backend, params=params, flops=flops, macs=flops // 2,
        peak_mem_mb=None if peak is None else round(peak / 2**20, 2), runtime_ms=round(statistics.median(ts), 3),
        runtime_runs_ms=[round(t, 3) for t in ts],
    )


def add_scores(results: Sequence[BenchResult], baseline: str | None) -> BenchResult:
    base = next((r for r in results if r.model == baseline), None) if baseline else results[0]
    if base is None:
        raise ValueError(f"--baseline {baseline!r} is not one of the benchmarked models")
    ref = (base.runtime_ms, float(base.macs), float(base.params))
    for r in results:
        r.score = round(ntire_score(r.runtime_ms, float(r.macs), float(r.params), ref), 4)
    return base


# ------------------------------------------------------------------------------------------------- CLI


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="params, FLOPs, peak memory, latency and NTIRE ESR score",
                              description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="M",
                   help=f"shipped model names, presets ({', '.join(PRESETS)}) or checkpoint files "
                        f"(default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--size", type=parse_size, default=(256, 256), help="LR input HxW (default 256x256)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="scale for presets (default 4)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--runs", type=int, default=None, help="timed runs (default 10 on cuda, 5 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5 on cuda, 1 on cpu)")
    p.add_argument("--optimize", action="store_true", help="CPU fast path (ONNX Runtime when installed)")
    p.add_argument("--baseline", default=None, help="model the score is relative to (default: the first)")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    if args.list:
        for name, desc in PRESETS.items():
            print(f"{name:<10} {desc}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if args.precision == "fp16" and args.device == "cpu":
        raise ValueError("--precision fp16 is for --device cuda (use bf16 on CPU)")
    cuda = args.device == "cuda"
    runs = args.runs if args.runs is not None else (10 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if runs < 1 or warmup < 0:
        raise ValueError("--runs must be >= 1 and --warmup >= 0")
    results = [
        bench_one(spec, size=args.size, scale=args.scale, device=args.device, precision=args.precision,
                  runs=runs, warmup=warmup, optimize=args.optimize)
        for spec in args.models
    ]
    base = add_scores(results, args.baseline)
    if args.json:
        print(json.dumps({"baseline": base.model, "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "results": [asdict(r) for r in results]}))
        return 0
    h, w = args.size
    print(f"LR input {h}x{w}, {args.device} {args.precision}, {runs} runs after {warmup} warm-up, "
          f"{torch.get_num_threads()} threads; score vs {base.model} (NTIRE 2025 ESR, lower is better)")
    print(f"{'model':<22} {'scale':>5} {'params':>10} {'FLOPs(G)':>9} {'peak MB':>9} {'median ms':>10} "
          f"{'score':>7}  backend")
    for r in results:
        mem = "n/a" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.1f}"
        print(f"{r.model:<22} {r.scale:>5} {r.params:>10,} {r.macs / 1e9:>9.2f} {mem:>9} "
              f"{r.runtime_ms:>10.1f} {r.score:>7.3f}  {r.backend}")
    return 0
