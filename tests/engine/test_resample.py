"""Any output size (restore.engine.resample + restore upscale --outscale/--width/--height/--fit)."""

from __future__ import annotations

import numpy as np
import pytest

from restore.engine.resample import Target, resample, target_size
from restore.metrics.imresize import imresize


@pytest.mark.parametrize("method,kernel", [("bicubic", "bicubic"), ("lanczos", "lanczos3")])
@pytest.mark.parametrize("shape,out", [((17, 23, 3), (40, 9)), ((30, 20), (11, 45)), ((12, 12, 4), (12, 30))])
def test_same_weights_as_matlab_imresize(method: str, kernel: str, shape, out) -> None:  # noqa: ANN001
    x = np.random.default_rng(0).random(shape).astype(np.float64)
    ref = imresize(x, output_shape=out, method=kernel)
    got = resample(x.astype(np.float32), Target(*out), method)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-5


def test_integer_dtypes_are_rounded_and_clipped_once() -> None:
    rng = np.random.default_rng(1)
    for dtype, peak in ((np.uint8, 255), (np.uint16, 65535)):
        x = rng.integers(0, peak + 1, (20, 18, 4), dtype=dtype)  # RGBA: alpha goes the same way
        got = resample(x, Target(31, 9))
        ref = np.clip(np.rint(resample(x.astype(np.float32), Target(31, 9))), 0, peak)
        assert got.dtype == dtype and np.array_equal(got, ref.astype(dtype))


def test_target_sizes() -> None:
    assert target_size(200, 300) is None
    assert target_size(200, 300, outscale=1.5) == Target(300, 450)
    assert target_size(200, 300, width=500) == Target(333, 500)
    assert target_size(200, 300, height=100) == Target(100, 150)
    assert target_size(200, 300, width=500, height=500, fit="stretch") == Target(500, 500)
    assert target_size(200, 300, width=500, height=500, fit="contain") == Target(333, 500)
    cover = target_size(200, 300, width=500, height=500, fit="cover")
    assert cover == Target(500, 750, crop=(0, 125, 500, 500)) and cover.out_size == (500, 500)
    for bad in ({"outscale": 0.0}, {"outscale": 2.0, "width": 3}, {"width": 0}, {"width": 5, "fit": "squash"}):
        with pytest.raises(ValueError):
            target_size(10, 10, **bad)


def test_cover_crops_the_centre() -> None:
    x = np.zeros((10, 30), np.float32)
    x[:, 10:20] = 1.0  # the middle third
    got = resample(x, target_size(10, 30, width=10, height=10, fit="cover"))
    assert got.shape == (10, 10) and got.min() > 0.99


def test_cli_picks_the_smallest_scale_that_reaches_the_size(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    import torch

    from restore import io, weights
    from restore.archs.espcn import ESPCN
    from restore.cli import main

    files = {}
    for s in (2, 3, 4):
        torch.manual_seed(s)
        files[s] = tmp_path / f"espcn_x{s}.pth"
        torch.save(ESPCN(scale=s, features=(4, 4)).state_dict(), files[s])
    asked: list[int | None] = []

    def resolve(name, *, task, scale=None, sigma=None, color=None):  # noqa: ANN001, ANN202
        asked.append(scale)
        return files[scale or 4]

    monkeypatch.setattr(weights, "resolve_model", resolve)
    src = tmp_path / "a.png"
    io.write_image(src, np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    cases = [(["--outscale", "1.5"], 2, (30, 45), "a_x1.5.png"), (["--outscale", "3"], 3, (60, 90), "a_x3.png"),
             (["--width", "100"], 4, (67, 100), "a_w100.png"),
             (["--width", "40", "--height", "40", "--fit", "cover"], 2, (40, 40), "a_40x40.png")]
    for extra, scale, size, name in cases:
        asked.clear()
        assert main(["upscale", str(src), "-o", str(tmp_path / "out"), *extra]) == 0
        assert scale in asked, (extra, asked)
        out = io.read_image(tmp_path / "out" / name)
        assert out.shape[:2] == size and out.dtype == np.uint8
    capsys.readouterr()
    assert main(["upscale", str(src), "--outscale", "2", "--width", "9"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_sizes_over_the_output_limit_are_refused() -> None:
    from restore.engine.resample import MAX_OUTPUT_PIXELS

    with pytest.raises(ValueError, match="too large"):
        target_size(24, 32, outscale=1e308)
    with pytest.raises(ValueError, match=r"3000000000x2250000000 .* output limit"):
        target_size(24, 32, width=3_000_000_000)
    assert target_size(24, 32, width=3_000_000_000, limit=False).width == 3_000_000_000  # values only
    side = int(MAX_OUTPUT_PIXELS**0.5)
    assert target_size(8, 8, width=side, height=side, fit="stretch").width == side  # at the limit: fine


def test_a_size_over_the_limit_fails_that_file(tmp_path) -> None:  # noqa: ANN001
    from restore.cli import main

    src = tmp_path / "a.png"
    from restore import io

    io.write_image(src, np.zeros((24, 32, 3), np.uint8))
    assert main(["upscale", str(src), "--model", "espcn_x2", "--width", "3000000000"]) == 1
    assert list(tmp_path.iterdir()) == [src]
