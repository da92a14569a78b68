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
