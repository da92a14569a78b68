"""Fast CPU inference: :func:`optimize_for_inference`.

One concern, kept whole (hence over 500 lines): building, checking and timing the CPU execution paths.

Measured on the project's 2-core AVX-512 machine (numbers in docs/kernels.md): for float32 the fastest path
for every family here is ONNX Runtime on the fused (deploy-form) network -- its fused conv+activation kernels
and NCHWc layout beat PyTorch eager (channels_last or not), TorchScript freezing and ``torch.compile``
(1.65-4.3x the official PyTorch code). With bfloat16 allowed, PyTorch channels_last on AVX512_BF16 is faster
still for ESPCN, DSCF and IMDN (2.1-6.5x official; Set5 cost <= 0.03 dB on the x4 nets). So:

* ``precision="fp32"``: the deploy-form network exported to ONNX (opset 17, dynamic N/H/W) and run by an ONNX
  Runtime session (all graph optimisations). Outputs equal PyTorch's within float32 rounding.
* ``precision="int8"``: the same graph quantised statically with ONNX Runtime (QDQ, Krishnamoorthi 2018:
  per-output-channel symmetric int8 weights, per-tensor asymmetric uint8 activations calibrated on a few
  images; only convolutions are quantised, element-wise ops, attention and normalisation stay float32, and
  by default the first and last convs too). Run on the same session type; VNNI kernels where the CPU has them.
  Measured: -0.13 to -1.9 dB on Set5 and rarely faster than fp32 (docs/kernels.md) -- not a default.
* ``precision="bf16"``: PyTorch eager in bfloat16, channels_last (ONNX Runtime has no bfloat16 CPU convs;
  NCHW bf16 is no faster than fp32 here, channels_last is what makes it fast).

Without ``onnxruntime`` (an optional extra: ``pip install onnxruntime onnx``) ``backend="auto"`` falls back to
PyTorch eager with ``inference_mode`` + channels_last for fp32 (int8 then raises: no PyTorch int8 path was
kept, see docs/kernels.md). The returned module takes and returns float32 NCHW tensors in the model's own
convention (``meta`` is the source model's), so the engine can use it in place of the model.

Which float32 path wins depends on the CPU and the network (on the AMD EPYC of docs/kernels.md ONNX Runtime
won everywhere; on an Intel Xeon with AMX, PyTorch channels_last or plain eager won for ESPCN x4, SPAN-tiny and
IMDN-RTC): :func:`fastest_fp32` times the candidates on a probe input and keeps the fastest. The engine
(:class:`restore.engine.restorer.Restorer`) uses it for ``precision="auto"``/``"fp32"`` on the CPU.
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

CPU_PRECISIONS = ("fp32", "bf16", "int8")  # what the CPU paths run (a subset of policy.PRECISIONS)
CPU_BACKENDS = ("auto", "onnxruntime", "torch")  # optimize_for_inference backends
OPSET = 17
CALIB_IMAGES = 8  # images used for int8 calibration
CALIB_SIDE = 96  # LR crop side (px) of each calibration input
FP32_CANDIDATES = ("onnxruntime", "torch", "eager")  # timed by fastest_fp32
VERIFY_RTOL = 1e-3  # a fast path's output on the probe must equal the model's within this (x max(1, |ref|))
VERIFY_SIDE = 96  # a cached or default path is checked on a crop of at most this many px a side


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime and onnx are installed (found, not imported: importing them costs a second or more,
    paid only by a run that uses them)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """This CPU's model name and feature flags, from the first processor of ``cpuinfo`` (without one, e.g.
    off Linux: ``platform.processor()`` and no flags)."""
    name, flags = "", frozenset[str]()
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return name or platform.processor() or platform.machine() or "unknown", flags


def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16 in its flags), where torch's
    oneDNN bf16 convolutions are about 2x faster than float32; elsewhere bf16 is emulated and slower."""
    flags = cpu_info(cpuinfo)[1]
    return "amx_bf16" in flags or "avx512_bf16" in flags


def bf16_convolutions(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether torch's oneDNN runs bfloat16 convolutions on this CPU at all: on x86 it needs AVX512-BW/VL/DQ
    or AVX-NE-CONVERT (an AVX2-only CPU raises "bf16 path needs the cpu support ..."); :func:`native_bf16`
    says whether they are also fast. Other architectures (no x86 flags to read) are assumed able."""
    flags = cpu_info(cpuinfo)[1]
    if not any(f.startswith(("avx", "sse")) for f in flags):
        return True
    return {"avx512bw", "avx512vl", "avx512dq"} <= flags or "avx_ne_convert" in flags


def deploy_copy(model: nn.Module) -> nn.Module:
    """An eval-mode float32 copy with LoRA merged and every re-parameterisation fused (``fuse()``)."""
    from restore.archs.lora import merge_conv_lora

    net = merge_conv_lora(copy.deepcopy(model).float().eval())
    if hasattr(net, "fuse"):
        net = net.fuse() or net
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


# ------------------------------------------------------------------- conv + activation fusion (oneDNN)

# oneDNN post-op names of the activations without parameters, by module type, function and Tensor method
_MODULE_ACTS: dict[type, str] = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "swish",
                                 nn.Hardswish: "hardswish"}
_FUNCTION_ACTS: dict[Any, str] = {F.relu: "relu", torch.relu: "relu", torch.tanh: "tanh", torch.sigmoid: "sigmoid",
                                  F.silu: "swish", F.hardswish: "hardswish"}
_METHOD_ACTS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}


def _module_act(m: nn.Module) -> tuple[str, list[float], str] | None:
    if type(m) in _MODULE_ACTS:
        return _MODULE_ACTS[type(m)], [], ""
    if type(m) is nn.LeakyReLU:
        return "leaky_relu", [float(m.negative_slope)], ""
    if type(m) is nn.GELU:
        return "gelu", [], m.approximate
    return None


class ConvAct(nn.Module):
    """``act(conv(x))`` as one oneDNN convolution with the activation as a post-op
    (``torch.ops.mkldnn._convolution_pointwise``, what inductor emits on the CPU): the activation is applied
    while the output tile is in cache instead of in a second pass over memory. Shares ``conv``'s parameters;
    ``reference`` is the activation exactly as the network called it (what runs inputs off the CPU)."""

    def __init__(self, conv: nn.Conv2d, attr: str, scalars: list[float], algorithm: str,
                 reference: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.conv = conv
        self.attr, self.scalars, self.algorithm = attr, scalars, algorithm
        self.reference = reference

    def extra_repr(self) -> str:
        return f"post-op={self.attr}{self.scalars or ''}"

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        if x.device.type != "cpu":
            return self.reference(c(x))
        return torch.ops.mkldnn._convolution_pointwise(
            x, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups, self.attr,
            self.scalars, self.algorithm or None)


def _fusable_conv(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and not m._forward_hooks and not m._forward_pre_hooks)


def fuse_conv_activations(net: nn.Module) -> nn.Module:
    """``net`` with every ``nn.Conv2d`` whose only use is an activation (ReLU, LeakyReLU, SiLU, GELU, tanh,
    sigmoid, hardswish; as a module, a function or a method) replaced by one :class:`ConvAct` (CPU only, for
    float32 / bfloat16 inference). Found by ``torch.fx`` tracing (modules with a true ``fx_leaf`` attribute,
    e.g. ones with dtype-dependent branches, are kept whole); a network that cannot be traced, or where nothing
    fuses, is returned as it is. ``meta`` is kept. Equality with ``net`` is tested in tests/ops."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return net
    import torch.fx as fx

    from restore.ops.conv_pixelshuffle import shuffle_tail, upsample_tail
    from restore.ops.lk_dwconv import run_depthwise

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # modules marked ``fx_leaf`` run whole
            return bool(getattr(m, "fx_leaf", False)) or super().is_leaf_module(m, qualname)

    leaf_functions = (upsample_tail, shuffle_tail, run_depthwise)  # Triton-or-reference dispatch: run as they are
    try:
        graph = Tracer(autowrap_functions=leaf_functions).trace(net)
    except Exception as e:  # noqa: BLE001 - any tracing failure means: run the network unfused
        log.debug("conv+activation fusion skipped for %s: %s", type(net).__name__, e)
        return net
    gm = fx.GraphModule(net, graph)
    modules = dict(gm.named_modules())
    fused = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not _fusable_conv(modules[node.target]) or len(node.users) != 1:
            continue
        user = next(iter(node.users))
        kwargs = {k: v for k, v in user.kwargs.items() if k != "inplace"}
        act: tuple[str, list[float], str] | None = None
        if user.op == "call_module":
            act = _module_act(modules[user.target])
        elif user.op == "call_function" and user.target in _FUNCTION_ACTS and len(user.args) == 1 and not kwargs:
            act = _FUNCTION_ACTS[user.target], [], ""
        elif user.op == "call_function" and user.target is F.leaky_relu and len(user.args) <= 2:
            slope = kwargs.get("negative_slope", user.args[1] if len(user.args) > 1 else 0.01)
            act = ("leaky_relu", [float(slope)], "") if isinstance(slope, int | float) else None
        elif user.op == "call_method" and user.target in _METHOD_ACTS and len(user.args) == 1 and not kwargs:
            act = _METHOD_ACTS[user.target], [], ""
        if act is None or user.args[0] is not node:
            continue
        if user.op == "call_module":
            reference: Callable[[Tensor], Tensor] = modules[user.target]
        else:  # the function / method with the arguments the graph passed after the conv output
            target = getattr(Tensor, user.target) if user.op == "call_method" else user.target
            reference = functools.partial(target, *user.args[1:], **user.kwargs)
        name = f"_conv_act_{fused}"
        gm.add_submodule(name, ConvAct(modules[node.target], *act, reference))
        with gm.graph.inserting_after(user):
            new = gm.graph.call_module(name, (node.args[0],))
        user.replace_all_uses_with(new)
        gm.graph.erase_node(user)
        gm.graph.erase_node(node)
        fused += 1
    if not fused:
        return net
    gm.graph.lint()
    gm.recompile()
    return FusedNet(gm, getattr(net, "meta", None), getattr(net, "form", None))


class FusedNet(nn.Module):
    """The traced, fused network (``graph``) with the source network's ``meta`` (and ``form``, if it had one)."""

    def __init__(self, graph: nn.Module, meta: Any, form: str | None = None) -> None:
        super().__init__()
        self.graph = graph
        self._meta = meta
        if form is not None:
            self.form = form

    @property
    def meta(self) -> Any:
        return self._meta

    def forward(self, x: Tensor) -> Tensor:
        return self.graph(x)


class OptimizedModel(nn.Module):
    """A fast CPU runner around a (fused) model: float32 NCHW in and out, ``meta`` from the source model.

    ``source`` is the fused float32 PyTorch model (used for ``parameters()``, and to run inputs that are not
    on the CPU). ``run`` maps a float32 CPU tensor to the output tensor."""

    def __init__(self, source: nn.Module, *, precision: str, backend: str, session: Any = None) -> None:
        super().__init__()
        self.source = source
        self.precision = precision
        self.backend = backend
        self._session = session
        self.int8_plan: Int8Plan | None = None  # int8: which convolutions run in int8 (plan_int8)
        self._cpu_net: nn.Module | None = None  # what runs CPU inputs on the torch backend
        if backend == "torch":
            self.source = source.to(memory_format=torch.channels_last)
            low = copy.deepcopy(self.source).to(torch.bfloat16) if precision == "bf16" else self.source
            self._cpu_net = fuse_conv_activations(low)

    @property
    def meta(self) -> Any:
        return self.source.meta

    def __deepcopy__(self, memo: dict[int, Any]) -> OptimizedModel:
        new = copy.copy(self)  # the ONNX Runtime session is shared (its run() is thread-safe)
        new.__dict__ = dict(self.__dict__)
        new._modules = {k: copy.deepcopy(v, memo) for k, v in self._modules.items()}
        return new

    def extra_repr(self) -> str:
        return f"backend={self.backend}, precision={self.precision}"

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return self.source(x)
        dtype = x.dtype
        with torch.inference_mode():
            if self._session is not None:
                arr = np.ascontiguousarray(x.detach().float().numpy())
                y = torch.from_numpy(self._session.run(None, {"x": arr})[0])
            else:
                net = self._cpu_net if self._cpu_net is not None else self.source
                xin = x.to(torch.bfloat16 if self.precision == "bf16" else torch.float32)
                y = net(xin.contiguous(memory_format=torch.channels_last)).float()
        return y.to(dtype).contiguous()


def _example(meta: Any, side: int = 64) -> Tensor:
    m = max(1, int(meta.size_multiple))
    side = -(-side // m) * m
    return torch.rand(1, meta.in_channels, side, side, generator=torch.Generator().manual_seed(0)) * meta.input_range


def export_onnx(net: nn.Module, *, opset: int = OPSET) -> bytes:
    """The network as an ONNX graph (default opset 17), input ``x`` / output ``y`` with dynamic batch, height,
    width."""
    import warnings

    buf = io.BytesIO()
    axes = {0: "n", 2: "h", 3: "w"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (_example(net.meta),), buf, input_names=["x"], output_names=["y"],
                          opset_version=opset, dynamo=False, dynamic_axes={"x": axes, "y": axes})
    return buf.getvalue()


def ort_session(model_bytes: bytes, threads: int | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # idle workers sleep (as torch's then do)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------- int8 (ORT)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def calibration_inputs(meta: Any, images: Iterable[np.ndarray | str | Path] | str | Path, *,
                       count: int = CALIB_IMAGES, side: int = CALIB_SIDE, downscale: bool = True) -> list[Tensor]:
    """Model-space inputs (1, C, side, side) for int8 calibration: centre crops of up to ``count`` images
    (uint8 HxWx3 RGB arrays, image paths, or a directory), first shrunk by ``meta.scale`` (area filter) when
    ``downscale`` (high-resolution training images -> LR-like statistics); Gaussian noise (sigma 25) is added
    for denoisers. Converted to the model's colour space and range."""
    import cv2

    from restore.io import files, image

    if isinstance(images, str | Path):
        root = Path(images)
        images = files.list_images(root) if root.is_dir() else [root]
    rng = np.random.default_rng(0)
    out: list[Tensor] = []
    for item in images:
        if len(out) >= count:
            break
        img = image.read_rgb(item) if isinstance(item, str | Path) else np.asarray(item)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3].astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
        if downscale and meta.task == "sr" and meta.scale > 1:
            h, w = img.shape[:2]
            img = cv2.resize(img, (max(1, w // meta.scale), max(1, h // meta.scale)), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        s = min(side, h, w)
        m = max(1, int(meta.size_multiple))
        s = max(m, s // m * m)
        if s > h or s > w:
            continue
        y0, x0 = (h - s) // 2, (w - s) // 2
        crop = img[y0:y0 + s, x0:x0 + s]
        if meta.task == "denoise":
            crop = crop + rng.normal(0.0, 25.0 / 255.0, crop.shape).astype(np.float32)
        if meta.in_channels == 1:
            crop = _luma(crop)[..., None]
        t = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None] * float(meta.input_range)
        out.append(t.float())
    if not out:
        raise ValueError("int8 calibration needs at least one image (none could be read or cropped)")
    return out


def _conv_names(model_bytes: bytes) -> list[str]:
    import onnx

    return [n.name for n in onnx.load_from_string(model_bytes).graph.node if n.op_type == "Conv"]


def quantize_int8(model_bytes: bytes, inputs: Sequence[Tensor], *, keep_float: Sequence[str] = (),
                  method: str = "minmax", calibration_cache: str | Path | None = None) -> bytes:
    """Static int8 quantisation (QDQ) of the convolutions of an ONNX graph with ONNX Runtime: symmetric
    per-output-channel int8 weights, asymmetric per-tensor uint8 activations calibrated on ``inputs``.
    ``keep_float``: conv node names left in float32. ``calibration_cache``: a JSON file of activation ranges,
    written by the first call and read by the next ones (one calibration pass for many plans)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": t.numpy()} for t in inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory(prefix="restore_int8_") as tmp:
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(model_bytes)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation only
            pre = src
        quantize_static(
            str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
            per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            calibrate_method=methods[method], nodes_to_exclude=list(keep_float),
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                           "CalibPercentile": 99.999, "CalibTensorRangeSymmetric": False},
            calibration_cache_path=None if calibration_cache is None else str(calibration_cache),
        )
        return dst.read_bytes()


# Accuracy budget of the int8 path (issue 23): Y-PSNR cost <= 0.05 dB for SR, <= 0.1 dB for denoisers. Quantisation
# noise q (MSE) added to a float32 error f costs 10 log10(1 + q / f) dB; f is taken at the highest PSNR a shipped
# model of that kind reaches on the test sets (the strictest case), and half of the resulting q is allowed on the
# calibration inputs (layer errors do not add up exactly, and test images are not calibration images).
INT8_COST_DB = {"sr": 0.05, "denoise": 0.1}
INT8_REFERENCE_PSNR = {2: 37.5, 3: 34.0, 4: 31.5}  # SR by scale; denoisers: DENOISE_REFERENCE_PSNR
DENOISE_REFERENCE_PSNR = 33.0
INT8_SAFETY = 0.5


def int8_budget(meta: Any) -> float:
    """Mean squared error (output in [0, 1], clipped) that int8 may add to the float32 output on the calibration
    inputs for a model with ``meta``: the noise that costs ``INT8_COST_DB`` against a float32 error at
    ``INT8_REFERENCE_PSNR``, times ``INT8_SAFETY``."""
    psnr = INT8_REFERENCE_PSNR.get(int(meta.scale), 31.5) if meta.task == "sr" else DENOISE_REFERENCE_PSNR
    cost = INT8_COST_DB.get(meta.task, INT8_COST_DB["sr"])
    return INT8_SAFETY * 10 ** (-psnr / 10) * (10 ** (cost / 10) - 1)


def _outputs(model_bytes: bytes, inputs: Sequence[Tensor], input_range: float, threads: int | None) -> list[np.ndarray]:
    session = ort_session(model_bytes, threads)
    return [np.clip(session.run(None, {"x": np.ascontiguousarray(t.numpy())})[0] / input_range, 0.0, 1.0)
            for t in inputs]


def _mse(outs: Sequence[np.ndarray], refs: Sequence[np.ndarray]) -> float:
    return float(np.mean([np.mean((o.astype(np.float64) - r) ** 2) for o, r in zip(outs, refs, strict=True)]))


class Int8Plan:
    """Which convolutions of a graph run in int8: ``quantised`` / ``kept_float`` (node names), each candidate's
    own error (``errors``: MSE vs float32 when it alone is quantised), the whole plan's ``mse`` on the calibration
    inputs, and the ``budget`` it had to meet."""

    def __init__(self, quantised: list[str], kept_float: list[str], errors: dict[str, float], mse: float,
                 budget: float) -> None:
        self.quantised, self.kept_float, self.errors, self.mse, self.budget = (quantised, kept_float, errors, mse,
                                                                                budget)

    def describe(self) -> str:
        n = len(self.quantised) + len(self.kept_float)
        return (f"{len(self.quantised)} of {n} convolutions in int8 (calibration MSE {self.mse:.2g}, budget "
                f"{self.budget:.2g})")


def plan_int8(model_bytes: bytes, inputs: Sequence[Tensor], *, budget: float, input_range: float = 1.0,
              forced_float: Sequence[str] = (), method: str = "minmax",
              threads: int | None = None) -> tuple[Int8Plan, bytes]:
    """Mixed-precision int8 within an accuracy ``budget`` (MSE of the [0, 1]-clipped output vs float32 on
    ``inputs``; ``math.inf``: every convolution but ``forced_float``). Each candidate convolution is quantised
    alone and its error measured (sensitivity); the least sensitive are taken while their errors add up to at most
    the budget; the whole plan is then measured, and while it exceeds the budget its most sensitive quantised
    convolution goes back to float32. One calibration pass serves every trial. Returns the plan and its graph."""
    convs = _conv_names(model_bytes)
    candidates = [c for c in convs if c not in set(forced_float)]
    with tempfile.TemporaryDirectory(prefix="restore_int8_plan_") as tmp:
        cache = Path(tmp, "ranges.json")

        def build(quantised: Sequence[str]) -> bytes:
            return quantize_int8(model_bytes, inputs, keep_float=[c for c in convs if c not in set(quantised)],
                                 method=method, calibration_cache=cache)

        if math.isinf(budget):
            graph = build(candidates)
            return Int8Plan(candidates, [c for c in convs if c not in candidates], {}, math.nan, budget), graph
        refs = _outputs(model_bytes, inputs, input_range, threads)
        errors = {c: _mse(_outputs(build([c]), inputs, input_range, threads), refs) for c in candidates}
        chosen: list[str] = []
        total = 0.0
        for c in sorted(candidates, key=errors.__getitem__):
            if total + errors[c] <= budget:
                chosen.append(c)
                total += errors[c]
        while True:
            graph = build(chosen) if chosen else model_bytes
            mse = _mse(_outputs(graph, inputs, input_range, threads), refs) if chosen else 0.0
            if mse <= budget or not chosen:
                break
            chosen.pop()  # the most sensitive of those taken
    kept = [c for c in convs if c not in chosen]
    return Int8Plan([c for c in convs if c in chosen], kept, errors, mse, budget), graph


def simd_summary(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """One line for benchmark tables: the CPU's model name, its vector-unit flags (AVX2 / FMA / AVX-512* / AMX* /
    AVX-VNNI) and whether int8 and bf16 are native here."""
    name, flags = cpu_info(cpuinfo)
    simd = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni")) or f in ("avx2", "fma"))
    return (f"{name}; {' '.join(simd) or 'no AVX2'}; VNNI/AMX-INT8: {'yes' if vnni(cpuinfo) else 'no'}; "
            f"native bf16: {'yes' if native_bf16(cpuinfo) else 'no'}")


def vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8), which make int8
    convolutions up to ~2-4x faster than float32; without them (AVX2 only) int8 runs on ``vpmaddubsw`` and gains
    little or nothing (docs/kernels.md)."""
    flags = cpu_info(cpuinfo)[1]
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


# ------------------------------------------------------------------------------------------------ API


def optimize_for_inference(
    model: nn.Module,
    *,
    precision: str = "fp32",
    backend: str = "auto",
    calibration: Iterable[np.ndarray | str | Path] | str | Path | None = None,
    threads: int | None = None,
    keep_edges_float: bool = True,
    calib_method: str = "minmax",
    graph: bytes | None = None,
    int8_max_mse: float | None = None,
) -> OptimizedModel:
    """The fastest measured CPU path for ``model`` (see the module docstring).

    ``precision``: 'fp32', 'bf16' or 'int8'. ``backend``: 'auto' (ONNX Runtime when installed, except bf16),
    'onnxruntime' or 'torch'. ``calibration`` (int8 only, required): images (uint8 RGB arrays or paths) or a
    directory (see :func:`calibration_inputs`), or model-space NCHW tensors used as they are (e.g.
    :func:`calibration_crops` of the inputs being processed). ``threads``: ONNX Runtime intra-op threads
    (default: torch's). ``keep_edges_float``: leave the first and last convolution in float32 (int8). ``graph``:
    the deploy-form network already exported to ONNX (e.g. from the tuning cache), instead of exporting it.
    ``int8_max_mse``: the accuracy budget of int8 (:func:`plan_int8`; None: :func:`int8_budget` of the model,
    ``math.inf``: quantise every convolution but the edges); the convolutions whose quantisation would cost more
    stay in float32 (``OptimizedModel.int8_plan`` says which)."""
    if precision not in CPU_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(CPU_PRECISIONS)}; got {precision!r}")
    if backend not in CPU_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(CPU_BACKENDS)}; got {backend!r}")
    have_ort = onnxruntime_available()
    if backend == "auto":
        backend = "onnxruntime" if have_ort and precision != "bf16" else "torch"
    if backend == "onnxruntime" and not have_ort:
        raise ValueError("backend='onnxruntime' needs the optional extra: pip install onnxruntime onnx")
    if backend == "onnxruntime" and precision == "bf16":
        raise ValueError("ONNX Runtime has no bfloat16 CPU convolutions; use backend='torch' for bf16")
    if backend == "torch" and precision == "int8":
        raise ValueError("int8 on CPU runs through ONNX Runtime: pip install onnxruntime onnx")
    net = deploy_copy(model)
    if backend == "torch":
        return OptimizedModel(net, precision=precision, backend="torch")
    graph = graph if graph is not None else export_onnx(net)
    if precision == "int8":
        if calibration is None:
            raise ValueError("precision='int8' needs calibration images (a few typical inputs or training images)")
        inputs = _calibration_tensors(net.meta, calibration)
        convs = _conv_names(graph)
        keep = [convs[0], convs[-1]] if keep_edges_float and len(convs) > 2 else []
        budget = int8_budget(net.meta) if int8_max_mse is None else float(int8_max_mse)
        plan, graph = plan_int8(graph, inputs, budget=budget, input_range=float(net.meta.input_range),
                                forced_float=keep, method=calib_method, threads=threads)
        if not plan.quantised:
            log.warning("int8: no convolution of %s/%s can be quantised within the accuracy budget (MSE %.2g on the "
                        "calibration inputs); it runs in float32", net.meta.family, net.meta.variant, budget)
        else:
            log.info("int8 plan for %s/%s: %s", net.meta.family, net.meta.variant, plan.describe())
        if not vnni():
            log.warning("int8 on a CPU without VNNI (AVX2 only) is rarely faster than float32 (docs/kernels.md)")
        runner = OptimizedModel(net, precision=precision, backend="onnxruntime", session=ort_session(graph, threads))
        runner.int8_plan = plan
        return runner
    return OptimizedModel(net, precision=precision, backend="onnxruntime", session=ort_session(graph, threads))


# --------------------------------------------------------------------------------- engine helpers


def _calibration_tensors(meta: Any, calibration: Any) -> list[Tensor]:
    if isinstance(calibration, Sequence) and not isinstance(calibration, str) and calibration and all(
            isinstance(t, Tensor) for t in calibration):
        return [t.detach().float().cpu() for t in calibration]
    return calibration_inputs(meta, calibration)


def calibration_crops(x: Tensor, *, count: int = CALIB_IMAGES, side: int = CALIB_SIDE,
                      multiple: int = 1) -> list[Tensor]:
    """Up to ``count`` crops (1, C, s, s) of a model-space NCHW batch ``x`` (the inputs being processed),
    ``s = min(side, H, W)`` rounded down to ``multiple``, spread over a grid of every image of the batch (int8
    calibration without training images)."""
    n, _, h, w = x.shape
    s = max(1, min(side, h, w))
    s = max(min(multiple, h, w), s // multiple * multiple)
    k = max(1, math.ceil(math.sqrt(count / max(1, n))))
    ys = sorted({round(v) for v in np.linspace(0, h - s, k)})
    xs = sorted({round(v) for v in np.linspace(0, w - s, k)})
    crops = [x[i:i + 1, :, y0:y0 + s, x0:x0 + s] for i in range(n) for y0 in ys for x0 in xs]
    step = max(1, len(crops) // count)
    return [c.detach().float().cpu().contiguous() for c in crops[::step][:count]]


class EagerModel(nn.Module):
    """The model as given (NCHW, float32) under ``inference_mode``: the reference the fast paths are timed
    against."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.source = model
        self.precision, self.backend = "fp32", "eager"

    @property
    def meta(self) -> Any:
        return self.source.meta

    def forward(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.source(x)


def best_time(fn: Callable[[Tensor], Tensor], x: Tensor, reps: int) -> float:
    """Seconds of the fastest of ``reps`` timed calls ``fn(x)``, after one untimed warm-up call."""
    fn(x)  # warm-up (first-call allocations, oneDNN primitive creation)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return best


def _close(y: Tensor, ref: Tensor, rtol: float = VERIFY_RTOL) -> bool:
    return y.shape == ref.shape and bool(torch.isfinite(y).all()) and (
        (y.float() - ref.float()).abs().max().item() <= rtol * max(1.0, ref.abs().max().item()))


def fp32_path(model: nn.Module, backend: str, probe: Tensor, *, graph: bytes | None = None,
              threads: int | None = None, verify: bool = True) -> nn.Module:
    """The float32 runner ``backend`` ("onnxruntime", "torch" or "eager") for ``model``, checked against the
    model on a crop of ``probe`` of at most ``VERIFY_SIDE`` px a side (as :func:`fastest_fp32` checks, without the
    timing); eager when it cannot be built or disagrees (with a warning). ``verify=False`` skips that check: for a
    choice read from the path cache, which :func:`fastest_fp32` verified on this machine for the same model bytes,
    size bucket and library versions before storing it (the check runs the unfused model: most of a small job's
    time after ``import torch``)."""
    eager = EagerModel(model)
    if backend == "eager":
        return eager
    crop = probe.detach().float().cpu()[..., :VERIFY_SIDE, :VERIFY_SIDE].contiguous()
    try:
        if backend == "onnxruntime" and not onnxruntime_available():
            raise ValueError("onnxruntime is not installed")
        runner = optimize_for_inference(model, precision="fp32", backend=backend, threads=threads, graph=graph)
        if not verify or _close(runner(crop), eager(crop)):
            return runner
        log.warning("fp32 CPU path %r differs from the model's output; running eager", backend)
    except Exception as e:  # noqa: BLE001 - an optional path that cannot run leaves the model as given
        log.warning("fp32 CPU path %r unavailable (%s); running eager", backend,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
    return eager


def fastest_fp32(model: nn.Module, probe: Tensor, *, candidates: Sequence[str] = FP32_CANDIDATES,
                 threads: int | None = None, reps: int = 2,
                 graph: bytes | None = None) -> tuple[nn.Module, dict[str, float]]:
    """The fastest float32 CPU runner for ``model`` on inputs like ``probe`` (model-space NCHW).

    Candidates: ``onnxruntime`` (:func:`optimize_for_inference` fp32: ONNX Runtime on the fused network),
    ``torch`` (the fused network in channels_last), ``eager`` (``model`` as given). ``model`` runs first on the
    probe (its errors, e.g. out of memory, propagate: they are the caller's); each other candidate must give
    the same output within ``VERIFY_RTOL`` (a traced graph that froze a size-dependent branch, or a broken
    ``fuse()``, is caught here) and is then run once and timed ``reps`` times; the best time wins. A candidate
    that cannot be built (onnxruntime missing, export failure), fails on the probe or disagrees is skipped with a
    warning. Returns the runner (``.backend`` names it) and the times in seconds."""
    probe = probe.detach().float().cpu().contiguous()
    eager = EagerModel(model)
    ref = eager(probe)
    times: dict[str, float] = {}
    runners: dict[str, nn.Module] = {}
    for name in candidates:
        if name not in FP32_CANDIDATES:
            raise ValueError(f"unknown fp32 candidate {name!r}; use {', '.join(FP32_CANDIDATES)}")
        try:
            if name == "eager":
                runner: nn.Module = eager
            elif name == "onnxruntime":
                if not onnxruntime_available():
                    continue
                runner = optimize_for_inference(model, precision="fp32", backend="onnxruntime", threads=threads,
                                                graph=graph)
            else:
                runner = optimize_for_inference(model, precision="fp32", backend="torch")
            if runner is not eager and not _close(runner(probe), ref):
                log.warning("fp32 CPU path %r skipped: its output differs from the model's on a %dx%d input", name,
                            probe.shape[-2], probe.shape[-1])
                continue
            times[name] = best_time(runner, probe, reps)
            runners[name] = runner
        except Exception as e:  # noqa: BLE001 - any failure of an optional path only removes that candidate
            log.warning("fp32 CPU path %r skipped: %s", name, str(e).splitlines()[0] if str(e) else type(e).__name__)
    if not times:  # only when "eager" is not a candidate
        runners["eager"], times["eager"] = eager, math.nan
    best = min(times, key=lambda k: (math.isnan(times[k]), times[k]))
    return runners[best], times
