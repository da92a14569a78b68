"""--device auto|cpu|cuda|cuda:N|mps: parsing and selection everywhere; execution on CUDA/MPS is marked (skips
without the device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore.engine import restorer as restorer_mod
from restore.engine.policy import parse_device
from restore.engine.restorer import Restorer, resolve_device


def test_parse_device_spelling() -> None:
    for ok in ("auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps", " CUDA:1 "):
        assert parse_device(ok) == ok.strip().lower()
    for bad in ("gpu", "cuda:", "cuda:x", "tpu", "cuda0", ""):
        with pytest.raises(ValueError, match="device must be"):
            parse_device(bad)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(restorer_mod, "mps_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(restorer_mod, "mps_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_missing_devices_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(restorer_mod, "mps_available", lambda: False)
    for dev, words in (("cuda", "no CUDA device"), ("cuda:1", "no CUDA device"), ("mps", "MPS")):
        with pytest.raises(ValueError, match=words) as e:
            resolve_device(dev)
        assert "\n" not in str(e.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="1 CUDA device"):
        resolve_device("cuda:1")


def test_cli_rejects_a_misspelt_device(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # noqa: ANN001
    from restore.cli import main

    with pytest.raises(SystemExit) as e:
        main(["upscale", str(tmp_path / "a.png"), "--device", "gpu"])
    assert e.value.code == 2 and "--device must be" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_runs_on_the_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if device == "mps" and not restorer_mod.mps_available():
        pytest.skip("needs Apple's MPS")
    from restore.archs.espcn import ESPCN

    img = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    model = ESPCN(scale=2).eval()
    out = Restorer(model, device=device, precision="fp32").run(img)
    ref = Restorer(model, device="cpu", precision="fp32", backend="eager").run(img)
    assert out.shape == ref.shape and np.abs(out.astype(int) - ref.astype(int)).max() <= 1
