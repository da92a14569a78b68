"""Triton device helper of :mod:`restore.ops.activation`: the activation epilogue the fused kernels share.

Written undecorated like the kernels and wrapped in :class:`restore.ops._triton.DeviceFunction`, so the same
helper serves compiled kernels (inlined) and interpreted ones (see :mod:`restore.ops._triton`).
"""

from __future__ import annotations

import triton.language as tl

from restore.ops._triton import DeviceFunction


def _activation(acc, ACT: tl.constexpr):
    """``act(acc)`` for the code ``ACT`` (:data:`restore.ops.activation.CODES`); float32 in and out."""
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    elif ACT == 2:
        acc = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476))
    elif ACT == 3:
        acc = acc / (1.0 + tl.exp(-acc))
    elif ACT == 4:
        e = tl.exp(-2.0 * tl.abs(acc))
        q = (1.0 - e) / (1.0 + e)
        acc = tl.where(acc < 0, -q, q)
    return acc


activation = DeviceFunction(_activation)
