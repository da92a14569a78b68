"""Architectures by BasicSR ``type`` name, ConvLoRA set-up and the deploy conversion (torch only, no basicsr).

The classes come from the one architecture table, :data:`restore.registry.ARCHS`:
``network_g: {type: SPAN, feature_channels: 26, upscale: 4}`` builds ``restore.archs.span.SPAN(
feature_channels=26, upscale=4)``. Checkpoints written by training carry an *arch record*
(``{"type", "kwargs", "lora"}``, see :func:`arch_record`) next to BasicSR's ``params`` / ``params_ema``, so
:func:`build_from_record` (used by ``restore export``) can rebuild the exact training-time module, including
ConvLoRA layers whose ``alpha`` cannot be read back from the weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from restore.registry import arch_class


def subpixel_overlap(to_scale: int, from_scale: int) -> torch.Tensor:
    """``(to_scale, from_scale)`` matrix: the share of each of ``from_scale`` equal cells of an LR pixel's side
    that falls in each of ``to_scale`` cells (rows sum to 1; 2 from 4 is the mean of pairs)."""
    a = torch.zeros(to_scale, from_scale, dtype=torch.float64)
    for i in range(to_scale):
        for k in range(from_scale):
            lo, hi = max(i / to_scale, k / from_scale), min((i + 1) / to_scale, (k + 1) / from_scale)
            a[i, k] = max(0.0, hi - lo) * to_scale
    return a


def subpixel_scale(n_out: int, out_channels: int) -> int:
    """The scale ``s`` of a conv with ``n_out = out_channels * s**2`` outputs feeding ``PixelShuffle(s)``."""
    s = round((n_out / out_channels) ** 0.5)
    if out_channels * s**2 != n_out:
        raise ValueError(f"a conv with {n_out} outputs does not feed PixelShuffle for {out_channels} channels")
    return s


def resample_subpixel_conv(weight: torch.Tensor, bias: torch.Tensor | None, *, out_channels: int,
                           to_scale: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Re-target a conv that feeds ``PixelShuffle(s)`` (``out_channels * s**2`` outputs) to scale ``to_scale``.

    Each output sub-pixel of the new scale becomes the area-weighted mean of the old scale's sub-pixels it
    overlaps inside the same LR pixel, so the new tail predicts the old network's HR output box-resampled to
    the new grid (e.g. an x4 model's output averaged over 2x2 blocks for x2) instead of starting from random
    weights. Used to warm-start an x2/x3 model from an x4 one (``path.resample_tail_g``)."""
    from_scale = subpixel_scale(weight.shape[0], out_channels)
    a = subpixel_overlap(to_scale, from_scale)
    rest = weight.shape[1:]
    w = weight.double().reshape(out_channels, from_scale, from_scale, -1)
    w = torch.einsum("ik,jl,cklr->cijr", a, a, w).reshape(out_channels * to_scale**2, *rest).to(weight.dtype)
    b = None
    if bias is not None:
        b = torch.einsum("ik,jl,ckl->cij", a, a, bias.double().reshape(out_channels, from_scale, from_scale))
        b = b.reshape(-1).to(bias.dtype)
    return w, b




def arch_signature(name: str) -> dict[str, inspect.Parameter]:
    """The constructor's keyword arguments (all our archs take keyword-only arguments)."""
    sig = inspect.signature(arch_class(name).__init__)
    return {n: p for n, p in sig.parameters.items() if n != "self" and p.kind is not p.VAR_KEYWORD}


def split_spec(spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``{"type": T, **kwargs}`` -> ``(T, kwargs)``."""
    kwargs = dict(spec)
    return str(kwargs.pop("type")), kwargs


def build_network(spec: Mapping[str, Any]) -> nn.Module:
    name, kwargs = split_spec(spec)
    return arch_class(name)(**kwargs)


# ------------------------------------------------------------------------------------------------ LoRA


def lora_targets(targets: str | Mapping[str, Any]) -> dict[str, tuple[int, float]]:
    """``"dsclora"`` (DSCLoRA's layer table) or an explicit ``{module: [rank, alpha]}``."""
    from restore.archs.lora import DSCF_LORA_TARGETS

    if isinstance(targets, str):
        if targets != "dsclora":
            raise ValueError(f"unknown LoRA preset {targets!r} (known: dsclora)")
        return dict(DSCF_LORA_TARGETS)
    return {str(k): (int(v[0]), float(v[1])) for k, v in targets.items()}


def add_lora(net: nn.Module, targets: Mapping[str, tuple[int, float]], *, fuse_first: bool = True) -> nn.Module:
    """Fuse a train-form net (``fuse_first``), inject ConvLoRA at ``targets``, freeze all but ``lora_A/B``."""
    from restore.archs.lora import inject_conv_lora, mark_only_lora_trainable

    if fuse_first and getattr(net, "form", "deploy") == "train" and hasattr(net, "fuse"):
        net = net.fuse()
    net = inject_conv_lora(net, targets)
    return mark_only_lora_trainable(net)


def arch_record(spec: Mapping[str, Any], lora: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint stores to rebuild the training-time module (plain types only)."""
    name, kwargs = split_spec(spec)
    rec: dict[str, Any] = {"type": name, "kwargs": _plain(kwargs), "lora": None}
    if lora is not None:
        rec["lora"] = {
            "targets": {k: [r, a] for k, (r, a) in lora_targets(lora["targets"]).items()},
            "fuse_first": bool(lora.get("fuse_first", True)),
        }
    return rec


def build_from_record(record: Mapping[str, Any]) -> nn.Module:
    net = build_network({"type": record["type"], **dict(record.get("kwargs") or {})})
    lora = record.get("lora")
    if lora:
        net = add_lora(net, lora_targets(lora["targets"]), fuse_first=bool(lora.get("fuse_first", True)))
    return net


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------------------------- deploy


@torch.no_grad()
def to_deploy(net: nn.Module, *, fuse: bool = True) -> nn.Module:
    """LoRA merged, then (``fuse``) every re-parameterisation folded: Conv3XC / CFSR branches / BatchNorm /
    weighted-conv density. Returns an eval-mode module (possibly a new one)."""
    from restore.archs.lora import merge_conv_lora

    net = merge_conv_lora(net.eval())
    if fuse and hasattr(net, "fuse"):
        net = net.fuse()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def deploy_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
