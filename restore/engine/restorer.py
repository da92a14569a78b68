"""Stateless runner: device, precision, colour space, range, size-multiple padding and back, whole-image,
tiled or ACS, one image or a batch.

One concern, kept whole (hence over 500 lines): running a network on an image. Tiling is
:mod:`restore.engine.tiling`, the CPU paths :mod:`restore.engine.cpu_paths`, the tables :mod:`restore.engine.policy`.

``Restorer(model).run(img)`` takes HxW / HxWxC arrays (uint8, uint16 or float in [0,1]) and returns the
restored array with the same dtype and channel layout; ``run_batch(images)`` does the same for a list,
putting same-sized inputs (video frames) through the network together, one forward per window for the
whole group. All colour handling comes from ``model.meta``:
- ``rgb`` models: gray input is replicated to RGB and the output averaged back to gray; alpha is
  resized separately (bicubic) and re-attached.
- ``gray`` models: each channel of a colour input is processed as its own gray image (the channels go
  through the network as one batch).
- ``y_full`` models (ESPCN): OpenCV full-range YCrCb, the network on Y, bilinear Cr/Cb, merged back; for
  uint8 RGB this is OpenCV ``dnn_superres``'s exact pipeline (conversions in uint8).

Device: ``"auto"`` is CUDA when available, else the CPU (decided when the Restorer is built, never at import).

Precision (``precision=``): ``"fp32"``, ``"fp16"``, ``"bf16"``, ``"int8"`` (CPU only) or ``"auto"``. Low
precision runs a copy of the network converted with ``.to(dtype)`` (the input is scaled to the model's range in
float32 and then cast; the output is cast back to float32). ``torch.autocast`` was not used: its per-op
precision lists differ between CPU and CUDA, so "fp16" would mean different numerics on each device, and it
re-casts the float32 weights on every call. Numerically delicate parts upcast inside the architectures (IMDN's
CCA statistics, CFSR's LayerNorm). Every low-precision window is checked: a window whose output holds NaN or inf
(fp16 overflow) is run again in float32 with the original model, logged and counted (:class:`RunStats`).
``"auto"`` is fp16 on CUDA for models whose ``meta.half_safe`` is true and fp32 everywhere else: on the CPU fp16
is slow where it works at all and never chosen automatically, and for models that are not half-safe bf16 (fp32's
range but an 8-bit mantissa, about 2-3 significant digits) costs visible accuracy, so it stays an explicit
choice. An explicit low precision is tried on a small input when the Restorer is built; if this torch build has
no kernel for it on the device (e.g. fp16 convolutions on some CPU builds) the constructor raises a
``ValueError`` that names the alternatives.

CPU fast paths (``backend=``, see :mod:`restore.engine.cpu_paths` and docs/kernels.md): on the CPU,
``"auto"``/``"fp32"`` run the fastest float32 path for this model on this machine: ``"onnxruntime"`` (ONNX Runtime
session on the fused network, when ``onnxruntime`` + ``onnx`` are installed), ``"torch"`` (the fused network in
channels_last) or ``"eager"`` (the model as given, NCHW). With ``backend="auto"`` the candidates are timed on the
first window of at least ``TUNE_MIN_PIXELS`` LR px (a crop of at most ``TUNE_SIDE`` px a side) and the fastest is
kept for the Restorer's lifetime; smaller windows before that run eager (for tiny inputs the fixed costs dominate).
All three equal the plain PyTorch model within float32 rounding. ``"bf16"`` on the CPU runs the fused network in
bfloat16 channels_last (``backend="eager"``: the previous NCHW copy of the model), with the same NaN/inf check and
float32 re-run with the original model. ``"int8"`` (CPU, ONNX Runtime only) quantises the fused network statically
(QDQ, :func:`restore.engine.cpu_paths.quantize_int8`) when the first window arrives, calibrated on ``calibration``
(typical *input* images: paths, a directory or uint8 arrays, used at their size) or, without it, on crops of that
first window (the first image / first video frames being processed); it costs accuracy (-0.1 to -1.9 dB Y-PSNR on
Set5, docs/kernels.md) and is never chosen automatically. A forced path that cannot run raises a ``ValueError``
naming the alternatives; nothing falls back silently (the chosen path is :attr:`Restorer.backend` and
``RunStats.backend``). The built session / converted copy is cached in the Restorer, so weights changed in place
after the first run are not seen: build a new Restorer. CUDA keeps the PyTorch path (``backend`` "auto" or "eager").

Tiling (``tile=``) happens below the colour handling, on the planes the network sees (see
:mod:`restore.engine.tiling`): ``None`` runs the whole image in one pass; an int runs tiles of at most that
many LR px a side; ``"auto"`` picks the largest tile that a conservative memory estimate allows. Networks
with a finite ``meta.receptive_field`` get exact tiles (context = receptive field rounded up to the size
multiple, or ``overlap`` if larger); networks with global statistics (``receptive_field is None``, e.g.
IMDN) get feathered tiles overlapping by ``overlap`` px (default 32), which only approximates the
whole-image output. With an int or ``"auto"`` tile, an out-of-memory error halves the tile and retries.
``tile="acs"`` selects IMDN's adaptive cropping strategy (:mod:`restore.engine.acs`): four overlapping corner
crops (``shave`` = the same context / overlap) batched together, split again while a crop is larger than
``acs_min_size`` px (default: from free memory; halved on out-of-memory).
Integer outputs are assembled tile by tile directly in the output dtype where the colour path allows it
(RGB models on colour input, gray models, alpha), so no full-size float image is built.

``tta=True`` (test-time augmentation, :mod:`restore.engine.tta`) runs every window through the 8 flips / 90-degree
rotations and averages the outputs: 8x the network time for a small, measured gain (docs/results.md); exact tiles
stay exact.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restore import pixels
from restore.archs.base import ModelMeta
from restore.engine import acs, tiling, tta
from restore.engine.allocator import keep_freed_memory
from restore.engine.policy import BACKENDS, DEVICE_HELP, MIN_TILE, PRECISIONS

log = logging.getLogger(__name__)

TileSpec = int | Literal["auto", "acs"] | None
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
Backend = Literal["auto", "onnxruntime", "torch", "eager"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
DEFAULT_FEATHER_OVERLAP = 32
LIVE_TENSORS = 10  # conservative number of simultaneously live activations of the widest layer
CPU_MEMORY_FRACTION = 0.25
CUDA_MEMORY_FRACTION = 0.5
PROBE_SIDE = 16  # LR px a side of the input used to check that a low precision works
TUNE_MIN_PIXELS = 64 * 64  # smallest window (LR px) on which the CPU fp32 paths are timed (smaller: eager)
TUNE_SIDE = 256  # the timing runs on a crop of at most this many LR px a side of that window


OOM_MESSAGES = ("out of memory", "can't allocate memory", "failed to allocate memory", "bad_alloc",
                "bad allocation", "cannot allocate memory")
"""Allocator failures as PyTorch (CUDA, MPS, CPU) and ONNX Runtime word them."""


def is_oom(err: BaseException) -> bool:
    """True for allocator failures: PyTorch's (CUDA / MPS 'out of memory', CPU "can't allocate memory") and
    ONNX Runtime's ('Failed to allocate memory', std::bad_alloc), whose exceptions are RuntimeErrors too."""
    if isinstance(err, MemoryError):
        return True
    ort = type(err).__module__.startswith("onnxruntime")  # Fail / RuntimeException are plain Exceptions
    msg = str(err).lower()
    return (isinstance(err, RuntimeError) or ort) and any(m in msg for m in OOM_MESSAGES)


def available_memory(device: torch.device) -> int:
    """Free bytes for activations: CUDA ``mem_get_info`` (plus the caching allocator's unused reserve) on
    CUDA devices, ``MemAvailable`` from ``/proc/meminfo`` (else ``sysconf``) for everything else."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        reserve = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, reserve))
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def bytes_per_pixel(model: nn.Module, meta: ModelMeta) -> float:
    """Conservative device bytes per LR input pixel: ``LIVE_TENSORS`` activations as wide as the widest
    layer (max in/out channels over the weights), the network's output (``out_channels * scale**2``, plus
    its float32 copy) and the input, all at the parameters' element size."""
    widest = meta.in_channels
    elem = 4
    for p in model.parameters():
        if p.ndim >= 2:
            widest = max(widest, int(p.shape[0]), int(p.shape[1]))
        elem = max(elem, p.element_size())
    out = meta.out_channels * meta.scale**2
    return float(elem * (LIVE_TENSORS * widest + 2 * out + 2 * meta.in_channels))


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, then Apple's MPS, else the CPU; anything else as ``torch.device`` reads
    it (:func:`restore.engine.policy.parse_device` checks the spelling), checked against this machine: a device
    that is not there is a one-line ValueError (not PyTorch's traceback on first use)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r} ({e}); use {DEVICE_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: no CUDA device is available here (PyTorch "
                             f"{torch.__version__}{'' if torch.version.cuda else ', built without CUDA'}); "
                             "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps" and not mps_available():
        raise ValueError(f"device {str(device)!r}: Apple's Metal (MPS) is not available here; use --device cpu or auto")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r} is not supported; use {DEVICE_HELP}")
    return dev


def resolve_precision(precision: str, device: torch.device, meta: ModelMeta) -> torch.dtype:
    """The dtype the network runs in (see the module docstring for ``"auto"``)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" and meta.half_safe else torch.float32
    if precision == "int8":
        raise ValueError("precision='int8' is not a torch dtype; it runs through ONNX Runtime on the CPU "
                         "(Restorer(..., device='cpu', precision='int8'))")
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    dtype = DTYPES[precision]
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision='bf16' is not supported by this GPU; use precision='fp16' or 'fp32'")
    return dtype


def _have_onnxruntime() -> bool:
    from restore.engine.cpu_paths import onnxruntime_available

    return onnxruntime_available()


def check_backend(backend: str, precision: str, device: torch.device) -> None:
    """Raise a one-line ``ValueError`` when ``backend`` cannot run ``precision`` on ``device`` (no fallback)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"precision='int8' runs on the CPU only (ONNX Runtime); use device='cpu', or "
                             f"precision='fp16'/'fp32' on {device.type}")
        if backend in ("torch", "eager"):
            raise ValueError(f"precision='int8' runs through ONNX Runtime only; use backend='auto' or "
                             f"'onnxruntime', not {backend!r}")
        if not _have_onnxruntime():
            raise ValueError("precision='int8' needs ONNX Runtime: pip install onnxruntime onnx (the 'onnx' extra), "
                             "or use precision='fp32' / 'bf16'")
        return
    if device.type != "cpu":
        if backend not in ("auto", "eager"):
            raise ValueError(f"backend={backend!r} is a CPU path; on {device.type} use backend='auto'")
        return
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError(f"ONNX Runtime has no {precision} CPU convolutions; use backend='auto' for "
                             f"precision={precision!r}, or precision='fp32'/'int8' with backend='onnxruntime'")
        if not _have_onnxruntime():
            raise ValueError("backend='onnxruntime' needs ONNX Runtime: pip install onnxruntime onnx (the 'onnx' "
                             "extra), or use backend='auto'")
    if backend == "torch" and precision == "fp16":
        raise ValueError("precision='fp16' on the CPU runs eager only; use backend='auto' (or precision='bf16')")


def _alternatives(dtype: torch.dtype, device: torch.device) -> str:
    others = ["bf16", "fp32"] if dtype is torch.float16 else ["fp32"]
    if dtype is torch.bfloat16 and device.type == "cuda":
        others = ["fp16", "fp32"]
    return " or ".join(f"precision={o!r}" for o in others)


@dataclass
class RunStats:
    """What happened during one ``run`` / ``run_batch`` call (pass a fresh instance as ``stats=``; the
    Restorer itself keeps no per-image state).

    ``forwards``: network calls; ``windows``: images x tiles (or crops) run; ``fp32_retries``: windows
    re-run in float32 because their low-precision output had NaN/inf; ``backend``: the path that ran (see
    :attr:`Restorer.backend`); ``oom_retries``: out-of-memory
    retries with smaller tiles; ``tiles``: the tile sides (grid tiler) or crop-area limits (ACS) used,
    in order. ``on_forward``: optional callback given the running ``windows`` count after each network call
    (progress bars).
    """

    precision: str = "fp32"
    backend: str = ""
    forwards: int = 0
    windows: int = 0
    fp32_retries: int = 0
    oom_retries: int = 0
    tiles: list[int] = field(default_factory=list)
    on_forward: Callable[[int], None] | None = field(default=None, repr=False, compare=False)


@dataclass
class _Job:
    """One network input of one image: float32 HxWxC planes and the HsxWsxC' array they restore into."""

    planes: np.ndarray
    out: np.ndarray
    gray_mean: bool = False


@dataclass
class _Prepared:
    """An image made ready for the network: its output array, network jobs, and what runs after them."""

    out: np.ndarray
    jobs: list[_Job]
    finish: list[Callable[[], None]]

    def result(self) -> np.ndarray:
        return self.out[..., 0] if self.out.shape[2] == 1 else self.out


class Restorer:
    """Run ``model`` on images; holds only the model(s), device, precision and tiling settings, and the CPU fast
    path once built (no per-image state: per-run counters go to an optional :class:`RunStats`)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: Precision = "auto",
        tile: TileSpec = None,
        overlap: int | None = None,
        acs_min_size: int | None = None,
        backend: Backend = "auto",
        calibration: object = None,
        tta: bool = False,
    ) -> None:
        integral = isinstance(tile, int | np.integer) and not isinstance(tile, bool)
        named = isinstance(tile, str) and tile in ("auto", "acs")
        if not (tile is None or named or (integral and tile >= 1)):
            raise ValueError(f"tile must be None, 'auto', 'acs' or a positive int, got {tile!r}")
        tile = int(tile) if integral else tile
        if overlap is not None and (not isinstance(overlap, int) or overlap < 0):
            raise ValueError(f"overlap must be None or a non-negative int, got {overlap!r}")
        if acs_min_size is not None and (not isinstance(acs_min_size, int) or acs_min_size < 1):
            raise ValueError(f"acs_min_size must be None or a positive int, got {acs_min_size!r}")
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            keep_freed_memory()  # large feature maps reuse freed heap instead of fresh pages (engine/allocator.py)
        self.model = model.eval().to(self.device)
        self.meta: ModelMeta = model.meta
        self.multiple = max(1, self.meta.size_multiple)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        self.dtype = torch.float32 if precision == "int8" else resolve_precision(precision, self.device, self.meta)
        self.precision = "int8" if precision == "int8" else DTYPE_NAMES[self.dtype]
        check_backend(backend, self.precision, self.device)
        if calibration is not None and self.precision != "int8":
            raise ValueError(f"calibration images are for precision='int8' only (precision is {self.precision!r})")
        self.backend_request: str = backend
        self.calibration = calibration
        self.tta = bool(tta)  # test-time augmentation: each window through the 8 flips / rotations, averaged
        self._fast: nn.Module | None = None  # the CPU fp32 / int8 runner, built by the first window
        self._ran_small = False  # windows too small to time the fp32 paths on ran eager
        self._fast_lock = threading.Lock()
        self._low_unfused: nn.Module | None = None  # bf16 CPU: the unfused twin, until the first window times both
        self.low_model = None if self.dtype is torch.float32 else self._low_precision_model()
        self.tile: TileSpec = tile
        self.acs_min_size = acs_min_size
        self.feather = self.meta.receptive_field is None
        # exact mode: context >= receptive field; feathered: the blending overlap; ACS: the shave
        self.context = tiling.context_for(self.meta.receptive_field, self.multiple, overlap,
                                          default_overlap=DEFAULT_FEATHER_OVERLAP)

    def _low_precision_model(self) -> nn.Module:
        """A copy of the model in ``self.dtype``, tried once on a small input (the float32 model is kept
        for the NaN/inf retries)."""
        m = self.meta
        side = tiling.round_up(PROBE_SIDE, self.multiple)
        x = torch.full((1, m.in_channels, side, side), 0.5 * m.input_range, device=self.device, dtype=self.dtype)
        try:
            if self._channels_last_low:
                from restore.engine.cpu_paths import deploy_copy, fuse_conv_activations

                plain = deploy_copy(self.model).to(self.dtype).to(memory_format=torch.channels_last)
                low = fuse_conv_activations(plain)  # conv + activation as one oneDNN call (shares the weights)
                x = x.contiguous(memory_format=torch.channels_last)
                if low is not plain:  # fusion is not faster for every network: both are timed on a window
                    with torch.inference_mode():
                        plain(x)
                    self._low_unfused = plain
            else:
                low = copy.deepcopy(self.model).to(self.dtype)
            with torch.inference_mode():
                low(x)
        except (RuntimeError, NotImplementedError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            # a dtype without a kernel in this build, or oneDNN's "bf16 path needs the cpu support ..."
            kernel_missing = any(k in msg.lower() for k in ("not implemented", "cpu support")) or any(
                k in msg for k in ("Half", "BFloat16"))
            if not kernel_missing:
                raise
            raise ValueError(
                f"precision={self.precision!r} does not work on {self.device.type} with torch {torch.__version__} "
                f"({msg}); use {_alternatives(self.dtype, self.device)}") from e
        return low

    @property
    def _channels_last_low(self) -> bool:
        """bf16 on the CPU: the fused network in channels_last (what makes bf16 fast on x86)."""
        return self.device.type == "cpu" and self.dtype is torch.bfloat16 and self.backend_request != "eager"

    @property
    def backend(self) -> str:
        """The path that runs the network: ``"onnxruntime"``, ``"torch"`` (fused, channels_last) or ``"eager"``
        (the model as given); ``"pending"`` on the CPU while ``backend="auto"`` has not seen a window large
        enough to time the fp32 candidates (or int8 has not been built yet); ``"eager"`` once such small windows ran."""
        if self._fast is not None:
            return str(getattr(self._fast, "backend", "eager"))
        if self.device.type != "cpu" or self.precision == "fp16" or self.backend_request == "eager":
            return "eager"
        if self.precision == "bf16":
            return "torch"
        if self.backend_request == "torch":
            return "torch"
        return "eager" if self._ran_small else "pending"

    def _fp32_runner(self, x: torch.Tensor) -> nn.Module | None:
        """The CPU fast path for ``x`` (fp32 or int8), built and cached on first use; None: run the model as
        given (CUDA, ``backend="eager"``, or a window too small to time the candidates on)."""
        if self._fast is not None:
            return self._fast
        if self.device.type != "cpu" or x.device.type != "cpu" or self.backend_request == "eager":
            return None
        small = x.shape[-2] * x.shape[-1] < TUNE_MIN_PIXELS
        if self.precision == "fp32" and self.backend_request == "auto" and small:
            self._ran_small = True
            return None
        with self._fast_lock:
            if self._fast is None:
                self._fast = self._build_fast(x)
        return self._fast

    def _tune_probe(self, x: torch.Tensor) -> torch.Tensor:
        """What CPU paths are timed on: the first window's top-left crop of at most ``TUNE_SIDE`` px a side,
        a multiple of the model's size multiple."""
        side_h = max(self.multiple, tiling.round_down(min(x.shape[-2], TUNE_SIDE), self.multiple))
        side_w = max(self.multiple, tiling.round_down(min(x.shape[-1], TUNE_SIDE), self.multiple))
        return x[:1, :, :side_h, :side_w]

    def _low_runner(self, x: torch.Tensor) -> nn.Module:
        """The low-precision network for ``x``. bf16 on the CPU: the first window of at least
        ``TUNE_MIN_PIXELS`` LR px times the fused and unfused channels_last copies on a crop of at most
        ``TUNE_SIDE`` px a side and keeps the faster (conv + activation fusion speeds ESPCN up 1.8x but slows
        some networks down a little, docs/kernels.md); smaller windows before that run the fused copy."""
        assert self.low_model is not None
        if self._low_unfused is None or x.shape[-2] * x.shape[-1] < TUNE_MIN_PIXELS:
            return self.low_model
        with self._fast_lock:
            if self._low_unfused is not None:
                from restore.engine import cpu_paths as cpu

                probe = self._tune_probe(x).contiguous(memory_format=torch.channels_last)
                times = {"fused": cpu.best_time(self.low_model, probe, 2),
                         "unfused": cpu.best_time(self._low_unfused, probe, 2)}
                if times["unfused"] < times["fused"]:
                    self.low_model = self._low_unfused
                self._low_unfused = None
                log.info("CPU bf16 path for %s/%s: %s (%s)", self.meta.family, self.meta.variant,
                         min(times, key=times.__getitem__),
                         ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items()))
        return self.low_model

    def _build_fast(self, x: torch.Tensor) -> nn.Module:
        from restore.engine import cpu_paths as cpu

        if self.precision == "int8":
            return self._build_int8(x)
        if self.backend_request == "auto":
            return self._auto_fp32(self._tune_probe(x))
        try:
            return cpu.optimize_for_inference(self.model, precision="fp32", backend=self.backend_request)
        except (RuntimeError, TypeError, NotImplementedError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"backend={self.backend_request!r} cannot run {self.meta.family}/{self.meta.variant} "
                             f"({msg}); use backend='auto' or 'eager'") from e

    def _auto_fp32(self, probe: torch.Tensor) -> nn.Module:
        """The fastest fp32 CPU path: the one cached for this model, input size and machine
        (:mod:`restore.engine.path_cache`); else, for a small probe, the measured default untimed; else timed now
        (:func:`restore.engine.cpu_paths.fastest_fp32`) and cached. The ONNX graph comes from the cache too."""
        from restore.engine import cpu_paths as cpu
        from restore.engine.path_cache import DEFAULT_FP32_PATH, SMALL_PROBE_PIXELS, PathCache

        cache = PathCache(self.model)
        shape = (int(probe.shape[-2]), int(probe.shape[-1]))
        graph = None
        if cpu.onnxruntime_available():
            try:
                graph = cache.onnx_graph(lambda: cpu.export_onnx(cpu.deploy_copy(self.model)))
            except Exception as e:  # noqa: BLE001 - a network ONNX cannot express: the other paths compete
                log.warning("ONNX export of %s/%s failed (%s); ONNX Runtime is not a candidate", self.meta.family,
                            self.meta.variant, str(e).splitlines()[0] if str(e) else type(e).__name__)
        hit = cache.lookup(shape)
        if hit is not None or shape[0] * shape[1] < SMALL_PROBE_PIXELS:
            backend = hit.backend if hit is not None else (DEFAULT_FP32_PATH if graph is not None else "torch")
            if backend == "onnxruntime" and graph is None:
                backend = "torch"
            log.info("CPU fp32 path for %s/%s: %s (%s)", self.meta.family, self.meta.variant, backend,
                     "cached" if hit is not None else "default for small inputs, untimed")
            return cpu.fp32_path(self.model, backend, probe, graph=graph, verify=hit is None)
        candidates = [c for c in cpu.FP32_CANDIDATES if c != "onnxruntime" or graph is not None]
        runner, times = cpu.fastest_fp32(self.model, probe, graph=graph, candidates=candidates)
        cache.store(shape, runner.backend, times)
        log.info("CPU fp32 path for %s/%s: %s (%s)", self.meta.family, self.meta.variant, runner.backend,
                 ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items()))
        return runner

    def _build_int8(self, x: torch.Tensor) -> nn.Module:
        from restore.engine import cpu_paths as cpu

        if self.calibration is None:
            inputs = cpu.calibration_crops(x, multiple=self.multiple)
            source = f"{len(inputs)} crop(s) of the first input"
        else:
            inputs = cpu.calibration_inputs(self.meta, self.calibration, downscale=False)  # type: ignore[arg-type]
            source = f"{len(inputs)} calibration image(s)"
        try:
            q = cpu.optimize_for_inference(self.model, precision="int8", backend="onnxruntime", calibration=inputs)
        except (RuntimeError, TypeError, NotImplementedError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"precision='int8' cannot run {self.meta.family}/{self.meta.variant} ({msg}); use "
                             f"precision='fp32' or 'bf16'") from e
        log.info("int8 (ONNX Runtime QDQ) for %s/%s calibrated on %s", self.meta.family, self.meta.variant, source)
        return q

    # ------------------------------------------------------------------------------------------ network

    def _net(self, x: torch.Tensor, stats: RunStats | None) -> torch.Tensor:
        """The network on a device tensor already in the model's range (float32 NCHW); float32 output.
        Low precision: windows whose output is not finite are re-run in float32 (counted in ``stats``)."""
        if self.low_model is None:
            fast = self._fp32_runner(x)
            return self.model(x) if fast is None else fast(x)
        xl = x.to(self.dtype)
        xl = xl.contiguous(memory_format=torch.channels_last) if self._channels_last_low else xl
        y = self._low_runner(xl)(xl)
        bad = ~torch.isfinite(y).flatten(1).all(dim=1)
        y = y.float().contiguous()
        if bool(bad.any()):
            idx = bad.nonzero().flatten()
            log.warning("%d of %d window(s) gave NaN/inf in %s; re-running them in fp32", idx.numel(), x.shape[0],
                        self.precision)
            y[idx] = self.model(x[idx]).float()
            if stats is not None:
                stats.fp32_retries += idx.numel()
        return y

    @torch.inference_mode()
    def forward_tensor(self, x: torch.Tensor, stats: RunStats | None = None) -> torch.Tensor:
        """NCHW float in [0,1] (model's channels) -> NCHW float32, padded to the size multiple and cropped.

        One pass over the whole tensor (no tiling; eight with ``tta``, averaged), in the Restorer's precision; the
        result stays on the device.
        """
        m = self.meta
        h, w = x.shape[-2:]
        mult = max(1, m.size_multiple)
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        if stats is not None:  # a window counts once; its network calls, once per TTA transform
            stats.forwards += len(tta.TRANSFORMS) if self.tta else 1
            stats.windows += x.shape[0]
            if stats.on_forward is not None:
                stats.on_forward(stats.windows)
        x = x.to(self.device) * m.input_range
        net = functools.partial(self._net, stats=stats)
        y = (tta.ensemble(net, x) if self.tta else net(x)) / m.input_range
        return y[..., : h * m.scale, : w * m.scale]

    # ------------------------------------------------------------------------------------------ tiling

    def _budget(self, batch: int) -> float:
        frac = CUDA_MEMORY_FRACTION if self.device.type == "cuda" else CPU_MEMORY_FRACTION
        return available_memory(self.device) * frac / max(1, batch)

    def auto_tile(self, batch: int = 1) -> int:
        """Tile side (LR px) for ``tile="auto"`` from the memory available now, for ``batch`` images run
        together."""
        return tiling.tile_for_budget(self._budget(batch), bytes_per_pixel(self.model, self.meta), self.context,
                                      self.multiple, min_tile=MIN_TILE)

    def auto_crop_area(self, batch: int = 1) -> int:
        """ACS crop-area limit (LR px) from the memory available now: four crops of ``batch`` images are run
        together."""
        return max(MIN_TILE**2, int(self._budget(4 * batch) / bytes_per_pixel(self.model, self.meta)))

    def _forward_gray_mean(self, x: torch.Tensor, stats: RunStats | None = None) -> torch.Tensor:
        """RGB model on replicated gray: the output's channel mean, taken on the CPU in float32 (the same
        values as numpy's ``mean(axis=2)`` of the whole-image output)."""
        return self.forward_tensor(x, stats).float().cpu().mean(1, keepdim=True)

    def _run_planes(self, planes: np.ndarray, out_dtype: type[np.generic] = np.float32,
                    out: np.ndarray | Sequence[np.ndarray] | None = None, *, gray_mean: bool = False,
                    stats: RunStats | None = None) -> np.ndarray | Sequence[np.ndarray]:
        """float32 HxWxC (or NxHxWxC, a batch) with C == model in_channels -> output HsxWsxC' (NxHsxWsxC'),
        ``out_dtype`` or into ``out`` (see :func:`restore.engine.tiling.run_tiled`); ``gray_mean``: C' = 1,
        the mean of the model's output channels."""
        n = 1 if planes.ndim == 3 else planes.shape[0]
        h, w = planes.shape[-3:-1]
        forward = functools.partial(self._forward_gray_mean if gray_mean else self.forward_tensor, stats=stats)
        scale = self.meta.scale
        if self.tile is None:  # whole image: one tile, no retry (errors propagate as before)
            return tiling.run_tiled(forward, planes, scale=scale, tile=max(h, w), context=0, multiple=1,
                                    out_dtype=out_dtype, out=out)
        if self.tile == "acs":
            return self._run_acs(forward, planes, n, out_dtype, out, stats)
        tile = self.auto_tile(n) if self.tile == "auto" else int(self.tile)
        tile = max(self.multiple, tiling.round_down(tile, self.multiple))
        while True:
            if stats is not None:
                stats.tiles.append(tile)
            try:
                return tiling.run_tiled(forward, planes, scale=scale, tile=tile, context=self.context,
                                        multiple=self.multiple, out_dtype=out_dtype, feather=self.feather, out=out)
            except RuntimeError as e:
                smallest = tile <= self.multiple
                if not is_oom(e) or smallest:
                    raise
            # retry outside the except block, so the failed attempt's tensors can be freed
            self._after_oom(stats)
            new = max(self.multiple, tiling.round_down(min(tile, max(h, w)) // 2, self.multiple))
            log.warning("out of memory with %d px tiles; retrying with %d px", tile, new)
            tile = new

    def _after_oom(self, stats: RunStats | None) -> None:
        if stats is not None:
            stats.oom_retries += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _run_acs(self, forward: tiling.Forward, planes: np.ndarray, n: int, out_dtype: type[np.generic],
                 out: np.ndarray | Sequence[np.ndarray] | None,
                 stats: RunStats | None) -> np.ndarray | Sequence[np.ndarray]:
        h, w = planes.shape[-3:-1]
        limit = self.acs_min_size if self.acs_min_size is not None else self.auto_crop_area(n)
        kw = {"shave": self.context, "multiple": self.multiple}
        while True:
            if stats is not None:
                stats.tiles.append(limit)
            try:
                return acs.run_acs(forward, planes, scale=self.meta.scale, min_size=limit, out_dtype=out_dtype,
                                   out=out, **kw)
            except RuntimeError as e:
                if not is_oom(e):
                    raise
                plan = acs.plan_acs(h, w, min_size=limit, **kw)
                new = acs.largest_crop(plan) // 2
                if new < 1 or acs.plan_acs(h, w, min_size=new, **kw) == plan:
                    raise  # the crops cannot get any smaller
            self._after_oom(stats)
            log.warning("out of memory with ACS crops of up to %d px; retrying with %d px", limit, new)
            limit = new

    # --------------------------------------------------------------------------------------- images

    def _prepare(self, img: np.ndarray) -> _Prepared:
        """Colour handling of one image: the output array, the planes the network sees and the steps that
        complete the output after the network (chroma merge, alpha)."""
        m = self.meta
        dtype = img.dtype
        out_dtype = dtype.type if dtype in (np.uint8, np.uint16) else np.float32
        alpha = None
        if img.ndim == 3 and img.shape[2] in (2, 4):
            img, alpha = img[..., :-1], pixels.to_float(img[..., -1])
            if img.shape[2] == 1:
                img = img[..., 0]
        gray_in = img.ndim == 2
        h, w = img.shape[:2]
        s = m.scale
        n_out = 1 if gray_in else img.shape[2]
        out = np.empty((h * s, w * s, n_out + (alpha is not None)), dtype=out_dtype)
        jobs: list[_Job] = []
        finish: list[Callable[[], None]] = []
        if m.color_space == "rgb" and not gray_in:
            jobs.append(_Job(pixels.to_float(img), out[..., :n_out]))
        elif m.color_space == "rgb":
            jobs.append(_Job(np.repeat(pixels.to_float(img)[..., None], 3, axis=2), out[..., :1], gray_mean=True))
        elif m.color_space == "gray":
            x = pixels.to_float(img)
            for c in range(n_out):
                plane = x[..., None] if gray_in else x[..., c:c + 1]
                jobs.append(_Job(plane, out[..., c:c + 1]))
        elif m.color_space == "y_full":
            if gray_in:
                jobs.append(_Job(pixels.to_float(img)[..., None], out[..., :1]))
            else:
                ycc = pixels.rgb_to_ycrcb_full(img)
                y = np.empty((h * s, w * s, 1), dtype=np.float32)
                jobs.append(_Job(ycc[..., :1], y))
                finish.append(functools.partial(_merge_chroma, ycc, y, out[..., :n_out], s,
                                                uint8_path=dtype == np.uint8 and alpha is None))
        else:
            raise ValueError(f"unsupported colour space {m.color_space!r} for whole-image runs")
        if alpha is not None:
            finish.append(functools.partial(_attach_alpha, alpha, out[..., -1], s))
        return _Prepared(out=out, jobs=jobs, finish=finish)

    def run(self, img: np.ndarray, *, stats: RunStats | None = None) -> np.ndarray:
        """Restore one HxW / HxWxC image (uint8, uint16 or float in [0, 1]); same dtype and layout back."""
        return self.run_batch([img], stats=stats)[0]

    def run_batch(self, images: Sequence[np.ndarray], *, batch_size: int | None = None,
                  stats: RunStats | None = None) -> list[np.ndarray]:
        """Restore several images; inputs of the same shape and dtype (video frames) share the network
        calls (each window of the tiler runs for up to ``batch_size`` of them at once; ``None``: all).
        Returns the outputs in order; each equals ``run(image)`` up to float summation order."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be None or >= 1, got {batch_size}")
        if stats is not None:
            stats.precision = self.precision
            stats.backend = self.backend
        prepared = [self._prepare(img) for img in images]
        groups: dict[tuple[object, ...], list[_Job]] = {}
        for p in prepared:
            for job in p.jobs:
                groups.setdefault((job.planes.shape, job.gray_mean, job.out.dtype), []).append(job)
        for jobs in groups.values():
            step = batch_size or len(jobs)
            for k in range(0, len(jobs), step):
                chunk = jobs[k:k + step]
                planes = chunk[0].planes[None] if len(chunk) == 1 else np.stack([j.planes for j in chunk])
                self._run_planes(planes, out=[j.out for j in chunk], gray_mean=chunk[0].gray_mean, stats=stats)
                del planes
        for p in prepared:
            for step_fn in p.finish:
                step_fn()
        if stats is not None:
            stats.backend = self.backend
        return [p.result() for p in prepared]


def _merge_chroma(ycc: np.ndarray, y: np.ndarray, out: np.ndarray, scale: int, *, uint8_path: bool) -> None:
    """Y-channel models: restored Y + bilinear Cr/Cb, back to RGB into ``out`` (uint8 RGB: dnn_superres's
    uint8 conversion).

    The uint8 path is :func:`restore.pixels.ycrcb_full_to_rgb` done with OpenCV kernels: Y clamped at 0, then
    ``convertScaleAbs`` (x255, round half to even, saturate) gives the same bytes as numpy's
    ``clip(rint(x * 255), 0, 255)`` in a quarter of the time (a video frame's biggest cost after the network)."""
    ycc_up = pixels.resize_bilinear(ycc, scale)
    if uint8_path:
        import cv2

        np.maximum(y[..., 0], np.float32(0.0), out=ycc_up[..., 0])
        ycc8 = cv2.convertScaleAbs(ycc_up, alpha=255.0)
        if out.flags.c_contiguous:
            cv2.cvtColor(ycc8, cv2.COLOR_YCrCb2RGB, dst=out)
        else:
            out[...] = cv2.cvtColor(ycc8, cv2.COLOR_YCrCb2RGB)
        return
    ycc_up[..., 0] = y[..., 0]
    tiling.store(out, pixels.ycrcb_full_to_rgb(ycc_up))


def _attach_alpha(alpha: np.ndarray, out: np.ndarray, scale: int) -> None:
    tiling.store(out, pixels.resize_bicubic(alpha, scale) if scale > 1 else alpha)
