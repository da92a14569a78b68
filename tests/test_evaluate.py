from __future__ import annotations

import numpy as np
import pytest

from restore import io
from restore.evaluate import DatasetError, add_noise, find_pairs


def _img(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_layout_a_hr_and_lr_bicubic(tmp_path):
    io.write_image(tmp_path / "HR" / "baby.png", _img(8, 8))
    io.write_image(tmp_path / "LR_bicubic" / "X2" / "babyx2.png", _img(4, 4))
    (p,) = find_pairs(tmp_path, 2)
    assert p.name == "baby" and p.lr is not None and p.lr.name == "babyx2.png"
    with pytest.raises(DatasetError):
        io.write_image(tmp_path / "HR" / "bird.png", _img(8, 8))
        find_pairs(tmp_path, 2)


def test_layout_b_selfexsr_and_c_hr_only(tmp_path):
    srf = tmp_path / "image_SRF_3"
    io.write_image(srf / "img_001_SRF_3_HR.png", _img(9, 9))
    io.write_image(srf / "img_001_SRF_3_LR.png", _img(3, 3))
    for d in (tmp_path, srf):
        (p,) = find_pairs(d, 3)
        assert p.name == "img_001_SRF_3" and p.lr is not None
    with pytest.raises(DatasetError, match="image_SRF_4"):
        find_pairs(tmp_path, 4)
    hr_only = tmp_path / "plain"
    io.write_image(hr_only / "x.png", _img(8, 8))
    (p,) = find_pairs(hr_only, 4)
    assert p.lr is None


def test_noise_is_seeded_per_image_and_unclipped():
    clean = np.zeros((16, 16), np.uint8)
    a, b = add_noise(clean, 25), add_noise(clean, 25)
    np.testing.assert_array_equal(a, b)
    assert a.min() < 0 and abs(a.std() - 25 / 255) < 0.02


def test_gray_denoiser_on_a_colour_set_runs_per_channel(tmp_path) -> None:  # noqa: ANN001
    """A gray model scores a colour set channel by channel, as ``restore denoise`` runs it."""
    import numpy as np

    from restore import io
    from restore.archs.dncnn import DnCNN
    from restore.evaluate import evaluate_denoise

    rng = np.random.default_rng(0)
    io.write_image(tmp_path / "c.png", rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))
    net = DnCNN(num_layers=3, num_features=4, batch_norm=False).eval()  # zero residual -> output = noisy input
    for p in net.parameters():
        p.data.zero_()
    res = evaluate_denoise(net, tmp_path, sigma=25, progress=False)
    assert len(res.per_image) == 1 and 18 < res.psnr_y < 23  # about the noisy input's PSNR at sigma 25


def test_eval_without_a_model_scores_what_denoise_picks(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """``restore eval --sigma S --data DIR`` (no --model/--weights): each image through the model
    ``restore denoise --sigma S`` picks for its colour -- here a gray and a colour stand-in."""
    import json

    import torch

    from restore import weights
    from restore.archs.dncnn import DnCNN
    from restore.cli import main

    paths = {}
    for color, c in (("gray", 1), ("rgb", 3)):
        torch.manual_seed(c)
        paths[color] = tmp_path / f"pick_{color}.pth"
        torch.save(DnCNN(in_channels=c, num_layers=3, num_features=4).state_dict(), paths[color])
    asked = []

    def default(sigma, color):  # noqa: ANN001, ANN202
        asked.append((weights.shipped_sigma(sigma), color))
        return paths[color]

    monkeypatch.setattr(weights, "default_denoiser", default)
    rng = np.random.default_rng(0)
    io.write_image(tmp_path / "d" / "a.png", rng.integers(0, 256, (16, 12), dtype=np.uint8))
    io.write_image(tmp_path / "d" / "b.png", rng.integers(0, 256, (16, 12, 3), dtype=np.uint8))
    assert main(["eval", "--sigma", "25", "--data", str(tmp_path / "d"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sorted(set(asked)) == [("25", "gray"), ("25", "rgb")] and res["images"] == 2
    assert res["model"] == "default: pick_gray / pick_rgb"
    for name, color in (("a", "gray"), ("b", "rgb")):  # each image scored as its own model scores it alone
        assert main(["eval", "--weights", str(paths[color]), "--sigma", "25", "--data", str(tmp_path / "d"),
                     "--json"]) == 0
        alone = {r["image"]: r["psnr"] for r in json.loads(capsys.readouterr().out)["per_image"]}
        assert next(r["psnr"] for r in res["per_image"] if r["image"] == name) == pytest.approx(alone[name])
    assert main(["eval", "--sigma", "25", "--data", str(tmp_path / "d"), "--json", "--tta"]) == 0
    res_tta = json.loads(capsys.readouterr().out)  # the default denoisers with the 8-transform ensemble
    assert res_tta["tta"] is True and res["tta"] is False and res_tta["model"].endswith("(tta x8)")
    assert [r["psnr"] for r in res_tta["per_image"]] != [r["psnr"] for r in res["per_image"]]
    assert weights.shipped_sigma(30.0) == "blind" and weights.shipped_sigma(15) == "15"
    assert main(["eval", "--data", str(tmp_path / "d")]) == 2  # neither a model nor --sigma


def test_eval_auto_sigma_scores_the_model_picked_from_the_estimate(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """``restore eval --sigma S --auto-sigma``: each image through the model ``restore denoise`` (no --sigma) picks
    from the noise level estimated on the noisy image -- S itself is not told to it."""
    import json

    import torch

    from restore import weights
    from restore.archs.dncnn import DnCNN
    from restore.cli import main

    torch.manual_seed(0)
    path = tmp_path / "stand_in.pth"
    torch.save(DnCNN(in_channels=3, num_layers=3, num_features=4).state_dict(), path)
    asked: list[str] = []

    def default(sigma, color):  # noqa: ANN001, ANN202
        asked.append(weights.shipped_sigma(sigma))
        return path

    monkeypatch.setattr(weights, "default_denoiser", default)
    yy, xx = np.mgrid[0:80, 0:80] / 80
    clean = np.stack([0.4 + 0.2 * yy, 0.45 + 0.1 * xx, 0.5 + 0.1 * yy * xx], axis=2)
    io.write_image(tmp_path / "d" / "a.png", np.round(clean * 255).astype(np.uint8))
    for sigma, level in (("50", "50"), ("25", "25"), ("37", "blind")):
        asked.clear()
        assert main(["eval", "--sigma", sigma, "--auto-sigma", "--data", str(tmp_path / "d"), "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert asked[-1] == level and res["model"] == "auto-sigma: stand_in x1" and res["sigma"] == float(sigma)
    assert main(["eval", "--auto-sigma", "--data", str(tmp_path / "d")]) == 2  # needs --sigma
    assert main(["eval", "--auto-sigma", "--sigma", "25", "--weights", str(path), "--data", str(tmp_path / "d")]) == 2
    assert "--auto-sigma scores the default denoiser" in capsys.readouterr().err


def test_an_image_too_small_to_score_is_named(tmp_path) -> None:  # noqa: ANN001
    from restore.archs.espcn import ESPCN
    from restore.evaluate import evaluate_sr

    io.write_image(tmp_path / "one.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"one\.png: 0x0 is too small to score \(at least 15x15"):
        evaluate_sr(ESPCN(scale=2, features=(4, 4)).eval(), tmp_path, scale=2, progress=False)
