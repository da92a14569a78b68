"""Fused super-resolution tail: 3x3 conv -> PixelShuffle (+ bias, + activation, + residual, + LR skip).

``conv_pixelshuffle(x, weight, bias, scale, residual=None, skip_lr=None, activation=None)`` computes ::

    y = act(pixel_shuffle(conv2d(x, weight, bias, stride=1, padding=1), scale))
    y = y + residual                      # anything broadcastable to y: an HR image, a bicubic-upsampled
                                          # input, a per-channel constant such as CFSR's RGB mean
    y = y + nearest_upsample(skip_lr)     # an LR tensor (N, C, H, W) repeated scale x scale
                                          # (``repeat_interleave`` on H and W)

with ``weight`` (C * scale^2, C_in, 3, 3). The reference (:func:`conv_pixelshuffle_reference`) is those
PyTorch ops (bit-identical to the archs' ``nn.Sequential(conv, PixelShuffle)`` tails). The Triton kernel
writes every conv output value directly to its pixel-shuffled place with the epilogue fused, so the
``C * scale^2``-channel LR tensor is never stored. Forward only in Triton: :class:`ConvPixelShuffleFunction`
computes gradients by re-running the reference under autograd (documented fallback).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restore.ops import activation as act_mod
from restore.ops.dispatch import requested, use_triton


def nearest_up(x: Tensor, scale: int) -> Tensor:
    """Nearest-neighbour upsampling by an integer factor (each LR pixel repeated scale x scale)."""
    return x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def conv_pixelshuffle_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    scale: int,
    residual: Tensor | None = None,
    skip_lr: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """The PyTorch reference of :func:`conv_pixelshuffle`."""
    y = _act_residual(F.pixel_shuffle(F.conv2d(x, weight, bias, 1, 1), scale), activation, residual)
    if skip_lr is not None:
        y = y + nearest_up(skip_lr, scale)
    return y


def _act_residual(y: Tensor, activation: str | None, residual: Tensor | None) -> Tensor:
    """``act(y) + residual`` in PyTorch (no residual: ``act(y)``), the reference epilogue."""
    y = act_mod.apply(y, act_mod.check(activation))
    return y if residual is None else y + residual


def _out_shape(x: Tensor, weight: Tensor, scale: int) -> tuple[int, int, int, int]:
    n, _, h, w = x.shape
    return n, weight.shape[0] // (scale * scale), h * scale, w * scale


def support_problem(
    x: Tensor, weight: Tensor, bias: Tensor | None, scale: int, residual: Tensor | None, skip_lr: Tensor | None
) -> str | None:
    """Why the Triton kernel does not handle these arguments (None when it does)."""
    if x.ndim != 4:
        return f"input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}"
    if scale < 1:
        return f"scale must be >= 1, got {scale}"
    if weight.ndim != 4 or tuple(weight.shape[1:]) != (x.shape[1], 3, 3):
        return f"weight must be (C_out, {x.shape[1]}, 3, 3), got {tuple(weight.shape)}"
    if weight.shape[0] % (scale * scale):
        return f"{weight.shape[0]} output channels are not a multiple of scale^2 = {scale * scale}"
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        return f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}"
    out = _out_shape(x, weight, scale)
    for name, t, shape in (("residual", residual, out), ("skip_lr", skip_lr, (*out[:2], *x.shape[2:]))):
        if t is None:
            continue
        try:
            torch.broadcast_shapes(tuple(t.shape), shape)
            if t.ndim > 4 or torch.broadcast_shapes(tuple(t.shape), shape) != shape:
                raise RuntimeError
        except RuntimeError:
            return f"{name} of shape {tuple(t.shape)} does not broadcast to {shape}"
    if x.numel() == 0:
        return "empty input"
    return None


def conv_pixelshuffle(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    scale: int,
    residual: Tensor | None = None,
    skip_lr: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """3x3 conv + PixelShuffle(scale) + activation + residual + nearest-upsampled LR skip (see the module
    docstring); Triton when the dispatcher allows it, else the reference."""
    act = act_mod.check(activation)
    problem = support_problem(x, weight, bias, scale, residual, skip_lr)
    if use_triton("conv_pixelshuffle", (x, weight, bias, residual, skip_lr), problem):
        return ConvPixelShuffleFunction.apply(x, weight, bias, residual, skip_lr, scale, act)
    return conv_pixelshuffle_reference(x, weight, bias, scale, residual, skip_lr, act)


def upsample_tail(
    upsampler: nn.Module, x: Tensor, scale: int, *, residual: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """For archs: run an ``nn.Sequential(nn.Conv2d(3x3, padding 1), nn.PixelShuffle)`` tail, fused when the
    dispatcher picks Triton, else exactly as before (``act(upsampler(x)) + residual``), so the reference path
    stays bit-identical and module hooks / swapped-in modules (LoRA, quantised convs) keep working. Only a
    plain ``nn.Conv2d`` tail without hooks is a fusion candidate; any other tail always runs as modules."""
    if isinstance(upsampler, nn.Sequential) and len(upsampler) == 2 and _fusion_wanted(x):
        y = _fused(upsampler[0], upsampler[1], x, scale, residual, activation, outer=upsampler)
        if y is not None:
            return y
    return _act_residual(upsampler(x), activation, residual)


def shuffle_tail(
    conv: nn.Module, shuffle: nn.Module, x: Tensor, scale: int, *, residual: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """Like :func:`upsample_tail` for a tail held as two modules: ``act(shuffle(conv(x))) + residual``."""
    if _fusion_wanted(x):
        y = _fused(conv, shuffle, x, scale, residual, activation)
        if y is not None:
            return y
    return _act_residual(shuffle(conv(x)), activation, residual)


def _fusion_wanted(x: Tensor) -> bool:
    return x.is_cuda or requested() == "triton"


def _fused(conv: nn.Module, shuffle: nn.Module, x: Tensor, scale: int, residual: Tensor | None,
           activation: str | None, outer: nn.Module | None = None) -> Tensor | None:
    """The Triton tail, or None when these modules are not a plain fusable conv + shuffle or the
    dispatcher says reference (raises when Triton is forced but cannot run)."""
    hooked = [m for m in (outer, conv, shuffle) if m is not None and (m._forward_hooks or m._forward_pre_hooks)]
    plain = (
        type(conv) is nn.Conv2d
        and isinstance(shuffle, nn.PixelShuffle)
        and shuffle.upscale_factor == scale
        and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
    )
    if not plain or hooked:
        return None
    act = act_mod.check(activation)
    problem = support_problem(x, conv.weight, conv.bias, scale, residual, None)
    if not use_triton("conv_pixelshuffle", (x, conv.weight, conv.bias, residual), problem):
        return None
    return ConvPixelShuffleFunction.apply(x, conv.weight, conv.bias, residual, None, scale, act)


# ---------------------------------------------------------------------------------------------- Triton


def _strides(t: Tensor) -> tuple[int, int, int, int]:
    s = t.stride()
    return int(s[0]), int(s[1]), int(s[2]), int(s[3])


def _config(x: Tensor, cout: int) -> tuple[int, int, int]:
    """(BLOCK_P, BLOCK_CO, BLOCK_K); tl.dot needs every dimension >= 16."""
    from restore.ops._triton import next_pow2

    block_co = max(16, min(64, next_pow2(cout)))
    if x.device.type == "cpu":  # interpreter: few, large programs
        return 128, block_co, 64
    return 64, block_co, 32


def _launch(x: Tensor, weight: Tensor, bias: Tensor | None, scale: int, residual: Tensor | None,
            skip_lr: Tensor | None, act: str, config: tuple[int, int, int] | None = None) -> Tensor:
    from restore.ops import _conv_ps_kernels as kern
    from restore.ops._triton import launcher

    n, cin, h, w = x.shape
    cout = weight.shape[0]
    shape = _out_shape(x, weight, scale)
    fmt = torch.channels_last if x.stride(1) == 1 and cin > 1 and x.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format
    y = torch.empty(shape, device=x.device, dtype=x.dtype, memory_format=fmt)
    wk = weight.reshape(cout, cin * 9).contiguous()
    res = residual.expand(shape) if residual is not None else y
    skip = skip_lr.expand(*shape[:2], h, w) if skip_lr is not None else y
    block_p, block_co, block_k = config or _config(x, cout)
    grid = (-(-(n * h * w) // block_p), -(-cout // block_co))
    launcher(kern.conv3x3_ps_fwd, x.device)[grid](
        x, wk, bias if bias is not None else wk, res, skip, y,
        n, cin, h, w, cout,
        *_strides(x), *_strides(y), *_strides(res), *_strides(skip),
        S=scale, HAS_BIAS=bias is not None, HAS_RES=residual is not None, HAS_SKIP=skip_lr is not None,
        ACT=act_mod.CODES[act], IEEE=x.dtype == torch.float32,
        DOT_F32=x.dtype == torch.bfloat16 and x.device.type == "cpu",
        BLOCK_P=block_p, BLOCK_CO=block_co, BLOCK_K=block_k, num_warps=4,
    )
    return y


def conv_pixelshuffle_triton(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    scale: int,
    residual: Tensor | None = None,
    skip_lr: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """The Triton path without the dispatcher (raises ValueError on unsupported arguments)."""
    problem = support_problem(x, weight, bias, scale, residual, skip_lr)
    if problem is not None:
        raise ValueError(f"conv_pixelshuffle_triton: {problem}")
    return ConvPixelShuffleFunction.apply(x, weight, bias, residual, skip_lr, scale, act_mod.check(activation))


class ConvPixelShuffleFunction(torch.autograd.Function):
    """Triton forward; the backward pass re-runs :func:`conv_pixelshuffle_reference` under autograd."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, residual: Tensor | None,
                skip_lr: Tensor | None, scale: int, act: str) -> Tensor:
        ctx.scale, ctx.act = scale, act
        ctx.save_for_backward(x, weight, bias, residual, skip_lr)
        return _launch(x, weight, bias, scale, residual, skip_lr, act)

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad[:5]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(bool(nd)) if t is not None else None
                      for t, nd in zip(saved, needs, strict=True)]
            y = conv_pixelshuffle_reference(*leaves[:3], ctx.scale, leaves[3], leaves[4], ctx.act)
            wanted = [t for t, nd in zip(leaves, needs, strict=True) if t is not None and nd]
            grads = iter(torch.autograd.grad(y, wanted, gy))
        out = [next(grads) if t is not None and nd else None for t, nd in zip(leaves, needs, strict=True)]
        return (*out, None, None)
