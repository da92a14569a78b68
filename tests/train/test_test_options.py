"""Test option files (options/test/*.yml) and ``restore test``: parsed like the training files, run end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from restore.train.options import (
    OptionsError,
    TestOptions,
    load_options,
    load_test_options,
    parse_test_options,
)
from tests.conftest import REPO, shared_path
from tests.train.conftest import smooth_image

TEST_FILES = sorted((REPO / "options" / "test").glob("*.yml"))
RECIPES = ("span_tiny_x2", "span_tiny_x3", "span_tiny_x4", "espcn_x2", "espcn_x3", "espcn_x4", "dncnn_s15",
           "dncnn_s25", "dncnn_s50", "dncnn_b", "dncnn_s25_weighted", "cdncnn_s15", "cdncnn_s25", "cdncnn_s50",
           "cdncnn_b")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from restore.cli import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------------ the files


def test_one_test_file_per_shipped_recipe():
    assert sorted(p.stem for p in TEST_FILES) == sorted(RECIPES)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.stem)
def test_every_test_file_parses_and_matches_its_training_file(path: Path):
    assert path.read_text().startswith("# "), "header comment"
    o = load_test_options(path)  # network_g checked against the architecture's constructor
    t = load_options(REPO / "options" / "train" / path.name)
    assert isinstance(o, TestOptions) and (o.name, o.model_type, o.scale) == (t.name, t.model_type, t.scale)
    assert o.network_g is not None and (o.network_g.type, o.network_g.kwargs) == (t.network_g.type, t.network_g.kwargs)
    assert o.path.pretrain_network_g == f"experiments/{t.name}/models/net_g_latest.pth"
    assert o.path.strict_load_g and o.path.param_key_g == "params_ema"
    assert set(o.val.metrics) == {"psnr", "ssim"}
    names = [ds.name for ds in o.datasets.values()]
    if o.task == "sr":
        for m in o.val.metrics.values():
            assert (m.crop_border, m.test_y_channel) == (o.scale, True)
        assert names == ["Set5", "Set14", "B100"][: 3 if o.scale == 4 else 2]
        assert all(f"X{o.scale}" in (ds.dataroot_lq or "") or ds.dataroot_gt.endswith(f"image_SRF_{o.scale}")
                   for ds in o.datasets.values())
    else:
        assert all(m.crop_border == 0 and not m.test_y_channel for m in o.val.metrics.values())
        train = t.datasets["train"]
        sigmas = [15.0, 25.0, 50.0] if train.sigma is None else [train.sigma]
        sets = ["Set12", "BSD68"] if train.color == "gray" else ["CBSD68", "Kodak24"]
        assert names == [f"{s}_s{g:g}" for s in sets for g in sigmas]
        assert all(ds.color == train.color and ds.noise_seed == 0 for ds in o.datasets.values())


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.stem)
def test_test_files_point_at_existing_data(path: Path):
    shared_path("data")
    o = load_test_options(path)
    for ds in o.datasets.values():
        for d in (ds.dataroot_gt, ds.dataroot_lq):
            if d is not None:
                assert (REPO / d).is_dir(), d


# --------------------------------------------------------------------------------------------- errors


def _tree(name: str = "span_tiny_x4") -> dict[str, Any]:
    return yaml.safe_load((REPO / "options" / "test" / f"{name}.yml").read_text())


def _error(tree: dict[str, Any], tmp_path: Path, overrides: tuple[str, ...] = ()) -> str:
    f = tmp_path / "my_test.yml"
    f.write_text(yaml.safe_dump(tree))
    with pytest.raises(OptionsError) as e:
        load_test_options(f, overrides)
    msg = str(e.value)
    assert msg.startswith(str(f)) and "\n" not in msg, msg
    return msg


@pytest.mark.parametrize(("edit", "expect"), [
    (lambda t: t["datasets"]["test_1"].update(gt_size=64), "datasets.test_1.gt_size: unknown key 'gt_size'"),
    (lambda t: t["val"]["metrics"]["psnr"].update(crop_boder=4), "did you mean 'crop_border'"),
    (lambda t: t["path"].update(pretrain_network=t["path"].pop("pretrain_network_g")),
     "path.pretrain_network: unknown key"),
    (lambda t: t.update(train={"total_iter": 1}), "train: unknown key 'train'"),
    (lambda t: t["network_g"].update(feature_channel=8), "network_g.feature_channel: architecture SPAN takes no"),
    (lambda t: t["network_g"].update(type="SPAM"), "network_g.type: unknown architecture 'SPAM'"),
    (lambda t: t["datasets"]["test_2"].update(sigma=25), "datasets.test_2.sigma: noise levels and opponent"),
    (lambda t: t["datasets"]["test_2"].update(name="Set5"), "datasets.test_2.name: 'Set5' is also the name"),
    (lambda t: t["datasets"].update(val_1=t["datasets"].pop("test_1")), "datasets.val_1: test sets are named"),
    (lambda t: t["datasets"]["test_1"].update(color="y"), "datasets.test_1.color"),
    (lambda t: t["datasets"]["test_1"].update(filename_tmpl="x4"), "filename_tmpl: must contain"),
    (lambda t: t["path"].pop("pretrain_network_g"), "path.pretrain_network_g: required key is missing"),
    (lambda t: t["val"]["metrics"]["psnr"].update(type="calculate_lpips"), "val.metrics.psnr.type"),
    (lambda t: t.update(scale="four"), "scale: expected an integer"),
    (lambda t: t.update(model_type="SRModel"), "model_type: 'SRModel' is not one of"),
])
def test_bad_test_files_name_key_and_file(tmp_path: Path, edit: Any, expect: str):
    tree = _tree()
    edit(tree)
    assert expect in _error(tree, tmp_path)


def test_denoise_test_set_needs_sigma(tmp_path: Path):
    tree = _tree("dncnn_s25")
    del tree["datasets"]["test_1"]["sigma"]
    assert "datasets.test_1.sigma: validation and test sets need a fixed sigma" in _error(tree, tmp_path)
    tree = _tree("dncnn_s25")
    tree["datasets"]["test_1"]["dataroot_lq"] = "noisy"
    assert "datasets.test_1.dataroot_lq" in _error(tree, tmp_path)
    tree = _tree("dncnn_s25")
    tree["scale"] = 2
    assert "scale: a DenoiseModel has scale 1" in _error(tree, tmp_path)


def test_set_overrides_are_validated_like_the_file(tmp_path: Path):
    path = REPO / "options" / "test" / "dncnn_b.yml"
    o = load_test_options(path, ["num_gpu=0", "datasets.test_1.sigma=30", "val.save_img=true",
                                 "path.pretrain_network_g=w.pth"])
    assert o.num_gpu == 0 and o.datasets["test_1"].sigma == 30.0 and o.val.save_img
    assert o.path.pretrain_network_g == "w.pth"
    with pytest.raises(OptionsError, match=r"--set val\.save_imgs=true.*val\.save_imgs: unknown key"):
        load_test_options(path, ["val.save_imgs=true"])
    with pytest.raises(OptionsError, match=r"datasets\.test_1\.sigma: expected a number"):
        load_test_options(path, ["datasets.test_1.sigma=high"])


def test_network_g_may_be_omitted():
    tree = _tree()
    del tree["network_g"]
    assert parse_test_options(tree).network_g is None


def test_testing_does_not_import_basicsr():
    code = ("import sys, restore.train.testing, restore.cli.train, restore.cli; restore.cli.build_parser(); "
            "print('basicsr' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert r.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------- end to end


def _sr_data(root: Path, scale: int) -> tuple[Path, Path]:
    """A paired folder (HR/ + LR_bicubic/X{s}/) and a SelfExSR folder (image_SRF_{s}), 2 images each."""
    from restore import io
    from restore.metrics.imresize import imresize

    rng = np.random.default_rng(1)
    paired, srf = root / "Tiny", root / "TinySRF" / f"image_SRF_{scale}"
    for i in range(2):
        hr = smooth_image(rng, 36, 30, 3)
        io.write_image(paired / "HR" / f"a{i}.png", hr)
        io.write_image(paired / "LR_bicubic" / f"X{scale}" / f"a{i}x{scale}.png", imresize(hr, 1 / scale))
        hr = smooth_image(rng, 24, 36, 3)
        io.write_image(srf / f"img_{i}_SRF_{scale}_HR.png", hr)
        io.write_image(srf / f"img_{i}_SRF_{scale}_LR.png", imresize(hr, 1 / scale))
    return paired, srf


def _write_opts(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text("# generated by tests/train/test_test_options.py\n" + yaml.safe_dump(tree, sort_keys=False))
    return path


def _sr_tree(tmp_path: Path, weights: Path, *, network: bool = True, **val: Any) -> dict[str, Any]:
    paired, srf = _sr_data(tmp_path, 2)
    tree: dict[str, Any] = {
        "name": "tiny_espcn_x2", "model_type": "RestoreSRModel", "scale": 2, "num_gpu": 0,
        "datasets": {
            "test_1": {"name": "Tiny", "type": "SRImageDataset", "dataroot_gt": str(paired / "HR"),
                       "dataroot_lq": str(paired / "LR_bicubic" / "X2"), "filename_tmpl": "{}x2"},
            "test_2": {"name": "TinySRF", "type": "SRImageDataset", "dataroot_gt": str(srf)},
        },
        "network_g": {"type": "ESPCN", "scale": 2, "channels": 1, "features": [8, 4]},
        "path": {"pretrain_network_g": str(weights), "strict_load_g": True, "param_key_g": "params_ema"},
        "val": {"metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2, "test_y_channel": True},
                            "ssim": {"type": "calculate_ssim", "crop_border": 2, "test_y_channel": True}}, **val},
    }
    if not network:
        del tree["network_g"]
    return tree


def _espcn(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A random tiny ESPCN x2 saved as a training run saves it (params + a different params_ema)."""
    from restore.archs.espcn import ESPCN

    ema, raw = ESPCN(scale=2, channels=1, features=[8, 4]), ESPCN(scale=2, channels=1, features=[8, 4])
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, path)
    return path, ema.eval()


def test_restore_test_sr_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from restore.evaluate import evaluate_sr

    weights, ema = _espcn(tmp_path)
    opt = _write_opts(tmp_path / "t.yml", _sr_tree(tmp_path, weights, save_img=True))
    rc, out, err = _run(["test", "-opt", str(opt), "--root", str(tmp_path / "run")], capsys)
    assert rc == 0, err
    assert "Tiny (test_1, x2, 2 images" in out and "TinySRF (test_2" in out and "mean" in out
    results = tmp_path / "run" / "results" / "tiny_espcn_x2"
    m = json.loads((results / "metrics.json").read_text())
    assert m["weights_key"] == "params_ema" and m["device"] == "cpu" and list(m["datasets"]) == ["Tiny", "TinySRF"]
    for name, d in m["datasets"].items():
        assert d["images"] == 2 and math.isfinite(d["psnr"]) and 0 < d["ssim"] <= 1
        # the papers' convention in the file's metrics gives exactly restore eval's numbers
        ref = evaluate_sr(ema, d["data"] if name == "TinySRF" else tmp_path / "Tiny", scale=2, progress=False)
        assert [r["psnr"] for r in d["per_image"]] == pytest.approx([r["psnr"] for r in ref.per_image], abs=1e-9)
        assert [r["ssim"] for r in d["per_image"]] == pytest.approx([r["ssim"] for r in ref.per_image], abs=1e-9)
    saved = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.png"))
    assert saved == ["Tiny/a0_tiny_espcn_x2.png", "Tiny/a1_tiny_espcn_x2.png",
                     "TinySRF/img_0_SRF_2_tiny_espcn_x2.png", "TinySRF/img_1_SRF_2_tiny_espcn_x2.png"]
    assert not list(results.rglob("*.part"))


def test_restore_test_json_param_key_and_autodetect(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    weights, _ = _espcn(tmp_path)
    opt = _write_opts(tmp_path / "t.yml", _sr_tree(tmp_path, weights, network=False))
    root = tmp_path / "run"
    rc, out, err = _run(["test", "-opt", str(opt), "--root", str(root), "--json"], capsys)
    assert rc == 0, err
    ema = json.loads(out)
    assert ema == json.loads((root / "results" / "tiny_espcn_x2" / "metrics.json").read_text())
    assert ema["weights_key"] == "params_ema" and "ESPCN" in ema["network"]
    rc, out, err = _run(["test", "-opt", str(opt), "--root", str(root), "--json", "--set", "path.param_key_g=params",
                         "--set", "val.metrics={psnr: {type: calculate_psnr, crop_border: 0}}"], capsys)
    assert rc == 0, err
    raw = json.loads(out)
    assert raw["weights_key"] == "params" and set(raw["datasets"]["Tiny"]) >= {"psnr"} and "ssim" not in raw[
        "datasets"]["Tiny"]
    assert raw["datasets"]["Tiny"]["psnr"] != ema["datasets"]["Tiny"]["psnr"]


def test_restore_test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    weights, _ = _espcn(tmp_path)
    opt = _write_opts(tmp_path / "t.yml", _sr_tree(tmp_path, weights))
    cases = [
        (["--set", "network_g.features=[16, 8]"], "does not fit network_g"),
        (["--set", "path.pretrain_network_g=missing.pth"], "no such weights file"),
        (["--set", "path.param_key_g=params_x"], "no 'params_x' entry"),
        (["--set", "scale=3", "--set", "network_g.scale=3"], "does not fit network_g"),
        (["--set", "scale=3"], "is a sr x2 network"),
        (["--set", "datasets.test_1.dataroot_gt=nowhere"], "nowhere"),
        (["--set", "datasets.test_1.bogus=1"], "datasets.test_1.bogus: unknown key"),
    ]
    for extra, expect in cases:
        rc, _, err = _run(["test", "-opt", str(opt), "--root", str(tmp_path / "run"), *extra], capsys)
        assert rc == 2 and expect in err and err.count("\n") == 1, (extra, err)


def test_restore_test_denoise_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from restore import io
    from restore.archs.dncnn import DnCNN
    from restore.evaluate import evaluate_denoise

    rng = np.random.default_rng(2)
    for i in range(2):
        io.write_image(tmp_path / "gray" / f"g{i}.png", smooth_image(rng, 24, 28, 1))
    net = DnCNN(in_channels=1, num_layers=3, num_features=8, batch_norm=True).eval()
    weights = tmp_path / "dn.pth"
    torch.save({"params": net.state_dict()}, weights)  # ema_decay 0: no params_ema (BasicSR falls back)
    tree = {
        "name": "tiny_dncnn", "model_type": "DenoiseModel", "num_gpu": 0,
        "datasets": {f"test_{i}": {"name": f"Gray_s{s}", "type": "DenoiseDataset", "color": "gray", "sigma": s,
                                   "dataroot_gt": str(tmp_path / "gray"), "noise_seed": 0}
                     for i, s in ((1, 15), (2, 50))},
        "network_g": {"type": "DnCNN", "in_channels": 1, "num_layers": 3, "num_features": 8, "batch_norm": True},
        "path": {"pretrain_network_g": str(weights), "param_key_g": "params_ema"},
        "val": {"metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 0},
                            "ssim": {"type": "calculate_ssim", "crop_border": 0}}},
    }
    opt = _write_opts(tmp_path / "dn.yml", tree)
    rc, out, err = _run(["test", "-opt", str(opt), "--root", str(tmp_path)], capsys)
    assert rc == 0, err
    assert "no 'params_ema' entry; using 'params'" in err and "Gray_s15 (test_1, sigma 15, 2 images" in out
    m = json.loads((tmp_path / "results" / "tiny_dncnn" / "metrics.json").read_text())
    for name, sigma in (("Gray_s15", 15), ("Gray_s50", 50)):
        d = m["datasets"][name]
        assert d["sigma"] == sigma and d["images"] == 2 and math.isfinite(d["psnr"])
        ref = evaluate_denoise(net, tmp_path / "gray", sigma=sigma, progress=False)
        assert [r["psnr"] for r in d["per_image"]] == pytest.approx([r["psnr"] for r in ref.per_image], abs=1e-9)
    assert m["datasets"]["Gray_s15"]["psnr"] > m["datasets"]["Gray_s50"]["psnr"]
    rc, _, err = _run(["test", "-opt", str(opt), "--root", str(tmp_path), "--set", "datasets.test_1.color=rgb"],
                      capsys)
    assert rc == 2 and "datasets.test_1.color: rgb images for a 1-channel network" in err


def test_shipped_test_file_on_shared_data(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch):
    """options/test/espcn_x2.yml as shipped (random weights in place of the trained ones) on ../shared Set5."""
    from restore.archs.espcn import ESPCN
    from restore.evaluate import evaluate_sr

    set5 = shared_path("data", "sr", "Set5")
    shared_path("data", "sr", "Set14", "image_SRF_2")
    net = ESPCN(scale=2, channels=1, features=[64, 32]).eval()
    weights = tmp_path / "w.pth"
    torch.save({"params_ema": net.state_dict(), "params": net.state_dict()}, weights)
    monkeypatch.chdir(REPO)  # the file's paths are relative to the project root, as in BasicSR
    rc, out, err = _run(["test", "-opt", "options/test/espcn_x2.yml", "--root", str(tmp_path), "--json",
                         "--set", f"path.pretrain_network_g={weights}", "--set", "num_gpu=0"], capsys)
    assert rc == 0, err
    m = json.loads(out)
    assert m["datasets"]["Set5"]["images"] == 5 and m["datasets"]["Set14"]["images"] == 14
    ref = evaluate_sr(net, set5, scale=2, progress=False)
    assert m["datasets"]["Set5"]["psnr"] == pytest.approx(ref.psnr_y, abs=1e-4)
