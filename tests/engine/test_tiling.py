"""Tile planning and tiled assembly (restore.engine.tiling): plan invariants, exactness against whole-image
runs for translation-equivariant networks (incl. internally downsampling ones), feathered blending for
global-statistics networks, and memory bounds. CPU only, tiny seeded models."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from restore import io, pixels
from restore.archs.cfsr import CFSR
from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN, IMDN_AS, IMDN_RTE
from restore.archs.span import SPAN
from restore.engine import tiling
from restore.engine.restorer import Restorer
from restore.weights import load_model
from tests.conftest import shared_path

FAST = settings(max_examples=6, deadline=None, derandomize=True)
PLAN = settings(max_examples=150, deadline=None, derandomize=True)


def _planes(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


# ------------------------------------------------------------------------------------------ plan invariants


@st.composite
def _plan_args(draw: st.DrawFn) -> dict[str, int | bool]:
    mult = draw(st.sampled_from([1, 2, 4]))
    return {
        "height": draw(st.integers(1, 70)),
        "width": draw(st.integers(1, 70)),
        "tile": draw(st.integers(1, 40)),
        "context": mult * draw(st.integers(0, 6)),
        "multiple": mult,
        "scale": draw(st.integers(1, 3)),
        "feather": draw(st.booleans()),
    }


@PLAN
@given(_plan_args())
def test_plan_invariants(args: dict) -> None:
    h, w, s, mult, ctx = args["height"], args["width"], args["scale"], args["multiple"], args["context"]
    tiles = tiling.plan_tiles(**args)
    cover = np.zeros((h * s, w * s), dtype=np.float64)
    limit = tiling.max_window(args["tile"], ctx, mult)
    for t in tiles:
        win, crop, paste = t.window, t.crop, t.paste
        assert 0 <= win.y0 < win.y1 <= h and 0 <= win.x0 < win.x1 <= w
        assert win.y0 % mult == 0 and win.x0 % mult == 0  # on the stride grid of downsampling nets
        assert win.height <= limit and win.width <= limit
        assert (crop.height, crop.width) == (paste.height, paste.width)
        assert 0 <= crop.y0 < crop.y1 <= win.height * s and 0 <= crop.x0 < crop.x1 <= win.width * s
        if args["feather"]:
            top, bottom, left, right = t.ramps
            assert all(r % mult == 0 and 0 <= r <= ctx for r in t.ramps)
            wy = tiling.axis_weights(paste.height, top, bottom, s)
            wx = tiling.axis_weights(paste.width, left, right, s)
            cover[paste.y0:paste.y1, paste.x0:paste.x1] += wy[:, None] * wx[None, :]
        else:
            assert t.ramps == (0, 0, 0, 0)
            # the kept core has the full context on every side that is not the image border
            core = tiling.Box(paste.y0 // s, paste.y1 // s, paste.x0 // s, paste.x1 // s)
            assert win.y0 == max(0, core.y0 - ctx) and win.y1 == min(h, core.y1 + ctx)
            assert win.x0 == max(0, core.x0 - ctx) and win.x1 == min(w, core.x1 + ctx)
            assert crop.y0 == (core.y0 - win.y0) * s and crop.x0 == (core.x0 - win.x0) * s
            cover[paste.y0:paste.y1, paste.x0:paste.x1] += 1
    # exact: cores partition the output; feathered: the weights are a partition of unity
    np.testing.assert_allclose(cover, 1.0, atol=1e-6)


@PLAN
@given(st.integers(1, 500), st.integers(1, 64), st.sampled_from([1, 2, 4, 8]))
def test_split_axis(length: int, tile: int, mult: int) -> None:
    b = tiling.split_axis(length, tile, mult)
    cores = np.diff(b)
    assert b[0] == 0 and b[-1] == length and (cores > 0).all()
    assert all(v % mult == 0 for v in b[:-1])
    cap = max(mult, tiling.round_down(tile, mult))
    assert cores.max() <= cap
    blocks = -(-length // mult)
    assert len(cores) == -(-blocks // (cap // mult))  # as few tiles as the cap allows


def test_context_for() -> None:
    assert tiling.context_for(21, 1) == 21
    assert tiling.context_for(29, 2) == 30
    assert tiling.context_for(29, 4, overlap=40) == 40
    assert tiling.context_for(5, 1, overlap=2) == 5  # never below the receptive field
    assert tiling.context_for(0, 4) == 4  # edge windows must be longer than the multiple padding
    assert tiling.context_for(None, 4) == 32
    assert tiling.context_for(None, 4, overlap=6) == 8


def test_tile_for_budget() -> None:
    # (t + 2*10)^2 * 100 <= 1e6  ->  t + 20 <= 100
    assert tiling.tile_for_budget(1e6, 100.0, 10) == 80
    assert tiling.tile_for_budget(1e6, 100.0, 10, 16) == 80
    assert tiling.tile_for_budget(1e6, 100.0, 10, 3) == 78
    assert tiling.tile_for_budget(10.0, 100.0, 10, 4, min_tile=16) == 16


# -------------------------------------------------------------------------- run_tiled on simple forwards


def _nearest(scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: F.interpolate(t, scale_factor=scale, mode="nearest") * 0.9 + 0.05


@FAST
@given(st.integers(3, 40), st.integers(3, 40), st.integers(2, 17), st.integers(1, 3), st.booleans(),
       st.sampled_from([np.float32, np.uint8, np.uint16]))
def test_pointwise_forward_is_exact_in_both_modes(h: int, w: int, tile: int, s: int, feather: bool,
                                                  dtype: type) -> None:
    """With a pointwise network any plan is exact; feathering must then also be exact (weights sum to 1)."""
    x = _planes(h, w, 2)
    fwd = _nearest(s)
    ref = fwd(torch.from_numpy(x.transpose(2, 0, 1))[None])[0].numpy().transpose(1, 2, 0)
    out = tiling.run_tiled(fwd, x, scale=s, tile=tile, context=3, out_dtype=dtype, feather=feather)
    assert out.dtype == dtype and out.shape == (h * s, w * s, 2)
    if dtype is np.float32:
        np.testing.assert_allclose(out, ref, atol=1e-6)
    else:
        assert np.abs(out.astype(int) - io.to_uint(ref, dtype).astype(int)).max() <= (0 if not feather else 1)


def test_run_tiled_writes_into_a_view_and_checks_shapes() -> None:
    x = _planes(9, 7, 1)
    out = np.zeros((18, 14, 3), dtype=np.uint8)
    tiling.run_tiled(_nearest(2), x, scale=2, tile=4, context=0, out=out[..., 1:2])
    assert (out[..., 0] == 0).all() and (out[..., 2] == 0).all() and out[..., 1].any()
    with pytest.raises(ValueError, match="shape"):
        tiling.run_tiled(_nearest(2), x, scale=2, tile=4, context=0, out=np.zeros((18, 14, 2), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        tiling.run_tiled(_nearest(3), x, scale=2, tile=4, context=0)
    with pytest.raises(ValueError, match="multiple"):
        tiling.plan_tiles(9, 7, tile=4, context=3, multiple=2)


# ----------------------------------------------------------------------------------- real architectures


def _small_outputs(model: nn.Module, layer: nn.Conv2d, factor: float) -> nn.Module:
    """Scale the last conv so random-init outputs are O(1) (makes an absolute 1e-5 meaningful)."""
    with torch.no_grad():
        layer.weight.mul_(factor)
        if layer.bias is not None:
            layer.bias.mul_(factor)
    return model.eval()


@cache
def _model(name: str, scale: int) -> nn.Module:
    torch.manual_seed(scale)
    if name == "span":
        m = SPAN(feature_channels=26, upscale=scale, form="deploy")
        return _small_outputs(m, m.upsampler[0], 0.05)
    if name == "cfsr":
        return CFSR(scale=scale, embed_dim=12, depths=(1, 1), dw_size=7).eval()
    if name == "espcn":
        return ESPCN(scale=scale, features=(16, 8)).eval()
    if name == "dncnn":
        m = DnCNN(num_layers=5, num_features=12, in_channels=3)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):  # non-trivial eval statistics
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
        return m.eval()
    if name == "imdn_rte":
        return IMDN_RTE(scale=scale, nf=8, num_modules=1).eval()
    if name == "imdn":
        return IMDN(scale=scale, nf=16, num_modules=2).eval()
    if name == "imdn_as":
        return IMDN_AS(nf=16, num_modules=1).eval()
    raise KeyError(name)


def _whole_and_tiled(model: nn.Module, h: int, w: int, tile: int, **kw) -> tuple[np.ndarray, np.ndarray]:
    x = _planes(h, w, model.meta.in_channels, seed=h * 100 + w)
    whole = Restorer(model)._run_planes(x)
    tiled = Restorer(model, tile=tile, **kw)._run_planes(x)
    return whole, tiled


@pytest.mark.parametrize("name", ["span", "cfsr", "espcn", "dncnn"])
@FAST
@given(h=st.integers(5, 29), w=st.integers(5, 29), tile=st.integers(3, 14),
       scale=st.sampled_from([1, 2, 3, 4]))
@example(h=29, w=23, tile=7, scale=3)  # odd sizes, tiles dividing neither side, interior tiles
def test_tiled_equals_whole_image(name: str, h: int, w: int, tile: int, scale: int) -> None:
    model = _model(name, 1 if name == "dncnn" else max(2, scale) if name == "span" else scale)
    whole, tiled = _whole_and_tiled(model, h, w, tile)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


@FAST
@given(h=st.integers(5, 33), w=st.integers(5, 33), tile=st.integers(2, 12), scale=st.sampled_from([1, 2]))
@example(h=33, w=27, tile=5, scale=2)
def test_imdn_rte_multiple_2_is_exact(h: int, w: int, tile: int, scale: int) -> None:
    """RTE downsamples by 2 inside: exact once windows start on even pixels (context and tile rounded up/down
    to the multiple), for odd sizes too (edge windows are reflect-padded like the whole image)."""
    model = _model("imdn_rte", scale)
    assert model.meta.size_multiple == 2
    whole, tiled = _whole_and_tiled(model, h, w, tile)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_misaligned_windows_break_strided_nets() -> None:
    """The reason contexts are rounded to the multiple: an odd window start shifts RTE's stride-2 grid."""
    model = _model("imdn_rte", 2)
    r = Restorer(model)
    x = _planes(40, 40, 3)
    whole = r._run_planes(x)
    rf = model.meta.receptive_field
    bad = tiling.run_tiled(r.forward_tensor, x, scale=2, tile=8, context=rf, multiple=1)  # rf is odd
    good = tiling.run_tiled(r.forward_tensor, x, scale=2, tile=8, context=rf + 1, multiple=2)
    assert rf % 2 == 1 and np.abs(bad - whole).max() > 1e-3
    np.testing.assert_allclose(good, whole, rtol=0, atol=1e-5)


def _as_without_attention() -> nn.Module:
    """IMDN_AS's stride-4 front end and trunk with the CCA (global statistics) removed: a purely
    convolutional multiple-4 network. Radius in input px: 4 * (4 convs per block + LR_conv + upsampler)
    feature px + 3 (the two stride-2 convs) + 3 (position inside a 4x4 cell) = 30 for one block."""
    m = IMDN_AS(nf=16, num_modules=1).eval()
    for mod in m.modules():
        if hasattr(mod, "cca"):
            mod.cca = None
    return m


@FAST
@given(h=st.integers(5, 30), w=st.integers(5, 30), tile=st.integers(4, 12))
@example(h=30, w=29, tile=6)
def test_multiple_4_strided_net_is_exact(h: int, w: int, tile: int) -> None:
    model = _as_without_attention()
    r = Restorer(model)
    x = _planes(h, w, 3)
    ctx = tiling.context_for(30, 4)
    out = tiling.run_tiled(r.forward_tensor, x, scale=1, tile=tile, context=ctx, multiple=4)
    np.testing.assert_allclose(out, r._run_planes(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["imdn", "imdn_as"])
def test_global_statistics_nets_are_feathered(name: str) -> None:
    """IMDN / IMDN_AS (CCA: whole-image mean + std) cannot be tiled exactly; feathered tiles stay close.
    Seen with these random weights (40x36, tile 24, overlap 16): max |diff| 0.012 (IMDN x2) and 0.017
    (IMDN_AS), uint8 at most 3-4 levels; with tile 16 / overlap 8 it grows to 0.047 / 0.096."""
    model = _model(name, 2)
    r = Restorer(model, tile=24, overlap=16)
    assert r.feather and r.context == 16
    x = _planes(40, 36, 3, seed=7)
    whole = Restorer(model)._run_planes(x)
    tiled = r._run_planes(x)
    diff = np.abs(tiled - whole)
    assert diff.max() < 0.05 and diff.mean() < 0.005
    hard = tiling.run_tiled(r.forward_tensor, x, scale=model.meta.scale, tile=16, context=0,
                            multiple=model.meta.size_multiple, feather=True)  # no overlap: hard seams
    assert np.abs(hard - whole).max() > 0  # the tiles really differ from the whole image
    img8 = io.to_uint(x, np.uint8)
    d8 = np.abs(r.run(img8).astype(int) - Restorer(model).run(img8).astype(int))
    assert d8.max() <= 8


def test_single_tile_is_the_whole_image() -> None:
    """A tile at least the image size reproduces the whole-image output bit for bit, feathered or not."""
    for name in ("imdn", "span"):
        model = _model(name, 2)
        whole, tiled = _whole_and_tiled(model, 23, 17, 64)
        assert np.array_equal(whole, tiled)


# ------------------------------------------------------------------------------------------ memory bound


class _Spy(nn.Module):
    """Wraps a model and records the largest input and output it was called with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.max_in = (0, 0)
        self.max_out = 0

    @property
    def meta(self):  # noqa: ANN201
        return self.inner.meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        self.max_in = max(self.max_in, tuple(x.shape[-2:]))
        self.max_out = max(self.max_out, y.numel())
        return y


def test_uint8_output_is_assembled_tile_by_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ESPCN(scale=2, channels=3, features=(8, 8)).eval()  # rgb, receptive field 4
    spy = _Spy(model)
    r = Restorer(spy, tile=8)
    img = io.to_uint(_planes(45, 38, 3), np.uint8)
    converted: list[int] = []
    real_to_uint = pixels.to_uint

    def to_uint(a: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
        converted.append(a.size)
        return real_to_uint(a, dtype)

    monkeypatch.setattr(pixels, "to_uint", to_uint)
    out = r.run(img)
    full = 90 * 76 * 3
    side = tiling.max_window(8, r.context)
    assert out.dtype == np.uint8 and out.shape == (90, 76, 3)
    assert max(spy.max_in) <= side  # every network call saw at most one window
    assert spy.max_out <= 3 * (2 * side) ** 2 < full  # ... so no full-size float tensor on the device
    assert converted and max(converted) <= 3 * (2 * 8) ** 2 < full  # float->uint8 only per core
    monkeypatch.undo()
    ref = Restorer(model).run(img)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # float noise can flip a rounding


# ------------------------------------------------------------------------------ real checkpoints (optional)


def _lr_crop(scale: int) -> np.ndarray:
    path = shared_path("data", "sr", "Set5", "LR_bicubic", f"X{scale}", f"babyx{scale}.png")
    return io.read_image(path)[40:100, 50:106]


@pytest.mark.parametrize(("weights", "scale", "tile"), [(("dscf", "team23_DSCF.pth"), 4, 20),
                                                        (("espcn", "ESPCN_x3.pb"), 3, 12)])
def test_real_checkpoint_tiles_are_exact(weights: tuple[str, str], scale: int, tile: int) -> None:
    model = load_model(shared_path("weights", *weights))
    img = _lr_crop(scale)
    whole, tiled = Restorer(model).run(io.to_float(img)), Restorer(model, tile=tile).run(io.to_float(img))
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    d8 = np.abs(Restorer(model, tile=tile).run(img).astype(int) - Restorer(model).run(img).astype(int))
    assert d8.max() <= 1  # a float-noise rounding flip at most


def test_real_imdn_feathered_is_close() -> None:
    """IMDN x2 (CCA) on a 60x56 crop of Set5 baby, tile 32 / overlap 16: seen max |diff| 0.0092 (mean 3.4e-4),
    uint8 at most 2 levels; on the full 256x256 image tile 128 / overlap 32 gives 0.0045 (1 level)."""
    model = load_model(shared_path("weights", "imdn", "IMDN_x2.pth"))
    img = _lr_crop(2)
    r = Restorer(model, tile=32, overlap=16)
    diff = np.abs(r.run(io.to_float(img)) - Restorer(model).run(io.to_float(img)))
    assert diff.max() < 0.03 and diff.mean() < 1e-3
    d8 = np.abs(r.run(img).astype(int) - Restorer(model).run(img).astype(int))
    assert d8.max() <= 6
