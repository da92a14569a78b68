"""The production path (``restore eval`` -> evaluate -> metrics) reproduces the official-code figures.

The expected values are the ones measured with the official architecture code on these exact files
(../shared/weights/README.md, "Measured with the official code"); skipped when ../shared is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restore import io
from restore.archs.espcn import ESPCN
from restore.cli import main
from restore.evaluate import evaluate_sr
from restore.weights import load_model
from tests.conftest import shared_path


@pytest.mark.parametrize("rel,official,paper", [("imdn/IMDN_x4.pth", 32.1867, 32.21),
                                                ("cfsr/CFSR_x4.pth", 32.3046, 32.33)])
def test_set5_x4_matches_official_code_and_paper(rel: str, official: float, paper: float) -> None:
    """uint8-Y PSNR equals the official code's figure; the papers' float-Y convention is within 0.02 dB."""
    torch.set_num_threads(1)
    res = evaluate_sr(load_model(shared_path("weights", *rel.split("/"))), shared_path("data", "sr", "Set5"),
                      scale=4, progress=False)
    assert len(res.per_image) == 5
    assert res.psnr_y_uint8 == pytest.approx(official, abs=0.002)
    assert res.psnr_y == pytest.approx(paper, abs=0.02)


def test_eval_cli_json(capsys) -> None:
    rc = main(["eval", "--weights", str(shared_path("weights", "imdn", "IMDN_x4.pth")), "--scale", "4",
               "--data", str(shared_path("data", "sr", "Set5")), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"psnr_y", "ssim_y", "images", "model", "scale"} <= set(out)
    assert out["images"] == 5 and out["scale"] == 4 and out["psnr_y_uint8"] == pytest.approx(32.1867, abs=0.002)
    assert out["psnr_y"] == pytest.approx(32.21, abs=0.02)


def _write_hr_set(folder, n: int = 2) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.random((6, 7, 3))
        img = np.kron(base, np.ones((8, 8, 1)))  # smooth-ish 48x56 HR
        io.write_image(folder / f"im{i}.png", io.to_uint(img.astype(np.float32)))


def test_eval_cli_on_hr_only_folder_and_errors(tmp_path, capsys) -> None:
    """Layout (c) end to end, no ../shared needed; wrong scale and denoise/SR mix-ups are one-line errors."""
    _write_hr_set(tmp_path / "hr")
    w = tmp_path / "espcn.pth"
    torch.save(ESPCN(scale=2).state_dict(), w)
    assert main(["eval", "--weights", str(w), "--data", str(tmp_path / "hr"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 2 and np.isfinite(out["psnr_y"]) and 0 < out["ssim_y"] <= 1
    assert main(["eval", "--weights", str(w), "--scale", "3", "--data", str(tmp_path / "hr")]) == 2
    assert "model is x2" in capsys.readouterr().err
    assert main(["eval", "--weights", str(w), "--sigma", "25", "--data", str(tmp_path / "hr")]) == 2
    assert "use --scale" in capsys.readouterr().err


def test_upscale_cli_writes_atomically_and_never_overwrites_input(tmp_path, capsys) -> None:
    w = tmp_path / "espcn.pth"
    torch.save(ESPCN(scale=2).state_dict(), w)
    _write_hr_set(tmp_path, n=1)
    src = tmp_path / "im0.png"
    before = src.read_bytes()
    assert main(["upscale", str(src), "--weights", str(w), "--scale", "2"]) == 0
    out = io.read_image(tmp_path / "im0_x2.png")
    assert out.shape == (96, 112, 3) and out.dtype == np.uint8
    assert main(["upscale", str(src), "--weights", str(w), "-o", str(src), "--overwrite"]) == 1
    assert src.read_bytes() == before and "would overwrite an input" in capsys.readouterr().err
    assert main(["upscale", str(src), "--weights", str(w), "--scale", "4"]) == 2
    assert not list(tmp_path.glob("*.part"))
