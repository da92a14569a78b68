from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import restore.metrics.lpips as lp

REPO = Path(__file__).resolve().parents[2]


def _fake_find_spec(origin: Path | None) -> Callable[..., importlib.machinery.ModuleSpec | None]:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> importlib.machinery.ModuleSpec | None:
        if name == "lpips":
            if origin is None:
                return None
            return importlib.machinery.ModuleSpec("lpips", None, origin=str(origin))
        return real(name, *args, **kwargs)

    return find_spec


def test_unavailable_without_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lp.importlib.util, "find_spec", _fake_find_spec(None))
    ok, why = lp.lpips_available("alex")
    assert ok is False
    assert "\n" not in why and "not installed" in why
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    with pytest.raises(RuntimeError, match="not installed"):
        lp.calculate_lpips(img, img)


def test_unavailable_without_cached_backbone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a package that looks installed (linear weights present) but an empty torch hub cache:
    # must report the missing checkpoint and never import / construct anything
    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise AssertionError('lpips must not be imported')\n")
    (pkg / "weights" / "v0.1" / "vgg.pth").write_bytes(b"")
    monkeypatch.setattr(lp.importlib.util, "find_spec", _fake_find_spec(pkg / "__init__.py"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    ok, why = lp.lpips_available("vgg")
    assert ok is False and "\n" not in why
    assert str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth") in why
    ok, why = lp.lpips_available("alex")  # no linear weights for alex in the fake package
    assert ok is False and "linear-layer weights" in why
    with pytest.raises(RuntimeError, match="vgg16-397923af.pth"):
        lp.calculate_lpips(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), net="vgg")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        lp.lpips_available("resnet")
    with pytest.raises(ValueError):
        lp.calculate_lpips(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))


def test_to_tensor_layout() -> None:
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    t = lp._to_tensor(a, "HWC", "rgb")
    assert t.shape == (1, 3, 2, 3) and t.dtype == torch.float32
    np.testing.assert_allclose(t[0].numpy(), a.transpose(2, 0, 1) / 127.5 - 1, atol=1e-7)
    np.testing.assert_array_equal(lp._to_tensor(a[..., ::-1], "HWC", "bgr").numpy(), t.numpy())
    np.testing.assert_array_equal(lp._to_tensor(a.transpose(2, 0, 1), "CHW", "rgb").numpy(), t.numpy())
    g = lp._to_tensor(a[..., 0], "HWC", "rgb")  # gray -> 3 identical channels
    assert g.shape == (1, 3, 2, 3) and torch.equal(g[0, 0], g[0, 2])


def test_import_pulls_in_neither_torch_nor_lpips() -> None:
    code = "import sys, restore.metrics; print('torch' in sys.modules, 'lpips' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_lpips_when_available() -> None:
    ok, why = lp.lpips_available("alex")
    if not ok:
        pytest.skip(why)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(np.int64) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert lp.calculate_lpips(a, a) == pytest.approx(0.0, abs=1e-6)
    d = lp.calculate_lpips(a, b)
    assert d > 0
    assert lp.calculate_lpips(b, a) == pytest.approx(d, rel=1e-5)
    assert lp.calculate_lpips(a.astype(np.float64), b) == d
