"""Memory-bounded tiled inference: tile planning and assembly into a preallocated CPU array.

The LR image is split into a grid of *cores* (each at most ``tile`` px a side, balanced, every core start a
multiple of ``size_multiple``). Each core is run through the network inside a larger *window*, and the
output is written tile by tile into a numpy array on the CPU (uint8 / uint16 / float32): the device never
holds more than one window's activations, and no full-size float output is ever built for integer outputs.

Two modes:

* **exact** (``feather=False``; networks with a finite receptive field ``r``): the window is the core plus
  ``context >= r`` px on every side (clipped at the image border), and only the core's output is kept.
  Every kept output pixel then sees exactly the input (and the zero padding at the *image* border) that it
  sees in a whole-image run, so the result equals the whole-image output up to float summation order.
  ``context`` must be a multiple of ``size_multiple``: together with aligned core starts this keeps every
  window start on the stride grid of networks that downsample internally (stride-2/4 convs), so the
  window's feature grid is the whole image's feature grid shifted by a whole number of cells. Windows that
  end at the image's bottom/right edge have the same remainder modulo the multiple as the whole image,
  and the runner's reflect padding to the multiple (inside ``forward``) then pads them exactly as it pads
  the whole image, provided the window is longer than that padding (true when ``context >= multiple``).
* **feathered** (``feather=True``; networks with global statistics, ``receptive_field is None``, such as
  IMDN's contrast channel attention): no context can make tiles exact, because every output pixel depends
  on statistics of the whole input. Neighbouring windows then overlap by ``2 * context`` px (``context``
  on each side of a core boundary), and each window's whole output is blended in with separable linear
  ramps that go from 0 to 1 across the overlap; the ramps of the two tiles at a boundary sum to one, so a
  region covered by one tile is that tile's output and the seams are cross-fades. The result approximates
  the whole-image output (the error is how much the global statistics of a window differ from the whole
  image's). To keep memory bounded, blending uses a float32 accumulator one tile-row high (window height
  x output width): rows are written to the output as soon as no later tile row touches them.

With ``tile`` at least the image size there is one tile (the whole image) and both modes reduce to a plain
whole-image forward pass.

Batches: :func:`run_tiled` also takes NxHxWxC input (same-sized frames or planes). The plan is the same for
all N images, and each window goes through the network for all of them in one call (a batch of N), so
the device holds N windows' activations; the caller sizes the tile for that (``Restorer.auto_tile(n)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from restore import pixels

Forward = Callable[[torch.Tensor], torch.Tensor]


class Box(NamedTuple):
    """Half-open rectangle ``[y0, y1) x [x0, x1)``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def scaled(self, s: int) -> Box:
        return Box(self.y0 * s, self.y1 * s, self.x0 * s, self.x1 * s)


@dataclass(frozen=True)
class Tile:
    """One tile of a plan.

    ``window``: input region (LR px) fed to the network, context included. ``crop``: the part of the
    window's output that is used (output px, relative to the window's output). ``paste``: where that part
    goes in the full output (output px). ``ramps``: feathering half-widths in LR px at the top, bottom,
    left and right of the window (0 = hard edge: image border, or exact mode).
    """

    window: Box
    crop: Box
    paste: Box
    ramps: tuple[int, int, int, int] = (0, 0, 0, 0)


def round_up(v: int, m: int) -> int:
    m = max(1, m)
    return -(-v // m) * m


def round_down(v: int, m: int) -> int:
    m = max(1, m)
    return (v // m) * m


def context_for(receptive_field: int | None, multiple: int, overlap: int | None = None,
                *, default_overlap: int = 32) -> int:
    """Context (exact mode) or overlap (feathered mode) in LR px, a multiple of ``multiple``.

    Finite receptive field: ``max(receptive_field, overlap or 0)`` rounded up (never below the receptive
    field, so tiles stay exact), and at least one ``multiple`` when the multiple is > 1 (so edge windows can
    be reflect-padded like the whole image). ``None`` (global statistics): ``overlap`` (default
    ``default_overlap``) rounded up.
    """
    mult = max(1, multiple)
    if receptive_field is None:
        return round_up(default_overlap if overlap is None else max(0, overlap), mult)
    ctx = round_up(max(receptive_field, overlap or 0, 0), mult)
    return max(ctx, mult) if mult > 1 else ctx


def split_axis(length: int, tile: int, multiple: int = 1) -> list[int]:
    """Core boundaries ``[0, b1, ..., length]`` along one axis: as few cores as possible, each at most
    ``round_down(tile, multiple)`` long (but at least one multiple), sizes balanced, interior boundaries
    multiples of ``multiple``."""
    if length <= 0:
        raise ValueError(f"cannot tile an axis of length {length}")
    mult = max(1, multiple)
    blocks = -(-length // mult)
    per_tile = max(1, tile // mult)
    n = -(-blocks // per_tile)
    bounds = [mult * ((k * blocks) // n) for k in range(n)]
    return [*bounds, length]


def _axis_ramps(bounds: list[int], overlap: int, multiple: int) -> list[int]:
    """Feather half-width at each interior boundary (aligned to ``multiple``), small enough that the
    ramps of one core never overlap and never reach past the image edge."""
    cores = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    n = len(cores)
    out: list[int] = []
    for k in range(1, n):
        left, right = cores[k - 1], cores[k]
        lim_left = left if k - 1 == 0 else left // 2
        lim_right = right if k == n - 1 else right // 2
        out.append(round_down(min(overlap, lim_left, lim_right), multiple))
    return out


def plan_tiles(
    height: int,
    width: int,
    *,
    tile: int,
    context: int,
    multiple: int = 1,
    scale: int = 1,
    feather: bool = False,
) -> list[Tile]:
    """Row-major tiles covering an ``height x width`` LR image (see the module docstring for the modes).

    ``context`` (exact) / overlap (feathered) must be a multiple of ``multiple``; ``tile`` is rounded down to
    it (at least one multiple).
    """
    mult = max(1, multiple)
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if context < 0 or context % mult:
        raise ValueError(f"context {context} must be a non-negative multiple of {mult}")
    ys, xs = split_axis(height, tile, mult), split_axis(width, tile, mult)
    if feather:
        return _plan_feathered(ys, xs, context, mult, scale)
    tiles: list[Tile] = []
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            win = Box(max(0, y0 - context), min(height, y1 + context),
                      max(0, x0 - context), min(width, x1 + context))
            core = Box(y0, y1, x0, x1)
            crop = Box(y0 - win.y0, y1 - win.y0, x0 - win.x0, x1 - win.x0).scaled(scale)
            tiles.append(Tile(window=win, crop=crop, paste=core.scaled(scale)))
    return tiles


def _plan_feathered(ys: list[int], xs: list[int], overlap: int, mult: int, scale: int) -> list[Tile]:
    ry, rx = _axis_ramps(ys, overlap, mult), _axis_ramps(xs, overlap, mult)
    tiles: list[Tile] = []
    for i in range(len(ys) - 1):
        top = ry[i - 1] if i > 0 else 0
        bottom = ry[i] if i < len(ry) else 0
        for j in range(len(xs) - 1):
            left = rx[j - 1] if j > 0 else 0
            right = rx[j] if j < len(rx) else 0
            win = Box(ys[i] - top, ys[i + 1] + bottom, xs[j] - left, xs[j + 1] + right)
            crop = Box(0, win.height, 0, win.width).scaled(scale)
            ramps = (top, bottom, left, right)
            tiles.append(Tile(window=win, crop=crop, paste=win.scaled(scale), ramps=ramps))
    return tiles


def axis_weights(length: int, lo: int, hi: int, scale: int) -> np.ndarray:
    """1-D feather weights over ``length`` output px: a linear ramp up over the first ``2*lo*scale`` px,
    down over the last ``2*hi*scale`` px (pixel-centre sampled, so two facing ramps sum to one), 1 between."""
    w = np.ones(length, dtype=np.float32)
    if lo:
        n = 2 * lo * scale
        w[:n] = (np.arange(n, dtype=np.float32) + 0.5) / n
    if hi:
        n = 2 * hi * scale
        w[length - n:] *= 1.0 - (np.arange(n, dtype=np.float32) + 0.5) / n
    return w


def max_window(tile: int, context: int, multiple: int = 1) -> int:
    """Upper bound on a window side for these settings (for memory estimates and tests)."""
    return max(max(1, multiple), round_down(tile, multiple)) + 2 * context


def store(dst: np.ndarray, src: np.ndarray) -> None:
    """Write float ``src`` into ``dst`` in dst's dtype (integers: clip, scale, round half to even)."""
    if np.issubdtype(dst.dtype, np.integer):
        dst[...] = pixels.to_uint(src, dst.dtype.type)
    else:
        dst[...] = src


def _batched(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(NxHxWxC view, was_single)`` for an HxWxC or NxHxWxC input."""
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"expected an HxWxC or NxHxWxC array, got shape {x.shape}")


def forward_windows(forward: Forward, x: np.ndarray, win: Box, scale: int) -> np.ndarray:
    """Run one window of every image of the batch ``x`` (NxHxWxC float32) in one call; returns the
    outputs as float32 NxHsxWsxC' on the CPU."""
    patch = np.ascontiguousarray(x[:, win.y0:win.y1, win.x0:win.x1].transpose(0, 3, 1, 2))
    return forward_batch(forward, patch, scale)


def forward_batch(forward: Forward, patch: np.ndarray, scale: int) -> np.ndarray:
    """``forward`` on an NCHW float32 array; checks the output shape, returns float32 NHWC on the CPU."""
    n, _, h, w = patch.shape
    y = forward(torch.from_numpy(patch))
    expected = (n, h * scale, w * scale)
    if y.ndim != 4 or (y.shape[0], *y.shape[-2:]) != expected:
        raise ValueError(f"forward returned {tuple(y.shape)} for {n} window(s) of {h}x{w}; "
                         f"expected ({n}, C, {expected[1]}, {expected[2]})")
    out = y.detach().float().cpu().numpy().transpose(0, 2, 3, 1)
    del y
    return out


class OutputArrays:
    """The output arrays of a (batched) run: given by the caller (an array / view, an NxHxWxC array or a
    sequence of N arrays) or allocated on first use, when the network's channel count is known."""

    def __init__(self, out: np.ndarray | Sequence[np.ndarray] | None, n: int, size: tuple[int, int],
                 dtype: np.dtype, *, single: bool) -> None:
        self.given, self.n, self.size, self.dtype, self.single = out, n, size, dtype, single
        self.arrays: list[np.ndarray] | None = None
        self.block: np.ndarray | None = None

    def get(self, channels: int) -> list[np.ndarray]:
        if self.arrays is not None:
            return self.arrays
        shape = (*self.size, channels)
        if self.given is None:
            self.block = np.empty((self.n, *shape), dtype=self.dtype)
            self.arrays = list(self.block)
            return self.arrays
        arrays = [self.given] if isinstance(self.given, np.ndarray) and self.single else list(self.given)
        if len(arrays) != self.n:
            raise ValueError(f"{len(arrays)} output arrays for a batch of {self.n}")
        for a in arrays:
            if tuple(a.shape) != shape:
                raise ValueError(f"output array has shape {tuple(a.shape)}, expected {shape}")
        self.arrays = arrays
        return arrays

    def result(self) -> np.ndarray | Sequence[np.ndarray]:
        if self.given is not None:
            return self.given
        assert self.block is not None
        return self.block[0] if self.single else self.block


def output_dtype(out: np.ndarray | Sequence[np.ndarray] | None, out_dtype: type[np.generic] | np.dtype) -> np.dtype:
    if out is None:
        dtype = np.dtype(out_dtype)
    elif isinstance(out, np.ndarray):
        dtype = out.dtype
    else:
        dtypes = {np.dtype(a.dtype) for a in out}
        if len(dtypes) != 1:
            raise ValueError(f"output arrays of mixed dtypes {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
    if dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"unsupported output dtype {dtype}")
    return dtype


def _rows(tiles: list[Tile]) -> Iterator[list[Tile]]:
    """Group a row-major plan into tile rows (same window rows)."""
    row: list[Tile] = []
    for t in tiles:
        if row and (t.window.y0, t.window.y1) != (row[0].window.y0, row[0].window.y1):
            yield row
            row = []
        row.append(t)
    if row:
        yield row


def run_tiled(
    forward: Forward,
    x: np.ndarray,
    *,
    scale: int,
    tile: int,
    context: int,
    multiple: int = 1,
    out_dtype: type[np.generic] | np.dtype = np.float32,
    feather: bool = False,
    out: np.ndarray | Sequence[np.ndarray] | None = None,
) -> np.ndarray | Sequence[np.ndarray]:
    """Run ``forward`` over ``x`` tile by tile; returns the output array(s).

    ``x``: float32 HxWxC on the CPU, or NxHxWxC: a batch of same-sized images (frames, planes), every
    window then goes through ``forward`` for all N images at once. ``forward`` maps a float NCHW CPU tensor
    of windows to its NCHW output (any device, ``scale`` times larger). The output goes into ``out`` (if
    given: for one image a preallocated array or view of the right shape, e.g. a channel slice; for a batch
    an NxHsxWsxC' array or a sequence of N such arrays / views) or a new HsxWsxC' (NxHsxWsxC') array of
    ``out_dtype`` (uint8, uint16 or float32); integer outputs are converted tile by tile exactly as
    :func:`restore.pixels.to_uint` converts a whole image.
    """
    xb, single = _batched(x)
    n, h, w = xb.shape[:3]
    sink = OutputArrays(out, n, (h * scale, w * scale), output_dtype(out, out_dtype), single=single)
    tiles = plan_tiles(h, w, tile=tile, context=context, multiple=multiple, scale=scale, feather=feather)
    if not feather:
        for t in tiles:
            y = forward_windows(forward, xb, t.window, scale)
            c, p = t.crop, t.paste
            for dst, yi in zip(sink.get(y.shape[3]), y, strict=True):
                store(dst[p.y0:p.y1, p.x0:p.x1], yi[c.y0:c.y1, c.x0:c.x1])
        return sink.result()
    _run_feathered(forward, xb, tiles, scale, sink)
    return sink.result()


def _run_feathered(forward: Forward, x: np.ndarray, tiles: list[Tile], scale: int, sink: OutputArrays) -> None:
    w = x.shape[2]
    rows = list(_rows(tiles))
    carry: np.ndarray | None = None
    for r, row in enumerate(rows):
        ry0, ry1 = row[0].paste.y0, row[0].paste.y1
        acc: np.ndarray | None = None
        for t in row:
            y = forward_windows(forward, x, t.window, scale)
            if acc is None:
                acc = np.zeros((y.shape[0], ry1 - ry0, w * scale, y.shape[3]), dtype=np.float32)
                if carry is not None:
                    acc[:, : carry.shape[1]] += carry
            top, bottom, left, right = t.ramps
            wy = axis_weights(y.shape[1], top, bottom, scale)
            wx = axis_weights(y.shape[2], left, right, scale)
            y *= wy[None, :, None, None]
            y *= wx[None, None, :, None]
            acc[:, :, t.paste.x0:t.paste.x1] += y
        assert acc is not None
        done = rows[r + 1][0].paste.y0 if r + 1 < len(rows) else ry1
        for dst, a in zip(sink.get(acc.shape[3]), acc, strict=True):
            store(dst[ry0:done], a[: done - ry0])
        carry = acc[:, done - ry0:].copy() if done < ry1 else None


def tile_for_budget(budget_bytes: float, bytes_per_px: float, context: int, multiple: int = 1,
                    *, min_tile: int = 16) -> int:
    """Largest tile (LR px, a multiple of ``multiple``) whose window ``(tile + 2*context)^2`` fits the budget;
    never below ``min_tile`` (rounded up to the multiple)."""
    side = math.isqrt(max(0, int(budget_bytes / max(bytes_per_px, 1e-9))))
    floor_tile = round_up(max(min_tile, 1), multiple)
    return max(floor_tile, round_down(side - 2 * context, multiple))
