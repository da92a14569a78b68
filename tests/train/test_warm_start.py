"""Warm starts across scales: the sub-pixel tail of an x4 network resampled for x2 / x3
(``path.resample_tail_g``, :func:`restore.train.networks.resample_subpixel_conv`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from restore.archs.span import SPAN
from restore.train.models import load_weights
from restore.train.networks import resample_subpixel_conv, subpixel_overlap


@given(to_scale=st.integers(1, 5), from_scale=st.integers(1, 6))
@settings(max_examples=30, deadline=None)
def test_overlap_rows_are_partitions(to_scale: int, from_scale: int) -> None:
    a = subpixel_overlap(to_scale, from_scale)
    assert a.shape == (to_scale, from_scale) and bool((a >= 0).all())
    torch.testing.assert_close(a.sum(1), torch.ones(to_scale, dtype=torch.float64))
    # every old cell is used exactly once in total (area conservation)
    torch.testing.assert_close(a.sum(0), torch.full((from_scale,), to_scale / from_scale, dtype=torch.float64))


@pytest.mark.parametrize(("from_scale", "to_scale"), [(4, 2), (4, 3), (3, 2), (2, 4), (4, 4)])
def test_resampled_tail_equals_box_resampled_output(from_scale: int, to_scale: int) -> None:
    """The new conv + PixelShuffle equals the old conv + PixelShuffle, area-averaged onto the new grid."""
    g = torch.Generator().manual_seed(from_scale * 10 + to_scale)
    c_in, c_out = 5, 3
    w = torch.randn(c_out * from_scale**2, c_in, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(c_out * from_scale**2, generator=g, dtype=torch.float64)
    x = torch.randn(1, c_in, 7, 6, generator=g, dtype=torch.float64)
    w2, b2 = resample_subpixel_conv(w, b, out_channels=c_out, to_scale=to_scale)
    assert w2.shape == (c_out * to_scale**2, c_in, 3, 3) and b2 is not None and w2.dtype == w.dtype
    new = F.pixel_shuffle(F.conv2d(x, w2, b2, padding=1), to_scale)
    old = F.pixel_shuffle(F.conv2d(x, w, b, padding=1), from_scale)  # (1, c, 7 s, 6 s)
    a = subpixel_overlap(to_scale, from_scale)
    h, wd = 7, 6
    o = old.view(1, c_out, h, from_scale, wd, from_scale)
    expect = torch.einsum("ik,jl,bcykxl->bcyixj", a, a, o).reshape(1, c_out, h * to_scale, wd * to_scale)
    torch.testing.assert_close(new, expect)
    if from_scale % to_scale == 0:  # integer ratio: plain block mean
        torch.testing.assert_close(new, F.avg_pool2d(old, from_scale // to_scale))


def test_resample_rejects_a_conv_that_is_not_a_subpixel_tail() -> None:
    with pytest.raises(ValueError, match="does not feed PixelShuffle"):
        resample_subpixel_conv(torch.zeros(10, 4, 3, 3), None, out_channels=3, to_scale=2)


def _x4_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    x4 = SPAN(feature_channels=8, upscale=4, form="train")
    path = tmp_path / "x4.pth"
    torch.save({"params": x4.state_dict()}, path)
    return path


def test_load_weights_resamples_the_tail_for_another_scale(tmp_path: Path) -> None:
    path = _x4_checkpoint(tmp_path)
    x4 = SPAN(feature_channels=8, upscale=4, form="train")
    load_weights(x4, str(path), strict=True, param_key="params")
    x2 = SPAN(feature_channels=8, upscale=2, form="train")
    load_weights(x2, str(path), strict=True, param_key="params", resample_tail="upsampler.0")
    x = torch.rand(1, 3, 9, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(x2(x), F.avg_pool2d(x4(x), 2), rtol=1e-5, atol=1e-5)
    # same scale: loaded as it is
    same = SPAN(feature_channels=8, upscale=4, form="train")
    load_weights(same, str(path), strict=True, param_key="params", resample_tail="upsampler.0")
    torch.testing.assert_close(same.state_dict()["upsampler.0.weight"], x4.state_dict()["upsampler.0.weight"])


def test_load_weights_names_a_wrong_tail(tmp_path: Path) -> None:
    path = _x4_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="no conv named 'tail.0'"):
        load_weights(SPAN(feature_channels=8, upscale=2), str(path), strict=True, param_key="params",
                     resample_tail="tail.0")
