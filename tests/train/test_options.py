"""Option files: BasicSR's schema parsed once into dataclasses; every key and value checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from restore.train.options import Options, OptionsError, apply_override, load_options, parse_options
from tests.conftest import REPO

OPTION_FILES = sorted(p for p in (REPO / "options").rglob("*.yml") if p.parent.name != "test")  # see test_test_options


def _tiny_tree() -> dict:
    return yaml.safe_load((REPO / "options" / "tiny" / "span_x2.yml").read_text())


def _error(tree: dict, source: str = "opt.yml") -> str:
    with pytest.raises(OptionsError) as e:
        parse_options(tree, source=source)
    return str(e.value)


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: str(p.relative_to(REPO / "options")))
def test_every_shipped_option_file_parses(path: Path):
    opts = load_options(path)
    assert isinstance(opts, Options) and opts.name and opts.train.total_iter > 0
    plain = opts.to_basicsr("/tmp/root", num_gpu=0)
    assert plain["path"]["models"] == f"/tmp/root/experiments/{opts.name}/models"
    assert plain["datasets"]["train"]["phase"] == "train" and plain["datasets"]["train"]["scale"] == opts.scale
    assert plain["network_g"]["type"] == opts.network_g.type


def test_values_are_typed():
    opts = parse_options(_tiny_tree())
    assert opts.train.optim_g.kwargs["lr"] == pytest.approx(2e-3)
    assert opts.datasets["train"].gt_size == 32 and opts.datasets["train"].io_backend.type == "memory"
    assert opts.network_g.kwargs == {"feature_channels": 8, "upscale": 2}
    assert opts.val.metrics["psnr"].crop_border == 2 and opts.val.metrics["psnr"].test_y_channel is True


def test_unknown_key_names_key_and_file():
    tree = _tiny_tree()
    tree["train"]["schedular"] = tree["train"].pop("scheduler")
    msg = _error(tree, "options/x.yml")
    assert msg.startswith("options/x.yml: train.schedular: unknown key") and "did you mean 'scheduler'" in msg
    tree = _tiny_tree()
    tree["datasets"]["train"]["gt_szie"] = 64
    assert "datasets.train.gt_szie: unknown key" in _error(tree)
    tree = _tiny_tree()
    tree["logger"]["print_frq"] = 1
    assert "logger.print_frq" in _error(tree)


@pytest.mark.parametrize(("section", "key", "where"), [
    ("network_g", "feature_channel", "network_g.feature_channel"),
    ("optim", "betas2", "train.optim_g.betas2"),
    ("scheduler", "milestone", "train.scheduler.milestone"),
    ("pixel", "weight", "train.pixel_opt.weight"),
])
def test_wrong_class_arguments_are_named(section: str, key: str, where: str):
    tree = _tiny_tree()
    node = {"network_g": tree["network_g"], "optim": tree["train"]["optim_g"],
            "scheduler": tree["train"]["scheduler"], "pixel": tree["train"]["pixel_opt"]}[section]
    node[key] = 1
    msg = _error(tree)
    assert f"opt.yml: {where}:" in msg and "takes no argument" in msg


@pytest.mark.parametrize(("path", "value", "expect"), [
    ("train.total_iter", "many", "expected an integer"),
    ("train.ema_decay", True, "expected a number"),
    ("datasets.train.use_hflip", "yes", "expected true/false"),
    ("datasets.train.color", "cmyk", "is not one of"),
    ("datasets.train.sampling", "pixels", "is not one of"),
    ("model_type", "SRModell", "did you mean"),
    ("network_g.type", "SPAM", "unknown architecture"),
    ("train.optim_g.type", "Adamm", "is not one of"),
    ("datasets.train.gt_size", 33, "not a multiple of scale"),
])
def test_bad_values(path: str, value: object, expect: str):
    tree = _tiny_tree()
    apply_override(tree, f"{path}={yaml.safe_dump(value).strip().removesuffix('...').strip()}")
    msg = _error(tree)
    assert path.split(".")[0] in msg and expect in msg, msg


def test_yaml_11_float_strings_are_read_as_numbers():
    tree = _tiny_tree()
    tree["train"]["ema_decay"] = "9e-1"
    assert parse_options(tree).train.ema_decay == pytest.approx(0.9)


def test_missing_required_key():
    tree = _tiny_tree()
    del tree["train"]["total_iter"]
    assert "train.total_iter: required key is missing" in _error(tree)


def test_denoise_needs_a_noise_level():
    tree = yaml.safe_load((REPO / "options" / "tiny" / "dncnn_gray_blind.yml").read_text())
    del tree["datasets"]["train"]["sigma_range"]
    assert "datasets.train.sigma" in _error(tree)
    tree = yaml.safe_load((REPO / "options" / "tiny" / "dncnn_gray_blind.yml").read_text())
    tree["datasets"]["train"]["sigma"] = 25
    assert "exactly one of sigma" in _error(tree)


def test_distill_needs_teacher():
    tree = yaml.safe_load((REPO / "options" / "tiny" / "dsclora_x2.yml").read_text())
    del tree["network_t"]
    assert "network_t" in _error(tree)
    tree = yaml.safe_load((REPO / "options" / "tiny" / "span_x2.yml").read_text())
    tree["train"]["distill_opt"] = {"type": "L1Loss"}
    assert "only a DistillModel" in _error(tree)


def test_set_overrides(tmp_path: Path):
    opts = load_options(REPO / "options" / "tiny" / "span_x2.yml",
                        ["train.total_iter=7", "datasets.train.batch_size_per_gpu=2", "path.pretrain_network_g=a.pth",
                         "train.optim_g.lr=1e-4", "network_g.feature_channels=12"])
    assert opts.train.total_iter == 7 and opts.datasets["train"].batch_size_per_gpu == 2
    assert opts.path.pretrain_network_g == "a.pth" and opts.train.optim_g.kwargs["lr"] == pytest.approx(1e-4)
    assert opts.network_g.kwargs["feature_channels"] == 12
    with pytest.raises(OptionsError, match=r"--set train\.totl_iter=3.*train\.totl_iter: unknown key"):
        load_options(REPO / "options" / "tiny" / "span_x2.yml", ["train.totl_iter=3"])
    with pytest.raises(OptionsError, match="expected key.sub=value"):
        load_options(REPO / "options" / "tiny" / "span_x2.yml", ["train.total_iter"])


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(OptionsError, match="no such option file"):
        load_options(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(OptionsError, match="not valid YAML"):
        load_options(bad)


def test_options_and_restore_do_not_import_basicsr():
    code = ("import sys, restore, restore.train, restore.train.options, restore.export, restore.cli.train; "
            "print('basicsr' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert r.stdout.strip() == "False"


def test_nothing_outside_restore_train_imports_basicsr():
    offenders = [p for p in (REPO / "restore").rglob("*.py")
                 if "basicsr" in p.read_text() and "import" in p.read_text() and p.parent.name != "train"
                 and any(line.lstrip().startswith(("import basicsr", "from basicsr"))
                         for line in p.read_text().splitlines())]
    assert not offenders, offenders


def test_resample_tail_needs_a_warm_start():
    tree = yaml.safe_load((REPO / "options" / "tiny" / "span_x2.yml").read_text())
    tree.setdefault("path", {})["pretrain_network_g"] = None
    tree["path"]["resample_tail_g"] = "upsampler.0"
    assert "path.resample_tail_g" in _error(tree) and "pretrain_network_g" in _error(tree)
    tree["path"]["pretrain_network_g"] = "x4.pth"
    assert parse_options(tree).path.resample_tail_g == "upsampler.0"
