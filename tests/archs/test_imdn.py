from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restore.archs import imdn
from restore.archs.base import count_params, strip_prefix
from tests.conftest import shared_path

torch.set_num_threads(1)

Factory = Callable[[], nn.Module]

SMALL: dict[str, Factory] = {
    "imdn_x2": lambda: imdn.IMDN(scale=2, nf=16, num_modules=2),
    "imdn_x3": lambda: imdn.IMDN(scale=3, nf=16, num_modules=3),
    "imdn_x4_default": lambda: imdn.IMDN(scale=4),
    "imdn_as": lambda: imdn.IMDN_AS(nf=16, num_modules=2),
    "imdn_as_default": lambda: imdn.IMDN_AS(),
    "rtc_default": lambda: imdn.IMDN_RTC(),
    "rtc_x3": lambda: imdn.IMDN_RTC(scale=3, nf=16, num_modules=2),
    "rte_default": lambda: imdn.IMDN_RTE(),
    "rte_x3": lambda: imdn.IMDN_RTE(scale=3, nf=24, num_modules=2),
}


def _out_size(model: nn.Module, h: int, w: int) -> tuple[int, int]:
    if isinstance(model, imdn.IMDN_AS):  # two ceil-halvings, then PixelShuffle(shuffle)
        return math.ceil(h / 4) * model.shuffle, math.ceil(w / 4) * model.shuffle
    if isinstance(model, imdn.IMDN_RTE):  # one ceil-halving, then PixelShuffle(2*scale)
        return math.ceil(h / 2) * 2 * model.scale, math.ceil(w / 2) * 2 * model.scale
    s = model.meta.scale
    return h * s, w * s


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("hw", [(11, 13), (12, 16)])
def test_forward_shapes(name: str, hw: tuple[int, int]) -> None:
    model = SMALL[name]().eval()
    x = torch.rand(1, 3, *hw) * model.meta.input_range
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 3, *_out_size(model, *hw))
    assert torch.isfinite(y).all()
    m = hw[0] % model.meta.size_multiple == 0 and hw[1] % model.meta.size_multiple == 0
    if m:  # inputs at the size multiple give exactly scale x the size
        assert y.shape[-2:] == (hw[0] * model.meta.scale, hw[1] * model.meta.scale)


def test_meta_defaults() -> None:
    expect = {
        "IMDN": (imdn.IMDN(scale=4), 4, 1.0, 1, None),
        "IMDN_AS": (imdn.IMDN_AS(), 1, 1.0, 4, None),
        "IMDN_RTC": (imdn.IMDN_RTC(), 2, 1.0, 1, 22),
        "IMDN_RTE": (imdn.IMDN_RTE(), 2, 255.0, 2, 77),
    }
    for variant, (model, scale, rng, mult, rf) in expect.items():
        meta = model.meta
        assert meta.family == "imdn" and meta.variant == variant and meta.task == "sr"
        assert (meta.scale, meta.input_range, meta.size_multiple, meta.receptive_field) == (scale, rng, mult, rf)
        assert meta.in_channels == meta.out_channels == 3 and meta.color_space == "rgb"
        assert meta.form == "deploy" and meta.half_safe
        assert meta.params == count_params(model)
    # parameter counts of the official configurations (= the official checkpoints' numel)
    assert imdn.IMDN(scale=2).meta.params == 694_404
    assert imdn.IMDN(scale=3).meta.params == 703_059
    assert imdn.IMDN(scale=4).meta.params == 715_176
    assert imdn.IMDN_AS().meta.params == 752_104
    assert imdn.IMDN_RTC().meta.params == 20_190
    assert imdn.IMDN_RTE().meta.params == 89_748


def test_as_rejects_bad_shuffle() -> None:
    with pytest.raises(ValueError):
        imdn.IMDN_AS(shuffle=2)


# ------------------------------------------------------------------------------------ receptive field


def _measured_radius(model: nn.Module, width: int) -> int:
    """Largest |input column - floor(out column / scale)| with non-zero influence, over one PixelShuffle
    period of output columns near the middle. Weights are made positive (and inputs too) so no ReLU
    blocks a path: the measured cone is the full one."""
    model = model.double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                fan_in = p[0].numel()
                p.fill_(1.0 / fan_in)
            else:
                p.fill_(0.01)
    s = model.meta.scale
    x = torch.full((1, 3, 4, width), 0.5, dtype=torch.float64, requires_grad=True)
    y = model(x)
    period = 2 * s * 2  # covers any PixelShuffle phase for these models
    mid = (y.shape[-1] // 2) // period * period
    radius = 0
    for o in range(mid, mid + period):
        (g,) = torch.autograd.grad(y[0, :, 2, o].sum(), x, retain_graph=True)
        cols = g.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
        ref = o // s
        radius = max(radius, int((cols - ref).abs().max()))
        assert 0 < cols.min() and cols.max() < width - 1  # cone not clipped by the border
    return radius


@pytest.mark.parametrize(
    "factory",
    [lambda: imdn.IMDN_RTC(), lambda: imdn.IMDN_RTC(nf=8, num_modules=2, scale=3)],
)
def test_rtc_receptive_field_exact(factory: Factory) -> None:
    model = factory()
    assert _measured_radius(model, 70) == model.meta.receptive_field


@pytest.mark.parametrize("factory", [lambda: imdn.IMDN_RTE(), lambda: imdn.IMDN_RTE(nf=8, num_modules=2, scale=3)])
def test_rte_receptive_field_exact(factory: Factory) -> None:
    model = factory()
    assert _measured_radius(model, 180) == model.meta.receptive_field


def test_cca_is_global() -> None:
    model = imdn.IMDN(scale=2, nf=16, num_modules=1).eval()
    with torch.no_grad():
        model.IMDB1.cca.conv_du[0].bias.fill_(1.0)  # keep the attention MLP's ReLU open
    x = torch.rand(1, 3, 24, 24)
    x2 = x.clone()
    x2[..., -1, -1] += 0.5  # far corner
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert (a[..., :4, :4] - b[..., :4, :4]).abs().max() > 0  # global statistics reach every pixel
    assert model.meta.receptive_field is None


# ------------------------------------------------------------------------------------ half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cca_stats_do_not_overflow_in_half(dtype: torch.dtype) -> None:
    x = torch.full((1, 2, 300, 300), 4.0, dtype=dtype)  # spatial sum 360000 > float16 max
    x[:, 1, :150] = 2.0
    y = imdn._channel_stats(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert torch.allclose(y.float().flatten(), torch.tensor([4.0, 4.0]), atol=1e-2)  # std + mean


def test_channel_stats_matches_formula() -> None:
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    ref = x.std(dim=(2, 3), unbiased=False, keepdim=True) + x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(imdn._channel_stats(x), ref, atol=1e-12)


# ------------------------------------------------------------------------------------ detection


DETECT_CASES: dict[str, tuple[Factory, str, dict[str, int]]] = {
    "imdn_x2": (lambda: imdn.IMDN(scale=2, nf=16, num_modules=2), "IMDN", {"scale": 2, "nf": 16}),
    "imdn_x3": (lambda: imdn.IMDN(scale=3, nf=32, num_modules=6), "IMDN", {"scale": 3, "nf": 32}),
    "imdn_x4": (lambda: imdn.IMDN(scale=4), "IMDN", {"scale": 4, "nf": 64, "num_modules": 6}),
    "imdn_as": (lambda: imdn.IMDN_AS(), "IMDN_AS", {"shuffle": 4, "nf": 64}),
    "imdn_as_small": (lambda: imdn.IMDN_AS(nf=16, num_modules=3), "IMDN_AS", {"nf": 16, "num_modules": 3}),
    "rtc": (lambda: imdn.IMDN_RTC(), "IMDN_RTC", {"scale": 2, "nf": 12, "num_modules": 5}),
    "rtc_x4": (lambda: imdn.IMDN_RTC(scale=4, nf=16, num_modules=3), "IMDN_RTC", {"scale": 4, "nf": 16}),
    "rte": (lambda: imdn.IMDN_RTE(), "IMDN_RTE", {"scale": 2, "nf": 20, "num_modules": 6}),
    "rte_x3": (lambda: imdn.IMDN_RTE(scale=3, nf=24, num_modules=2), "IMDN_RTE", {"scale": 3, "nf": 24}),
}


@pytest.mark.parametrize("case", sorted(DETECT_CASES))
def test_detect_roundtrip(case: str) -> None:
    factory, variant, expect = DETECT_CASES[case]
    src = factory().eval()
    det = imdn.detect(src.state_dict())
    assert det is not None and det.family == "imdn"
    assert det.extra["variant"] == variant
    for k, v in expect.items():
        assert det.extra[k] == v
    model = det.build().eval()
    model.load_state_dict(det.state_dict, strict=True)
    assert type(model) is type(src) and model.meta == src.meta
    x = torch.rand(1, 3, 12, 16) * src.meta.input_range
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def _imdn_sd() -> dict[str, torch.Tensor]:
    return dict(imdn.IMDN(scale=2, nf=16, num_modules=2).state_dict())


def _foreign_dicts() -> dict[str, dict[str, torch.Tensor]]:
    t = torch.zeros
    dncnn = {f"model.{i}.weight": t(64, 64, 3, 3) for i in range(0, 34, 2)}
    dncnn.update({f"model.{i}.bias": t(64) for i in range(0, 34, 2)})
    span = {
        "conv_1.eval_conv.weight": t(28, 3, 3, 3),
        "block_1.c1_r.eval_conv.weight": t(28, 28, 3, 3),
        "upsampler.0.weight": t(48, 28, 3, 3),
        "upsampler.0.bias": t(48),
    }
    rlfn_like = {"conv_1.weight": t(46, 3, 3, 3), "upsampler.0.weight": t(48, 46, 3, 3)}
    missing = _imdn_sd()
    del missing["IMDB1.cca.conv_du.0.bias"]
    extra = _imdn_sd()
    extra["IMDB1.extra.weight"] = t(1)
    reshaped = _imdn_sd()
    reshaped["IMDB2.c4.weight"] = t(5, 12, 3, 3)
    gap = {k: v for k, v in imdn.IMDN(scale=2, nf=16, num_modules=3).state_dict().items() if "IMDB2." not in k}
    bad_up = _imdn_sd()
    bad_up["upsampler.0.weight"] = t(10, 16, 3, 3)
    bad_up["upsampler.0.bias"] = t(10)
    as_x2 = {k: v for k, v in imdn.IMDN_AS(nf=16, num_modules=1).state_dict().items()}
    as_x2["upsampler.0.weight"] = t(12, 16, 3, 3)
    as_x2["upsampler.0.bias"] = t(12)
    rte_bias = dict(imdn.IMDN_RTE(nf=8, num_modules=1).state_dict())
    rte_bias["LR_conv.bias"] = t(8)
    return {
        "empty": {},
        "dncnn": dncnn,
        "span": span,
        "rlfn_like": rlfn_like,
        "missing_key": missing,
        "extra_key": extra,
        "wrong_shape": reshaped,
        "block_gap": gap,
        "non_square_upsampler": bad_up,
        "as_shuffle_2": as_x2,
        "rte_with_bias": rte_bias,
    }


@pytest.mark.parametrize("name", sorted(_foreign_dicts()))
def test_detect_rejects(name: str) -> None:
    assert imdn.detect(_foreign_dicts()[name]) is None


# ------------------------------------------------------------------------------------ official checkpoints

OFFICIAL = {
    "IMDN_x2.pth": ("IMDN", 2, 1.0, 694_404),
    "IMDN_x3.pth": ("IMDN", 3, 1.0, 703_059),
    "IMDN_x4.pth": ("IMDN", 4, 1.0, 715_176),
    "IMDN_AS.pth": ("IMDN_AS", 1, 1.0, 752_104),
    "model_RTC.pth": ("IMDN_RTC", 2, 1.0, 20_190),
    "model_RTE.pth": ("IMDN_RTE", 2, 255.0, 89_748),
}


def _load_official(fn: str) -> nn.Module:
    raw = torch.load(shared_path("weights", "imdn", fn), map_location="cpu", weights_only=True)
    det = imdn.detect(strip_prefix(raw, "module."))
    assert det is not None
    model = det.build().eval()
    model.load_state_dict(det.state_dict, strict=True)
    return model


def _smooth_image(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    chans = [
        0.5 + 0.3 * torch.sin(2.0 * math.pi * xx) * torch.cos(math.pi * yy),
        0.3 + 0.4 * xx * yy,
        0.6 - 0.3 * yy + 0.1 * torch.cos(3.0 * math.pi * xx),
    ]
    return torch.stack(chans)[None]


@pytest.mark.parametrize("fn", sorted(OFFICIAL))
def test_official_checkpoint(fn: str) -> None:
    variant, scale, rng, params = OFFICIAL[fn]
    model = _load_official(fn)
    meta = model.meta
    assert (meta.variant, meta.scale, meta.input_range, meta.params) == (variant, scale, rng, params)
    x = _smooth_image(24, 32)
    with torch.no_grad():
        y = model(x * rng) / rng
    assert y.shape == (1, 3, 24 * scale, 32 * scale)
    ref = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    psnr = -10 * math.log10(F.mse_loss(y.clamp(0, 1), ref).item())
    # a smooth image comes out close to its bicubic upscale (IMDN_AS, trained on RealSR, sharpens more)
    assert psnr > (25 if variant == "IMDN_AS" else 30), psnr


def test_rte_input_range_is_255() -> None:
    """The RTE checkpoint only fits at [0, 255] (the published code has no test script to say so)."""
    model = _load_official("model_RTE.pth")
    x = _smooth_image(24, 32)
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    with torch.no_grad():
        at_1 = model(x).clamp(0, 1)
    assert -10 * math.log10(F.mse_loss(at_1, ref).item()) < 20


def _y_matlab(rgb: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr Y of a uint8 RGB image, rounded to uint8 levels (as MATLAB returns for uint8)."""
    f = rgb.astype(np.float64) / 255.0
    return np.round(16.0 + 65.481 * f[..., 0] + 128.553 * f[..., 1] + 24.966 * f[..., 2])


def test_set5_x4_psnr() -> None:
    import cv2

    root = shared_path("data", "sr", "Set5")
    model = _load_official("IMDN_x4.pth")
    scores = []
    for hr_path in sorted((root / "HR").glob("*.png")):
        lr_path = root / "LR_bicubic" / "X4" / f"{hr_path.stem}x4.png"
        hr = cv2.imread(str(hr_path), cv2.IMREAD_COLOR)[:, :, ::-1]
        lr = cv2.imread(str(lr_path), cv2.IMREAD_COLOR)[:, :, ::-1]
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float().div(255.0)[None]
        with torch.no_grad():
            out = model(x)[0].clamp(0, 1)
        sr = (out.numpy().transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
        assert sr.shape == hr.shape
        a, b = _y_matlab(sr)[4:-4, 4:-4], _y_matlab(hr)[4:-4, 4:-4]
        scores.append(10 * math.log10(255.0**2 / np.mean((a - b) ** 2)))
    assert len(scores) == 5
    assert abs(float(np.mean(scores)) - 32.1867) < 0.005, scores
