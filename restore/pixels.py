"""Pixel conversions the numeric core needs (numpy and OpenCV only; no file I/O).

Arrays are HxW (gray), HxWx2 (gray + alpha) or HxWxC (C = 3/4, RGB(A) order), dtype uint8 / uint16 or float32
in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Gray -> RGB (replicated), gray+alpha -> RGB, RGBA -> RGB (alpha dropped)."""
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] in (1, 2):
        return np.repeat(img[..., :1], 3, axis=2)
    return img[..., :3]


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8/uint16/float -> float32 in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return img.astype(np.float32)


def to_uint(img: np.ndarray, dtype: type[np.integer] = np.uint8) -> np.ndarray:
    """float in [0,1] -> uint8/uint16, clipped and rounded (half to even, as torch/BasicSR do)."""
    peak = float(np.iinfo(dtype).max)
    return np.round(np.clip(img, 0.0, 1.0) * peak).astype(dtype)


def rgb_to_ycrcb_full(img: np.ndarray) -> np.ndarray:
    """OpenCV's full-range YCrCb as float32 in [0, 1] (what dnn_superres feeds ESPCN).

    uint8 input is converted in uint8 and then multiplied by ``float32(1/255)``, exactly as OpenCV's
    ``dnn_superres`` does (dividing by 255 gives different floats); float input in [0, 1] is converted in float.
    """
    if img.dtype == np.uint8:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YCrCb).astype(np.float32) * np.float32(
            1.0 / 255.0)
    return cv2.cvtColor(np.ascontiguousarray(to_float(img)), cv2.COLOR_RGB2YCrCb)


def ycrcb_full_to_rgb(img: np.ndarray, dtype: type[np.generic] = np.float32) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycrcb_full`. For a uint8 target the YCrCb planes are rounded to uint8 first and
    converted in uint8 (dnn_superres); otherwise converted in float and returned as ``dtype``."""
    if dtype == np.uint8:
        ycc8 = np.clip(np.rint(img * np.float32(255.0)), 0, 255).astype(np.uint8)
        return cv2.cvtColor(ycc8, cv2.COLOR_YCrCb2RGB)
    rgb = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_YCrCb2RGB)
    return rgb if dtype == np.float32 else to_uint(rgb, dtype)


def resize_bicubic(img: np.ndarray, scale: int) -> np.ndarray:
    """OpenCV bicubic upscaling (alpha planes of models without alpha)."""
    h, w = img.shape[:2]
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def resize_bilinear(img: np.ndarray, scale: int) -> np.ndarray:
    """OpenCV bilinear upscaling: the chroma path of dnn_superres for Y-channel models."""
    h, w = img.shape[:2]
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)


