"""Fast paths: Triton kernels with their PyTorch references (the CPU inference tuning that chooses between
paths is the engine's: :mod:`restore.engine.cpu_paths`).

* :func:`lk_dwconv` -- large-kernel depthwise conv (odd k 3..31), forward + backward in Triton;
* :func:`conv_pixelshuffle` -- 3x3 conv written straight into pixel-shuffled layout, with fused bias,
  activation, residual and nearest-upsampled LR skip (forward in Triton, reference backward);
* :mod:`restore.ops.dispatch` -- Triton vs reference (``RESTORE_KERNELS=auto|reference|triton``);

Importing this package does not import Triton (only the dispatcher does, when a CUDA tensor or a forced
``triton`` asks for it).
"""

from __future__ import annotations

from restore.ops.conv_pixelshuffle import (
    conv_pixelshuffle,
    conv_pixelshuffle_reference,
    shuffle_tail,
    upsample_tail,
)
from restore.ops.dispatch import KernelUnavailableError, backend_for, requested
from restore.ops.lk_dwconv import lk_dwconv, lk_dwconv_reference, run_depthwise

__all__ = [
    "KernelUnavailableError",
    "backend_for",
    "conv_pixelshuffle",
    "conv_pixelshuffle_reference",
    "lk_dwconv",
    "lk_dwconv_reference",
    "requested",
    "run_depthwise",
    "shuffle_tail",
    "upsample_tail",
]

