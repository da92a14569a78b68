"""Any output size: the network runs at its own scale, then a high-quality resample reaches the exact size asked.

:func:`target_size` turns ``--outscale F`` / ``--width W`` / ``--height H`` / ``--fit`` into an output size (and a
crop for ``cover``); :func:`resample` resizes with MATLAB's kernels (bicubic, or Lanczos-3) and MATLAB's
antialiasing when shrinking — the same weights as :func:`restore.metrics.imresize.imresize`, applied in their
sparse form (a few taps per output pixel), so a 4K image costs memory in proportion to its size. Any channel
count (gray, RGB, alpha) and dtype (uint8 / uint16 rounded and clipped once at the end; float kept) goes through
the same path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from restore.engine.policy import FITS, RESAMPLERS
from restore.metrics.imresize import taps


@dataclass(frozen=True)
class Target:
    """Resize the network's output to ``(height, width)``, then keep ``crop`` = (top, left, height, width)."""

    height: int
    width: int
    crop: tuple[int, int, int, int] | None = None

    @property
    def out_size(self) -> tuple[int, int]:
        return (self.crop[2], self.crop[3]) if self.crop else (self.height, self.width)


MAX_OUTPUT_PIXELS = 1 << 30  # 1 gigapixel (e.g. 32768 x 32768): a float32 RGB working copy is 12 GiB already


def target_size(h: int, w: int, *, outscale: float | None = None, width: int | None = None,
                height: int | None = None, fit: str = "contain", limit: bool = True) -> Target | None:
    """:func:`_target_size`, refused (ValueError, before any work) when it is over ``MAX_OUTPUT_PIXELS`` (with
    ``limit``; without it only the values are checked, e.g. on a stand-in image before the inputs are read)."""
    try:
        t = _target_size(h, w, outscale=outscale, width=width, height=height, fit=fit)
    except OverflowError:  # outscale 1e308: h * outscale is infinite
        raise ValueError(f"the requested size is too large (over {MAX_OUTPUT_PIXELS / 1e6:.0f} MP)") from None
    if limit and t is not None and t.height * t.width > MAX_OUTPUT_PIXELS:
        raise ValueError(f"the requested size {t.width}x{t.height} ({t.width * t.height / 1e6:.0f} MP) is over the "
                         f"{MAX_OUTPUT_PIXELS / 1e6:.0f} MP output limit")
    return t


def _target_size(h: int, w: int, *, outscale: float | None = None, width: int | None = None,
                 height: int | None = None, fit: str = "contain") -> Target | None:
    """The size an ``h`` x ``w`` input should come out at; None when nothing was asked (the network's scale).

    ``outscale``: both sides times F (rounded). ``width`` or ``height`` alone: that side, the other keeping the
    aspect ratio. Both: ``stretch`` (exactly W x H, aspect ratio not kept), ``contain`` (the largest size with the
    aspect ratio kept that fits inside W x H) or ``cover`` (the smallest size with the aspect ratio kept that
    covers W x H, centre-cropped to exactly W x H)."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    if outscale is not None:
        if width is not None or height is not None:
            raise ValueError("--outscale cannot be combined with --width / --height")
        if not (outscale > 0 and math.isfinite(outscale)):
            raise ValueError(f"--outscale must be a positive number, not {outscale}")
        return Target(max(1, round(h * outscale)), max(1, round(w * outscale)))
    for name, v in (("--width", width), ("--height", height)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be a positive number of pixels, not {v}")
    if width is None and height is None:
        return None
    if width is None or height is None:
        s = (width / w) if width is not None else (height / h)  # type: ignore[operator]
        return Target(height if height is not None else max(1, round(h * s)),
                      width if width is not None else max(1, round(w * s)))
    if fit == "stretch":
        return Target(height, width)
    s = (min if fit == "contain" else max)(width / w, height / h)
    th, tw = max(1, round(h * s)), max(1, round(w * s))
    if fit == "contain":
        return Target(min(th, height), min(tw, width))
    th, tw = max(th, height), max(tw, width)
    return Target(th, tw, crop=((th - height) // 2, (tw - width) // 2, height, width))


def _axis(x: np.ndarray, axis: int, out_len: int, method: str) -> np.ndarray:
    in_len = x.shape[axis]
    if in_len == out_len:
        return x
    src, w = taps(in_len, out_len, out_len / in_len, method, True, "symmetric")
    x = np.moveaxis(x, axis, 0)
    out = np.zeros((out_len, *x.shape[1:]), dtype=np.float32)
    shape = (out_len,) + (1,) * (x.ndim - 1)
    for t in range(src.shape[1]):  # one gathered slab at a time: memory ~ twice the output
        out += w[:, t].astype(np.float32).reshape(shape) * x[src[:, t]]
    return np.moveaxis(out, 0, axis)


def resample(img: np.ndarray, target: Target, method: str = "bicubic") -> np.ndarray:
    """``img`` (HxW or HxWxC; uint8, uint16 or float) resized to ``target`` (and cropped for ``cover``), same
    dtype and layout back."""
    if method not in RESAMPLERS:
        raise ValueError(f"resample method must be one of {', '.join(RESAMPLERS)}, not {method!r}")
    kernel = RESAMPLERS[method]
    dtype = img.dtype
    x = img.astype(np.float32, copy=False)
    # the axis shrunk more first (MATLAB's order), so the second pass runs on the smaller array
    order = (0, 1) if target.height / img.shape[0] <= target.width / img.shape[1] else (1, 0)
    for axis in order:
        x = _axis(x, axis, target.height if axis == 0 else target.width, kernel)
    if target.crop is not None:
        top, left, ch, cw = target.crop
        x = x[top:top + ch, left:left + cw]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x.astype(dtype, copy=False))
