"""``restore export``: a training checkpoint -> a deploy-form state dict that ``restore.load_model`` detects.

Input: a checkpoint written by ``restore train`` (``params`` / ``params_ema`` + the ``restore_arch``
record) or any checkpoint the loader recognises. The EMA weights are used when present (``--key`` picks
explicitly). ConvLoRA adapters are always merged into their convs (the record holds each layer's rank and
alpha); with ``--fuse`` every re-parameterisation is folded too: SPAN's ``Conv3XC`` -> ``eval_conv``,
CFSR's edge/large-kernel branches, DnCNN's BatchNorm and weighted-conv density (plain biased convs, KAIR
layout). The output is a flat state dict, written atomically, then read back through the loader and
checked against the training-time network on a random input.

Imports torch and ``restore`` only (no basicsr): exporting does not need the ``train`` extra.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restore.weights import ModelLoadError, build_from_state_dict, check_finite, read_checkpoint, unwrap_state_dict

CHECK_TOLERANCE = 1e-3  # max |difference| on a [0, 1]-range output; fusing is exact up to float rounding


@dataclass
class ExportResult:
    output: Path
    description: str
    source_key: str
    fused: bool
    lora_merged: int
    max_abs_diff: float


def _read(path: Path, key: str | None) -> tuple[dict[str, torch.Tensor], dict | None, str]:
    obj = read_checkpoint(path)
    record = obj.get("restore_arch") if isinstance(obj, dict) else None
    if key is not None:
        if not isinstance(obj, dict) or not isinstance(obj.get(key), dict):
            raise ModelLoadError(f"{path}: no {key!r} entry (found {list(obj)[:6] if isinstance(obj, dict) else obj})")
        return unwrap_state_dict(obj[key], source=str(path)), record, key
    if isinstance(obj, dict):
        for k in ("params_ema", "params"):
            if isinstance(obj.get(k), dict):
                return unwrap_state_dict(obj[k], source=str(path)), record, k
    return unwrap_state_dict(obj, source=str(path)), record, "(flat)"


def build_training_network(path: str | Path, key: str | None = None) -> tuple[nn.Module, str]:
    """The network stored in ``path`` in its training-time form (LoRA layers included), eval mode."""
    from restore.train.networks import build_from_record

    p = Path(path)
    sd, record, used = _read(p, key)
    check_finite(sd, source=str(p))
    if record is None:
        return build_from_state_dict(sd, source=str(p)), used
    try:
        net = build_from_record(record)
        net.load_state_dict(sd, strict=True)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged record or mismatched weights, wherever it breaks
        what = record.get("type") if isinstance(record, dict) else record
        raise ModelLoadError(f"{p}: weights do not fit the recorded {what} network "
                             f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})"
                             ) from None
    return net.eval(), used


def export(weights: str | Path, output: str | Path, *, fuse: bool = False, key: str | None = None,
           overwrite: bool = True) -> ExportResult:
    from restore.archs.lora import ConvLoRA
    from restore.train.checkpoint import atomic_save
    from restore.train.networks import deploy_state_dict, to_deploy

    net, used = build_training_network(weights, key)
    ref = copy.deepcopy(net).eval()
    n_lora = sum(isinstance(m, ConvLoRA) for m in net.modules())
    deploy = to_deploy(net, fuse=fuse)
    sd = deploy_state_dict(deploy)
    out = Path(output)
    atomic_save(sd, out, overwrite=overwrite)
    loaded = build_from_state_dict(sd, source=str(out))
    meta = loaded.meta
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, meta.in_channels, 19, 23, generator=gen) * meta.input_range
    with torch.no_grad():
        diff = float((loaded(x) - ref(x)).abs().max()) / meta.input_range
    if diff > CHECK_TOLERANCE:
        out.unlink(missing_ok=True)
        raise ModelLoadError(f"{weights}: exported network differs from the trained one by {diff:.3g}")
    desc = f"{meta.family} {meta.variant} x{meta.scale} ({meta.task}), {meta.form} form, {meta.params:,d} parameters"
    return ExportResult(output=out, description=desc, source_key=used, fused=fuse, lora_merged=n_lora,
                        max_abs_diff=diff)


@dataclass
class OnnxExportResult:
    output: Path
    description: str
    source_key: str
    opset: int
    fp16: bool
    max_abs_diff: float  # ONNX Runtime vs PyTorch, over the checked sizes, on the [0, 1] scale (NaN: not checked)
    sizes: list[tuple[int, int]]
    metadata: dict[str, str]


ONNX_CHECK_SIDES = ((17, 23), (31, 9), (40, 40))  # odd sizes (rounded up to the model's size multiple)
ONNX_TOLERANCE = 1e-4


def onnx_metadata(meta: Any) -> dict[str, str]:
    """What a runtime needs to feed the graph right, as ONNX metadata properties (strings)."""
    from restore._version import __version__

    keys = ("family", "variant", "task", "scale", "in_channels", "out_channels", "input_range", "color_space",
            "size_multiple", "receptive_field")
    props = {f"restore.{k}": str(getattr(meta, k)) for k in keys}
    props["restore.version"] = __version__
    props["restore.io"] = ("input x: float NCHW in [0, input_range] (RGB, gray, or full-range Y for y_full models), "
                           "height and width multiples of size_multiple; output y: the same, scale times larger")
    return props


def export_onnx(weights: str | Path, output: str | Path, *, key: str | None = None, fp16: bool = False,
                opset: int = 17, overwrite: bool = True) -> OnnxExportResult:
    """``restore export --onnx``: the fused deploy form as an ONNX graph with dynamic batch / height / width and
    the model's conventions in its metadata; checked with ONNX Runtime against PyTorch at several odd sizes
    (fp32: within ``ONNX_TOLERANCE``). ``fp16``: weights and arithmetic in float16 (inputs and outputs stay
    float32), for GPU runtimes; checked with a looser bound where the CPU runtime can run it."""
    import onnx

    from restore.engine.cpu_paths import export_onnx as to_onnx
    from restore.io.files import publish_bytes
    from restore.train.networks import to_deploy

    net, used = build_training_network(weights, key)
    deploy = to_deploy(net, fuse=True)
    meta = deploy.meta
    try:
        graph = to_onnx(deploy, opset=opset)
    except Exception as e:  # noqa: BLE001 - an operator ONNX cannot express at this opset
        raise ModelLoadError(f"{weights}: cannot export {meta.family}/{meta.variant} to ONNX opset {opset} "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    model = onnx.load_from_string(graph)
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(model, keep_io_types=True)
    props = onnx_metadata(meta)
    props["restore.precision"] = "fp16" if fp16 else "fp32"
    onnx.helper.set_model_props(model, props)
    data = model.SerializeToString()
    diff, sizes = _check_onnx(deploy, data, meta, strict=not fp16)
    publish_bytes(Path(output), data, overwrite=overwrite)
    desc = f"{meta.family} {meta.variant} x{meta.scale} ({meta.task}), {meta.params:,d} parameters"
    return OnnxExportResult(output=Path(output), description=desc, source_key=used, opset=opset, fp16=fp16,
                            max_abs_diff=diff, sizes=sizes, metadata=props)


def _check_onnx(net: nn.Module, data: bytes, meta: Any, *, strict: bool) -> tuple[float, list[tuple[int, int]]]:
    """Largest |ONNX Runtime - PyTorch| (on the [0, 1] scale) over :data:`ONNX_CHECK_SIDES`; NaN when the CPU
    runtime cannot run the graph (fp16 only: strict exports must run)."""
    import numpy as np

    from restore.engine.cpu_paths import ort_session

    try:
        session = ort_session(data)
    except Exception as e:  # noqa: BLE001
        if strict:
            raise ModelLoadError(f"the exported graph does not load in ONNX Runtime ({str(e).splitlines()[0]})") \
                from None
        return float("nan"), []
    m = max(1, int(meta.size_multiple))
    gen = torch.Generator().manual_seed(0)
    worst, sizes = 0.0, []
    for n, (h, w) in enumerate(ONNX_CHECK_SIDES):
        h, w = -(-h // m) * m, -(-w // m) * m
        x = torch.rand(1 + n % 2, meta.in_channels, h, w, generator=gen) * meta.input_range
        with torch.no_grad():
            ref = net(x).numpy()
        got = session.run(None, {"x": x.numpy().astype(np.float32)})[0]
        worst = max(worst, float(np.abs(got.astype(np.float64) - ref).max()) / float(meta.input_range))
        sizes.append((h, w))
    if strict and worst > ONNX_TOLERANCE:
        raise ModelLoadError(f"the exported graph differs from PyTorch by {worst:.3g} (> {ONNX_TOLERANCE:g})")
    return worst, sizes

