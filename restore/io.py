"""Every image read/write and pixel-format conversion lives here.

Arrays are HxW (gray) or HxWxC in RGB(A) order, dtype uint8 / uint16 (kept as read) or float32 in [0, 1].
Writes are atomic: a temporary file in the destination folder renamed over the final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """An input that is missing, corrupt or not an image; the message names the file."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB(A) / gray, keeping its bit depth (uint8 or uint16)."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ImageReadError(f"{p}: not a readable image (corrupt or unsupported format)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
        img = cv2.cvtColor(img, code)
    if img.dtype not in (np.uint8, np.uint16):
        img = np.clip(img.astype(np.float32), 0.0, 1.0)
    return img


def read_rgb(path: str | Path) -> np.ndarray:
    """Read as 3-channel RGB (gray replicated, alpha dropped): the convention of SR benchmarks."""
    return to_rgb(read_image(path))


def to_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write ``img`` (RGB(A)/gray, uint8/uint16/float in [0,1]) atomically; returns the path."""
    p = Path(path)
    if img.dtype not in (np.uint8, np.uint16):
        img = to_uint(img, np.uint8)
    if img.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR
        img = cv2.cvtColor(np.ascontiguousarray(img), code)
    ok, buf = cv2.imencode(p.suffix.lower() or ".png", img)
    if not ok:
        raise ValueError(f"{p}: cannot encode an image with suffix {p.suffix!r}")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


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


def list_images(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
