"""Restorer.run_batch: same-sized inputs share network calls (whole image, grid tiles, ACS), outputs equal
per-image run() up to float summation order, mixed inputs are grouped correctly. CPU, tiny seeded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN_RTC
from restore.engine import restorer as restorer_mod
from restore.engine.restorer import Restorer, RunStats, bytes_per_pixel


def _image(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return a if dtype is np.float32 else (a * np.iinfo(dtype).max).astype(dtype)


class _Spy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    @property
    def meta(self):  # noqa: ANN201
        return self.inner.meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.inner(x)


def _rtc() -> nn.Module:
    torch.manual_seed(1)
    return IMDN_RTC(scale=2, nf=12, num_modules=2).eval()


def _dncnn() -> nn.Module:
    torch.manual_seed(2)
    return DnCNN(num_layers=4, num_features=8, batch_norm=False).eval()


def _espcn() -> nn.Module:
    torch.manual_seed(3)
    return ESPCN(scale=3, features=(8, 8)).eval()


_MIXED = [((18, 15, 3), np.uint8), ((18, 15, 3), np.uint8), ((18, 15, 3), np.float32), ((18, 15), np.uint8),
          ((18, 15, 4), np.uint16), ((11, 20, 3), np.uint8), ((18, 15, 3), np.uint8)]


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    tol = 1e-5 if a.dtype == np.float32 else 1  # a batch of N may use other kernels than a batch of 1
    assert np.abs(a.astype(np.float64) - b.astype(np.float64)).max() <= tol


@pytest.mark.parametrize("make", [_rtc, _dncnn, _espcn])
@pytest.mark.parametrize("tile", [None, 7, "acs"])
def test_batch_equals_per_image_runs(make, tile: object) -> None:  # noqa: ANN001
    model = make()
    images = [_image(shape, dtype, seed=k) for k, (shape, dtype) in enumerate(_MIXED)]
    r = Restorer(model, tile=tile, overlap=4)  # type: ignore[arg-type]
    outs = r.run_batch(images)
    assert len(outs) == len(images)
    for img, out in zip(images, outs, strict=True):
        _close(out, r.run(img))


def test_same_sized_frames_share_each_forward() -> None:
    spy = _Spy(_rtc())
    frames = [_image((30, 26, 3), seed=k) for k in range(3)]
    stats = RunStats()
    Restorer(spy).run_batch([*frames, _image((9, 9, 3))], stats=stats)
    assert sorted(spy.batches) == [1, 3] and stats.forwards == 2 and stats.windows == 4
    spy.batches.clear()
    Restorer(spy, tile=8).run_batch(frames)
    n_tiles = 16  # 30x26 in 8 px cores: 4 x 4
    assert spy.batches == [3] * n_tiles
    spy.batches.clear()
    Restorer(spy, tile="acs").run_batch(frames)
    assert spy.batches == [12]  # four crops of three frames
    spy.batches.clear()
    Restorer(spy).run_batch(frames, batch_size=2)
    assert spy.batches == [2, 1]


def test_gray_model_batches_the_channels_of_one_image() -> None:
    spy = _Spy(_dncnn())
    img = _image((16, 13, 3))
    out = Restorer(spy).run(img)
    assert spy.batches == [3] and out.shape == img.shape
    with torch.no_grad():
        ref = np.stack([_dncnn()(torch.from_numpy(img[..., c:c + 1].astype(np.float32).transpose(2, 0, 1)[None] / 255))
                        [0, 0].numpy() for c in range(3)], axis=2)
    assert np.abs(out.astype(int) - np.round(np.clip(ref, 0, 1) * 255).astype(int)).max() <= 1


def test_edge_cases() -> None:
    r = Restorer(_rtc())
    assert r.run_batch([]) == []
    with pytest.raises(ValueError, match="batch_size"):
        r.run_batch([_image((5, 5, 3))], batch_size=0)
    one = _image((7, 6, 3))
    assert np.array_equal(r.run_batch([one])[0], r.run(one))


def test_auto_tile_accounts_for_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _Spy(_rtc())
    r = Restorer(model, tile="auto")
    bpp = bytes_per_pixel(model, model.meta)
    monkeypatch.setattr(restorer_mod, "available_memory", lambda device: int(4 * 48**2 * bpp / 0.25))
    assert r.auto_tile(1) == 96 - 2 * r.context and r.auto_tile(4) == 48 - 2 * r.context
    frames = [_image((60, 50, 3), seed=k) for k in range(4)]
    outs = r.run_batch(frames)
    assert set(model.batches) == {4} and len(model.batches) > 1  # tiled, four frames per call
    for f, o in zip(frames, outs, strict=True):
        _close(o, Restorer(_rtc()).run(f))
