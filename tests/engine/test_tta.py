"""Test-time augmentation (restore.engine.tta and ``Restorer(tta=True)``), against an oracle built from
``torch.rot90`` / ``torch.flip`` (the dihedral group written the other way)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.engine import tta
from restore.engine.restorer import Restorer, RunStats


def _oracle(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean over the 8 group elements g = rot90^k, rot90^k . flip_W of g^-1(net(g(x)))."""
    outs = []
    for k in range(4):
        for flip in (False, True):
            v = x.flip(-1) if flip else x
            y = net(torch.rot90(v, k, dims=(-2, -1)).contiguous())
            y = torch.rot90(y, -k, dims=(-2, -1))
            outs.append(y.flip(-1) if flip else y)
    return torch.stack(outs).mean(0)


def test_transforms_are_the_eight_elements_and_undo_inverts_them() -> None:
    x = torch.arange(3 * 5, dtype=torch.float32).reshape(1, 1, 3, 5)
    seen = set()
    for t in tta.TRANSFORMS:
        y = tta.apply(x, t)
        seen.add((tuple(y.shape), tuple(y.flatten().tolist())))
        assert torch.equal(tta.undo(y, t), x)
    assert len(seen) == 8  # no two transforms coincide on an asymmetric input


def test_ensemble_of_a_plain_conv_matches_the_oracle_on_odd_shapes() -> None:
    torch.manual_seed(0)
    net = nn.Conv2d(2, 3, 3, padding=1).eval()  # a random kernel: not equivariant, every pass differs
    x = torch.rand(2, 2, 7, 4)
    with torch.no_grad():
        got = tta.ensemble(net, x)
        want = _oracle(net, x)
        assert not torch.allclose(got, net(x), atol=1e-4)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_ensemble_of_an_equivariant_net_is_the_net() -> None:
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16  # D4-symmetric
    net = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    net.weight.data[:] = k
    x = torch.rand(1, 1, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(tta.ensemble(net, x), net(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tile", [None, 8])
def test_restorer_tta_is_the_ensemble_of_the_model_and_tiles_stay_exact(tile: int | None) -> None:
    torch.manual_seed(0)
    model = ESPCN(scale=2).eval()
    img = np.random.default_rng(0).random((13, 10, 3), dtype=np.float32)
    stats = RunStats()
    out = Restorer(model, precision="fp32", backend="eager", tile=tile, tta=True).run(img[..., 0], stats=stats)
    x = torch.from_numpy(np.ascontiguousarray(img[..., 0]))[None, None]
    with torch.no_grad():
        want = _oracle(model, x)[0, 0].numpy()  # float32 in, float32 out: not clipped
    assert out.shape == (26, 20)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5)
    assert stats.forwards == 8 * stats.windows  # a window counts once, its network calls eight times
    plain = Restorer(model, precision="fp32", backend="eager", tile=tile).run(img[..., 0])
    assert np.abs(plain - out).max() > 1e-4


def test_restorer_tta_on_a_colour_denoiser_matches_per_window_oracle_on_the_fast_path() -> None:
    torch.manual_seed(0)
    model = DnCNN(in_channels=3, num_layers=4, num_features=8, batch_norm=False).eval()
    img = np.random.default_rng(1).integers(0, 256, (21, 18, 3), dtype=np.uint8)
    a = Restorer(model, precision="fp32", tta=True).run(img)
    b = Restorer(model, precision="fp32", backend="eager", tta=True).run(img)
    assert a.shape == b.shape == img.shape and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
