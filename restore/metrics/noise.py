"""Noise-level estimation: the standard deviation of additive white Gaussian noise in one image.

Chen, Zhu and Heng, "An efficient statistical method for image noise level estimation", ICCV 2015. The
covariance of the image's overlapping patches (all channels together) has eigenvalues that are the signal's
variances plus the noise variance; natural images leave most of them to the noise alone, and white noise gives
each the same ``sigma**2``. So the noise variance is the mean of the smallest eigenvalues, taken over the largest
prefix whose mean is also its median (as many above the mean as below it). On AWGN added to the first 12 images
of CBSD68 and Kodak24 (sigma 5 to 50) the mean estimate was within 0.15 of the true level and every image within
0.6; textured crops read a little high at low sigma (``scripts/sigma_bands.py`` shows it; ``tests/metrics/
test_noise.py`` checks synthetic images).

Pure numpy; no torch.
"""
from __future__ import annotations

import numpy as np

PATCH = 8  # patch side: 8 x 8 x C dimensions
MAX_PATCHES = 40_000  # a regular grid of patch positions, thinned to at most this many (any image size costs the same)
MIN_PATCHES_PER_DIM = 14  # fewer patches than 14 x the dimensions (under ~60x60 px colour, ~37x37 gray): too small
#                           to tell; on 36 px crops the estimate read ~20% low


def _scale(img: np.ndarray) -> float:
    """The factor that puts ``img``'s pixels on the 0-255 scale (uint8, uint16, or float in [0, 1])."""
    if img.dtype == np.uint8:
        return 1.0
    if img.dtype == np.uint16:
        return 1.0 / 257.0
    if np.issubdtype(img.dtype, np.floating):
        return 255.0
    raise ValueError(f"noise estimation takes uint8, uint16 or float pixels, not {img.dtype}")


def _patches(img: np.ndarray, patch: int, max_patches: int) -> np.ndarray:
    """N x (patch * patch * C) patch vectors (float64, pixels as stored) on a regular grid of positions (every
    ``step``-th row and column): only the sampled patches are copied, whatever the image size."""
    h, w = img.shape[:2]
    img = img.reshape(h, w, -1)
    ny, nx = h - patch + 1, w - patch + 1
    if ny < 1 or nx < 1:
        return np.empty((0, patch * patch * img.shape[2]))
    step = max(1, int(np.ceil(np.sqrt(ny * nx / max_patches))))
    ys, xs = np.arange(0, ny, step), np.arange(0, nx, step)
    if len(ys) * len(xs) > max_patches:  # a long thin image: thin its long axis further
        if len(xs) >= len(ys):
            xs = xs[::int(np.ceil(len(ys) * len(xs) / max_patches))]
        else:
            ys = ys[::int(np.ceil(len(ys) * len(xs) / max_patches))]
    view = np.lib.stride_tricks.sliding_window_view(img, (patch, patch), axis=(0, 1))  # ny, nx, C, p, p
    return view[ys[:, None], xs[None, :]].reshape(len(ys) * len(xs), -1).astype(np.float64)


def estimate_noise_sigma(img: np.ndarray, *, patch: int = PATCH, max_patches: int = MAX_PATCHES) -> float:
    """The Gaussian noise level of ``img`` (HxW or HxWxC; uint8, uint16 or float in [0, 1]) on the 0-255 scale.

    The noise is taken to be additive and unclipped: in an 8-bit file, noise clipped at 0 and 255 reads low (at
    sigma 50 by up to ~10 on dark or bright photos), which ``restore.weights.SIGMA_BANDS`` allows for.

    ValueError when the image has too few patches for the covariance (under ``14 * patch**2 * C`` positions:
    about 60x60 px for 8x8 colour patches, 37x37 gray) or non-finite pixels in them."""
    x = np.asarray(img)
    if x.ndim not in (2, 3):
        raise ValueError(f"noise estimation takes an HxW or HxWxC image, not shape {x.shape}")
    if x.ndim == 3 and x.shape[2] in (2, 4):
        x = x[..., :-1]  # alpha is not image content
    scale = _scale(x)
    pts = _patches(x, patch, max_patches)
    dims = pts.shape[1]
    if len(pts) < MIN_PATCHES_PER_DIM * dims:
        raise ValueError(f"a {x.shape[1]}x{x.shape[0]} image is too small to estimate its noise level "
                         f"({len(pts)} patches of {patch}x{patch}, need {MIN_PATCHES_PER_DIM * dims})")
    if not np.isfinite(pts).all():
        raise ValueError("the image has non-finite pixels (NaN or infinity): no noise level to estimate")
    pts = (pts - pts.mean(axis=0)) * scale
    eig = np.sort(np.linalg.eigvalsh(pts.T @ pts / (len(pts) - 1)))
    for k in range(len(eig), 0, -1):
        head = eig[:k]
        mean = float(head.mean())
        if int((head > mean).sum()) == int((head < mean).sum()):
            break
    return float(np.sqrt(max(mean, 0.0)))
