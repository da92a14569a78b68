"""Image-quality metrics and MATLAB-compatible resizing.

Importing this package pulls in numpy only: torch and the optional ``lpips`` package are imported inside
the functions that need them.
"""
from __future__ import annotations

from restore.metrics.imresize import imresize, imresize_torch
from restore.metrics.lpips import calculate_lpips, lpips_available
from restore.metrics.psnr_ssim import bgr2ycbcr, calculate_psnr, calculate_ssim, rgb2ycbcr, to_y_channel

__all__ = [
    "imresize",
    "imresize_torch",
    "rgb2ycbcr",
    "bgr2ycbcr",
    "to_y_channel",
    "calculate_psnr",
    "calculate_ssim",
    "lpips_available",
    "calculate_lpips",
]
