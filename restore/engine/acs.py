"""Adaptive cropping strategy (ACS): overlapping corner crops, batched together, pasted back.

The strategy is the one the IMDN authors use to run IMDN_AS on images of any size (``crop_forward`` in
``test_IMDN_AS.py`` of https://github.com/Zheng222/IMDN; paper: Hui et al., "Lightweight Image
Super-Resolution with Information Multi-distillation Network", ACM MM 2019). This is an
independent implementation, extended with the recursive splitting of EDSR's ``forward_chop``:

* An ``H x W`` image is cut at ``H // 2`` and ``W // 2`` into four quadrants. Each quadrant is computed from
  the corner crop that contains it plus ``shave`` px beyond the cut: a crop is ``ceil(H/2) + shave`` px
  high (rounded up to the network's size multiple, so strided networks need no padding) and the same for
  the width. All four crops have the same size, so they go through the network as *one batch*; of each
  crop's output only its quadrant is kept (pasted into the output at that quadrant).
* A crop larger than ``min_size`` px (area) is split again the same way (and only the part of it that is
  kept is planned further, so sub-crops whose kept part is empty are dropped); the crops of a split that are
  small enough are batched together. Device memory is then bounded by ``4 * min_size`` px of activations.
  Below the first level a crop is split only if that at least halves its area: with a large ``shave`` the
  sub-crops of a small crop are almost as large as the crop itself (``ceil(L/2) + shave``), and splitting
  them would multiply the work without saving memory, so ``min_size`` is a target that such crops exceed.
* An axis too short to be split (``ceil(L/2) + shave >= L``) is kept whole; an image too small on both
  axes is one crop.

Every kept pixel is at least ``shave`` px away from every crop edge that is not the image border (the
official code rounds the crop size *down* to a multiple of 4, which can leave up to 4 px less; rounding up
is what makes the next point hold). For a network with a finite receptive field ``r``, ``shave >= r`` and
``size_multiple == 1``, ACS therefore reproduces the whole-image output up to float summation order. For
networks with global statistics (IMDN's contrast channel attention, ``receptive_field is None``) each crop
sees its own statistics and the result only approximates the whole image; the four crops overlap by
``2 * shave`` px but are not blended (hard seams at the cuts). For strided networks (``size_multiple > 1``)
the far crops start at ``H - crop``, which is off the stride grid unless ``H`` is a multiple too, so ACS is
exact for them only on such sizes; the grid tiler of :mod:`restore.engine.tiling` is exact on all sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from restore.engine.tiling import (
    Box,
    Forward,
    OutputArrays,
    Tile,
    forward_batch,
    output_dtype,
    round_up,
    store,
)


class _Span(NamedTuple):
    """A window ``[lo, hi)`` along one axis and the part ``[keep_lo, keep_hi)`` of it whose output is used."""

    lo: int
    hi: int
    keep_lo: int
    keep_hi: int


def split_span(span: _Span, shave: int, multiple: int = 1) -> list[_Span]:
    """Split one axis of a window into a near and a far crop (see the module docstring); ``[span]`` when the
    crops would be as long as the window. Crops whose kept part is empty are dropped."""
    n = span.hi - span.lo
    cut = span.lo + n // 2
    size = round_up(n - n // 2 + shave, multiple)
    if size >= n:
        return [span]
    near = _Span(span.lo, span.lo + size, max(span.keep_lo, span.lo), min(span.keep_hi, cut))
    far = _Span(span.hi - size, span.hi, max(span.keep_lo, cut), min(span.keep_hi, span.hi))
    return [s for s in (near, far) if s.keep_lo < s.keep_hi]


def _tile(ys: _Span, xs: _Span, scale: int) -> Tile:
    window = Box(ys.lo, ys.hi, xs.lo, xs.hi)
    paste = Box(ys.keep_lo, ys.keep_hi, xs.keep_lo, xs.keep_hi)
    crop = Box(paste.y0 - window.y0, paste.y1 - window.y0, paste.x0 - window.x0, paste.x1 - window.x0)
    return Tile(window=window, crop=crop.scaled(scale), paste=paste.scaled(scale))


def plan_acs(height: int, width: int, *, shave: int, multiple: int = 1, min_size: int | None = None,
             scale: int = 1) -> list[list[Tile]]:
    """Batches of crops for an ``height x width`` LR image; the crops of one batch have the same size.

    The image is always split once (where an axis is long enough); crops of more than ``min_size`` px
    (``None``: no limit) are split further. Crop / paste boxes follow :class:`restore.engine.tiling.Tile`.
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot crop a {height}x{width} image")
    if shave < 0:
        raise ValueError(f"shave must be >= 0, got {shave}")
    limit = None if min_size is None else max(1, int(min_size))
    batches: list[list[Tile]] = []

    def split(ys: _Span, xs: _Span, top: bool) -> list[tuple[_Span, _Span]] | None:
        parts = [(y, x) for y in split_span(ys, shave, multiple) for x in split_span(xs, shave, multiple)]
        if parts == [(ys, xs)]:
            return None
        y, x = parts[0]
        if not top and 2 * (y.hi - y.lo) * (x.hi - x.lo) > (ys.hi - ys.lo) * (xs.hi - xs.lo):
            return None  # crops this close to the window's size would cost compute without saving memory
        return parts

    def visit(ys: _Span, xs: _Span, top: bool) -> None:
        parts = split(ys, xs, top)
        if parts is None:  # too small to split
            batches.append([_tile(ys, xs, scale)])
            return
        y, x = parts[0]  # all crops of a split have the same size
        if limit is None or (y.hi - y.lo) * (x.hi - x.lo) <= limit or split(y, x, top=False) is None:
            batches.append([_tile(y, x, scale) for y, x in parts])
            return
        for y, x in parts:
            visit(y, x, top=False)

    visit(_Span(0, height, 0, height), _Span(0, width, 0, width), top=True)
    return batches


def run_acs(
    forward: Forward,
    x: np.ndarray,
    *,
    scale: int,
    shave: int,
    multiple: int = 1,
    min_size: int | None = None,
    out_dtype: type[np.generic] | np.dtype = np.float32,
    out: np.ndarray | Sequence[np.ndarray] | None = None,
) -> np.ndarray | Sequence[np.ndarray]:
    """Run ``forward`` over ``x`` (float32 HxWxC, or NxHxWxC for a batch of same-sized images) with ACS.

    Each batch of the plan (up to four crops, times N images) is one ``forward`` call on an NCHW tensor.
    ``out`` / ``out_dtype`` and the return value are as in :func:`restore.engine.tiling.run_tiled`.
    """
    xb, single = (x[None], True) if x.ndim == 3 else (x, False)
    if xb.ndim != 4:
        raise ValueError(f"expected an HxWxC or NxHxWxC array, got shape {x.shape}")
    n, h, w = xb.shape[:3]
    sink = OutputArrays(out, n, (h * scale, w * scale), output_dtype(out, out_dtype), single=single)
    for batch in plan_acs(h, w, shave=shave, multiple=multiple, min_size=min_size, scale=scale):
        crops = [xb[:, t.window.y0:t.window.y1, t.window.x0:t.window.x1] for t in batch]
        patch = np.ascontiguousarray(np.concatenate(crops, axis=0).transpose(0, 3, 1, 2))
        del crops
        y = forward_batch(forward, patch, scale)
        del patch
        dst = sink.get(y.shape[3])
        for k, t in enumerate(batch):
            c, p = t.crop, t.paste
            for i in range(n):
                store(dst[i][p.y0:p.y1, p.x0:p.x1], y[k * n + i, c.y0:c.y1, c.x0:c.x1])
    return sink.result()


def largest_crop(plan: list[list[Tile]]) -> int:
    """Area (LR px) of the largest crop of a plan."""
    return max(t.window.height * t.window.width for batch in plan for t in batch)
