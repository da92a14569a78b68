from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from restore.metrics.imresize import _round_to, imresize, imresize_torch, output_size, resize_weights
from tests.conftest import FIXTURES, shared_path

MATLAB = FIXTURES / "matlab_imresize.npz"  # frozen MATLAB vectors: tests/fixtures/README.md


def _rng_img(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------- synthetic


@pytest.mark.parametrize("boundary", ["symmetric", "replicate"])
@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 0.37, 2, 3, 1.7])
def test_constant_image_stays_constant(scale: float, boundary: str) -> None:
    img = np.full((23, 17, 3), 137, dtype=np.uint8)
    out = imresize(img, scale, boundary=boundary)
    assert out.dtype == np.uint8
    assert np.all(out == 137)
    outf = imresize(img.astype(np.float64) / 255.0, scale, boundary=boundary)
    np.testing.assert_allclose(outf, 137 / 255.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("hw", "scale", "expect"),
    [
        ((255, 257), 1 / 4, (64, 65)),  # ceil(63.75), ceil(64.25)
        ((255, 255), 1 / 3, (85, 85)),  # 255 * (1/3) is not exactly 85 in floating point
        ((7, 5), 1 / 2, (4, 3)),
        ((1, 9), 1 / 4, (1, 3)),
        ((5, 7), 3, (15, 21)),
        ((5, 7), 2.5, (13, 18)),
        ((9, 10), (1, 1 / 2), (9, 5)),
    ],
)
def test_shape_rules(hw: tuple[int, int], scale: float, expect: tuple[int, int]) -> None:
    out = imresize(_rng_img((*hw, 3)), scale)
    assert out.shape == (*expect, 3)
    assert imresize(_rng_img(hw), scale).shape == expect  # 2-D input stays 2-D


def test_output_shape_argument() -> None:
    img = _rng_img((31, 40))
    assert imresize(img, output_shape=(13, 29)).shape == (13, 29)
    assert imresize(img, output_shape=(62, None)).shape == (62, 80)  # aspect kept, like MATLAB's NaN
    assert imresize(img, output_shape=(None, 10)).shape == (8, 10)  # ceil(31 * 0.25)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, 0.5, output_shape=(3, 3))
    with pytest.raises(ValueError):
        imresize(img, 0.5, method="nope")
    with pytest.raises(ValueError):
        imresize(img, 0.5, boundary="zero")


def test_output_size_tolerance() -> None:
    assert output_size(255, 1 / 3) == 85
    assert output_size(256, 1 / 3) == 86
    assert output_size(10, 0.25) == 3


@pytest.mark.parametrize("method", ["bicubic", "bilinear", "box", "lanczos2", "lanczos3"])
@pytest.mark.parametrize("scale", [1 / 3, 0.5, 2.0, 1.3])
def test_weights_rows_sum_to_one(method: str, scale: float) -> None:
    n = 17
    w = resize_weights(n, output_size(n, scale), scale, method)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert not w.flags.writeable


def test_scale_one_is_identity() -> None:
    img = _rng_img((12, 9, 3))
    np.testing.assert_array_equal(imresize(img, 1), img)
    np.testing.assert_allclose(resize_weights(9, 9, 1.0), np.eye(9), atol=0)


@pytest.mark.parametrize("s", [2, 4])
def test_linear_ramp_reproduced_in_interior(s: int) -> None:
    # For 1/s with even s, output x (1-based) sits at input coordinate u = s*x - (s-1)/2, a half-integer, so
    # the (symmetric, normalised) weights are symmetric about u and a linear ramp r(i) = i - 1 maps to u - 1.
    n = 64
    ramp = np.tile(np.arange(n, dtype=np.float64), (3, 1))
    out = imresize(ramp, (1, 1 / s))
    x = np.arange(1, n // s + 1)
    expect = s * x - (s - 1) / 2.0 - 1
    interior = slice(2, n // s - 2)
    np.testing.assert_allclose(out[0, interior], expect[interior], atol=1e-10)


def test_matlab_rounding() -> None:
    x = np.array([-0.5, 0.49999, 0.5, 1.5, 2.5, 254.5, 255.6, 300.0])
    np.testing.assert_array_equal(_round_to(x, np.dtype(np.uint8)), [0, 0, 1, 2, 3, 255, 255, 255])


def test_float_vs_uint8_consistency() -> None:
    img = _rng_img((40, 33, 3), seed=1)
    # one-axis resize: no intermediate rounding, so uint8 == MATLAB-rounded float result exactly
    u = imresize(img, (1, 1 / 3))
    f = imresize(img.astype(np.float64), (1, 1 / 3))
    assert f.dtype == np.float64
    np.testing.assert_array_equal(u, _round_to(f, np.dtype(np.uint8)))
    # two-axis resize: the uint8 path rounds after the first pass (as MATLAB does): at most 1 apart
    u2 = imresize(img, 1 / 3)
    f2 = imresize(img.astype(np.float32), 1 / 3)
    assert f2.dtype == np.float32
    d = np.abs(u2.astype(np.int64) - _round_to(f2.astype(np.float64), np.dtype(np.uint8)).astype(np.int64))
    assert d.max() <= 1 and (d == 0).mean() > 0.8
    # the float path neither rounds nor clips (bicubic overshoots on noise)
    up = imresize(img.astype(np.float64), 2)
    assert up.min() < 0 or up.max() > 255
    assert not np.allclose(up, np.round(up))


def test_torch_matches_numpy() -> None:
    img = np.random.default_rng(2).random((2, 3, 21, 30))
    t = torch.from_numpy(img)
    cases = (
        {"scale": 1 / 3},
        {"scale": 2},
        {"output_shape": (10, 41)},
        {"scale": 1 / 4, "boundary": "replicate"},
    )
    for kw in cases:
        out = imresize_torch(t, **kw)
        ref = np.stack([np.stack([imresize(c, **kw) for c in im]) for im in img])
        assert out.dtype == torch.float64 and out.shape == ref.shape
        np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)
    out32 = imresize_torch(t.float()[0], scale=1 / 2)  # CHW, float32
    assert out32.dtype == torch.float32 and out32.shape == (3, 11, 15)
    with pytest.raises(TypeError):
        imresize_torch(torch.zeros(4, 4, dtype=torch.uint8), scale=0.5)


def test_torch_is_differentiable() -> None:
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    imresize_torch(x, scale=0.5).sum().backward()
    assert x.grad is not None
    # d sum(W_h X W_w^T) / dX summed = (sum of W_h) * (sum of W_w) = 4 * 4 (each row of W sums to 1)
    assert abs(float(x.grad.sum()) - 16.0) < 1e-9


# ---------------------------------------------------------------- frozen MATLAB vectors (no ../shared)


def _vectors() -> dict[str, np.ndarray]:
    with np.load(MATLAB) as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("s", [2, 3, 4])
def test_weights_are_matlabs(s: int) -> None:
    """The dense weights of a 24-sample axis shrunk by s, border rows included, are MATLAB's (the fixture's
    weights reproduce every Set5 LR file)."""
    ref = _vectors()[f"w{s}"]
    np.testing.assert_allclose(resize_weights(24, 24 // s, 1 / s), ref, rtol=0, atol=1e-15)


def _corner_lr(patch: np.ndarray, s: int, corner: str) -> np.ndarray:
    """The 3x3 LR corner that ``imresize(., 1/s)`` makes from an HR corner patch (placed in a zero canvas of 48 px,
    a multiple of s: the corner's LR pixels depend on the patch and the mirrored border only)."""
    k = patch.shape[0]
    canvas = np.zeros((48, 48), np.uint8)
    if corner == "tl":
        canvas[:k, :k] = patch
        return imresize(canvas, 1 / s)[:3, :3]
    canvas[-k:, -k:] = patch
    return imresize(canvas, 1 / s)[-3:, -3:]


@pytest.mark.parametrize("corner", ["tl", "br"])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_matlab_border_pixels(s: int, corner: str) -> None:
    """Corners of Set5 'head' (red channel) as MATLAB shrank them: the symmetric border (edge sample repeated);
    a reflecting or clamping border changes at least one of these 9 pixels at every scale."""
    v = _vectors()
    np.testing.assert_array_equal(_corner_lr(v[f"x{s}_{corner}_hr"], s, corner), v[f"x{s}_{corner}_lr"])


def test_unequal_scales_resize_the_smaller_scale_first() -> None:
    """uint8 rounding after each pass makes the order visible: MATLAB sorts the scales (smaller first)."""
    v = _vectors()
    img = v["uneq_in"]
    np.testing.assert_array_equal(imresize(img, (1 / 2, 1 / 4)), v["uneq_rows_half"])  # columns first
    np.testing.assert_array_equal(imresize(img, (1 / 4, 1 / 2)), v["uneq_cols_half"])  # rows first
    np.testing.assert_array_equal(imresize(np.dstack([img, img.T]), (1 / 2, 1 / 4))[..., 0], v["uneq_rows_half"])
    # the float path does not round between passes: both orders agree there, to float rounding
    f = imresize(img.astype(np.float64), (1 / 2, 1 / 4))
    assert np.abs(_round_to(f, np.dtype(np.uint8)).astype(int) - v["uneq_rows_half"].astype(int)).max() <= 1


def test_frozen_vectors_are_the_shared_matlab_pixels() -> None:
    """Provenance: the committed HR patches and LR corners are the pixels of ../shared's Set5 files."""
    from PIL import Image

    root = shared_path("data", "sr", "Set5")
    v = _vectors()
    with Image.open(root / "HR" / "head.png") as im:
        hr = np.asarray(im.convert("RGB"))[..., 0]
    for s in (2, 3, 4):
        with Image.open(root / "LR_bicubic" / f"X{s}" / f"headx{s}.png") as im:
            lr = np.asarray(im.convert("RGB"))[..., 0]
        h = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
        k = v[f"x{s}_tl_hr"].shape[0]
        np.testing.assert_array_equal(v[f"x{s}_tl_hr"], h[:k, :k])
        np.testing.assert_array_equal(v[f"x{s}_br_hr"], h[-k:, -k:])
        np.testing.assert_array_equal(v[f"x{s}_tl_lr"], lr[:3, :3])
        np.testing.assert_array_equal(v[f"x{s}_br_lr"], lr[-3:, -3:])


# ---------------------------------------------------------------- MATLAB-made benchmark files


def _load(p: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(p) as im:
        return np.asarray(im)


def _mod_crop(a: np.ndarray, s: int) -> np.ndarray:
    return a[: a.shape[0] - a.shape[0] % s, : a.shape[1] - a.shape[1] % s]


def _assert_matlab_match(out: np.ndarray, ref: np.ndarray, name: str) -> None:
    assert out.shape == ref.shape, name
    d = np.abs(out.astype(np.int64) - ref.astype(np.int64))
    assert d.max() <= 1, f"{name}: max |diff| {d.max()}"
    assert (d == 0).mean() >= 0.999, f"{name}: only {(d == 0).mean():.4%} identical"


@pytest.mark.parametrize("s", [2, 3, 4])
def test_set5_matlab_bicubic(s: int) -> None:
    root = shared_path("data", "sr", "Set5")
    hrs = sorted((root / "HR").glob("*.png"))
    assert len(hrs) == 5
    for hr in hrs:
        lr = root / "LR_bicubic" / f"X{s}" / f"{hr.stem}x{s}.png"
        out = imresize(_mod_crop(_load(hr), s), 1 / s)
        _assert_matlab_match(out, _load(lr), lr.name)


def test_set14_x4_matlab_bicubic() -> None:
    # SelfExSR's LR files were made by a MATLAB imresize that clamps indices at the border (replicate); with
    # it they are reproduced exactly; with the default symmetric boundary only the outer 2 rows/cols differ
    root = shared_path("data", "sr", "Set14", "image_SRF_4")
    hrs = sorted(root.glob("*_HR.png"))
    assert len(hrs) == 14
    for hr in hrs:
        a = _load(hr)
        ref = _load(hr.with_name(hr.name.replace("_HR", "_LR")))
        _assert_matlab_match(imresize(a, 1 / 4, boundary="replicate"), ref, hr.name)
        sym = imresize(a, 1 / 4)
        assert np.array_equal(sym[2:-2, 2:-2], ref[2:-2, 2:-2]), hr.name
