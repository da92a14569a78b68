"""``restore upscale`` and ``restore denoise``: files, folders or globs in, one output per input."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from restore.cli.args import add_model_args, add_precision_args, add_tta_arg, positive, tile
from restore.engine.policy import FITS, RESAMPLERS

JOURNAL = "restore-journal.jsonl"  # restore.io.journal.JOURNAL_NAME (the parser imports nothing heavy)
RAY_ADDRESS = re.compile(r"^(auto|local|[a-z][a-z0-9+.-]*://\S+|[\w.\-\[\]]+:\d+)$", re.IGNORECASE)


def shard_arg(value: str) -> tuple[int, int]:
    """``--shard K/N`` (0-based)."""
    from restore.io.inputs import parse_shard

    try:
        return parse_shard(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--shard ")) from None


def ray_address(value: str) -> str:
    """``--ray [ADDRESS]``: an address, so that ``--ray photos/`` is not silently taken for one."""
    if value == "" or RAY_ADDRESS.match(value):
        return value
    raise argparse.ArgumentTypeError(f"expected a Ray address (auto, HOST:PORT, ray://HOST:PORT), not {value!r}; "
                                     f"put --ray after the inputs, or write --ray=ADDRESS")


def add_parsers(sub: Any) -> None:
    for verb, task in (("upscale", "sr"), ("denoise", "denoise")):
        p = sub.add_parser(verb, help=f"{'upscale' if task == 'sr' else 'denoise'} images")
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs ('**' too)")
        p.add_argument("-o", "--output", help="output file (one input) or directory (subfolders mirrored)")
        p.add_argument("-r", "--recursive", action="store_true", help="also the images in subfolders of a folder")
        p.add_argument("--include", action="append", default=[], metavar="GLOB",
                       help="only inputs whose path below the folder (or name) matches (repeatable)")
        p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                       help="skip inputs whose path below the folder (or name) matches (repeatable)")
        if task == "sr":
            p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (checks the model's)")
            size = p.add_argument_group("output size (the network runs at its scale, then a high-quality resample)")
            size.add_argument("--outscale", type=float, metavar="F",
                              help="final size = input x F (e.g. 1.5, or 3 with an x4 model); without --scale/--model "
                                   "the smallest shipped scale >= F runs")
            size.add_argument("--width", type=int, metavar="W", help="final width (alone: aspect ratio kept)")
            size.add_argument("--height", type=int, metavar="H", help="final height (alone: aspect ratio kept)")
            size.add_argument("--fit", choices=FITS, default="contain",
                              help="with both --width and --height: contain (fit inside, default), cover (fill and "
                                   "centre-crop), stretch (exactly W x H)")
            size.add_argument("--resample", choices=tuple(RESAMPLERS), default="bicubic",
                              help="resampling kernel: MATLAB bicubic (default) or Lanczos-3, antialiased when "
                                   "shrinking")
        else:
            p.add_argument("--sigma", choices=("auto", "15", "25", "50", "blind"),
                           help="noise level of the shipped model to use: auto (default) estimates it per image and "
                                "runs the sigma 15 / 25 / 50 model when the estimate is near one, else the blind one")
        add_model_args(p, required=False)
        p.add_argument("--tile", type=tile, default="auto",
                       help="tile size in LR px, 'auto' (from free memory, default), 'acs' (IMDN crops) or 0 (none)")
        add_precision_args(p)
        add_tta_arg(p)
        p.add_argument("--suffix", default=None, help="added to output names (default _x<scale> / _denoised)")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
        p.add_argument("--allow-large", action="store_true",
                       help="read images over the decompression-bomb pixel limit")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        scale_out = p.add_argument_group("past one machine")
        scale_out.add_argument("--shard", type=shard_arg, metavar="K/N",
                               help="process only shard K of N (0-based: 0/4 .. 3/4) for array jobs without Ray; an "
                                    "input's shard is a stable hash of its path below its folder, so the N runs split "
                                    "the inputs disjointly. Default when set: RANK/WORLD_SIZE (as torchrun sets them; "
                                    "only upscale and denoise shard by them, 'restore train' uses them for DDP), else "
                                    "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
        scale_out.add_argument("--ray", nargs="?", const="", default=None, type=ray_address, metavar="ADDRESS",
                               help="run on a Ray cluster (the 'cluster' extra): ADDRESS (HOST:PORT, ray://HOST:PORT, "
                                    "auto), else RAY_ADDRESS when set, else a local instance started for this run; "
                                    f"needs -o DIR, where {JOURNAL} records each input")
        scale_out.add_argument("--workers", type=positive, metavar="N",
                               help="--ray: N actors (default: one per GPU of the cluster, else one per CPU; never "
                                    "more than the inputs)")
        p.set_defaults(func=lambda a, t=task: cmd_process(a, t))


def _say(kind: str, msg: str) -> None:
    """One line on stderr (through tqdm, so a progress bar on a terminal is redrawn below it)."""
    from tqdm import tqdm

    tqdm.write(f"restore: {kind}: {msg}", file=sys.stderr)


def _default_suffix(args: argparse.Namespace, task: str, scale: int) -> str:
    if task != "sr":
        return "_denoised"
    if getattr(args, "outscale", None) is not None:
        return f"_x{args.outscale:g}"
    w, h = getattr(args, "width", None), getattr(args, "height", None)
    if w is not None or h is not None:
        return "_" + (f"{w}x{h}" if w is not None and h is not None else (f"w{w}" if w is not None else f"h{h}"))
    return f"_x{scale}"


def plan_jobs(args: argparse.Namespace, suffix: str) -> Any:
    """The (input, output) jobs of this run; a usage error (exit 2) when outputs collide or nothing is found."""
    from restore.io.files import names_folder
    from restore.io.inputs import plan

    jobs = plan(args.inputs, out=args.output, suffix=suffix, recursive=args.recursive, include=args.include,
                exclude=args.exclude)
    for note in jobs.notes:
        _say("note", note)
    if not jobs.jobs:
        raise FileNotFoundError("; ".join(jobs.errors) or f"no images found in {' '.join(args.inputs)}")
    out = Path(args.output) if args.output else None
    if (out is not None and len(jobs.jobs) > 1 and out.suffix and not out.is_dir()
            and not names_folder(str(args.output))):
        raise ValueError(f"-o {args.output}: {len(jobs.jobs)} inputs need an output directory, not a file name")
    clashes = jobs.collisions()
    if clashes:
        names = "; ".join(" and ".join(str(j.src) for j in group) + f" -> {group[0].dst}" for group in clashes[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ValueError(f"{len(clashes)} output name(s) would be written twice: {names}{more}; rename one input, "
                         f"or process them in separate runs with different --suffix or -o")
    return jobs


def _shard(args: argparse.Namespace) -> tuple[int, int, str] | None:
    """``--shard``, else the launcher's variables (upscale/denoise only; see the option's help)."""
    if args.shard is not None:
        return (*args.shard, "--shard")
    from restore.io.inputs import shard_from_env

    return shard_from_env(os.environ)


class Tally:
    """Counts of a run and its per-file lines (stdout: written; stderr: skip / error)."""

    def __init__(self, failed: int = 0) -> None:
        self.done, self.failed, self.skipped = 0, failed, 0
        self.megapixels = 0.0
        self.paths: list[str] = []  # model and CPU/GPU path of the written images, each once, in order

    def report(self, outcome: Any) -> None:
        if outcome.status == "written":
            self.done += 1
            self.megapixels += outcome.megapixels
            if outcome.path and outcome.path not in self.paths:
                self.paths.append(outcome.path)
            print(outcome.message)
        elif outcome.status == "skipped":
            self.skipped += 1
            _say("skip", outcome.message)
        else:
            self.failed += 1
            _say("error", outcome.message)

    def summary(self, secs: float, model: str, how: str) -> str:
        """The last line: counts, rate, and in brackets the model(s) and path(s) that wrote the outputs (``model``
        and ``how`` when nothing was written: the model the run loaded first)."""
        if self.paths:
            model = "; ".join(self.paths)
        extra = (f", {self.skipped} skipped (output exists; --overwrite replaces it)" if self.skipped else "") + (
            f", {self.failed} failed" if self.failed else "")
        mps = self.megapixels / secs if self.done and secs else 0.0
        rate = f" ({mps:.2f} output MP/s)" if mps >= 0.1 else f" ({mps:.2g} output MP/s)" if mps else ""
        return f"{self.done} image(s) written in {secs:.1f} s{rate}{extra} [{model}{how}]"


def cmd_process(args: argparse.Namespace, task: str) -> int:
    """``restore upscale`` / ``restore denoise``: plan, shard, then the plain loop or ``--ray``; the exit code."""
    import time

    from restore.engine.batch import ModelChoice, ProcessOptions, Sizing
    from restore.io.inputs import select_shard

    t_start = time.perf_counter()
    sizing = Sizing(outscale=args.outscale, width=args.width, height=args.height, fit=args.fit,
                    resample=args.resample) if task == "sr" else Sizing()
    choice = ModelChoice(task, weights=args.weights, model=args.model, scale=getattr(args, "scale", None),
                         sigma=getattr(args, "sigma", None) or ("auto" if task == "denoise" else None),
                         device=args.device, tile=args.tile, precision=args.precision, calib=args.calib, sizing=sizing,
                         tta=args.tta)
    if args.workers is not None and args.ray is None:
        raise ValueError("--workers is for --ray (without Ray, run one 'restore' per --shard K/N)")
    if args.ray is not None and (not args.output or (Path(args.output).suffix and not Path(args.output).is_dir())):
        raise ValueError(f"--ray needs -o DIR: the outputs and {JOURNAL} go there")
    if sizing.active:  # one-line usage errors before any work
        choice.check_sizing()
    weights, model = choice.load_first()
    meta = model.meta
    suffix = args.suffix if args.suffix is not None else _default_suffix(args, task, meta.scale)
    jobs = plan_jobs(args, suffix)  # collisions are checked on the whole plan, before any sharding
    todo = jobs.jobs
    shard = _shard(args)
    if shard is not None:
        k, n, where = shard
        todo = select_shard(jobs.jobs, k, n)
        _say("note", f"shard {k}/{n} (from {where}): {len(todo)} of {len(jobs.jobs)} input(s)")
    options = ProcessOptions(overwrite=args.overwrite, allow_large=args.allow_large, debug=args.debug,
                             sizing=sizing, tiles_progress=True)
    model_name = f"{meta.family}/{meta.variant} x{meta.scale}"
    if args.ray is not None:
        return _process_on_ray(args, jobs, todo, choice, options, model_name, t_start)
    return _process_here(jobs, todo, choice, (weights, model), options, model_name, task)


def _process_here(jobs: Any, todo: list[Any], choice: Any, first: tuple[Path, Any], options: Any, model_name: str,
                  task: str) -> int:
    """The plain loop: one file after the other in this process."""
    import time

    from tqdm import tqdm

    from restore.engine.batch import InputGuard, Runners, process_file

    runners = Runners(choice, first)
    for err in jobs.errors:
        _say("error", err)
    tally = Tally(failed=len(jobs.errors))
    t0 = time.perf_counter()
    guard = InputGuard(j.src for j in jobs.jobs)
    for job in tqdm(todo, desc=task, unit="img", disable=True if len(todo) < 2 else None, leave=False):
        tally.report(process_file(job, runners, options, guard=guard, on_note=lambda m: _say("note", m)))
    secs = time.perf_counter() - t0
    print(tally.summary(secs, model_name, "" if tally.paths else f", {runners.first.device}"))
    return 1 if tally.failed else 0


def _process_on_ray(args: argparse.Namespace, jobs: Any, todo: list[Any], choice: Any, options: Any,
                    model_name: str, t_start: float) -> int:
    """``--ray``: settle what needs no worker here, send the rest to the cluster, journal every result."""
    import time

    from restore.engine import ray_batch
    from restore.engine.batch import InputGuard, preflight
    from restore.io.journal import JOURNAL_NAME, Entry, Journal

    ray_batch.require_ray()  # the one-line error before anything is written
    guard = InputGuard(j.src for j in jobs.jobs)
    tally = Tally()
    how = ""
    reported: set[Any] = set()
    with Journal(Path(args.output) / JOURNAL_NAME) as journal:

        def record(job: Any, outcome: Any) -> None:
            tally.report(outcome)
            reported.add(job)
            error = None if outcome.status == "written" else outcome.message
            journal.append(Entry(str(job.src), str(job.dst), outcome.status, error, outcome.seconds))

        for err in jobs.errors:
            _say("error", err)
            tally.failed += 1
            journal.append(Entry(err.partition(": ")[0], None, "failed", err, 0.0))
        send = []
        for job in todo:
            early = preflight(job, options, guard)
            if early is None:
                send.append(job)
            else:
                record(job, early)
        if send:
            try:
                with ray_batch.ray_session(args.ray or None, say=lambda m: _say("note", m),
                                           debug=args.debug) as session:
                    plan = ray_batch.plan_actors(ray_batch.cluster_nodes(session.ray), device=args.device,
                                                 workers=args.workers, inputs=len(send))
                    if plan.workers > plan.room:
                        _say("note", f"{plan.workers} worker(s) asked, the cluster holds {plan.room} now; the others "
                                     f"start when resources appear")
                    how = f"; {plan.describe()}"
                    for job, outcome, notes in ray_batch.run_jobs(session, send, choice, options, plan):
                        for note in notes:
                            _say("note", note)
                        record(job, outcome)
            finally:
                ray_batch.remove_partials([j for j in send if j not in reported])
    secs = time.perf_counter() - t_start
    print(tally.summary(secs, model_name, how if tally.paths else f", {args.device}{how}"))
    return 1 if tally.failed else 0
