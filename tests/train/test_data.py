"""Training data: exact on-the-fly MATLAB bicubic patches, seeded augmentation/noise, resumable sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore.metrics.imresize import imresize
from restore.train.data import DenoiseDataset, ResumableSampler, SRImageDataset, augment, lr_patch, mod_crop, read_as
from tests.train.conftest import make_tiny_data, smooth_image


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_lr_patch_equals_whole_image_resize(scale: int, channels: int):
    rng = np.random.default_rng(scale * 10 + channels)
    hr = rng.integers(0, 256, size=(61, 75, channels), dtype=np.uint8)
    hr = mod_crop(hr, scale)
    whole = imresize(hr, scale=1.0 / scale)
    h, w = whole.shape[:2]
    size = 6
    corners = [(0, 0), (h - size, w - size), (0, w - size), (h - size, 0)]
    corners += [(int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))) for _ in range(6)]
    for top, left in corners:
        patch = lr_patch(hr, top, left, size, scale)
        assert np.array_equal(patch, whole[top:top + size, left:left + size]), (top, left)


def test_augment_covers_the_eight_dihedral_transforms():
    x = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    seen = set()
    for s in range(64):
        (y,) = augment([x], True, True, np.random.default_rng(s))
        seen.add(y.tobytes() + bytes(y.shape))
    assert len(seen) == 8
    (y,) = augment([x], False, False, np.random.default_rng(0))
    assert y is x


def test_sampler_resumes_mid_epoch():
    s = ResumableSampler(7, ratio=3, seed=5)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 21 and sorted(i for i, _ in full) == sorted(list(range(7)) * 3)
    s.set_epoch(2, start=8)
    assert list(s) == full[8:] and len(s) == 13
    s.set_epoch(3)
    assert [i for i, _ in s] != [i for i, _ in full]  # reshuffled per epoch
    # each item is (dataset index, its sample seed (seed, epoch, position)); another seed, another order
    other = list(ResumableSampler(7, ratio=3, seed=6))
    assert [key for _, key in other] == [(6, 0, pos) for pos in range(21)]
    assert sorted(i for i, _ in other) == sorted(list(range(7)) * 3)
    assert other == list(ResumableSampler(7, ratio=3, seed=6))  # reproducible
    s.set_epoch(0)
    assert [i for i, _ in other] != [i for i, _ in s]
    plain = ResumableSampler(7, ratio=3, seed=6, shuffle=False)
    plain.set_epoch(4, start=19)
    assert list(plain) == [(19 % 7, (6, 4, 19)), (20 % 7, (6, 4, 20))]


def _opt(root, **kw) -> dict:
    base = {"name": "t", "phase": "train", "scale": 2, "dataroot_gt": str(root / "tiny_data" / "sr" / "HR"),
            "gt_size": 16, "use_hflip": True, "use_rot": True, "io_backend": {"type": "memory"}}
    base.update(kw)
    return base


def test_sr_dataset_is_a_function_of_the_key(tmp_path):
    make_tiny_data(tmp_path)
    ds = SRImageDataset(_opt(tmp_path))
    key = (3, (1, 0, 5))
    a, b = ds[key], ds[key]
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert a["lq"].shape == (3, 8, 8) and a["gt"].shape == (3, 16, 16)
    c = ds[(3, (1, 0, 6))]
    assert not torch.equal(a["gt"], c["gt"])
    # disk and memory back-ends read the same pixels
    disk = SRImageDataset(_opt(tmp_path, io_backend={"type": "disk"}))
    assert torch.equal(disk[key]["lq"], a["lq"])


def test_sr_dataset_lr_is_matlab_bicubic_of_the_gt(tmp_path):
    make_tiny_data(tmp_path)
    ds = SRImageDataset(_opt(tmp_path, use_hflip=False, use_rot=False, gt_size=64))
    item = ds[(0, (0, 0, 0))]
    gt = (item["gt"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    lq = (item["lq"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    hr = read_as(ds.gt_paths[0], "rgb")  # 64x72: the 64x64 crop starts at row 0
    whole = imresize(hr, scale=0.5)
    left = next(x for x in range(0, 9, 2) if np.array_equal(hr[:64, x:x + 64], gt))
    assert np.array_equal(lq, whole[:32, left // 2:left // 2 + 32])


def test_paired_and_gray_and_y_datasets(tmp_path):
    make_tiny_data(tmp_path)
    d = tmp_path / "tiny_data" / "sr" / "val"
    paired = SRImageDataset(_opt(tmp_path, dataroot_gt=str(d / "HR"), dataroot_lq=str(d / "LR_bicubic" / "X2"),
                                 filename_tmpl="{}x2"))
    item = paired[(1, (0, 0, 0))]
    assert item["lq"].shape == (3, 8, 8)
    val = SRImageDataset(_opt(tmp_path, phase="val", dataroot_gt=str(d / "HR"),
                              dataroot_lq=str(d / "LR_bicubic" / "X2"), filename_tmpl="{}x2", color="y"))
    v = val[0]
    assert v["lq"].dtype == np.uint8 and v["lq"].shape == (24, 24, 3) and v["gt"].shape == (48, 48, 3)
    ytrain = SRImageDataset(_opt(tmp_path, color="y"))
    assert ytrain[(0, (0, 0, 0))]["lq"].shape == (1, 8, 8)
    gray = SRImageDataset(_opt(tmp_path, color="gray"))
    assert gray[(0, (0, 0, 0))]["gt"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="no LR file"):
        SRImageDataset(_opt(tmp_path, dataroot_gt=str(d / "HR"), dataroot_lq=str(d / "LR_bicubic" / "X2")))


def test_denoise_dataset_noise(tmp_path):
    make_tiny_data(tmp_path)
    base = {"name": "n", "phase": "train", "scale": 1, "dataroot_gt": str(tmp_path / "tiny_data" / "gray" / "train"),
            "gt_size": 32, "color": "gray"}
    fixed = DenoiseDataset({**base, "sigma": 25})
    stds = [float((it["lq"] - it["gt"]).std()) for it in (fixed[(i % 4, (0, 0, i))] for i in range(8))]
    assert np.mean(stds) == pytest.approx(25 / 255, rel=0.05)
    blind = DenoiseDataset({**base, "sigma_range": [0, 55]})
    sig = [float(blind[(i % 4, (0, 0, i))]["sigma"]) for i in range(40)]
    assert 0 <= min(sig) < 10 and 45 < max(sig) <= 55
    a, b = blind[(1, (3, 2, 1))], blind[(1, (3, 2, 1))]
    assert torch.equal(a["lq"], b["lq"])
    val = DenoiseDataset({**base, "phase": "val", "sigma": 15,
                          "dataroot_gt": str(tmp_path / "tiny_data" / "gray" / "val")})
    from restore.evaluate import add_noise

    v = val[0]
    assert v["gt"].ndim == 2 and np.array_equal(v["lq"], add_noise(v["gt"], 15, 0))


def test_small_image_is_a_clear_error(tmp_path):
    from restore import io

    io.write_image(tmp_path / "hr" / "a.png", smooth_image(np.random.default_rng(0), 10, 10, 3))
    opt = {"name": "x", "phase": "train", "scale": 2, "dataroot_gt": str(tmp_path / "hr"), "gt_size": 32}
    with pytest.raises(ValueError, match="every image is smaller than the patch"):
        SRImageDataset(opt)
    io.write_image(tmp_path / "hr" / "b.png", smooth_image(np.random.default_rng(0), 40, 36, 3))
    for backend in ("disk", "memory"):
        ds = SRImageDataset({**opt, "io_backend": {"type": backend}})
        assert len(ds) == 1 and ds.gt_paths[0].name == "b.png"
        assert ds[(0, (0, 0, 0))]["gt"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="not a directory"):
        SRImageDataset({"name": "x", "phase": "train", "scale": 2, "dataroot_gt": str(tmp_path / "none")})


def test_area_sampling_draws_images_by_their_patch_positions(tmp_path):
    from restore import io

    rng = np.random.default_rng(0)
    io.write_image(tmp_path / "hr" / "big.png", smooth_image(rng, 80, 96, 3))  # 65 * 81 = 5265 positions of 16x16
    io.write_image(tmp_path / "hr" / "small.png", smooth_image(rng, 20, 20, 3))  # 5 * 5 = 25
    base = {"name": "a", "phase": "train", "scale": 1, "dataroot_gt": str(tmp_path / "hr"), "gt_size": 16,
            "sigma": 25, "color": "rgb"}
    keys = [(i % 2, (0, 0, i)) for i in range(600)]
    plain = DenoiseDataset(base)
    assert [plain[k]["gt_path"] for k in keys[:4]] == [str(p) for p in plain.gt_paths] * 2  # the key's image
    area = DenoiseDataset({**base, "sampling": "area"})
    picks = [area[k]["gt_path"].endswith("big.png") for k in keys]
    assert 0.98 < np.mean(picks) < 1.0  # 5265 / 5290 = 0.995: the small image still comes up
    assert torch.equal(area[keys[7]]["lq"], area[keys[7]]["lq"])  # still a function of the key
    sr = SRImageDataset({**base, "scale": 2, "sampling": "area"})  # positions of the 8x8 LR patch: 33 * 41 vs 3 * 3
    assert np.mean([sr[k]["lq_path"].endswith("big.png") for k in keys]) > 0.98
    with pytest.raises(ValueError, match="sampling 'area' is for training"):
        DenoiseDataset({**base, "phase": "val", "sampling": "area"})
