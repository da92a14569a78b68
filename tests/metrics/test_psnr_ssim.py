from __future__ import annotations

import json
import math

import numpy as np
import pytest

from restore.metrics.psnr_ssim import (
    bgr2ycbcr,
    calculate_psnr,
    calculate_ssim,
    gaussian_window,
    rgb2ycbcr,
    to_y_channel,
)
from tests.conftest import FIXTURES

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.integers(-12, 13, shape)
    b = np.clip(a.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    return a, b


# ---------------------------------------------------------------- values derivable by hand


def test_psnr_unit_error_is_20log10_255() -> None:
    a = np.random.default_rng(0).integers(0, 255, (9, 8, 3), dtype=np.uint8)
    b = a + 1  # no overflow: a <= 254
    assert calculate_psnr(a, b, 0) == pytest.approx(20 * math.log10(255), abs=1e-12)
    # error 2 in one channel of three: MSE = 4 / 3
    c = a.copy()
    c[..., 1] = a[..., 1] + 1
    c = c.astype(np.float64)
    c[..., 1] += 1
    assert calculate_psnr(a, c, 0) == pytest.approx(10 * math.log10(255**2 * 3 / 4), abs=1e-12)


def test_identical_images() -> None:
    a, _ = _pair((20, 22, 3))
    assert calculate_psnr(a, a, 2) == float("inf")
    assert calculate_psnr(a, a, 0, test_y_channel=True) == float("inf")
    assert calculate_ssim(a, a, 2) == 1.0
    assert calculate_ssim(a, a, 0, test_y_channel=True) == 1.0


def test_ssim_of_constant_images() -> None:
    # all variances are 0: SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    a = np.full((15, 16), 100.0)
    b = np.full((15, 16), 120.0)
    expect = (2 * 100 * 120 + C1) / (100**2 + 120**2 + C1)
    assert calculate_ssim(a, b, 0) == pytest.approx(expect, rel=1e-10)


def test_ycbcr_known_values() -> None:
    px = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], dtype=np.uint8)
    y = to_y_channel(px)[0, :, 0]
    np.testing.assert_allclose(y, [16 + 65.481 + 128.553 + 24.966, 16, 16 + 65.481], atol=1e-4)
    assert y[0] == pytest.approx(235.0, abs=1e-4)
    full = rgb2ycbcr(px)  # uint8 in -> uint8 out
    assert full.dtype == np.uint8
    np.testing.assert_array_equal(full[0, 0], [235, 128, 128])  # white: Cb = Cr = 128
    np.testing.assert_array_equal(full[0, 1], [16, 128, 128])
    # red: Y 81.481 -> 81, Cb 128 - 37.797 = 90.203 -> 90, Cr 128 + 112 = 240
    np.testing.assert_array_equal(full[0, 2], [81, 90, 240])
    f = rgb2ycbcr(px.astype(np.float32) / 255, y_only=True)  # float in [0, 1] -> float in [0, 1]
    assert f.dtype == np.float32 and f.shape == (1, 3)
    np.testing.assert_allclose(f[0] * 255, [235, 16, 81.481], atol=1e-4)
    np.testing.assert_array_equal(bgr2ycbcr(px[..., ::-1]), full)


# ---------------------------------------------------------------- half-level Y (MATLAB uint8 rounding)


def _half_levels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tests/fixtures/half_level_y.json: 1x8x3 uint8 pixels whose Y is exactly k + 1/2, k, MATLAB's uint8 Y."""
    rows = json.loads((FIXTURES / "half_level_y.json").read_text())
    px = np.array([[r["rgb"] for r in rows]], dtype=np.uint8)
    exact = np.array([float(r["y_exact"]) for r in rows])
    return px, exact, np.array([r["y_uint8"] for r in rows], dtype=np.uint8)


def test_uint8_ycbcr_rounds_half_levels_up() -> None:
    """MATLAB's uint8 rgb2ycbcr rounds a Y of exactly k + 1/2 to k + 1 (half away from zero; neither floor nor
    round-half-to-even, which gives k for the even k in the fixture)."""
    px, exact, y8 = _half_levels()
    assert (exact % 2 < 1).any() and (exact % 2 > 1).any()  # both parities of k
    np.testing.assert_array_equal(rgb2ycbcr(px, y_only=True)[0], y8)
    np.testing.assert_array_equal(rgb2ycbcr(px)[0, :, 0], y8)
    np.testing.assert_array_equal(bgr2ycbcr(px[..., ::-1], y_only=True)[0], y8)
    f = rgb2ycbcr(px.astype(np.float32) / 255, y_only=True)[0] * 255  # the float path does not round
    np.testing.assert_allclose(f, exact, rtol=0, atol=1e-4)


def test_round_y_quantises_y_like_matlab() -> None:
    px, exact, y8 = _half_levels()
    np.testing.assert_array_equal(to_y_channel(px, round_y=True)[0, :, 0], y8.astype(np.float64))
    np.testing.assert_array_equal(to_y_channel(px.astype(np.float64), round_y=True)[0, :, 0], y8.astype(np.float64))
    np.testing.assert_allclose(to_y_channel(px)[0, :, 0], exact, rtol=0, atol=1e-4)  # BasicSR's unrounded Y


def test_psnr_and_ssim_with_round_y() -> None:
    """Against black (Y = 16 exactly): PSNR from the fixture's uint8 Y by hand; SSIM equals SSIM of the Y planes."""
    px, exact, y8 = _half_levels()
    black = np.zeros_like(px)
    mse = float(np.mean((y8.astype(np.float64) - 16.0) ** 2))
    for a in (px, px.astype(np.float64)):
        got = calculate_psnr(a, black, 0, test_y_channel=True, round_y=True)
        assert got == pytest.approx(10 * math.log10(255.0**2 / mse), abs=1e-12)
    mse_float = float(np.mean((exact - 16.0) ** 2))
    assert calculate_psnr(px, black, 0, test_y_channel=True) == pytest.approx(10 * math.log10(255.0**2 / mse_float),
                                                                              abs=1e-5)
    big = np.tile(px, (12, 2, 1))  # 12x16: room for the 11x11 window
    ya = np.tile(y8.astype(np.float64), (12, 2))
    want = calculate_ssim(ya, np.full_like(ya, 16.0), 0)
    assert calculate_ssim(big, np.zeros_like(big), 0, test_y_channel=True, round_y=True) == want
    assert calculate_ssim(big, np.zeros_like(big), 0, test_y_channel=True) != want


# ---------------------------------------------------------------- conventions


def test_uint8_and_float_inputs_identical() -> None:
    a, b = _pair((30, 27, 3), seed=1)
    for y in (False, True):
        for fn in (calculate_psnr, calculate_ssim):
            r = fn(a, b, 3, test_y_channel=y)
            assert fn(a.astype(np.float64), b.astype(np.float32), 3, test_y_channel=y) == r


def test_channel_order_and_input_order() -> None:
    a, b = _pair((24, 25, 3), seed=2)
    for fn in (calculate_psnr, calculate_ssim):
        r = fn(a, b, 2, test_y_channel=True)
        assert fn(a[..., ::-1], b[..., ::-1], 2, test_y_channel=True, channel_order="bgr") == r
        assert fn(a[..., ::-1], b[..., ::-1], 2, test_y_channel=True) != r  # order matters for Y
        chw = fn(a.transpose(2, 0, 1), b.transpose(2, 0, 1), 2, test_y_channel=True, input_order="CHW")
        assert chw == r
        # without Y the channel order does not matter
        assert fn(a[..., ::-1], b[..., ::-1], 2) == pytest.approx(fn(a, b, 2), abs=1e-12)


def test_gray_images() -> None:
    a, b = _pair((26, 23), seed=3)
    for fn in (calculate_psnr, calculate_ssim):
        r = fn(a, b, 1)
        assert fn(a, b, 1, test_y_channel=True) == r  # a gray image is its own Y
        assert fn(a[..., None], b[..., None], 1) == r
        assert fn(a[None], b[None], 1, input_order="CHW") == r
    np.testing.assert_array_equal(to_y_channel(a)[..., 0], a.astype(np.float64))


def test_crop_border_and_channel_average() -> None:
    a, b = _pair((30, 31, 3), seed=4)
    k = 4
    ac, bc = a[k:-k, k:-k], b[k:-k, k:-k]
    assert calculate_psnr(a, b, k) == calculate_psnr(ac, bc, 0)
    per_channel = [calculate_ssim(ac[..., c], bc[..., c], 0) for c in range(3)]
    assert calculate_ssim(a, b, k) == pytest.approx(np.mean(per_channel), abs=1e-15)


def test_errors() -> None:
    a, b = _pair((12, 12, 3))
    with pytest.raises(ValueError):
        calculate_psnr(a, b[:-1], 0)
    with pytest.raises(ValueError):
        calculate_psnr(a, b, 0, channel_order="rbg")
    with pytest.raises(ValueError):
        calculate_psnr(a, b, 0, input_order="WHC")
    with pytest.raises(ValueError):
        calculate_ssim(a, b, 1)  # 10x10 left: smaller than the 11x11 window
    with pytest.raises(ValueError):
        calculate_psnr(a, b, 6)
    with pytest.raises(ValueError):
        calculate_psnr(np.zeros((12, 12, 4)), np.zeros((12, 12, 4)), 0, test_y_channel=True)


# ---------------------------------------------------------------- cross-checks


def test_against_skimage() -> None:
    skm = pytest.importorskip("skimage.metrics")
    a, b = _pair((33, 29, 3), seed=5)
    ref_psnr = skm.peak_signal_noise_ratio(a, b, data_range=255)
    assert calculate_psnr(a, b, 0) == pytest.approx(ref_psnr, rel=1e-12)
    # skimage with Gaussian weights (sigma 1.5, truncate 3.5 -> 11 taps), population covariance, and its
    # 5-pixel crop of the 'reflect'-padded map is exactly the 'valid' SSIM used here
    kw = {"data_range": 255, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    ref = skm.structural_similarity(a, b, channel_axis=-1, **kw)
    assert calculate_ssim(a, b, 0) == pytest.approx(ref, abs=1e-12)
    ref_gray = skm.structural_similarity(a[..., 0], b[..., 0], **kw)
    assert calculate_ssim(a[..., 0], b[..., 0], 0) == pytest.approx(ref_gray, abs=1e-12)


def _basicsr_y(img_bgr: np.ndarray) -> np.ndarray:
    """BasicSR's to_y_channel on a BGR [0, 255] image: float32 /255, bgr2ycbcr(y_only) to float32, *255."""
    x = img_bgr.astype(np.float32) / 255.0
    y = (np.dot(x, [24.966, 128.553, 65.481]) + 16.0) / 255.0
    return (y.astype(np.float32) * 255.0).astype(np.float64)


def _basicsr_ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR's _ssim formula: 2-D Gaussian window, cv2.filter2D, keep the 'valid' part [5:-5, 5:-5]."""
    cv2 = pytest.importorskip("cv2")
    k = cv2.getGaussianKernel(11, 1.5)
    w = np.outer(k, k.T)

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, w)[5:-5, 5:-5]

    mu1, mu2 = filt(a), filt(b)
    s1 = filt(a * a) - mu1**2
    s2 = filt(b * b) - mu2**2
    s12 = filt(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1**2 + mu2**2 + C1) * (s1 + s2 + C2))
    return float(m.mean())


def test_against_basicsr_formulas() -> None:
    cv2 = pytest.importorskip("cv2")
    np.testing.assert_allclose(gaussian_window(11, 1.5), cv2.getGaussianKernel(11, 1.5)[:, 0], rtol=1e-15)
    a, b = _pair((28, 31, 3), seed=6)
    crop = 3
    ac = a[crop:-crop, crop:-crop]
    bc = b[crop:-crop, crop:-crop]
    # Y channel: the same float32 path as BasicSR (fed BGR), bit for bit
    ya, yb = _basicsr_y(ac[..., ::-1]), _basicsr_y(bc[..., ::-1])
    np.testing.assert_array_equal(to_y_channel(ac)[..., 0], ya)
    psnr_ref = 10.0 * np.log10(255.0**2 / np.mean((ya - yb) ** 2))
    assert calculate_psnr(a, b, crop, test_y_channel=True) == psnr_ref
    ssim_ref = _basicsr_ssim_channel(ya, yb)
    assert calculate_ssim(a, b, crop, test_y_channel=True) == pytest.approx(ssim_ref, abs=1e-12)
    af, bf = ac.astype(np.float64), bc.astype(np.float64)
    ssim_rgb = np.mean([_basicsr_ssim_channel(af[..., c], bf[..., c]) for c in range(3)])
    assert calculate_ssim(a, b, crop) == pytest.approx(ssim_rgb, abs=1e-12)
