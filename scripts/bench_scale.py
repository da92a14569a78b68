"""Scaling measurements: one function per measurement, each returning a marked section of docs/benchmarks.md.

``train`` -- ``restore train`` in one process with batch B against ``torchrun`` with 2 ranks x batch B/2 (the same
global batch, so the same updates: tests/train/test_ddp.py), on this machine's CPU (gloo, 127.0.0.1). Network:
SPAN-tiny x4 (feature_channels 26, the release's) on 32x32 LR patches (gt_size 128) cut from generated smooth
images, LR made on the fly by MATLAB bicubic (``SRImageDataset``, in-memory), L1, Adam; no validation, one
checkpoint at the end (outside the timed span). Iterations/s is what the training loop logs at its end (the whole
loop: data, forward, backward, all-reduce, step); samples/s = iterations/s x the global batch. Each setting runs
``--repeat`` times and the best is kept (other jobs share this machine); OpenMP workers sleep when idle
(``OMP_WAIT_POLICY=PASSIVE``: spinning workers on a shared machine measure the other jobs). Settings: 1 process
with 1 thread, 1 process with as many threads as there are cores, and 2 ranks with cores/2 threads each.

    python scripts/bench_scale.py --only train [--iters 24] [--batch 16] [--repeat 2] [--no-write]

``images`` -- ``restore upscale`` over one batch of ``--images`` generated smooth RGB PNGs (``--image-size`` px a
side) with ``--model``: the plain command line (one process, torch's threads over all cores) against ``--ray`` with
1 and 2 workers (a local Ray instance started by the run, as a user without a cluster gets it; each actor gets an
even share of the CPUs as threads). Each setting is a fresh ``python -m restore`` process, timed from its start;
the per-file lines it prints as results arrive give the time to the first image (interpreter, torch, model; for Ray
also the instance and the actors) and the steady rate (images/s from the first result to the last). Best of
``--repeat``, idle OpenMP workers sleeping (``OMP_WAIT_POLICY=PASSIVE``).

    python scripts/bench_scale.py --only images [--images 40] [--image-size 128] [--repeat 2] [--no-write]

Each measurement is a function in :data:`SECTIONS` returning its marked section.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from doc_sections import block, write_section  # noqa: E402

TAG_TRAIN = "scale-train"
TAG_IMAGES = "scale-images"
RUN_TIMEOUT = 900
SIMD_FLAGS = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx512\w*|amx\w*|avx_vnni\w*|avx_ne_convert)$")


# ---------------------------------------------------------------------------------------------- machine


def cpu_description() -> dict[str, str]:
    """``lscpu``'s model name, CPU count and the SIMD flags that matter to oneDNN (all flags under ``flags``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("Flags", "").split()
    return {"model": fields.get("Model name", "unknown CPU"), "cpus": fields.get("CPU(s)", str(os.cpu_count())),
            "simd": " ".join(f for f in flags if SIMD_FLAGS.match(f)) or "none listed", "flags": " ".join(flags)}


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- training


@dataclass
class TrainRun:
    """One setting of the training measurement."""

    label: str
    procs: int
    threads: int  # per process
    batch: int  # per process
    its: float = 0.0  # iterations/s, best of the repeats

    @property
    def samples(self) -> float:
        return self.its * self.batch * self.procs


def make_train_data(folder: Path, n: int = 8, size: int = 192) -> None:
    """``n`` smooth random RGB images (sums of sinusoids) of ``size`` px: learnable, cheap to make."""
    from restore import io

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(n):
        img = np.zeros((size, size, 3), np.float32)
        for _ in range(6):
            fy, fx = rng.uniform(0.02, 0.25, 2)
            img += np.sin(fy * yy[..., None] + fx * xx[..., None] + rng.uniform(0, 6.28, 3)) * rng.uniform(0.2, 1)
        img = (img - img.min()) / (img.max() - img.min() + 1e-6)
        io.write_image(folder / f"img{i}.png", np.round(img * 255).astype(np.uint8))


def train_options(data: Path, *, iters: int) -> str:
    """The option file of the measurement (``batch_size_per_gpu`` is set per run)."""
    return f"""name: bench_scale_train
model_type: RestoreSRModel
scale: 4
num_gpu: 0
manual_seed: 0
datasets:
  train:
    name: bench
    type: SRImageDataset
    dataroot_gt: {data}
    io_backend: {{type: memory}}
    gt_size: 128
    use_hflip: true
    use_rot: true
    num_worker_per_gpu: 0
    batch_size_per_gpu: 16
    dataset_enlarge_ratio: 1000
network_g: {{type: SPAN, feature_channels: 26, upscale: 4}}
train:
  optim_g: {{type: Adam, lr: !!float 5e-4, betas: [0.9, 0.99]}}
  total_iter: {iters}
  pixel_opt: {{type: L1Loss, loss_weight: 1.0}}
logger: {{print_freq: 100000, save_checkpoint_freq: 100000, use_tb_logger: false}}
"""


def run_train(opt: Path, work: Path, run: TrainRun) -> float:
    """Train once in the setting ``run`` (a fresh experiment folder); the loop's iterations/s."""
    root = work / f"{run.procs}x{run.threads}_{time.time_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(run.threads), "GLOO_SOCKET_IFNAME": "lo",
           "OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP workers sleep instead of spinning on cores others need
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    args = ["train", "-opt", str(opt), "--root", str(root), "--set", f"datasets.train.batch_size_per_gpu={run.batch}"]
    if run.procs == 1:
        cmd = [sys.executable, "-m", "restore", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(run.procs), "--master-addr",
               "127.0.0.1", "--master-port", str(free_port()), "-m", "restore", *args, "--launcher", "pytorch"]
    res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    (log,) = (root / "experiments" / "bench_scale_train").glob("train_*.log")
    m = re.search(r"\((\d+) iterations, ([0-9.]+) it/s\)", log.read_text())
    if m is None:
        raise RuntimeError(f"{log}: no 'End of training' line")
    return float(m.group(2))


def bench_train(args: argparse.Namespace) -> str:
    """1 process x batch B vs 2 torchrun ranks x batch B/2 on this CPU; the ``scale-train`` section."""
    import torch

    cpus = os.cpu_count() or 2
    b = args.batch
    runs = [TrainRun("1 process, 1 thread", 1, 1, b), TrainRun(f"1 process, {cpus} threads", 1, cpus, b),
            TrainRun(f"2 ranks (torchrun, gloo), {max(1, cpus // 2)} thread(s) each", 2, max(1, cpus // 2), b // 2)]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        make_train_data(work / "hr")
        opt = work / "bench_scale_train.yml"
        opt.write_text(train_options(work / "hr", iters=args.iters))
        for _ in range(args.repeat):
            for r in runs:
                its = run_train(opt, work, r)
                print(f"{r.label}: batch {r.batch} per process, {its:.3f} it/s", flush=True)
                r.its = max(r.its, its)
    load_after = load_average()
    single = max(runs[:2], key=lambda r: r.its)  # the faster way to use this machine with one process
    ddp = runs[2]
    cpu = cpu_description()
    rows = "\n".join(f"| {r.label} | {r.procs} x {r.batch} = {r.procs * r.batch} | {r.its:.3f} | {r.samples:.1f} | "
                     f"{r.its / runs[0].its:.2f} | {r.its / runs[1].its:.2f} |" for r in runs)
    ratio = ddp.its / single.its
    print(f"2 ranks x {b // 2} vs 1 process x {b} ({single.label}): {ratio:.2f}x iterations/s")
    body = f"""## Data-parallel training on the CPU (`restore train --launcher pytorch`)

Written by `scripts/bench_scale.py --only train` (see its docstring for the method). SPAN-tiny x4 (feature_channels
26), 32x32 LR patches, LR made on the fly by MATLAB bicubic, L1, Adam, {args.iters} iterations per run, best of
{args.repeat}; iterations/s as the training loop logs it (data, forward, backward, all-reduce, step), idle OpenMP
workers sleeping (`OMP_WAIT_POLICY=PASSIVE`). Both settings train the same updates (same global batch;
`tests/train/test_ddp.py`).

Machine: {cpu['model']}, {cpu['cpus']} CPU(s) (`lscpu`; SIMD flags: {cpu['simd']}), torch {torch.__version__}, Python
{sys.version.split()[0]}. Load average (1/5/15 min) before: {load_before}, after: {load_after}{args.note}.

| setting | processes x batch (global) | iterations/s | samples/s | vs 1 proc, 1 thread | vs 1 proc, {cpus} threads |
|---|---|---|---|---|---|
{rows}

2 ranks x batch {b // 2} vs 1 process x batch {b} ({single.label}, the faster single process here):
**{ratio:.2f}x** the iterations/s on this {cpu['cpus']}-CPU machine.

<details><summary>all lscpu flags</summary>

{cpu['flags']}

</details>"""
    return block(TAG_TRAIN, body)


# ---------------------------------------------------------------------------------------------- images


@dataclass
class ImageRun:
    """One setting of the batch-inference measurement (best of the repeats)."""

    label: str
    workers: int | None  # Ray actors; None: the plain command line
    wall: float = float("inf")  # s, process start to exit
    first: float = float("inf")  # s, process start to the first image's line
    steady: float = 0.0  # images/s from the first image's line to the last

    def end_to_end(self, n: int) -> float:
        return n / self.wall


def image_env() -> dict[str, str]:
    """The environment of every setting: no launcher or cluster variables, torch / Ray choose the threads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    for k in ("OMP_NUM_THREADS", "RAY_ADDRESS", "RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        env.pop(k, None)
    return env


def run_images(inputs: Path, work: Path, run: ImageRun, model: str, n: int) -> tuple[float, float, float]:
    """One ``restore upscale`` of the batch in a fresh process and output folder: (wall s, first-image s, steady
    images/s)."""
    out = work / f"out_{time.time_ns()}"
    cmd = [sys.executable, "-m", "restore", "upscale", str(inputs), "-o", str(out), "--model", model]
    if run.workers is not None:
        cmd += ["--ray", "--workers", str(run.workers)]
    stamps: list[float] = []
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, env=image_env(), stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(RUN_TIMEOUT, proc.kill)  # a hung run ends; its missing lines fail the check below
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if " -> " in line:
                    stamps.append(time.perf_counter() - t0)
            rc = proc.wait()
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        err.seek(0)
        if rc or len(stamps) != n:
            raise RuntimeError(f"{' '.join(cmd)}: exit {rc}, {len(stamps)} of {n} images:\n{err.read()[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    steady = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else float("nan")
    return wall, stamps[0], steady


def bench_images(args: argparse.Namespace) -> str:
    """Plain command line vs ``--ray`` with 1 and 2 workers on one batch; the ``scale-images`` section."""
    import ray
    import torch

    n, size = args.images, args.image_size
    runs = [ImageRun("plain CLI (one process)", None), ImageRun("--ray, 1 worker", 1), ImageRun("--ray, 2 workers", 2)]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench_images_") as tmp:
        work = Path(tmp)
        make_train_data(work / "in", n=n, size=size)
        for _ in range(args.repeat):
            for r in runs:
                wall, first, steady = run_images(work / "in", work, r, args.model, n)
                print(f"{r.label}: {wall:.1f} s wall, first image after {first:.1f} s, {steady:.2f} images/s steady",
                      flush=True)
                if wall < r.wall:
                    r.wall, r.first = wall, first
                r.steady = max(r.steady, steady)
    load_after = load_average()
    plain, one, two = runs
    rows = "\n".join(f"| {r.label} | {r.wall:.1f} | {r.end_to_end(n):.2f} | {r.first:.1f} | {r.steady:.2f} | "
                     f"{r.steady / plain.steady:.2f} |" for r in runs)
    overhead = 1 - one.steady / plain.steady
    cost = (f"a per-image overhead of {overhead:.0%}: a task per image, results through the object store"
            if overhead >= 0.03 else "no per-image overhead measurable on this shared machine")
    cpu = cpu_description()
    print(f"Ray 1 worker vs plain: {one.steady / plain.steady:.2f}x steady, +{one.first - plain.first:.1f} s to the "
          f"first image; 2 workers vs 1: {two.steady / one.steady:.2f}x")
    body = f"""## Batch inference: plain command line vs Ray Data (`restore upscale --ray`)

Written by `scripts/bench_scale.py --only images` (see its docstring for the method). {n} smooth RGB PNGs of
{size}x{size} px, `--model {args.model}`, each setting a fresh `python -m restore upscale` process (the Ray settings
start a local Ray instance, as a user without a cluster gets it), best of {args.repeat}. *First image*: seconds from
the process start to the first result (interpreter, torch, model load; with Ray also the instance and the actors);
*steady*: images/s from the first result to the last, which is what grows with workers and machines.

Machine: {cpu['model']}, {cpu['cpus']} CPU(s), torch {torch.__version__}, Ray {ray.__version__}, Python
{sys.version.split()[0]}. Load average (1/5/15 min) before: {load_before}, after: {load_after}{args.note}.

| setting | wall s | images/s end to end | first image s | images/s steady | steady vs plain |
|---|---|---|---|---|---|
{rows}

Ray with 1 worker vs the plain command line: **{one.steady / plain.steady:.2f}x** the steady rate ({cost}) and
**+{one.first - plain.first:.1f} s** before the first image (starting Ray and its actor, which imports torch and loads
the model). 2 workers vs 1: **{two.steady / one.steady:.2f}x** the steady rate on this {cpu['cpus']}-CPU machine (each
worker one thread, against one worker with {cpu['cpus']} threads). End to end, a batch this small is done sooner by
the plain command line; the start-up is paid once per run, the steady rate once per image."""
    return block(TAG_IMAGES, body)


SECTIONS: dict[str, Callable[[argparse.Namespace], str]] = {"train": bench_train, "images": bench_images}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=tuple(SECTIONS), default=list(SECTIONS),
                    help="measurements to run (default: all)")
    ap.add_argument("--iters", type=int, default=24, help="training iterations per run (default 24)")
    ap.add_argument("--batch", type=int, default=16, help="global batch B (default 16; 2 ranks take B/2 each)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting, best kept (default 2)")
    ap.add_argument("--images", type=int, default=40, help="images: batch size (default 40)")
    ap.add_argument("--image-size", type=int, default=128, help="images: side of each input in px (default 128)")
    ap.add_argument("--model", default="span_tiny_x4_distilled", help="images: shipped model (default: the x4 default)")
    ap.add_argument("--note", default="", help="a sentence added after the load averages (e.g. other jobs)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    a = ap.parse_args(argv)
    if a.batch < 2 or a.batch % 2:
        ap.error("--batch: an even number (2 ranks take half each)")
    a.note = f". {a.note.strip()}" if a.note.strip() else ""
    for name in a.only:
        section = SECTIONS[name](a)
        print(section)
        if not a.no_write:
            write_section(a.out, section)
            print(f"wrote the {name} section of {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
