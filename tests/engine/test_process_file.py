"""restore.engine.batch: one input file start to finish (process_file), the model choice (ModelChoice / Runners) and
the input guard, as the plain command line and the Ray workers use them. CPU, tiny seeded ESPCN."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from restore import io
from restore.archs.espcn import ESPCN
from restore.engine.batch import (
    InputGuard,
    ModelChoice,
    Outcome,
    ProcessOptions,
    Runners,
    Sizing,
    preflight,
    process_file,
)
from restore.io.inputs import Job


@pytest.fixture(scope="module")
def espcn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "espcn_x2.pth"
    torch.save(ESPCN(scale=2, features=(8, 8)).state_dict(), p)
    return p


@pytest.fixture(scope="module")
def runners(espcn: Path) -> Runners:
    return Runners(ModelChoice("sr", weights=str(espcn), device="cpu", tile=None, precision="fp32"))


def _png(path: Path, h: int = 12, w: int = 10, seed: int = 0) -> Path:
    io.write_image(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def _job(tmp_path: Path, name: str = "a.png") -> Job:
    return Job(_png(tmp_path / "in" / name), tmp_path / "out" / name.replace(".png", "_x2.png"), Path(name))


def test_written_outcome_and_output(runners: Runners, tmp_path: Path) -> None:
    job = _job(tmp_path)
    notes: list[str] = []
    o = process_file(job, runners, ProcessOptions(), on_note=notes.append)
    assert o.status == "written", o
    assert o.message == f"{job.src} -> {job.dst} (10x12 -> 20x24)"
    assert (o.in_size, o.out_size) == ((10, 12), (20, 24)) and o.megapixels == pytest.approx(480 / 1e6)
    m = runners.first.meta
    assert o.path == f"{m.family}/{m.variant} x2, cpu, fp32 eager" and o.seconds > 0 and notes == []
    expected = runners.first.run(io.read_image(job.src))
    assert np.array_equal(io.read_image(job.dst), expected)


def test_existing_output_is_skipped_unless_overwrite(runners: Runners, tmp_path: Path) -> None:
    job = _job(tmp_path)
    job.dst.parent.mkdir(parents=True)
    job.dst.write_bytes(b"earlier")
    o = process_file(job, runners, ProcessOptions())
    assert (o.status, o.message) == ("skipped", f"{job.src}: {job.dst} exists (use --overwrite)")
    assert job.dst.read_bytes() == b"earlier"
    assert process_file(job, runners, ProcessOptions(overwrite=True)).status == "written"
    assert job.dst.read_bytes() != b"earlier"


def test_verify_existing_reports_written_only_for_identical_bytes(runners: Runners, tmp_path: Path) -> None:
    job = _job(tmp_path)
    assert process_file(job, runners, ProcessOptions()).status == "written"
    before = os.stat(job.dst)
    again = process_file(job, runners, ProcessOptions(verify_existing=True))
    assert again.status == "written" and again.out_size == (20, 24)
    after = os.stat(job.dst)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not written a second time
    job.dst.write_bytes(b"someone else's")
    other = process_file(job, runners, ProcessOptions(verify_existing=True))
    assert other.status == "skipped" and job.dst.read_bytes() == b"someone else's"


def test_unreadable_input_fails_with_one_line(runners: Runners, tmp_path: Path) -> None:
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not a png")
    o = process_file(Job(bad, tmp_path / "out" / "b_x2.png", Path("b.png")), runners, ProcessOptions())
    assert o.status == "failed" and str(bad) in o.message and "\n" not in o.message
    assert not (tmp_path / "out" / "b_x2.png").exists()


def test_refused_name_fails_and_debug_raises(runners: Runners, tmp_path: Path) -> None:
    src = _png(tmp_path / "a.png")
    job = Job(src, tmp_path / ("x" * 300 + ".png"), Path("a.png"))
    o = process_file(job, runners, ProcessOptions())
    assert o.status == "failed" and o.message.startswith(f"{src} -> ") and "too long" in o.message.lower()
    with pytest.raises(OSError):
        process_file(job, runners, ProcessOptions(debug=True))


def test_output_onto_an_input_is_refused(runners: Runners, tmp_path: Path) -> None:
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    guard = InputGuard([a, b])
    job = Job(a, b, Path("a.png"))
    o = process_file(job, runners, ProcessOptions(overwrite=True), guard=guard)
    assert o.status == "failed" and "would overwrite an input" in o.message
    assert preflight(job, ProcessOptions(), guard) == Outcome("failed", o.message)
    assert preflight(Job(a, tmp_path / "new.png", Path("a.png")), ProcessOptions(), guard) is None


def test_input_guard_matches_same_file(tmp_path: Path) -> None:
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    os.link(a, tmp_path / "hard.png")
    (tmp_path / "soft.png").symlink_to(b)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    sources = [a, tmp_path / "soft.png", tmp_path / "dangling.png", tmp_path / "missing.png"]
    guard = InputGuard(sources)
    candidates = [a, b, tmp_path / "hard.png", tmp_path / "soft.png", tmp_path / "dangling.png",
                  tmp_path / "gone.png", tmp_path / "missing.png", tmp_path / "other.png", tmp_path / "." / "a.png"]
    for dst in candidates:
        assert guard.is_input(dst) == any(io.same_file(dst, f) for f in sources), dst


def test_sizing_resamples_after_the_network(runners: Runners, tmp_path: Path) -> None:
    job = _job(tmp_path)
    o = process_file(job, runners, ProcessOptions(sizing=Sizing(outscale=1.5)))
    assert o.status == "written" and o.out_size == (15, 18)
    with pytest.raises(ValueError):
        ModelChoice("sr", sizing=Sizing(width=0)).check_sizing()


def test_model_choice_checks_task_and_scale(espcn: Path) -> None:
    with pytest.raises(ValueError, match="model is x2, but --scale 4"):
        ModelChoice("sr", weights=str(espcn), scale=4).load_first()
    with pytest.raises(ValueError, match="use 'restore upscale'"):
        ModelChoice("denoise", weights=str(espcn)).load_first()


@pytest.mark.shipped
def test_denoise_picks_gray_or_colour_model_per_image() -> None:
    r = Runners(ModelChoice("denoise", sigma="25", device="cpu", tile=None, precision="fp32"))
    gray, rgb = np.zeros((9, 9), np.uint8), np.zeros((9, 9, 3), np.uint8)
    assert r(rgb) is r.first and r(gray) is not r.first
    assert r(gray).meta.in_channels == 1 and r(rgb).meta.in_channels == 3
    assert r(gray) is r(gray)  # built once


def _smooth_noisy(side: int, sigma: float, channels: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side] / side
    clean = np.stack([0.35 + 0.3 * yy, 0.4 + 0.2 * xx, 0.5 + 0.15 * np.sin(3 * (xx + yy))], axis=2)[..., :channels]
    noisy = clean + np.random.default_rng(0).normal(0, sigma / 255, clean.shape)
    return np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8).squeeze()


@pytest.mark.shipped
def test_denoise_auto_sigma_routes_each_image_by_its_estimated_noise(tmp_path: Path) -> None:
    from restore.weights import SIGMA_BANDS, default_denoiser

    choice = ModelChoice("denoise", sigma="auto", device="cpu", tile=None, precision="fp32")
    assert choice.first_weights() == default_denoiser("blind", "rgb")  # before any image: the blind model
    r = Runners(choice)
    for sigma, level in ((25, "25"), (50, "50"), (15, "15"), (5, "blind"), (37, "blind")):
        assert [k for k, (lo, hi) in SIGMA_BANDS["rgb"].items() if lo <= sigma <= hi] == ([level] if level != "blind"
                                                                                        else [])
        runner, why = r.route(_smooth_noisy(96, sigma))
        assert runner is r.route(_smooth_noisy(96, sigma, 3))[0]  # built once
        assert why.startswith("noise sigma ~") and why.endswith(f"{'sigma ' + level if level != 'blind' else 'blind'}"
                                                                  " model"), why
        assert abs(float(why.split("~")[1].split(":")[0]) - sigma) < 2  # clipping to [0, 1] takes a little
    gray, why = r.route(_smooth_noisy(96, 25, 1))
    assert gray.meta.in_channels == 1 and why.endswith("sigma 25 model")
    tiny, why = r.route(_smooth_noisy(20, 25))
    assert tiny is r.first and why == "a 20x20 image is too small to estimate its noise level: blind model"
    io.write_image(tmp_path / "n.png", _smooth_noisy(96, 25))
    o = process_file(Job(tmp_path / "n.png", tmp_path / "n_out.png", Path("n.png")), r, ProcessOptions())
    assert o.status == "written" and "(96x96 -> 96x96; noise sigma ~" in o.message, o.message
    assert o.message.endswith(": sigma 25 model)"), o.message
    fixed = Runners(ModelChoice("denoise", sigma="25", device="cpu", tile=None, precision="fp32"))
    assert fixed.route(_smooth_noisy(96, 50))[1] == ""  # --sigma S: no estimate


@pytest.mark.shipped
def test_outscale_without_scale_picks_the_smallest_shipped_scale() -> None:
    choice = ModelChoice("sr", device="cpu", tile=None, precision="fp32", sizing=Sizing(outscale=1.5))
    assert choice.by_size and choice.first_weights().name.startswith("span_tiny_x2")
    r = Runners(choice)
    assert r(np.zeros((8, 8, 3), np.uint8)).meta.scale == 2
    wide = Runners(ModelChoice("sr", device="cpu", tile=None, precision="fp32", sizing=Sizing(width=24)))
    assert wide(np.zeros((8, 8, 3), np.uint8)).meta.scale == 3  # 24 / 8 = 3
