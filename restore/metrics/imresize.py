"""MATLAB-compatible ``imresize`` (numpy, plus a torch variant for float tensors).

An independent implementation of the algorithm of MATLAB's ``imresize`` (Image Processing Toolbox), the
function that made the low-resolution images of the SR benchmarks (``imresize(HR, 1/s, 'bicubic')``):

* kernels: cubic convolution with ``a = -0.5`` (Keys 1981, support 4), triangle (``'bilinear'``, support
  2), box (support 1) and Lanczos-2/3;
* when shrinking (``scale < 1``) with ``antialias=True`` the kernel is stretched by ``1 / scale`` (and its
  height multiplied by ``scale``), i.e. it becomes a low-pass filter matched to the output grid;
* output sample ``x`` (1-based) maps to the input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``; it
  takes the ``ceil(kernel_width) + 2`` input samples starting at ``floor(u - kernel_width / 2)``, with
  weights normalised to sum to one; out-of-range indices are mirrored symmetrically
  (``... 2 1 | 1 2 ... n | n n-1 ...``);
* the image is resized one dimension at a time, the dimension with the smallest scale factor first (rows
  first on ties), and for integer images the intermediate result is rounded back to the integer type as
  MATLAB's mex routine does (round half away from zero, saturate).

Each 1-D pass is a dense ``(out_len, in_len)`` weight matrix (contributions of mirrored indices summed), so
a pass is one matrix product. The output size for a scale factor is ``ceil(scale * in_len)``, taken with a
1e-9 tolerance so that e.g. ``255 * (1 / 3)`` gives 85.

Boundary handling: ``boundary='symmetric'`` (default) is the mirroring above, as in current MATLAB; it
reproduces the Set5 LR files of SwinIR/BasicSR bit-exactly. ``boundary='replicate'`` clamps indices to
``[1, n]`` (edge sample repeated), as older MATLAB ``imresize`` did; it reproduces the SelfExSR LR files
(Set14, BSD100, Urban100) bit-exactly. The two differ only in the outermost 1-2 output rows/columns.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["imresize", "imresize_torch", "resize_weights", "output_size", "METHODS"]

Kernel = Callable[[np.ndarray], np.ndarray]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def _triangle(x: np.ndarray) -> np.ndarray:
    return (x + 1.0) * ((x >= -1) & (x < 0)) + (1.0 - x) * ((x >= 0) & (x <= 1))


def _box(x: np.ndarray) -> np.ndarray:
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def _lanczos(a: int) -> Kernel:
    def kernel(x: np.ndarray) -> np.ndarray:
        px = np.pi * x
        with np.errstate(divide="ignore", invalid="ignore"):
            f = (a * np.sin(px) * np.sin(px / a)) / (px * px)
        f = np.where(x == 0, 1.0, f)
        return f * (np.abs(x) < a)

    return kernel


#: method name -> (kernel, kernel width)
METHODS: dict[str, tuple[Kernel, float]] = {
    "bicubic": (_cubic, 4.0),
    "bilinear": (_triangle, 2.0),
    "box": (_box, 1.0),
    "lanczos2": (_lanczos(2), 4.0),
    "lanczos3": (_lanczos(3), 6.0),
}


def output_size(in_len: int, scale: float) -> int:
    """``ceil(scale * in_len)`` with a 1e-9 tolerance against floating-point noise in the product."""
    prod = scale * in_len
    near = round(prod)
    if abs(prod - near) < 1e-9:
        return max(int(near), 1)
    return max(math.ceil(prod), 1)


BOUNDARIES = ("symmetric", "replicate")


def taps(in_len: int, out_len: int, scale: float, method: str = "bicubic", antialias: bool = True,
         boundary: str = "symmetric") -> tuple[np.ndarray, np.ndarray]:
    """The resampling of one axis as ``(src, w)``, both ``(out_len, taps)``: output ``i`` is
    ``sum_t w[i, t] * in[src[i, t]]`` (0-based ``src``, boundary already applied, rows of ``w`` sum to 1).
    The sparse form of :func:`resize_weights` (same numbers), for images too large for a dense matrix."""
    kernel, width = METHODS[method]
    if scale < 1 and antialias:
        def h(x: np.ndarray) -> np.ndarray:
            return scale * kernel(scale * x)

        width = width / scale
    else:
        h = kernel
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input indices
    w = h(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    i0 = idx.astype(np.int64) - 1  # 0-based
    if boundary == "symmetric":  # indices run 1..n, n..1, 1..n, ... (edge sample repeated)
        period = 2 * in_len
        m = np.mod(i0, period)
        src = np.where(m < in_len, m, period - 1 - m)
    else:  # replicate: clamp to [1, n]
        src = np.clip(i0, 0, in_len - 1)
    return src, w


@lru_cache(maxsize=256)
def _weights_cached(in_len: int, out_len: int, scale: float, method: str, antialias: bool,
                    boundary: str) -> np.ndarray:
    src, w = taps(in_len, out_len, scale, method, antialias, boundary)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], src.shape)
    np.add.at(mat, (rows, src), w)
    mat.setflags(write=False)
    return mat


def resize_weights(in_len: int, out_len: int, scale: float, method: str = "bicubic",
                   antialias: bool = True, boundary: str = "symmetric") -> np.ndarray:
    """Dense read-only ``(out_len, in_len)`` float64 matrix ``W``: ``out = W @ in`` along one axis."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown boundary {boundary!r}; expected one of {BOUNDARIES}")
    if in_len < 1 or out_len < 1 or not scale > 0:
        raise ValueError(f"invalid sizes/scale: in_len={in_len}, out_len={out_len}, scale={scale}")
    return _weights_cached(int(in_len), int(out_len), float(scale), method, bool(antialias), boundary)


def _plan(in_hw: tuple[int, int], scale: float | Sequence[float] | None,
          output_shape: Sequence[int | None] | None) -> tuple[tuple[float, float], tuple[int, int]]:
    """Per-axis scales and output sizes following MATLAB's rules."""
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale or output_shape")
    if scale is not None:
        if isinstance(scale, (int, float)):
            sc = (float(scale), float(scale))
        else:
            if len(scale) != 2:
                raise ValueError("scale must be a number or a pair (scale_h, scale_w)")
            sc = (float(scale[0]), float(scale[1]))
        if not (sc[0] > 0 and sc[1] > 0):
            raise ValueError(f"scale must be positive, got {scale}")
        return sc, (output_size(in_hw[0], sc[0]), output_size(in_hw[1], sc[1]))
    assert output_shape is not None
    if len(output_shape) != 2:
        raise ValueError("output_shape must be (height, width); one of them may be None")
    oh, ow = output_shape
    if oh is None and ow is None:
        raise ValueError("output_shape cannot be (None, None)")
    if oh is None:  # keep the aspect ratio, as MATLAB does for NaN
        s = ow / in_hw[1]
        oh = output_size(in_hw[0], s)
        return (s, s), (oh, int(ow))
    if ow is None:
        s = oh / in_hw[0]
        ow = output_size(in_hw[1], s)
        return (s, s), (int(oh), ow)
    if oh < 1 or ow < 1:
        raise ValueError(f"output_shape must be positive, got {output_shape}")
    return (oh / in_hw[0], ow / in_hw[1]), (int(oh), int(ow))


def _axis_order(sc: tuple[float, float]) -> tuple[int, int]:
    """MATLAB resizes the dimension with the smallest scale first (stable: rows first on ties)."""
    return (0, 1) if sc[0] <= sc[1] else (1, 0)


def _round_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB conversion to an integer class: round half away from zero, then saturate."""
    info = np.iinfo(dtype)
    r = np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5))
    return np.clip(r, info.min, info.max).astype(dtype)


def imresize(img: np.ndarray, scale: float | Sequence[float] | None = None,
             output_shape: Sequence[int | None] | None = None, method: str = "bicubic",
             antialias: bool = True, *, boundary: str = "symmetric") -> np.ndarray:
    """Resize an ``HxW`` or ``HxWxC`` image exactly like MATLAB's ``imresize``.

    Args:
        img: numpy image; integer dtypes (uint8, uint16, ...) give the same dtype back, rounded the MATLAB way
            after every 1-D pass; float dtypes give the same float dtype back, unrounded and unclipped
            (computed in float64).
        scale: a factor (``1/4`` to shrink by 4) or a pair ``(scale_h, scale_w)``; the output size is
            ``ceil(scale * size)``.
        output_shape: ``(height, width)`` instead of ``scale``; one entry may be ``None`` to keep the
            aspect ratio (MATLAB's NaN).
        method: ``'bicubic'`` (default), ``'bilinear'``, ``'box'``, ``'lanczos2'`` or ``'lanczos3'``.
        antialias: widen the kernel when shrinking (MATLAB's default ``'Antialiasing', true``).
        boundary: ``'symmetric'`` (current MATLAB: mirror indices, edge sample repeated) or ``'replicate'``
            (clamp indices to the edge; what the SelfExSR benchmark LR files were made with, see the
            module docstring).
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC, got shape {img.shape}")
    dtype = img.dtype
    is_int = np.issubdtype(dtype, np.integer)
    if not (is_int or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"unsupported dtype {dtype}")
    sc, out_hw = _plan((img.shape[0], img.shape[1]), scale, output_shape)
    out = img.astype(np.float64)
    for axis in _axis_order(sc):
        w = resize_weights(out.shape[axis], out_hw[axis], sc[axis], method, antialias, boundary)
        out = np.moveaxis(np.tensordot(w, out, axes=([1], [axis])), 0, axis)
        if is_int:
            out = _round_to(out, dtype).astype(np.float64)
    if is_int:
        return out.astype(dtype)
    return out.astype(dtype, copy=False)


def imresize_torch(x: torch.Tensor, scale: float | Sequence[float] | None = None,
                   output_shape: Sequence[int | None] | None = None, method: str = "bicubic",
                   antialias: bool = True, *, boundary: str = "symmetric") -> torch.Tensor:
    """MATLAB ``imresize`` on the last two dims of a float tensor (``HxW``, ``CxHxW`` or ``NxCxHxW``).

    Same weights and axis order as :func:`imresize` (float path: no rounding or clipping), applied as two
    matrix products in the tensor's dtype and on its device, so it is differentiable and batch-friendly.
    """
    import torch

    if not torch.is_floating_point(x):
        raise TypeError(f"imresize_torch expects a float tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"expected at least 2 dims (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    sc, out_hw = _plan((h, w), scale, output_shape)
    out = x
    for axis in _axis_order(sc):
        in_len = out.shape[-2 + axis]
        wnp = resize_weights(in_len, out_hw[axis], sc[axis], method, antialias, boundary)
        wm = torch.from_numpy(np.array(wnp)).to(dtype=x.dtype, device=x.device)
        if axis == 0:
            out = torch.matmul(wm, out)
        else:
            out = torch.matmul(out, wm.t())
    return out
