"""Fixtures for the web demo tests: a weights folder with a tiny ESPCN made at run time (no download, no
training) whose output is the input enlarged with nearest-neighbour (so results can be checked exactly)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

KNOTS = 32


def near_identity_espcn(scale: int = 2) -> torch.nn.Module:
    """ESPCN (ReLU, ReLU, sub-pixel conv, tanh) set so that every output sub-pixel is the input pixel's Y:
    conv1/conv2 build a piecewise-linear atanh from ReLU hinges, the final tanh undoes it (error < 2e-3)."""
    from restore.archs.espcn import ESPCN

    m = ESPCN(scale=scale)
    knots = np.arange(KNOTS + 1) / KNOTS
    target = np.arctanh(np.minimum(knots, 0.995))
    slopes = np.diff(target) * KNOTS
    hinge = np.diff(slopes, prepend=0.0)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for k in range(KNOTS):
            m.conv1.weight[k, 0, 2, 2] = 1.0
            m.conv1.bias[k] = -knots[k]
            m.conv2.weight[0, k, 1, 1] = float(hinge[k])
        m.conv3.weight[:, 0, 1, 1] = 1.0
    return m.eval()


def tiny_dncnn() -> torch.nn.Module:
    """A 3-layer colour DnCNN with zero weights: it predicts no noise, so it returns its input."""
    from restore.archs.dncnn import DnCNN

    m = DnCNN(in_channels=3, num_layers=3, num_features=8, batch_norm=False)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m.eval()


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espcn_x2.pth, espcn_x3.pth (+ a sidecar with a name and PSNR), a DnCNN for sigma 25 and a junk file."""
    d = tmp_path_factory.mktemp("weights")
    torch.save(near_identity_espcn(2).state_dict(), d / "espcn_x2.pth")
    torch.save(near_identity_espcn(3).state_dict(), d / "espcn_x3.pth")
    (d / "espcn_x3.json").write_text('{"name": "ESPCN x3 (test)", "psnr": {"Set5": 30.5}}')
    torch.save(tiny_dncnn().state_dict(), d / "dncnn_tiny.pth")
    (d / "dncnn_tiny.json").write_text('{"sigma": "25"}')
    (d / "notes.pth").write_bytes(b"not a checkpoint")
    return d


def gradient_image(w: int, h: int, *, dtype: type[np.generic] = np.uint8, channels: int = 3) -> np.ndarray:
    """A smooth colour test image (values spread over the dtype's range)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = [xx / max(1, w - 1), yy / max(1, h - 1), 0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0), 0.8 + 0 * xx]
    img = np.stack(planes[:channels], -1)
    peak = np.iinfo(dtype).max
    return np.round(img * peak).astype(dtype)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_shipped_models(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's catalogue logic is tested on the controlled ``weights_dir``: hide the package's shipped
    models (they have the same names as some test files), except in tests marked ``shipped``."""
    if request.node.get_closest_marker("shipped") is None:
        monkeypatch.setattr("restore.weights.shipped_models", lambda: [])
