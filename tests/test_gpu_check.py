"""scripts/gpu_check.sh / gpu_check.py, the one-shot GPU check: its ``--dry-run`` (the same plan on the CPU with tiny
sizes) runs every step to exit status 0 and stays within what the remote runner returns (<= 8 files, <= 2 folder
levels), and the pieces the GPU run depends on (time box, log parsing, the GPU training options) work here.

Not marked ``gpu``: this is the CI check of the script, so it runs on CPU-only machines; ``slow`` (about a minute
on 2 cores), which CI runs too (``.ci/run`` runs plain ``pytest -q``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import gpu_check  # noqa: E402

from restore.train.options import load_options  # noqa: E402


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.slow
def test_dry_run(tmp_path: Path) -> None:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHON": sys.executable}
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out), "--tmp",
                        str(tmp)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "done" and summary["mode"].startswith("dry-run")
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == list(gpu_check.STEPS)
    for name, s in steps.items():
        if s["status"] == "skipped":  # only for a reason (e.g. an extra that is not installed)
            assert s["reason"], name
            continue
        assert (s["status"], s["rc"], s["timed_out"]) == ("ok", 0, False), (name, s)
        assert s["command"] and s["seconds"] > 0
        for f in gpu_check.STEP_FILES[name]:
            assert (out / f).is_file(), f
        assert s["figures"], name
        bad = {k: v for k, v in s["figures"].items() if not _is_number(v)}
        assert not bad, (name, bad)
    checks = {
        "tests": lambda f: f["tests"] > 0 and f["failed"] == f["errors"] == 0,
        "kernels": lambda f: all(v > 0 for v in f.values()),
        "train": lambda f: f["iterations"] == f["checkpoint_iter"] == 4 and f["pretrain_loaded"] == 1
        and f["it_per_s"] > 0,
        "video": lambda f: (f["ow"], f["oh"], f["frames"]) == (128, 72, 4) and f["fps"] > 0,
    }
    for name, ok in checks.items():
        if steps[name]["status"] == "ok":
            assert ok(steps[name]["figures"]), (name, steps[name]["figures"])
    files = [f for f in out.rglob("*") if f.is_file()]
    assert 1 <= len(files) <= gpu_check.MAX_FILES, files
    assert all(len(f.relative_to(out).parts) <= 2 for f in out.rglob("*")), files
    assert not list(tmp.iterdir()), "the temporary folder was not removed"
    assert "step" in p.stdout and "summary.json" in p.stdout  # the table
    print(f"dry run: {seconds:.0f} s")


def test_time_box_stops_the_process_group(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    cmd = [sys.executable, "-c", "import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"]
    out = gpu_check.run_timeboxed(cmd, log=log, budget=1.0, env=dict(os.environ))
    assert out.timed_out and out.rc is not None and out.rc != 0
    assert out.seconds < 1.0 + gpu_check.KILL_GRACE_S
    assert "time box" in log.read_text()
    res = gpu_check.Result(name="train")
    gpu_check.finish(res, out, expect_timeout=True)
    assert res.status == "ok"
    gpu_check.finish(res, out)
    assert res.status == "failed" and "time box" in res.reason


def test_train_figures_from_a_log_stopped_by_the_time_box(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    (exp / "training_states").mkdir(parents=True)
    for it in (200, 400):
        (exp / "training_states" / f"{it}.state").write_bytes(b"")
    line = ("2026-01-01 10:00:{s:02d},500 INFO: [gpu_c..][epoch:  0, iter:{it:>8}, lr:(3.000e-04,)] [eta: 1:00:00, "
            "time (data): 0.020 (0.004)] l_pix: 1.5e-02 ")
    text = "\n".join(["2026-01-01 10:00:00,000 INFO: Loaded network_g weights from restore/weights/x.pth",
                      "2026-01-01 10:00:00,100 INFO: Mixed precision (fp16 autocast + GradScaler on cuda) is on",
                      line.format(s=1, it="20"), line.format(s=21, it="1,020")])
    f = gpu_check.train_figures(text, exp)
    assert f["iterations"] == 1020 and f["it_per_s"] == 50.0 and f["it_per_s_iter"] == 50.0
    assert (f["checkpoints"], f["checkpoint_iter"], f["pretrain_loaded"], f["amp"]) == (2, 400, 1, 1)
    assert f["l_pix"] == 0.015
    assert "50.00 it/s" in gpu_check.headline(gpu_check.Result(name="train", figures=f))[0]


def test_kernel_rows_from_json_or_from_the_printed_table() -> None:
    printed = ("\nlk_dwconv 9x9 dw, 48ch 1080p fp16 NCHW, forward\n"
               "  cudnn F.conv2d                    2.00 ms   x 1.00 vs cudnn F.conv2d\n"
               "  triton lk_dwconv                  0.80 ms   x 2.50 vs cudnn F.conv2d\n")
    rows = gpu_check.kernel_rows(printed)
    assert gpu_check.kernel_figures(rows) == {"lk_dwconv 9x9 dw, 48ch 1080p fp16 NCHW, forward | triton lk_dwconv": 2.5}
    doc = {"rows": [{"case": r["case"], "variant": r["variant"], "ms": r["ms"],
                     "speedup_vs_cudnn F.conv2d": r["speedup"]} for r in rows]}
    assert gpu_check.kernel_rows(printed + json.dumps(doc) + "\n") == rows


def test_video_figures_from_the_summary_line() -> None:
    line = ("clip.mp4 -> clip_x2.mp4: 60 frames in 2.5 s, 24.0 fps, real-time factor 0.80 (2.0 s of video; "
            "1920x1080 -> 3840x2160, span/ch26 x2, cuda:0, fp16 triton, rgb path, batch 4)")
    figs, how = gpu_check.video_figures("noise\n" + line + "\n")
    assert figs == {"frames": 60, "seconds": 2.5, "fps": 24.0, "realtime_factor": 0.8, "video_seconds": 2.0,
                    "iw": 1920, "ih": 1080, "ow": 3840, "oh": 2160}
    assert how.startswith("span/ch26 x2, cuda")


def test_gpu_training_options_validate(tmp_path: Path) -> None:
    """The GPU run's options (which the dry run does not use as they are) pass the option checks: deploy-form
    network, the shipped default x4 weights loaded strictly, fp16 AMP, one GPU, the manifest's recipe."""
    cfg = gpu_check.parse_args(["--out", str(tmp_path / "out")])
    model = gpu_check.default_model("sr", 4)
    dirs = {k: tmp_path / k for k in ("train", "val_hr", "val_lr")}
    sets = gpu_check.train_sets(cfg, {"cuda": True}, dirs, model)
    o = load_options(REPO / gpu_check.RECIPE, sets)
    assert o.network_g.kwargs["form"] == "deploy" and o.num_gpu == 1
    assert o.path.pretrain_network_g == f"restore/weights/{model['file']}" and o.path.strict_load_g
    assert (REPO / o.path.pretrain_network_g).is_file()
    assert o.train.amp and o.train.amp_dtype == "fp16"
    assert o.datasets["train"].gt_size == 128 and o.datasets["train"].batch_size_per_gpu == 16
    assert sum(cfg.budgets.values()) <= cfg.total <= 570
