"""PSNR / SSIM with the conventions of SR papers (and of BasicSR's ``basicsr/metrics/psnr_ssim.py``).

Conventions (independent implementation, numerically matching BasicSR's numpy metrics):

* Inputs are ``HxW`` or ``HxWxC`` (``input_order='HWC'``) or ``CxHxW`` (``'CHW'``) numpy arrays in the
  **[0, 255] range**, uint8 or float (float values are neither rescaled nor clipped). A uint8 image and
  the same values as float give identical scores.
* **Channel order is explicit**: ``channel_order='rgb'`` (default) or ``'bgr'``; it only matters for
  ``test_y_channel=True``. (BasicSR assumes BGR, as its images come from ``cv2.imread``; here images are
  RGB unless told otherwise.)
* ``crop_border`` pixels are removed from each edge first (SR papers use ``crop_border=scale``).
* ``test_y_channel=True`` scores the luma ``Y`` of ITU-R BT.601 YCbCr as MATLAB's ``rgb2ycbcr`` defines
  it, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1], so Y is in [16, 235]
  (unrounded). Like BasicSR the conversion goes through float32 (``img / 255`` in float32, the result
  stored as float32 and multiplied back by 255), so scores agree with BasicSR's to the last digits.
  A single-channel image is its own Y channel.
* PSNR = ``10 log10(255^2 / MSE)`` over all remaining pixels and channels, in float64. Identical images
  give ``float('inf')``.
* SSIM (Wang et al. 2004, as in the authors' MATLAB ``ssim_index``): 11x11 Gaussian window, sigma 1.5,
  normalised to sum 1; 'valid' filtering (no padding: the map is ``(H-10) x (W-10)``);
  ``C1 = (0.01*255)^2``, ``C2 = (0.03*255)^2``; population (biased) variances; mean of the map, computed
  per channel and averaged over channels.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "rgb2ycbcr",
    "bgr2ycbcr",
    "to_y_channel",
    "calculate_psnr",
    "calculate_ssim",
    "gaussian_window",
]

_Y_RGB = (65.481, 128.553, 24.966)
_YCBCR_RGB = np.array([[65.481, -37.797, 112.0],
                       [128.553, -74.203, -93.786],
                       [24.966, 112.0, -18.214]])
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
_ORDERS = ("rgb", "bgr")


def _check_order(channel_order: str) -> None:
    if channel_order not in _ORDERS:
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")


def rgb2ycbcr(img: np.ndarray, y_only: bool = False, channel_order: str = "rgb") -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` (ITU-R BT.601) for ``HxWx3`` images, with BasicSR's type/range conventions.

    * uint8 in [0, 255] -> uint8 in [0, 255], rounded (half away from zero, like MATLAB);
    * float in [0, 1] -> same float dtype in [0, 1] (the float32 path matches BasicSR's; float64 input,
      which BasicSR rejects, is computed and returned in float64).

    ``y_only=True`` returns ``HxW`` (Y only); otherwise ``HxWx3`` ordered (Y, Cb, Cr). ``channel_order`` says
    whether the last axis is RGB (default) or BGR.
    """
    _check_order(channel_order)
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {img.shape}")
    dtype = img.dtype
    if dtype == np.uint8:
        x = img.astype(np.float32) / np.float32(255.0)
    elif dtype in (np.float32, np.float64):
        x = img
    else:
        raise TypeError(f"rgb2ycbcr expects uint8 or float32/float64, got {dtype}")
    # BGR: reorder the weights rather than the pixels (same summation order as BasicSR's bgr2ycbcr)
    step = 1 if channel_order == "rgb" else -1
    if y_only:
        out = np.dot(x, np.array(_Y_RGB[::step])) + 16.0
    else:
        out = np.matmul(x, _YCBCR_RGB[::step]) + _YCBCR_OFFSET
    if dtype == np.uint8:
        r = np.floor(out + 0.5)  # values are >= 0 here; half away from zero
        return np.clip(r, 0, 255).astype(np.uint8)
    return (out / 255.0).astype(dtype)


def bgr2ycbcr(img: np.ndarray, y_only: bool = False) -> np.ndarray:
    """:func:`rgb2ycbcr` for BGR-ordered images (BasicSR's ``bgr2ycbcr``)."""
    return rgb2ycbcr(img, y_only=y_only, channel_order="bgr")


def to_y_channel(img: np.ndarray, channel_order: str = "rgb", round_y: bool = False) -> np.ndarray:
    """Y of an ``HxWx3`` [0, 255] image (uint8 or float) as unrounded float64 ``HxWx1`` in [0, 255].

    ``round_y=True`` quantises Y to uint8 as MATLAB's ``rgb2ycbcr`` does on uint8 images (the protocol of
    MATLAB-evaluated papers such as IMDN, and of the reference figures in ../shared/weights/README.md);
    the default keeps BasicSR's unrounded float Y. The two differ by ~0.02 dB on Set5.

    ``HxW`` or ``HxWx1`` images are returned as float64 ``HxWx1`` unchanged (a gray image is its own Y).
    The colour path mirrors BasicSR's float32 intermediate (see module docstring).
    """
    _check_order(channel_order)
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"expected HxW, HxWx1 or HxWx3, got shape {img.shape}")
    if img.shape[2] == 1:
        return img.astype(np.float64)
    if round_y:
        u8 = img if img.dtype == np.uint8 else np.floor(np.clip(img, 0, 255) + 0.5).astype(np.uint8)
        return rgb2ycbcr(u8, y_only=True, channel_order=channel_order).astype(np.float64)[..., None]
    x = img.astype(np.float32) / np.float32(255.0)
    y = rgb2ycbcr(x, y_only=True, channel_order=channel_order)  # float32 in [0, 1]
    return (y * np.float32(255.0)).astype(np.float64)[..., None]


def _to_hwc(img: np.ndarray, input_order: str) -> np.ndarray:
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    img = np.asarray(img)
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D image, got shape {img.shape}")
    return img.transpose(1, 2, 0) if input_order == "CHW" else img


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool, input_order: str,
             channel_order: str, round_y: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Shared front end: shape check, HWC, crop, optional Y, float64."""
    _check_order(channel_order)
    img = np.asarray(img)
    img2 = np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    for a in (img, img2):
        if not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
            raise TypeError(f"expected uint8 or float images in [0, 255], got {a.dtype}")
    a = _to_hwc(img, input_order)
    b = _to_hwc(img2, input_order)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        if 2 * crop_border >= min(a.shape[0], a.shape[1]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {a.shape[:2]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        if a.shape[2] not in (1, 3):
            raise ValueError(f"test_y_channel needs 1 or 3 channels, got {a.shape[2]}")
        a = to_y_channel(a, channel_order, round_y)
        b = to_y_channel(b, channel_order, round_y)
    return a.astype(np.float64), b.astype(np.float64)


def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool = False,
                   input_order: str = "HWC", channel_order: str = "rgb", round_y: bool = False) -> float:
    """PSNR in dB of two [0, 255] images (see module docstring); ``float('inf')`` when they are identical."""
    a, b = _prepare(img, img2, crop_border, test_y_channel, input_order, channel_order, round_y)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D Gaussian, normalised to sum 1 (what ``cv2.getGaussianKernel(size, sigma)`` returns), float64."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """'valid' 2-D filtering of ``x`` (HxW) with the separable window ``outer(g, g)``."""
    k = g.shape[0]
    h, w = x.shape
    rows = sum(g[i] * x[i:h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j:w - k + 1 + j] for j in range(k))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    g = gaussian_window(11, 1.5)
    mu1 = _filter_valid(a, g)
    mu2 = _filter_valid(b, g)
    mu1_sq = mu1 * mu1
    mu2_sq = mu2 * mu2
    mu1_mu2 = mu1 * mu2
    sigma1_sq = _filter_valid(a * a, g) - mu1_sq
    sigma2_sq = _filter_valid(b * b, g) - mu2_sq
    sigma12 = _filter_valid(a * b, g) - mu1_mu2
    num = (2.0 * mu1_mu2 + c1) * (2.0 * sigma12 + c2)
    den = (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    return float(np.mean(num / den))


def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool = False,
                   input_order: str = "HWC", channel_order: str = "rgb", round_y: bool = False) -> float:
    """SSIM of two [0, 255] images (see module docstring): per-channel mean SSIM, averaged over channels.

    The (cropped) image must be at least 11x11.
    """
    a, b = _prepare(img, img2, crop_border, test_y_channel, input_order, channel_order, round_y)
    if a.shape[0] < 11 or a.shape[1] < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {a.shape[:2]}")
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))
