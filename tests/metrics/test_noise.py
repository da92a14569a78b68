from __future__ import annotations

import numpy as np
import pytest

from restore.metrics.noise import _patches, estimate_noise_sigma


def _smooth(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """A sum of random sinusoids on [0, 1] (structure at several frequencies, no noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, c))
    for _ in range(6):
        fy, fx = rng.uniform(0.02, 0.3, 2)
        img += np.sin(fy * yy[..., None] + fx * xx[..., None] + rng.uniform(0, 6.28, c)) * rng.uniform(0.2, 1.0)
    img = 0.1 + 0.8 * (img - img.min()) / (img.max() - img.min())
    return img[..., 0] if c == 1 else img


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sigma", [5.0, 15.0, 25.0, 50.0])
def test_estimate_is_close_to_the_added_noise(channels: int, sigma: float):
    clean = _smooth(96, 112, channels)
    noisy = clean + np.random.default_rng(1).normal(0, sigma / 255, clean.shape)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.06)


def test_clean_image_and_pixel_types():
    clean = _smooth(80, 80, 3)
    u8 = np.round(clean * 255).astype(np.uint8)
    assert estimate_noise_sigma(u8) < 1.0  # rounding to uint8 leaves ~0.29
    noisy = np.clip(clean + np.random.default_rng(2).normal(0, 20 / 255, clean.shape), 0, 1)
    f = estimate_noise_sigma(noisy.astype(np.float32))
    assert estimate_noise_sigma(np.round(noisy * 65535).astype(np.uint16)) == pytest.approx(f, abs=0.05)
    assert estimate_noise_sigma(np.round(noisy * 255).astype(np.uint8)) == pytest.approx(f, abs=0.3)
    rgba = np.concatenate([noisy, np.ones_like(noisy[..., :1])], axis=2)  # the alpha plane is left out
    assert estimate_noise_sigma(rgba) == pytest.approx(f)


def test_large_image_is_thinned_to_a_grid_and_small_one_refused():
    big = _smooth(700, 900, 3) + np.random.default_rng(3).normal(0, 10 / 255, (700, 900, 3))
    assert estimate_noise_sigma(big) == pytest.approx(10, rel=0.05)
    with pytest.raises(ValueError, match="too small to estimate"):
        estimate_noise_sigma(np.zeros((50, 60, 3), np.uint8))  # 2 365 positions, 14 x 192 = 2 688 needed
    estimate_noise_sigma(np.zeros((64, 64, 3), np.uint8))
    estimate_noise_sigma(np.zeros((40, 40), np.uint8))  # gray: 64 dimensions, 33 x 33 positions
    thin = np.random.default_rng(4).normal(0.5, 12 / 255, (8, 400_000, 3))  # one row of positions
    assert estimate_noise_sigma(thin, max_patches=5_000) == pytest.approx(12, rel=0.05)
    assert 4_000 < len(_patches(thin, 8, 5_000)) <= 5_000  # the long axis thinned further: bounded work
    nan = _smooth(64, 64, 3)
    nan[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite pixels"):
        estimate_noise_sigma(nan)
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        estimate_noise_sigma(np.zeros((64, 64), np.int32))
