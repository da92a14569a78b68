"""Triton kernels of :mod:`restore.ops.lk_dwconv` (plain functions; see :mod:`restore.ops._triton`).

Layout-agnostic: every tensor comes with its four element strides, so NCHW and channels_last (and any other
strided view) use the same code; Triton specialises strides equal to 1, which gives coalesced accesses along
W for NCHW and along C for channels_last. A program owns ``BLOCK_C`` channels x a ``TILE_H x TILE_W`` tile of
one image; accumulation is float32 whatever the storage dtype.
"""

from __future__ import annotations

import triton.language as tl

from restore.ops._act_kernels import activation


def dwconv_fwd(
    x_ptr, w_ptr, b_ptr, y_ptr,
    C, H, W,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_C: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr,
):
    """y = act(depthwise_conv(x, w) + b), 'same' padding (K odd), stride 1; w is (C, K*K) contiguous."""
    pid_s = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    tiles_w = (W + TILE_W - 1) // TILE_W
    th = pid_s // tiles_w
    tw = pid_s % tiles_w
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.arange(0, TILE_H * TILE_W)
    h = th * TILE_H + p // TILE_W
    w = tw * TILE_W + p % TILE_W
    cm = c < C
    pad = K // 2
    x_base = x_ptr + n * sxn + c[:, None].to(tl.int64) * sxc
    w_base = w_ptr + c * (K * K)
    acc = tl.full((BLOCK_C, TILE_H * TILE_W), 0.0, tl.float32)
    w0 = w - pad
    for i in range(K):
        hi = h + (i - pad)
        row = x_base + (hi * sxh)[None, :]
        mrow = cm[:, None] & ((hi >= 0) & (hi < H))[None, :]
        for j in range(K):
            wj = w0 + j
            m = mrow & ((wj >= 0) & (wj < W))[None, :]
            xv = tl.load(row + (wj * sxw)[None, :], mask=m, other=0.0)
            wv = tl.load(w_base + (i * K + j), mask=cm, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[:, None]
    if HAS_BIAS:
        acc += tl.load(b_ptr + c, mask=cm, other=0.0).to(tl.float32)[:, None]
    acc = activation(acc, ACT)
    out_m = cm[:, None] & ((h < H) & (w < W))[None, :]
    y_off = n * syn + c[:, None].to(tl.int64) * syc + (h * syh + w * syw)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=out_m)


def dwconv_bwd_weight(
    x_ptr, g_ptr, part_ptr,
    N, C, H, W,
    sxn, sxc, sxh, sxw,
    sgn, sgc, sgh, sgw,
    SPLITS,
    K: tl.constexpr, BLOCK_C: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr,
):
    """part[s, c, i*K+j] = sum over the tiles of split s of g[n,c,h,w] * x[n,c,h+i-pad,w+j-pad].

    Grid (channel blocks, SPLITS). Each program walks its tiles (tile t = s, s + SPLITS, ...), loads the
    gradient tile once and, for every tap, the shifted input tile (cache hits), adding the per-channel dot
    product into its own slice of ``part`` (float32, zero-initialised; no other program writes it, so the
    result is deterministic). The caller sums over s."""
    pid_c = tl.program_id(0)
    s = tl.program_id(1)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = c < C
    p = tl.arange(0, TILE_H * TILE_W)
    pad = K // 2
    tiles_w = (W + TILE_W - 1) // TILE_W
    tiles_per_img = ((H + TILE_H - 1) // TILE_H) * tiles_w
    total = N * tiles_per_img
    part_base = part_ptr + (s * C + c) * (K * K)
    for t in range(s, total, SPLITS):
        n = (t // tiles_per_img).to(tl.int64)
        r = t % tiles_per_img
        h = (r // tiles_w) * TILE_H + p // TILE_W
        w = (r % tiles_w) * TILE_W + p % TILE_W
        pm = (h < H) & (w < W)
        g_off = n * sgn + c[:, None].to(tl.int64) * sgc + (h * sgh + w * sgw)[None, :]
        g = tl.load(g_ptr + g_off, mask=cm[:, None] & pm[None, :], other=0.0).to(tl.float32)
        x_base = x_ptr + n * sxn + c[:, None].to(tl.int64) * sxc
        w0 = w - pad
        for i in range(K):
            hi = h + (i - pad)
            row = x_base + (hi * sxh)[None, :]
            mrow = cm[:, None] & (pm & (hi >= 0) & (hi < H))[None, :]
            for j in range(K):
                wj = w0 + j
                m = mrow & ((wj >= 0) & (wj < W))[None, :]
                xv = tl.load(row + (wj * sxw)[None, :], mask=m, other=0.0)
                v = tl.reduce(g * xv.to(tl.float32), 1, tl.standard._sum_combine)
                ptr = part_base + (i * K + j)
                tl.store(ptr, tl.load(ptr, mask=cm, other=0.0) + v, mask=cm)
