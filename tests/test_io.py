from __future__ import annotations

import numpy as np
import pytest

from restore import io


@pytest.mark.parametrize("shape,dtype", [((7, 9), np.uint8), ((7, 9, 3), np.uint8), ((5, 6, 4), np.uint8),
                                         ((7, 9, 3), np.uint16), ((7, 9), np.uint16)])
def test_roundtrip_keeps_depth_and_channels(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    img = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    p = io.write_image(tmp_path / "a.png", img)
    back = io.read_image(p)
    assert back.dtype == dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)
    assert not list(tmp_path.glob("*.part")), "temporary file left behind"


def test_corrupt_and_missing_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(io.ImageReadError, match="not a readable image"):
        io.read_image(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(io.ImageReadError, match="not a readable image"):
        io.read_image(empty)
    with pytest.raises(io.ImageReadError, match="no such file"):
        io.read_image(tmp_path / "missing.png")


def test_float_uint_conversions():
    x = np.array([0.0, 0.5, 1.0, 1.7, -0.2], np.float32)
    np.testing.assert_array_equal(io.to_uint(x), [0, 128, 255, 255, 0])
    assert io.to_float(np.array([255], np.uint8))[0] == 1.0
    assert io.to_float(np.array([65535], np.uint16))[0] == 1.0


def test_ycrcb_full_roundtrip():
    rng = np.random.default_rng(1)
    x = rng.random((5, 7, 3), dtype=np.float32)
    # OpenCV uses 4-digit BT.601 coefficients: the float round trip is exact only to ~3e-4
    np.testing.assert_allclose(io.ycrcb_full_to_rgb(io.rgb_to_ycrcb_full(x)), x, atol=5e-4)
    gray = np.full((2, 2, 3), 0.25, np.float32)
    ycc = io.rgb_to_ycrcb_full(gray)
    np.testing.assert_allclose(ycc[..., 0], 0.25, atol=1e-6)  # full range: Y of gray is the gray level
    np.testing.assert_allclose(ycc[..., 1:], 0.5, atol=1e-6)
