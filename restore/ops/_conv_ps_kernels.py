"""Triton kernel of :mod:`restore.ops.conv_pixelshuffle` (a plain function; see :mod:`restore.ops._triton`).

Implicit GEMM: a program computes ``BLOCK_P`` low-resolution pixels (flattened over n, h, w) x ``BLOCK_CO``
conv output channels, reducing over ``C_in * 9`` in ``BLOCK_K`` chunks gathered on the fly (im2col in
registers) with ``tl.dot`` (float32 accumulation; IEEE float32 products for float32 inputs). The epilogue adds
the bias, applies the activation, adds the full-resolution residual and the nearest-upsampled low-resolution
skip, and stores each value straight to its pixel-shuffled place: conv channel ``co = c * S^2 + dy * S + dx``
at LR pixel (h, w) goes to output (c, h * S + dy, w * S + dx).
"""

from __future__ import annotations

import triton.language as tl

from restore.ops._act_kernels import activation


def conv3x3_ps_fwd(
    x_ptr, w_ptr, b_ptr, r_ptr, k_ptr, y_ptr,
    N, CIN, H, W, COUT,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    srn, src, srh, srw,
    skn, skc, skh, skw,
    S: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, HAS_SKIP: tl.constexpr,
    ACT: tl.constexpr, IEEE: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_CO: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_co = tl.program_id(1)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    hw = H * W
    pm = p < N * hw
    n = (p // hw).to(tl.int64)
    r = p % hw
    h = r // W
    w = r % W
    co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
    com = co < COUT
    ktot = CIN * 9
    x_pix = x_ptr + (n * sxn + h * sxh + w * sxw)[:, None]
    acc = tl.full((BLOCK_P, BLOCK_CO), 0.0, tl.float32)
    for k0 in range(0, ktot, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        km = k < ktot
        ci = k // 9
        t = k % 9
        di = t // 3 - 1
        dj = t % 3 - 1
        hh = h[:, None] + di[None, :]
        ww = w[:, None] + dj[None, :]
        am = pm[:, None] & km[None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        a = tl.load(x_pix + (ci.to(tl.int64) * sxc + di * sxh + dj * sxw)[None, :], mask=am, other=0.0)
        b = tl.load(w_ptr + co[None, :] * ktot + k[:, None], mask=km[:, None] & com[None, :], other=0.0)
        if DOT_F32:  # the Triton 3.8 interpreter multiplies bfloat16 dot operands as raw uint16
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        elif IEEE:
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
    if HAS_BIAS:
        acc += tl.load(b_ptr + co, mask=com, other=0.0).to(tl.float32)[None, :]
    acc = activation(acc, ACT)
    c = co // (S * S)
    sub = co % (S * S)
    dy = sub // S
    dx = sub % S
    oy = h[:, None] * S + dy[None, :]
    ox = w[:, None] * S + dx[None, :]
    m = pm[:, None] & com[None, :]
    if HAS_RES:
        r_off = n[:, None] * srn + c[None, :].to(tl.int64) * src + oy * srh + ox * srw
        acc += tl.load(r_ptr + r_off, mask=m, other=0.0).to(tl.float32)
    if HAS_SKIP:
        k_off = n[:, None] * skn + c[None, :].to(tl.int64) * skc + (h * skh + w * skw)[:, None]
        acc += tl.load(k_ptr + k_off, mask=m, other=0.0).to(tl.float32)
    y_off = n[:, None] * syn + c[None, :].to(tl.int64) * syc + oy * syh + ox * syw
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m)
