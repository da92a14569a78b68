"""Test-time augmentation ("TTA", the ``x8`` / self-ensemble of EDSR+, KAIR's ``x8`` and waifu2x's / Real-ESRGAN
ncnn's ``-x``): the network runs on the 8 flips / 90-degree rotations of its input (the dihedral group D4), each
output is mapped back, and the 8 are averaged. The networks here are convolutional, so each pass is as valid as the
plain one; averaging removes part of each pass's error (docs/results.md: +0.1 to +0.26 dB on the shipped SR models
and denoisers) for 8x the network time. Pure tensor functions; the engine applies them per window (exact tiles
stay exact: a tile's context covers the receptive field in every direction)."""

from __future__ import annotations

from collections.abc import Callable

import torch

#: the transforms, as (transpose H/W, flip W, flip H) applied in that order
TRANSFORMS: tuple[tuple[bool, bool, bool], ...] = tuple(
    (bool(k & 4), bool(k & 1), bool(k & 2)) for k in range(8))


def apply(x: torch.Tensor, t: tuple[bool, bool, bool]) -> torch.Tensor:
    """``x`` (..., H, W) under transform ``t`` of :data:`TRANSFORMS`."""
    transpose, flip_w, flip_h = t
    if transpose:
        x = x.transpose(-2, -1)
    dims = [d for d, on in ((-1, flip_w), (-2, flip_h)) if on]
    return x.flip(dims) if dims else x


def undo(y: torch.Tensor, t: tuple[bool, bool, bool]) -> torch.Tensor:
    """The inverse of :func:`apply` with the same ``t`` (flips first, then the transpose)."""
    transpose, flip_w, flip_h = t
    dims = [d for d, on in ((-1, flip_w), (-2, flip_h)) if on]
    y = y.flip(dims) if dims else y
    return y.transpose(-2, -1) if transpose else y


def ensemble(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean of ``undo(net(apply(x, t)), t)`` over the 8 transforms (float32 accumulation, ``x``'s memory
    layout kept for each pass: the fast CPU paths want contiguous inputs)."""
    total: torch.Tensor | None = None
    for t in TRANSFORMS:
        y = undo(net(apply(x, t).contiguous()), t).float()
        total = y.clone() if total is None else total.add_(y)
    assert total is not None
    return total.div_(len(TRANSFORMS))
