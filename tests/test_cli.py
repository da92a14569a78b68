"""The installed ``restore`` console script, run as a user would (subprocess)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from restore import io
from restore.archs.espcn import ESPCN
from restore.archs.span import SPAN

from .conftest import restore_exe


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([restore_exe(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    io.write_image(tmp_path / "in" / "a.png", rng.integers(0, 256, (37, 41, 3), dtype=np.uint8))
    io.write_image(tmp_path / "in" / "b.png", rng.integers(0, 65536, (20, 24), dtype=np.uint16))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    torch.save(ESPCN(scale=2).state_dict(), tmp_path / "espcn.pth")
    torch.save(SPAN(feature_channels=26, upscale=2, form="deploy").state_dict(), tmp_path / "span.pth")
    return tmp_path


def test_folder_upscale_reports_failures_and_keeps_going(workdir: Path) -> None:
    r = _run("upscale", "in", "--weights", "espcn.pth", "-o", "out", "--scale", "2", cwd=workdir)
    assert r.returncode == 1, r.stderr  # one input failed, the others are done
    assert "Traceback" not in r.stderr and "broken.png" in r.stderr
    a, b = io.read_image(workdir / "out" / "a_x2.png"), io.read_image(workdir / "out" / "b_x2.png")
    assert a.shape == (74, 82, 3) and a.dtype == np.uint8
    assert b.shape == (40, 48) and b.dtype == np.uint16  # gray 16-bit stays gray 16-bit
    assert "2 image(s) written" in r.stdout and "1 failed" in r.stdout
    assert not (workdir / "out" / "broken_x2.png").exists()
    again = _run("upscale", "in/a.png", "--weights", "espcn.pth", "-o", "out", cwd=workdir)
    assert again.returncode == 0 and "exists (use --overwrite)" in again.stderr


def test_tiled_equals_whole_through_the_cli(workdir: Path) -> None:
    for tile, name in (("0", "whole.png"), ("16", "tiled.png")):
        r = _run("upscale", "in/a.png", "--weights", "span.pth", "--tile", tile, "-o", name,
                 "--precision", "fp32", "--device", "cpu", cwd=workdir)
        assert r.returncode == 0, r.stderr
    whole, tiled = io.read_image(workdir / "whole.png"), io.read_image(workdir / "tiled.png")
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_usage_errors_exit_2_with_one_line(workdir: Path) -> None:
    r = _run("upscale", "in/a.png", "--weights", "espcn.pth", "--scale", "4", cwd=workdir)
    assert r.returncode == 2 and "model is x2" in r.stderr and "Traceback" not in r.stderr
    r = _run("upscale", "in/a.png", "--model", "no_such_model", cwd=workdir)
    assert r.returncode == 2 and "no shipped model named 'no_such_model'" in r.stderr and "--weights" in r.stderr
    r = _run("denoise", "in/a.png", "--weights", "espcn.pth", cwd=workdir)
    assert r.returncode == 2 and "restore upscale" in r.stderr
    r = _run("upscale", "in/a.png", "--weights", "espcn.pth", "--tile", "3", cwd=workdir)
    assert r.returncode == 2


@pytest.mark.parametrize("sigma", ["nan", "inf", "-5", "300", "abc"])
def test_eval_sigma_must_be_a_noise_level(sigma: str, capsys: pytest.CaptureFixture[str]) -> None:
    from restore.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", "--data", ".", "--sigma", sigma])
    assert e.value.code == 2 and "expected a noise level from 0 to 255" in capsys.readouterr().err


def test_calib_is_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from restore.cli import main

    (tmp_path / "empty").mkdir()
    for calib, says in ((tmp_path / "nothing", "no such folder or image"), (tmp_path / "empty", "no images")):
        with pytest.raises(SystemExit) as e:
            main(["upscale", str(tmp_path / "a.png"), "--precision", "int8", "--calib", str(calib)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"argument --calib: {calib}: {says}" in err


def test_tta_runs_the_eight_transforms_and_says_so(workdir: Path) -> None:
    outs = {}
    for flag, name in (((), "plain.png"), (("--tta",), "tta.png")):
        r = _run("upscale", "in/a.png", "--weights", "span.pth", "-o", name, "--device", "cpu", *flag, cwd=workdir)
        assert r.returncode == 0, r.stderr
        assert ("tta x8" in r.stdout) == bool(flag), r.stdout
        outs[name] = io.read_image(workdir / name)
    assert outs["tta.png"].shape == outs["plain.png"].shape == (74, 82, 3)
    assert np.abs(outs["tta.png"].astype(int) - outs["plain.png"].astype(int)).max() > 0


def test_the_summary_rate_keeps_two_significant_digits_when_slow() -> None:
    from types import SimpleNamespace

    from restore.cli.process import Tally

    t = Tally()
    t.report(SimpleNamespace(status="written", megapixels=0.06, path="m", message="a -> b"))
    assert "(0.0021 output MP/s)" in t.summary(28.4, "m", "")  # a slow --tta run, not "0.00"
    assert "(1.80 output MP/s)" in t.summary(0.0333, "m", "")
    assert "MP/s" not in Tally().summary(1.0, "m", "")
