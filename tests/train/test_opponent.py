"""The parts of an opponent-colour DnCNN (restore.archs.dncnn.OpponentDnCNN): the composite equals its two gray
nets applied in the orthonormal basis, loads and fuses like any DnCNN, and DenoiseDataset's ``opponent`` planes are
exactly what those nets see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from restore.archs.dncnn import DnCNN, OpponentDnCNN
from restore.train.data import OPPONENT, DenoiseDataset, opponent_plane
from restore.weights import load_model
from tests.train.conftest import make_tiny_data


def _bn(m: torch.nn.Module) -> torch.nn.Module:
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_basis_is_orthonormal_and_the_composite_is_what_it_says() -> None:
    assert np.allclose(OPPONENT @ OPPONENT.T, np.eye(3))
    torch.manual_seed(0)
    luma, chroma = _bn(DnCNN(num_layers=4, num_features=8)), _bn(DnCNN(num_layers=3, num_features=6))
    m = OpponentDnCNN(luma, chroma).eval()
    x = torch.rand(2, 3, 13, 11)
    t = torch.from_numpy(OPPONENT).float()
    z = torch.einsum("kc,nchw->nkhw", t, x)
    with torch.no_grad():
        want = torch.cat([luma(x.mean(1, keepdim=True)) * 3**0.5,
                          chroma(z[:, 1:2] + 0.5) - 0.5, chroma(z[:, 2:3] + 0.5) - 0.5], 1)
        got = m(x)
    assert torch.allclose(got, torch.einsum("kc,nkhw->nchw", t, want), atol=1e-6)
    assert m.meta.in_channels == 3 and m.meta.color_space == "rgb" and m.meta.receptive_field == 4


def test_saved_composite_loads_detects_and_fuses(tmp_path: Path) -> None:
    torch.manual_seed(1)
    m = OpponentDnCNN(_bn(DnCNN(num_layers=4, num_features=8)), _bn(DnCNN(num_layers=4, num_features=8))).eval()
    torch.save(m.state_dict(), tmp_path / "train.pth")
    x = torch.rand(1, 3, 9, 10)
    loaded = load_model(tmp_path / "train.pth")
    assert isinstance(loaded, OpponentDnCNN) and loaded.meta.form == "train"
    fused = loaded.fuse()
    torch.save(fused.state_dict(), tmp_path / "deploy.pth")
    deploy = load_model(tmp_path / "deploy.pth")
    assert deploy.meta.form == "deploy"
    with torch.no_grad():
        assert torch.allclose(deploy(x), m(x), atol=1e-5)


def test_opponent_planes_in_the_dataset(tmp_path: Path) -> None:
    make_tiny_data(tmp_path)
    base = {"name": "t", "phase": "train", "type": "DenoiseDataset", "color": "rgb", "gt_size": 16,
            "dataroot_gt": str(tmp_path / "tiny_data" / "rgb" / "train"), "io_backend": {"type": "memory"}}
    plain = DenoiseDataset({**base, "sigma": 10})
    for plane in ("luma", "chroma"):
        ds = DenoiseDataset({**base, "sigma": 10, "opponent": plane})
        for i in range(6):
            key = (i % 4, (0, 0, i))
            item, rgb = ds[key], plain[key]["gt"]  # the same crop and augmentation (the same draws)
            assert item["gt"].shape == (1, 16, 16)
            if plane == "luma":
                assert torch.allclose(item["gt"][0], rgb.mean(0), atol=1e-6)
            else:
                options = [torch.einsum("c,chw->hw", torch.from_numpy(OPPONENT[w]).float(), rgb) + 0.5 for w in (1, 2)]
                assert any(torch.allclose(item["gt"][0], o, atol=1e-5) for o in options)
            assert float((item["lq"] - item["gt"]).std()) == pytest.approx(10 / 255, rel=0.25)
    img = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    assert np.allclose(opponent_plane(img, "luma")[..., 0], img.mean(2) / 255, atol=1e-6)
    with pytest.raises(Exception, match="color: rgb"):
        DenoiseDataset({**base, "sigma": 10, "opponent": "luma", "color": "gray"})
