"""Restorer: whole-image behaviour kept, tiling options (int / "auto" / overlap), out-of-memory retry, and
every colour path (rgb, gray, y_full, alpha) tiled. CPU only, tiny seeded models."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from restore import io
from restore.archs.base import ModelMeta
from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN_RTC, IMDN_RTE
from restore.engine import restorer as restorer_mod
from restore.engine import tiling
from restore.engine.restorer import Restorer, RunStats, bytes_per_pixel, is_oom


def _rtc() -> nn.Module:
    torch.manual_seed(1)
    return IMDN_RTC(scale=2, nf=12, num_modules=2).eval()  # rgb, receptive field 10


def _image(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return a if dtype is np.float32 else (a * np.iinfo(dtype).max).astype(dtype)


class _Wrap(nn.Module):
    """Delegating wrapper: records window sizes; raises an out-of-memory error above ``limit`` px."""

    def __init__(self, inner: nn.Module, limit: int | None = None,
                 message: str = "CUDA out of memory.") -> None:
        super().__init__()
        self.inner, self.limit, self.message = inner, limit, message
        self.sides: list[int] = []
        self.areas: list[int] = []

    @property
    def meta(self):  # noqa: ANN201
        return self.inner.meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = max(x.shape[-2:])
        self.sides.append(side)
        self.areas.append(x.shape[-2] * x.shape[-1])
        if self.limit is not None and side > self.limit:
            raise RuntimeError(f"{self.message} Tried to allocate 2.00 GiB")
        return self.inner(x)


# ----------------------------------------------------------------------------------------------- API


def test_defaults_and_forward_tensor_unchanged() -> None:
    model = _rtc()
    r = Restorer(model)
    assert r.tile is None and r.device == torch.device("cpu") and r.meta == model.meta  # "auto", no CUDA
    assert r.precision == "fp32" and r.low_model is None  # precision="auto" on the CPU
    x = torch.rand(1, 3, 11, 7)
    y = r.forward_tensor(x)
    assert y.shape == (1, 3, 22, 14)
    with torch.no_grad():
        assert torch.equal(y, model(x))


@pytest.mark.parametrize("tile", [0, -3, True, "big", 2.5])
def test_bad_tile_rejected(tile: object) -> None:
    with pytest.raises(ValueError, match="tile"):
        Restorer(_rtc(), tile=tile)  # type: ignore[arg-type]


def test_good_tiles_accepted() -> None:
    for tile in (None, 1, np.int64(8), "auto", "acs"):
        assert Restorer(_rtc(), device="cpu", tile=tile).tile == tile  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="acs_min_size"):
        Restorer(_rtc(), tile="acs", acs_min_size=0)


def test_bad_overlap_rejected() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Restorer(_rtc(), tile=8, overlap=-1)


def test_context_from_meta() -> None:
    assert Restorer(_rtc(), tile=8).context == 10
    assert Restorer(_rtc(), tile=8, overlap=12).context == 12  # overlap can only widen an exact context
    assert Restorer(_rtc(), tile=8, overlap=3).context == 10
    rte = IMDN_RTE(scale=2, nf=8, num_modules=1)
    assert Restorer(rte, tile=8).context == tiling.round_up(rte.meta.receptive_field, 2)


# ------------------------------------------------------------------------------------- colour paths


_RGB_CASES = [((19, 14, 3), np.uint8), ((19, 14), np.uint8), ((19, 14, 4), np.uint8),
              ((19, 14, 2), np.uint16), ((19, 14, 3), np.float32), ((19, 14, 3), np.uint16)]


@pytest.mark.parametrize(("shape", "dtype"), _RGB_CASES)
def test_rgb_model_tiled_matches_whole(shape: tuple[int, ...], dtype: type) -> None:
    model = _rtc()
    img = _image(shape, dtype)
    whole = Restorer(model).run(img)
    tiled = Restorer(model, tile=6).run(img)
    out_shape = (38, 28) + shape[2:]
    assert whole.shape == tiled.shape == out_shape and whole.dtype == tiled.dtype == dtype
    if dtype is np.float32:
        np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    else:
        assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


@pytest.mark.parametrize(("shape", "dtype"), [((17, 13), np.uint8), ((17, 13, 3), np.uint8),
                                              ((17, 13, 4), np.uint16), ((17, 13, 3), np.float32)])
def test_gray_model_tiled_matches_whole(shape: tuple[int, ...], dtype: type) -> None:
    torch.manual_seed(2)
    model = DnCNN(num_layers=4, num_features=8, batch_norm=False).eval()  # gray, receptive field 4
    img = _image(shape, dtype)
    whole, tiled = Restorer(model).run(img), Restorer(model, tile=5).run(img)
    assert whole.shape == tiled.shape == shape and tiled.dtype == dtype
    np.testing.assert_allclose(tiled.astype(np.float64), whole.astype(np.float64), rtol=0,
                               atol=1e-5 if dtype is np.float32 else 1)


@pytest.mark.parametrize(("shape", "dtype"), [((15, 12, 3), np.uint8), ((15, 12), np.uint8),
                                              ((15, 12, 4), np.uint8), ((15, 12, 3), np.float32)])
def test_y_full_model_tiled_matches_whole(shape: tuple[int, ...], dtype: type) -> None:
    torch.manual_seed(3)
    model = ESPCN(scale=3, features=(8, 8)).eval()  # y_full: network on Y, bilinear chroma
    img = _image(shape, dtype)
    whole, tiled = Restorer(model).run(img), Restorer(model, tile=4).run(img)
    assert whole.shape == tiled.shape == (45, 36) + shape[2:] and tiled.dtype == dtype
    np.testing.assert_allclose(tiled.astype(np.float64), whole.astype(np.float64), rtol=0,
                               atol=1e-5 if dtype is np.float32 else 1)


def test_whole_image_y_full_uint8_is_dnn_superres_pipeline() -> None:
    """tile=None keeps the uint8 YCrCb round trip of the whole-image runner."""
    torch.manual_seed(3)
    model = ESPCN(scale=2, features=(8, 8)).eval()
    img = _image((9, 10, 3), np.uint8)
    ycc = io.rgb_to_ycrcb_full(img)
    with torch.no_grad():
        y = model(torch.from_numpy(ycc[..., 0].copy())[None, None])[0, 0].numpy()
    up = io.resize_bilinear(ycc, 2)
    up[..., 0] = y
    assert np.array_equal(Restorer(model).run(img), io.ycrcb_full_to_rgb(up, np.uint8))


# -------------------------------------------------------------------------------- auto and out of memory


def test_is_oom() -> None:
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))


def test_available_memory_and_estimate() -> None:
    assert restorer_mod.available_memory(torch.device("cpu")) > 0
    model = _rtc()
    # widest weight: 12 features (the 3 -> 12 conv) vs 3*2*2 outputs; float32, 10 live tensors
    assert bytes_per_pixel(model, model.meta) == 4 * (10 * 12 + 2 * 12 + 2 * 3)


def test_auto_tile_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _Wrap(_rtc())
    r = Restorer(model, tile="auto")
    bpp = bytes_per_pixel(model, model.meta)
    monkeypatch.setattr(restorer_mod, "available_memory", lambda device: int(48**2 * bpp / 0.25))
    assert r.auto_tile() == 48 - 2 * r.context  # a 48 px window fits the (fractional) budget
    img = _image((61, 53, 3), np.float32)
    out = r.run(img)
    assert max(model.sides) <= 48
    np.testing.assert_allclose(out, Restorer(_rtc()).run(img), rtol=0, atol=1e-5)
    monkeypatch.setattr(restorer_mod, "available_memory", lambda device: 1)
    assert r.auto_tile() == restorer_mod.MIN_TILE  # never below the floor
    monkeypatch.undo()
    assert r.auto_tile() >= restorer_mod.MIN_TILE  # real /proc/meminfo


@pytest.mark.parametrize("message", ["CUDA out of memory.", "DefaultCPUAllocator: can't allocate memory"])
def test_out_of_memory_halves_the_tile(message: str, caplog: pytest.LogCaptureFixture) -> None:
    model = _Wrap(_rtc(), limit=30, message=message)
    img = _image((40, 37, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger=restorer_mod.__name__):
        # the 40 px window fails, then 20 px tiles (40 px windows with context 10) fail, then 10 px tiles work
        out = Restorer(model, tile=64).run(img)
    assert "out of memory" in caplog.text
    assert model.sides[0] == 40 and max(model.sides[-4:]) <= 30
    assert np.abs(out.astype(int) - Restorer(_rtc()).run(img).astype(int)).max() <= 1


class _Nearest(nn.Module):
    """x2 nearest-neighbour "network" (receptive field 0): its exact output is known for any tiling."""

    @property
    def meta(self) -> ModelMeta:
        return ModelMeta(family="test", variant="nearest", task="sr", scale=2, in_channels=3, out_channels=3,
                         receptive_field=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_auto_recovers_from_oom(monkeypatch: pytest.MonkeyPatch, dtype: type) -> None:
    """The whole 33x30 image fails (limit 24 px), the retry tiles it: every pixel once, output exact."""
    model = _Wrap(_Nearest(), limit=24)
    monkeypatch.setattr(restorer_mod, "available_memory", lambda device: 1 << 40)
    img = _image((33, 30, 3), dtype)
    stats = RunStats()
    out = Restorer(model, tile="auto").run(img, stats=stats)
    np.testing.assert_array_equal(out, img.repeat(2, axis=0).repeat(2, axis=1))
    assert out.dtype == dtype
    assert stats.oom_retries == 1 and model.sides[0] == 33 and max(model.sides[1:]) <= 24
    assert len(model.sides) == stats.forwards and sum(model.areas[1:]) == 33 * 30  # context 0: each pixel once


def test_errors_that_are_not_oom_propagate() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        Restorer(_Wrap(_rtc(), limit=8, message="boom"), tile=16).run(_image((20, 20, 3), np.uint8))


def test_whole_image_mode_does_not_retry() -> None:
    with pytest.raises(RuntimeError, match="out of memory"):
        Restorer(_Wrap(_rtc(), limit=8), tile=None).run(_image((20, 20, 3), np.uint8))


def test_oom_at_the_smallest_tile_is_raised() -> None:
    with pytest.raises(RuntimeError, match="out of memory"):
        Restorer(_Wrap(_rtc(), limit=2), tile=4).run(_image((9, 9, 3), np.uint8))


def test_progress_callback_counts_every_window() -> None:
    from restore.archs.espcn import ESPCN
    from restore.engine.restorer import Restorer, RunStats

    seen: list[int] = []
    stats = RunStats(on_forward=seen.append)
    img = np.random.default_rng(0).integers(0, 256, (40, 37, 3), dtype=np.uint8)
    Restorer(ESPCN(scale=2), device="cpu", precision="fp32", tile=16).run(img, stats=stats)
    assert seen and seen[-1] == stats.windows and seen == sorted(seen) and len(seen) == stats.forwards
