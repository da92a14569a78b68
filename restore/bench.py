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

``--optimize`` runs the CPU fast path (:func:`restore.engine.cpu_paths.optimize_for_inference`: ONNX Runtime when
installed) instead of eager PyTorch. Timings on a shared or busy machine are noisy: compare medians of
several runs, on the same machine.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restore.archs.base import count_params
from restore.registry import build_preset


def load(spec: str, scale: int) -> tuple[str, nn.Module]:
    """(label, deploy-form eval model) for a checkpoint path, a shipped model's name or a preset name."""
    from restore.engine.cpu_paths import deploy_copy
    from restore.weights import load_model, resolve_model, shipped_models

    if Path(spec).exists():
        model = load_model(spec)
        label = Path(spec).stem
    elif any(m["name"] == spec for m in shipped_models()):
        model, label = load_model(resolve_model(spec, task="sr")), spec
    else:
        model, label = build_preset(spec, scale), spec
    return label, deploy_copy(model)


# ------------------------------------------------------------------------------------------- measures


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
    """NTIRE 2025 ESR final score (lower is better; the baseline itself scores e^2). A model more than ~350 times
    slower (or larger) than the baseline scores ``inf`` instead of raising OverflowError."""
    r, f, p = base

    def term(ratio: float) -> float:
        return math.exp(2 * ratio) if 2 * ratio < 709 else math.inf

    return 0.7 * term(runtime / r) + 0.15 * term(flops / f) + 0.15 * term(params / p)


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
    path: str = ""  # what the CPU fast path runs (int8: how many convolutions are int8)


def bench_one(spec: str, *, size: tuple[int, int], scale: int, device: str, precision: str, runs: int,
              warmup: int, optimize: bool, calibration: object = None) -> BenchResult:
    """``precision="int8"`` is the CPU fast path (ONNX Runtime, implies ``optimize``), calibrated on
    ``calibration`` (images or a folder, :func:`restore.engine.cpu_paths.calibration_inputs`) or else on crops of
    the benchmark input."""
    label, model = load(spec, scale)
    meta = model.meta
    optimize = optimize or precision == "int8"
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}[precision]
    dev = torch.device(device)
    h, w = size
    m = max(1, int(meta.size_multiple))
    h, w = -(-h // m) * m, -(-w // m) * m
    x32 = torch.rand(1, meta.in_channels, h, w, generator=torch.Generator().manual_seed(0)) * meta.input_range
    params = count_params(model)
    flops = count_flops(model, x32)
    backend = "eager"
    path = f"eager {precision}"
    if optimize:
        if dev.type != "cpu":
            raise ValueError("--optimize is the CPU fast path; use it with --device cpu")
        from restore.engine.cpu_paths import calibration_crops, optimize_for_inference

        calib = None
        if precision == "int8":
            calib = calibration if calibration is not None else calibration_crops(x32, multiple=m)
        runner: nn.Module = optimize_for_inference(model, precision=precision, calibration=calib)
        backend = runner.backend
        plan = getattr(runner, "int8_plan", None)
        path = f"{backend} {precision}" + (f", {plan.describe()}" if plan is not None else "")
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
        runtime_runs_ms=[round(t, 3) for t in ts], path=path,
    )


def add_scores(results: Sequence[BenchResult], baseline: str | None) -> BenchResult:
    base = next((r for r in results if r.model == baseline), None) if baseline else results[0]
    if base is None:
        raise ValueError(f"--baseline {baseline!r} is not one of the benchmarked models")
    ref = (base.runtime_ms, float(base.macs), float(base.params))
    for r in results:
        r.score = round(ntire_score(r.runtime_ms, float(r.macs), float(r.params), ref), 4)
    return base
