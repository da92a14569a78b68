"""Large-kernel depthwise convolution (CFSR's 9x9 token mixer; any odd k from 3 to 31).

``lk_dwconv(x, weight, bias, activation)`` = ``act(conv2d(x, weight, bias, stride=1, padding=k // 2,
groups=C))`` for ``x`` (N, C, H, W) in float32/float16/bfloat16, NCHW or channels_last (any strides), and
``weight`` (C, 1, k, k) like an ``nn.Conv2d(C, C, k, groups=C)``. It dispatches (see
:mod:`restore.ops.dispatch`) to

* :func:`lk_dwconv_reference` -- the plain PyTorch code (``F.conv2d`` + activation), bit-identical to
  calling the ``nn.Conv2d``;
* :func:`lk_dwconv_triton` -- Triton kernels (float32 accumulation), wrapped in :class:`LKDWConvFunction` so
  that training works: forward, input gradient (the same kernel with the kernel flipped, which is the
  adjoint of a stride-1 'same' depthwise conv for odd k), weight gradient (a Triton reduction kernel,
  deterministic) and bias gradient (a PyTorch sum). With an activation, the backward pass recomputes the
  pre-activation with the forward kernel instead of storing it (saves one activation-sized tensor).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restore.ops import activation as act_mod
from restore.ops.dispatch import requested, use_triton

MIN_K, MAX_K = 3, 31


def lk_dwconv_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str = "none") -> Tensor:
    """The PyTorch reference: ``act(F.conv2d(x, weight, bias, 1, k // 2, 1, C))``."""
    k = weight.shape[-1]
    y = F.conv2d(x, weight, bias, 1, k // 2, 1, x.shape[1])
    return act_mod.apply(y, act_mod.check(activation))


def support_problem(x: Tensor, weight: Tensor, bias: Tensor | None) -> str | None:
    """Why the Triton kernel does not handle these arguments (None when it does)."""
    if x.ndim != 4:
        return f"input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}"
    c = x.shape[1]
    if weight.ndim != 4 or weight.shape[0] != c or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        return f"weight must be (C, 1, k, k) with C = {c}, got {tuple(weight.shape)}"
    k = weight.shape[-1]
    if k % 2 == 0 or not MIN_K <= k <= MAX_K:
        return f"kernel size must be odd and within {MIN_K}..{MAX_K}, got {k}"
    if bias is not None and tuple(bias.shape) != (c,):
        return f"bias must have shape ({c},), got {tuple(bias.shape)}"
    if x.numel() == 0:
        return "empty input"
    return None


def lk_dwconv(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """Depthwise k x k conv, stride 1, 'same' padding, + bias, + activation ('none', 'relu', 'gelu', 'silu',
    'tanh'); Triton when the dispatcher allows it, else the reference."""
    act = act_mod.check(activation)
    if use_triton("lk_dwconv", (x, weight, bias), support_problem(x, weight, bias)):
        return LKDWConvFunction.apply(x, weight, bias, act)
    return lk_dwconv_reference(x, weight, bias, act)


# ---------------------------------------------------------------------------------------------- Triton


def _strides(t: Tensor) -> tuple[int, int, int, int]:
    s = t.stride()
    return int(s[0]), int(s[1]), int(s[2]), int(s[3])


def _fwd_config(x: Tensor, c: int) -> tuple[int, int, int]:
    """(BLOCK_C, TILE_H, TILE_W): wide channel blocks when channels are the contiguous axis, else wide rows."""
    from restore.ops._triton import next_pow2

    if x.device.type == "cpu":  # Triton interpreter: few, large programs (numpy per op)
        return min(64, next_pow2(c)), 8, 8
    if x.stride(1) == 1 and c > 1:  # channels_last
        return min(64, next_pow2(c)), 2, 8
    return 1, 8, 32 if x.shape[-1] > 16 else 16


def _launch_fwd(x: Tensor, weight: Tensor, bias: Tensor | None, act: str, out_dtype: torch.dtype,
                config: tuple[int, int, int] | None = None) -> Tensor:
    from restore.ops import _lk_dwconv_kernels as kern
    from restore.ops._triton import launcher

    n, c, h, w = x.shape
    k = weight.shape[-1]
    y = torch.empty_like(x, dtype=out_dtype, memory_format=torch.preserve_format)
    wk = weight.reshape(c, k * k).contiguous()
    block_c, tile_h, tile_w = config or _fwd_config(x, c)
    grid = (triton_cdiv(h, tile_h) * triton_cdiv(w, tile_w), triton_cdiv(c, block_c), n)
    launcher(kern.dwconv_fwd, x.device)[grid](
        x, wk, bias if bias is not None else wk, y,
        c, h, w,
        *_strides(x), *_strides(y),
        K=k, HAS_BIAS=bias is not None, ACT=act_mod.CODES[act],
        BLOCK_C=block_c, TILE_H=tile_h, TILE_W=tile_w, num_warps=4,
    )
    return y


def _launch_bwd_weight(x: Tensor, g: Tensor, k: int, config: tuple[int, int, int] | None = None,
                       splits: int | None = None) -> Tensor:
    """sum over (n, h, w) of g * shifted x, as a float32 (C, 1, k, k) tensor."""
    from restore.ops import _lk_dwconv_kernels as kern
    from restore.ops._triton import launcher

    n, c, h, w = x.shape
    block_c, tile_h, tile_w = config or _fwd_config(x, c)
    c_blocks = triton_cdiv(c, block_c)
    tiles = n * triton_cdiv(h, tile_h) * triton_cdiv(w, tile_w)
    if splits is None:
        target = 4 if x.device.type == "cpu" else 4 * _sm_count(x.device)
        splits = max(1, min(tiles, -(-target // c_blocks)))
    part = torch.zeros(splits, c, k * k, device=x.device, dtype=torch.float32)
    launcher(kern.dwconv_bwd_weight, x.device)[(c_blocks, splits)](
        x, g, part,
        n, c, h, w,
        *_strides(x), *_strides(g),
        splits,
        K=k, BLOCK_C=block_c, TILE_H=tile_h, TILE_W=tile_w, num_warps=4,
    )
    return part.sum(0).view(c, 1, k, k)


def _sm_count(device: torch.device) -> int:
    return int(torch.cuda.get_device_properties(device).multi_processor_count)


def triton_cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def lk_dwconv_triton(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """The Triton path without the dispatcher (raises ValueError on unsupported arguments)."""
    problem = support_problem(x, weight, bias)
    if problem is not None:
        raise ValueError(f"lk_dwconv_triton: {problem}")
    return LKDWConvFunction.apply(x, weight, bias, act_mod.check(activation))


class LKDWConvFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton kernels (``apply(x, weight, bias_or_None, activation_name)``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, act: str) -> Tensor:
        ctx.act = act
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight, bias)
        return _launch_fwd(x, weight, bias, act, x.dtype)

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, bias = ctx.saved_tensors
        k = weight.shape[-1]
        if ctx.act == "none":
            gz = gy
        else:  # recompute the pre-activation (float32) instead of having stored it
            z = _launch_fwd(x, weight, bias, "none", torch.float32)
            gz = gy.float() * act_mod.derivative(z, ctx.act)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _launch_fwd(gz, weight.flip(-1, -2), None, "none", x.dtype)
        if ctx.needs_input_grad[1]:
            gw = _launch_bwd_weight(x, gz, k).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gz.float().sum(dim=(0, 2, 3)).to(bias.dtype)
        return gx, gw, gb, None


def run_depthwise(conv: nn.Module, x: Tensor, activation: str | None = None) -> Tensor:
    """For archs: ``act(conv(x))`` for a depthwise 'same' ``nn.Conv2d``, through the Triton kernel when the
    dispatcher picks it, else by calling the module exactly as before (so the reference path stays
    bit-identical and hooks / swapped-in modules keep working). Only a plain ``nn.Conv2d`` without hooks
    is a kernel candidate."""
    if (x.is_cuda or requested() == "triton") and _plain_depthwise(conv):
        problem = support_problem(x, conv.weight, conv.bias)
        act = act_mod.check(activation)
        if use_triton("lk_dwconv", (x, conv.weight, conv.bias), problem):
            return LKDWConvFunction.apply(x, conv.weight, conv.bias, act)
    return act_mod.apply(conv(x), act_mod.check(activation))


def _plain_depthwise(conv: nn.Module) -> bool:
    if type(conv) is not nn.Conv2d:
        return False
    k = conv.kernel_size[0]
    return (
        conv.kernel_size == (k, k) and conv.stride == (1, 1) and conv.padding == (k // 2, k // 2)
        and conv.dilation == (1, 1) and conv.groups == conv.in_channels == conv.out_channels
        and conv.padding_mode == "zeros" and not (conv._forward_hooks or conv._forward_pre_hooks)
    )
