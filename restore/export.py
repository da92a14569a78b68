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


def export(weights: str | Path, output: str | Path, *, fuse: bool = False, key: str | None = None) -> ExportResult:
    from restore.archs.lora import ConvLoRA
    from restore.train.checkpoint import atomic_save
    from restore.train.networks import deploy_state_dict, to_deploy

    net, used = build_training_network(weights, key)
    ref = copy.deepcopy(net).eval()
    n_lora = sum(isinstance(m, ConvLoRA) for m in net.modules())
    deploy = to_deploy(net, fuse=fuse)
    sd = deploy_state_dict(deploy)
    out = Path(output)
    atomic_save(sd, out)
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
