"""GPU in one shot: every CUDA check of the project in one time-boxed run, results in one folder.

    bash scripts/gpu_check.sh --out "$OUT"               # on a GPU machine: about 9 minutes, <= 8 files in $OUT
    bash scripts/gpu_check.sh --dry-run --out /tmp/gc    # the same plan on the CPU with tiny sizes (about a minute)
    python scripts/gpu_check.py --steps kernels video --budget-video 200   # a subset, other time boxes

The steps, each a subprocess with its own time box (a step that fails or runs out of time is recorded and the
plan goes on; the whole run also stops starting work after ``--total`` seconds):

1. ``tests``: ``pytest -q -m gpu`` over the test files that carry ``@pytest.mark.gpu`` (junit XML; passed /
   failed / errors / skipped counts);
2. ``kernels``: ``scripts/bench_kernels.py --cuda --json`` (Triton LK depthwise conv vs cuDNN at 1080p, fused DSCF
   tail vs eager, DSCF x4 480x270 -> 1080p end to end; the speed-up of each fast variant);
3. ``train``: the default x4 model's recipe (``options/train/span_tiny_x4.yml`` with the batch / patch /
   channels-last / learning-rate overrides of its last ``span_tiny_x4`` stage in ``restore/weights/manifest.json``)
   with fp16 AMP, warm-started by a strict load of the shipped default x4 weights (deploy form, so the network is
   built with ``network_g.form=deploy``), on synthetic smooth images made in a temporary folder; stopped by its time
   box: iterations/s from the log, the last checkpoint written;
4. ``video``: a synthetic 1920x1080 clip (a pan across a smooth random image, PyAV / libx264) upscaled by
   ``restore video --model <default x2> --device cuda`` to 3840x2160: fps and real-time factor from its summary line.

``--dry-run`` runs the same plan on the CPU with tiny sizes (tests: the same ``-m gpu`` selection, which skips
without CUDA; kernels: ``--cpu --tiny``; train: 4 iterations of the same recipe and weights on 32 px patches,
bf16 autocast only where the CPU runs bf16 convolutions; video: a 64x36 clip of 4 frames, x2 on the CPU); it is the
CI check of this script (tests/test_gpu_check.py).

Outputs (all in ``--out``, default ``$OUT`` or ``gpu_check_out/``; at most 8 files, no sub-folders, because the
remote runner returns at most 8): ``summary.json`` (environment, and per step: name, command, rc, seconds,
timed_out, status, reason, figures, details; rewritten after every step), one ``<step>.log`` per step and
``tests.junit.xml``. Training data, checkpoints, the clip and the upscaled video go to a temporary folder that is
removed at the end (``--keep-tmp`` keeps it). The exit status is 1 when a step failed, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STEPS = ("tests", "kernels", "train", "video")
STEP_FILES = {"tests": ("tests.log", "tests.junit.xml"), "kernels": ("kernels.log",), "train": ("train.log",),
              "video": ("video.log",)}
"""What each step writes into ``--out`` (besides ``summary.json``): 6 files in all, within the runner's 8."""
BUDGETS = {"tests": 90.0, "kernels": 150.0, "train": 180.0, "video": 120.0}
"""Per-step time boxes in seconds on the GPU (``--budget-<step>``); their sum is the ~9 minute plan."""
DRY_BUDGETS = {"tests": 90.0, "kernels": 60.0, "train": 90.0, "video": 60.0}
TOTAL_S = 560.0
"""No step starts (or runs) past this many seconds after the start (``--total``)."""
KILL_GRACE_S = 10.0
"""After a step's time box: SIGTERM to its process group, then SIGKILL after this many seconds."""
MIN_STEP_S = 10.0
MAX_FILES = 8
MANIFEST = REPO / "restore" / "weights" / "manifest.json"
RECIPE = "options/train/span_tiny_x4.yml"
RECIPE_KEYS = ("datasets.train.batch_size_per_gpu", "datasets.train.gt_size", "train.channels_last",
               "train.optim_g.lr")
"""Overrides of the manifest's last ``span_tiny_x4`` stage that make its recipe (data paths, schedule and logging
are this run's own)."""
TRAIN_NAME = "gpu_check_span_tiny_x4"
FPS = 30

Figures = dict[str, float | int]

PROBE = r"""
import importlib.metadata, importlib.util, json, os, platform, sys
info = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
        "cpus": os.cpu_count()}
for mod in ("torch", "triton", "basicsr", "av", "onnxruntime"):
    info["has_" + mod] = importlib.util.find_spec(mod) is not None
for dist in ("triton", "av", "basicsr-fixed"):
    try:
        info[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
import torch
info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda=torch.cuda.is_available())
if info["cuda"]:
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                gpu_count=torch.cuda.device_count())
try:
    from restore.engine.cpu_paths import bf16_convolutions
    info["bf16_cpu"] = bf16_convolutions()
except Exception as e:
    info["bf16_cpu"], info["restore_error"] = False, repr(e)
print(json.dumps(info))
"""


@dataclass
class Config:
    """What to run, where, and for how long."""

    out: Path
    dry_run: bool
    steps: tuple[str, ...]
    budgets: dict[str, float]
    total: float
    python: str
    train_workers: int
    train_images: int
    video_frames: int
    kernel_rounds: int | None
    tmp_parent: str | None
    keep_tmp: bool


@dataclass
class Outcome:
    """How one time-boxed subprocess ended."""

    rc: int | None
    seconds: float
    timed_out: bool


@dataclass
class Result:
    """One step's record in ``summary.json``."""

    name: str
    command: str = ""
    rc: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    status: str = "skipped"  # ok | failed | skipped
    reason: str = ""
    figures: Figures = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """State shared by the steps: configuration, environment probe, temporary folder, deadline."""

    cfg: Config
    env: dict[str, Any]
    tmp: Path
    deadline: float
    child_env: dict[str, str]


# ---------------------------------------------------------------------------------------------- running


def _stop_group(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM the step's process group (``restore`` unwinds as on Ctrl-C), SIGKILL it after the grace."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.returncode


def run_timeboxed(cmd: list[str], *, log: Path, budget: float, env: dict[str, str]) -> Outcome:
    """Run ``cmd`` in the repository root in its own process group, stdout and stderr appended to ``log``,
    stopped after ``budget`` seconds."""
    t0 = time.monotonic()
    with log.open("ab") as f:
        f.write(f"$ {shlex.join(cmd)}   # time box {budget:.0f} s\n".encode())
        f.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=budget)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            rc = _stop_group(proc)
        except BaseException:  # the check itself interrupted: leave no step running
            _stop_group(proc)
            raise
        seconds = time.monotonic() - t0
        f.write(f"\n# rc {rc}, {seconds:.1f} s{', stopped by its time box' if timed_out else ''}\n".encode())
    return Outcome(rc=rc, seconds=round(seconds, 2), timed_out=timed_out)


def note(log: Path, text: str) -> None:
    """Append one line to a step's log."""
    with log.open("a", encoding="utf-8") as f:
        f.write(f"# {text}\n")


def probe_env(python: str, env: dict[str, str]) -> dict[str, Any]:
    """Interpreter, torch / CUDA / GPU, optional packages and ``nvidia-smi``, each probe time-boxed."""
    info: dict[str, Any] = {}
    try:
        p = subprocess.run([python, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
        info = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {
            "probe_error": p.stderr.strip()[-2000:]}
    except (subprocess.TimeoutExpired, OSError, IndexError, json.JSONDecodeError) as e:
        info = {"probe_error": repr(e)}
    info.setdefault("cuda", False)
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used,"
                                "utilization.gpu", "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=20)
            info["nvidia_smi"] = q.stdout.strip()
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        g = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                           timeout=10)
        if g.returncode == 0:
            info["git"] = g.stdout.strip()
    return info


def step_budget(ctx: Context, name: str) -> float:
    """The step's time box, cut so the whole plan ends within ``--total`` (kill grace included)."""
    left = ctx.deadline - time.monotonic() - KILL_GRACE_S - 2.0
    return min(ctx.cfg.budgets[name], left)


def finish(res: Result, out: Outcome, *, expect_timeout: bool = False) -> None:
    """Copy the outcome into the record; ``ok`` when the command exited 0 (or was stopped by an expected time
    box); the step's own checks may still turn it into ``failed``."""
    res.rc, res.seconds, res.timed_out = out.rc, out.seconds, out.timed_out
    if out.timed_out and not expect_timeout:
        res.status, res.reason = "failed", f"stopped by its time box ({out.seconds:.0f} s)"
    elif out.rc != 0 and not (out.timed_out and expect_timeout):
        res.status, res.reason = "failed", f"exit status {out.rc}"
    else:
        res.status = "ok"


def fail(res: Result, reason: str) -> None:
    """Mark a step failed, keeping an earlier reason."""
    res.status = "failed"
    res.reason = f"{res.reason}; {reason}" if res.reason else reason


# ------------------------------------------------------------------------------------------------ tests


def gpu_test_files() -> list[str]:
    """Test files that carry the ``gpu`` marker (collecting only these is the same ``-m gpu`` selection and
    saves importing the whole suite)."""
    files = [p for p in sorted((REPO / "tests").rglob("test_*.py")) if "mark.gpu" in p.read_text(encoding="utf-8")]
    return [str(p.relative_to(REPO)) for p in files]


def junit_counts(path: Path) -> Figures:
    """passed / failed / errors / skipped / tests from a pytest junit XML file (empty when unreadable)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    return {"passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"],
            "tests": counts["tests"]}


def step_tests(ctx: Context, res: Result) -> None:
    log, xml = ctx.cfg.out / "tests.log", ctx.cfg.out / "tests.junit.xml"
    files = gpu_test_files()
    cmd = [ctx.cfg.python, "-m", "pytest", "-q", "-m", "gpu", "-rs", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *files]
    res.command, res.details["files"] = shlex.join(cmd), files
    finish(res, run_timeboxed(cmd, log=log, budget=step_budget(ctx, "tests"), env=ctx.child_env))
    res.figures = junit_counts(xml)
    if not res.figures:
        fail(res, "no junit XML written")
    elif not ctx.cfg.dry_run and res.figures["skipped"]:
        res.details["note"] = f"{res.figures['skipped']} gpu test(s) skipped on the GPU run (reasons in tests.log)"


# ---------------------------------------------------------------------------------------------- kernels

ROW = re.compile(r"^  (?P<variant>.+?)\s+(?P<ms>[\d.]+) ms   x\s*(?P<x>[\d.]+) vs (?P<base>.+)$")


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """One ``--json`` row as ``case, variant, ms, speedup, base`` (the JSON names the base in its key)."""
    key = next(k for k in row if k.startswith("speedup_vs_"))
    return {"case": row["case"], "variant": row["variant"], "ms": row["ms"], "speedup": row[key],
            "base": key.removeprefix("speedup_vs_")}


def kernel_rows(text: str) -> list[dict[str, Any]]:
    """bench_kernels.py's rows: its ``--json`` line when present, else the printed table (a run stopped early)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError, KeyError, StopIteration):
                return [_json_row(r) for r in json.loads(line)["rows"]]
    rows, case = [], ""
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            rows.append({"case": case, "variant": m["variant"], "ms": float(m["ms"]), "speedup": float(m["x"]),
                         "base": m["base"]})
        elif line.strip() and not line.startswith((" ", "#", "$", "{", "(")):
            case = line.strip()
    return rows


def kernel_figures(rows: list[dict[str, Any]]) -> Figures:
    """``<case> | <variant>``: speed-up over the case's baseline, for every variant that is not the baseline."""
    return {f"{r['case']} | {r['variant']}": float(r["speedup"]) for r in rows if r["variant"] != r["base"]}


def step_kernels(ctx: Context, res: Result) -> None:
    log = ctx.cfg.out / "kernels.log"
    mode = ["--cpu", "--tiny"] if ctx.cfg.dry_run else ["--cuda"]
    rounds = ["--rounds", str(ctx.cfg.kernel_rounds)] if ctx.cfg.kernel_rounds else []
    cmd = [ctx.cfg.python, "scripts/bench_kernels.py", *mode, *rounds, "--json"]
    res.command = shlex.join(cmd)
    finish(res, run_timeboxed(cmd, log=log, budget=step_budget(ctx, "kernels"), env=ctx.child_env))
    rows = kernel_rows(log.read_text(encoding="utf-8", errors="replace"))
    res.details["rows"] = rows
    res.figures = kernel_figures(rows)
    if not res.figures:
        fail(res, "no benchmark rows in kernels.log")


# ------------------------------------------------------------------------------------------------ train


def smooth_image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    """Sum of random sinusoids at several frequencies, uint8 HxWxC (as tests/train/conftest.py makes them)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, c), np.float32)
    for _ in range(6):
        fy, fx = rng.uniform(0.02, 0.25, 2)
        ph = rng.uniform(0, 6.28, c)
        img += np.sin(fy * yy[..., None] + fx * xx[..., None] + ph) * rng.uniform(0.2, 1.0)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    return np.round(img * 255).astype(np.uint8)


def make_train_data(root: Path, *, n: int, size: int, val_size: int, scale: int) -> dict[str, Path]:
    """``n`` HR training PNGs (``size`` px square) and 2 validation pairs (HR ``val_size`` px, bicubic LR named
    ``<stem>x<scale>``, the recipe's ``filename_tmpl``); the folders by role."""
    from PIL import Image

    rng = np.random.default_rng(0)
    dirs = {"train": root / "HR", "val_hr": root / "val" / "HR", "val_lr": root / "val" / f"LR_bicubic_X{scale}"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(smooth_image(rng, size, size)).save(dirs["train"] / f"img{i:03d}.png")
    for i in range(2):
        hr = Image.fromarray(smooth_image(rng, val_size, val_size))
        hr.save(dirs["val_hr"] / f"v{i}.png")
        hr.resize((val_size // scale,) * 2, Image.Resampling.BICUBIC).save(dirs["val_lr"] / f"v{i}x{scale}.png")
    return dirs


def default_model(task: str, scale: int) -> dict[str, Any]:
    """The manifest entry of the shipped default model for ``task`` at ``scale``."""
    models = json.loads(MANIFEST.read_text(encoding="utf-8"))["models"]
    return next(m for m in models if m["task"] == task and m["scale"] == scale and m.get("default"))


def recipe_overrides(model: dict[str, Any]) -> list[str]:
    """The :data:`RECIPE_KEYS` overrides of the model's last stage trained with :data:`RECIPE`."""
    stages = [s for s in model.get("stages", []) if s.get("option_file") == RECIPE]
    if not stages:
        return []
    return [o for o in stages[-1]["overrides"] if o.split("=", 1)[0] in RECIPE_KEYS]


def train_sets(cfg: Config, env: dict[str, Any], dirs: dict[str, Path], model: dict[str, Any]) -> list[str]:
    """The ``--set`` overrides of the training step: the shipped weights in deploy form (strict load), the
    synthetic data, the model's recipe overrides, AMP, then this run's size, workers and logging (on the GPU: no
    end but the time box, a checkpoint every 200 iterations)."""
    if cfg.dry_run:
        amp = ["train.amp=true", "train.amp_dtype=bf16"] if env.get("bf16_cpu") else ["train.amp=false"]
        run = ["num_gpu=0", "datasets.train.gt_size=32", "datasets.train.batch_size_per_gpu=2",
               "datasets.train.num_worker_per_gpu=0", "datasets.train.dataset_enlarge_ratio=10",
               "train.total_iter=4", "logger.print_freq=1", "logger.save_checkpoint_freq=2", "val.val_freq=1000000"]
    else:
        amp = ["train.amp=true", "train.amp_dtype=fp16"]
        run = ["num_gpu=1", f"datasets.train.num_worker_per_gpu={cfg.train_workers}",
               "datasets.train.dataset_enlarge_ratio=1000", "train.total_iter=10000000", "logger.print_freq=20",
               "logger.save_checkpoint_freq=200", "val.val_freq=1000000000"]
    sets = [f"name={TRAIN_NAME}", "network_g.form=deploy", f"path.pretrain_network_g=restore/weights/{model['file']}",
            "path.param_key_g=params", "path.strict_load_g=true", f"datasets.train.dataroot_gt={dirs['train']}",
            "datasets.val.name=synthetic", f"datasets.val.dataroot_gt={dirs['val_hr']}",
            f"datasets.val.dataroot_lq={dirs['val_lr']}", "logger.use_tb_logger=false",
            *recipe_overrides(model), *amp, *run]
    merged = {s.split("=", 1)[0]: s for s in sets}  # a later value of a key replaces an earlier one
    return list(merged.values())


def train_command(ctx: Context, dirs: dict[str, Path], model: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """``restore train`` of the recipe warm-started from the shipped weights, and what was chosen."""
    sets = train_sets(ctx.cfg, ctx.env, dirs, model)
    cmd = [ctx.cfg.python, "-m", "restore", "train", "-opt", RECIPE, "--root", str(ctx.tmp / "train")]
    for s in sets:
        cmd += ["--set", s]
    return cmd, {"model": model["name"], "weights": f"restore/weights/{model['file']}",
                 "recipe_overrides": recipe_overrides(model), "sets": sets}


ITER_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: \[.*?\]\[epoch:\s*\d+, iter:\s*"
                       r"(?P<iter>[\d,]+),.*?time \(data\): (?P<t>[\d.]+) \((?P<d>[\d.]+)\)\](?P<rest>.*)$")
END_LINE = re.compile(r"End of training\. .*\((?P<n>\d+) iterations, (?P<ips>[\d.]+) it/s\)")


def _stamp(ts: str) -> float:
    return time.mktime(time.strptime(ts[:19], "%Y-%m-%d %H:%M:%S")) + int(ts[20:]) / 1000.0


def train_figures(text: str, exp: Path) -> Figures:
    """Iterations, it/s (the log's end line, else the logged iterations over their timestamps: checkpoint writes
    included), the mean iteration and data-loading time of the last logged window (``it_per_s_iter`` = 1 / that
    time), the last loss, the checkpoints, whether the shipped weights were loaded and AMP was on."""
    figs: Figures = {}
    rows = [m for m in map(ITER_LINE.match, text.splitlines()) if m]
    if rows:
        first, last = rows[0], rows[-1]
        figs["iterations"] = int(last["iter"].replace(",", ""))
        figs["iter_time_s"], figs["data_time_s"] = float(last["t"]), float(last["d"])
        loss = re.search(r"l_pix: ([\d.eE+-]+)", last["rest"])
        if loss:
            figs["l_pix"] = float(loss.group(1))
        span = _stamp(last["ts"]) - _stamp(first["ts"])
        n = figs["iterations"] - int(first["iter"].replace(",", ""))
        if n > 0 and span > 0:
            figs["it_per_s"] = round(n / span, 3)
        if figs["iter_time_s"] > 0:  # the iterations alone (data waits in, checkpoint writes out)
            figs["it_per_s_iter"] = round(1.0 / figs["iter_time_s"], 3)
            figs.setdefault("it_per_s", figs["it_per_s_iter"])
    end = END_LINE.search(text)
    if end:
        figs["it_per_s"] = float(end["ips"])
    states = [int(p.stem) for p in (exp / "training_states").glob("*.state") if p.stem.isdigit()]
    figs["checkpoints"] = len(states)
    figs["checkpoint_iter"] = max(states, default=0)
    figs["pretrain_loaded"] = int("Loaded network_g weights from" in text)
    figs["amp"] = int("Mixed precision" in text)
    return figs


def step_train(ctx: Context, res: Result) -> None:
    log = ctx.cfg.out / "train.log"
    dry = ctx.cfg.dry_run
    t0 = time.monotonic()
    dirs = make_train_data(ctx.tmp / "data", n=4 if dry else ctx.cfg.train_images, size=48 if dry else 256,
                           val_size=32, scale=4)
    note(log, f"synthetic data in {dirs['train'].parent} ({time.monotonic() - t0:.1f} s)")
    cmd, res.details = train_command(ctx, dirs, default_model("sr", 4))
    res.command = shlex.join(cmd)
    finish(res, run_timeboxed(cmd, log=log, budget=step_budget(ctx, "train"), env=ctx.child_env),
           expect_timeout=not dry)
    exp = ctx.tmp / "train" / "experiments" / TRAIN_NAME
    logs = sorted(exp.glob(f"train_{TRAIN_NAME}_*.log"))
    text = logs[-1].read_text(encoding="utf-8", errors="replace") if logs else log.read_text(encoding="utf-8")
    res.figures = train_figures(text, exp)
    res.details["stopped_by_time_box"] = res.timed_out
    if not res.figures["pretrain_loaded"]:
        fail(res, "the shipped weights were not loaded")
    if not res.figures["checkpoint_iter"]:
        fail(res, "no checkpoint written")
    if not dry and not res.figures["amp"]:
        fail(res, "AMP was not on")


# ------------------------------------------------------------------------------------------------ video


def make_clip(path: Path, *, width: int, height: int, frames: int) -> None:
    """An H.264 clip of a camera panning across a smooth random image (libx264, yuv420p, :data:`FPS` fps)."""
    import av

    step = max(1, width // 160)
    canvas = smooth_image(np.random.default_rng(1), height, width + step * frames)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(canvas[:, i * step:i * step + width]),
                                               format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


VIDEO_LINE = re.compile(r"(?P<frames>\d+) frames.* in (?P<s>[\d.]+) s, (?P<fps>[\d.]+) fps, real-time factor "
                        r"(?P<rtf>[\d.]+) \((?P<vs>[\d.]+) s of video; (?P<iw>\d+)x(?P<ih>\d+) -> (?P<ow>\d+)x"
                        r"(?P<oh>\d+), (?P<how>[^)]*)\)")


def video_figures(text: str) -> tuple[Figures, str]:
    """frames, seconds, fps, real-time factor and sizes from ``restore video``'s summary line, and the line's
    model / device / precision part."""
    m = VIDEO_LINE.search(text)
    if m is None:
        return {}, ""
    figs: Figures = {"frames": int(m["frames"]), "seconds": float(m["s"]), "fps": float(m["fps"]),
                     "realtime_factor": float(m["rtf"]), "video_seconds": float(m["vs"])}
    figs.update({k: int(m[k]) for k in ("iw", "ih", "ow", "oh")})
    return figs, m["how"]


def step_video(ctx: Context, res: Result) -> None:
    log = ctx.cfg.out / "video.log"
    dry = ctx.cfg.dry_run
    w, h, n = (64, 36, 4) if dry else (1920, 1080, ctx.cfg.video_frames)
    clip, target = ctx.tmp / "clip.mp4", ctx.tmp / "clip_x2.mp4"
    t0 = time.monotonic()
    make_clip(clip, width=w, height=h, frames=n)
    note(log, f"synthetic clip {clip}: {w}x{h}, {n} frames at {FPS} fps ({time.monotonic() - t0:.1f} s)")
    model = default_model("sr", 2)["name"]
    cmd = [ctx.cfg.python, "-m", "restore", "video", str(clip), "-o", str(target), "--model", model,
           "--device", "cpu" if dry else "cuda", "--overwrite"]
    res.command = shlex.join(cmd)
    finish(res, run_timeboxed(cmd, log=log, budget=step_budget(ctx, "video"), env=ctx.child_env))
    res.figures, res.details["run"] = video_figures(log.read_text(encoding="utf-8", errors="replace"))
    res.details.update(model=model, clip=f"{w}x{h}, {n} frames, {FPS} fps")
    if target.is_file():
        res.figures["output_mb"] = round(target.stat().st_size / 2**20, 2)
    if not res.figures.get("fps"):
        fail(res, "no summary line from restore video")
    elif (res.figures["ow"], res.figures["oh"]) != (2 * w, 2 * h):
        fail(res, f"output {res.figures['ow']}x{res.figures['oh']}, expected {2 * w}x{2 * h}")


# ------------------------------------------------------------------------------------------------- plan

RUNNERS = {"tests": step_tests, "kernels": step_kernels, "train": step_train, "video": step_video}
NEEDS = {"train": ("has_basicsr", "the train extra (basicsr) is not installed"),
         "video": ("has_av", "PyAV (the video extra) is not installed")}


def skip_reason(ctx: Context, name: str) -> str | None:
    """Why ``name`` cannot run here, or None."""
    if name not in ctx.cfg.steps:
        return "not selected (--steps)"
    if "probe_error" in ctx.env:
        return None  # unknown environment: try, and let the step's log say what is wrong
    key, why = NEEDS.get(name, ("", ""))
    if key and not ctx.env.get(key, False):
        return why
    if not ctx.cfg.dry_run and name != "tests" and not ctx.env.get("cuda"):
        return "no CUDA device (torch.cuda.is_available() is false); --dry-run runs the plan on the CPU"
    if step_budget(ctx, name) < MIN_STEP_S:
        return f"the total time box (--total {ctx.cfg.total:.0f} s) is spent"
    return None


def write_summary(cfg: Config, env: dict[str, Any], results: list[Result], t0: float, state: str) -> None:
    """``summary.json``, replaced atomically (it is rewritten after every step)."""
    doc = {"mode": "dry-run (CPU, tiny sizes)" if cfg.dry_run else "gpu", "state": state,
           "seconds": round(time.monotonic() - t0, 1), "budgets_s": cfg.budgets, "total_s": cfg.total,
           "env": env, "steps": [asdict(r) for r in results]}
    tmp = cfg.out / ".summary.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, cfg.out / "summary.json")


HEADLINES = {
    "tests": "{passed} passed, {failed} failed, {errors} errors, {skipped} skipped",
    "train": "{it_per_s:.2f} it/s ({it_per_s_iter:.2f} without checkpoint writes; data wait {data_time_s:.3f} of "
             "{iter_time_s:.3f} s/it), {iterations} iterations, last checkpoint at {checkpoint_iter}, amp {amp}, "
             "shipped weights loaded {pretrain_loaded}",
    "video": "{fps:.1f} fps, real-time factor {realtime_factor:.2f}, {iw}x{ih} -> {ow}x{oh}, {frames} frames",
}


def headline(r: Result) -> list[str]:
    """A step's figures as the table shows them (kernels: one speed-up per line)."""
    if r.name == "kernels":
        return [f"x{v:<6.2f} {k}" for k, v in r.figures.items()]
    if not r.figures:
        return []
    try:
        return [HEADLINES[r.name].format_map(r.figures)]
    except (KeyError, ValueError):
        return [", ".join(f"{k}={v:g}" for k, v in r.figures.items())]


def table(results: list[Result]) -> str:
    """The plain-text summary printed at the end."""
    lines = [f"{'step':<8} {'status':<8} {'rc':>4} {'s':>7}  figures / reason", "-" * 110]
    for r in results:
        rc = "-" if r.rc is None else str(r.rc)
        tb = "stopped by its time box" if r.timed_out and "time box" not in r.reason else ""
        why = "; ".join(x for x in (r.reason, tb) if x)
        lines.append(f"{r.name:<8} {r.status:<8} {rc:>4} {r.seconds:7.1f}  {why}".rstrip())
        lines += [f"{'':33}{x}" for x in headline(r)]
    return "\n".join(lines)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (the runner's stop) raises KeyboardInterrupt, so the running step is stopped and the summary
    written."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def child_environment(tmp: Path) -> dict[str, str]:
    """The steps' environment: unbuffered output, the repository importable, a private tuning cache."""
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", RESTORE_CACHE_DIR=str(tmp / "restore-cache"),
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p))
    return env


def run_plan(cfg: Config) -> list[Result]:
    """Every step in order, each recorded (and ``summary.json`` rewritten) as it ends."""
    t0 = time.monotonic()
    cfg.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_", dir=cfg.tmp_parent))
    results: list[Result] = []
    env: dict[str, Any] = {}
    state = "interrupted"
    try:
        env_vars = child_environment(tmp)
        env = probe_env(cfg.python, env_vars)
        ctx = Context(cfg=cfg, env=env, tmp=tmp, deadline=t0 + cfg.total, child_env=env_vars)
        write_summary(cfg, env, results, t0, "running")
        with sigterm_as_interrupt():
            for name in STEPS:
                res = Result(name=name)
                results.append(res)
                why = skip_reason(ctx, name)
                if why is not None:
                    res.reason = why
                else:
                    for f in STEP_FILES[name]:  # a rerun into the same folder starts the step's files afresh
                        (cfg.out / f).unlink(missing_ok=True)
                    print(f"[gpu_check] {name} (time box {step_budget(ctx, name):.0f} s) ...", flush=True)
                    try:
                        RUNNERS[name](ctx, res)
                    except KeyboardInterrupt:
                        fail(res, "interrupted")
                        raise
                    except Exception as e:  # a step's preparation or parsing failed: record it, go on
                        fail(res, f"{type(e).__name__}: {e}")
                    print(f"[gpu_check] {name}: {res.status} in {res.seconds:.1f} s {res.reason}", flush=True)
                write_summary(cfg, env, results, t0, "running")
        state = "done"
    except KeyboardInterrupt:
        pass
    finally:
        for name in STEPS[len(results):]:
            results.append(Result(name=name, reason="interrupted before it started"))
        write_summary(cfg, env, results, t0, state)
        if cfg.keep_tmp:
            print(f"[gpu_check] temporary files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def default_python() -> str:
    """``$PYTHON``, else the repository's ``.venv/bin/python``, else this interpreter."""
    venv = REPO / ".venv" / "bin" / "python"
    return os.environ.get("PYTHON") or (str(venv) if venv.exists() else sys.executable)


def parse_args(argv: list[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                    help="output folder (default: $OUT if set, else gpu_check_out/)")
    ap.add_argument("--dry-run", action="store_true", help="the same plan on the CPU with tiny sizes")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="steps to run (default: all)")
    for name in STEPS:
        ap.add_argument(f"--budget-{name}", type=float, default=None, metavar="S",
                        help=f"time box of the {name} step in seconds (default {BUDGETS[name]:.0f}; "
                             f"{DRY_BUDGETS[name]:.0f} with --dry-run)")
    ap.add_argument("--total", type=float, default=TOTAL_S, help=f"time box of the whole plan (default {TOTAL_S:.0f})")
    ap.add_argument("--python", default=default_python(),
                    help="interpreter of the steps (default: $PYTHON, else .venv/bin/python, else this one)")
    ap.add_argument("--train-workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 4)),
                    help="data loader workers of the training step (LR patches are made on the fly)")
    ap.add_argument("--train-images", type=int, default=48, help="synthetic 256x256 training images")
    ap.add_argument("--video-frames", type=int, default=60, help="frames of the synthetic 1080p clip")
    ap.add_argument("--kernel-rounds", type=int, default=None, help="bench_kernels.py --rounds (default: its own)")
    ap.add_argument("--tmp", default=None, help="parent of the temporary folder (default: the system's)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (data, checkpoints, videos)")
    a = ap.parse_args(argv)
    base = DRY_BUDGETS if a.dry_run else BUDGETS
    budgets = {n: getattr(a, f"budget_{n}") or base[n] for n in STEPS}
    return Config(out=Path(a.out).resolve(), dry_run=a.dry_run, steps=tuple(a.steps), budgets=budgets,
                  total=a.total, python=a.python, train_workers=a.train_workers, train_images=a.train_images,
                  video_frames=a.video_frames, kernel_rounds=a.kernel_rounds, tmp_parent=a.tmp, keep_tmp=a.keep_tmp)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    t0 = time.monotonic()
    results = run_plan(cfg)
    files = sorted(p.name for p in cfg.out.iterdir())
    print(f"\n{table(results)}\n\n{len(files)} file(s) in {cfg.out}: {', '.join(files)} "
          f"({time.monotonic() - t0:.0f} s in all)")
    if len(files) > MAX_FILES:
        print(f"warning: more than {MAX_FILES} files in {cfg.out} (other runs' files?)", file=sys.stderr)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
