"""``restore upscale`` and ``restore denoise``: files, folders or globs in, one output per input."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from restore.cli.args import add_model_args, add_precision_args, tile
from restore.engine.policy import FITS, RESAMPLERS


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
            p.add_argument("--sigma", choices=("15", "25", "50", "blind"),
                           help="noise level of the shipped model to use")
        add_model_args(p, required=False)
        p.add_argument("--tile", type=tile, default="auto",
                       help="tile size in LR px, 'auto' (from free memory, default), 'acs' (IMDN crops) or 0 (none)")
        add_precision_args(p)
        p.add_argument("--suffix", default=None, help="added to output names (default _x<scale> / _denoised)")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
        p.add_argument("--allow-large", action="store_true",
                       help="read images over the decompression-bomb pixel limit")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        p.set_defaults(func=lambda a, t=task: cmd_process(a, t))


def _say(kind: str, msg: str) -> None:
    """One line on stderr (through tqdm, so a progress bar on a terminal is redrawn below it)."""
    from tqdm import tqdm

    tqdm.write(f"restore: {kind}: {msg}", file=sys.stderr)


def _os_reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


SHIPPED_SCALES = (2, 3, 4)


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
    from restore.io.inputs import plan

    jobs = plan(args.inputs, out=args.output, suffix=suffix, recursive=args.recursive, include=args.include,
                exclude=args.exclude)
    for note in jobs.notes:
        _say("note", note)
    if not jobs.jobs:
        raise FileNotFoundError("; ".join(jobs.errors) or f"no images found in {' '.join(args.inputs)}")
    out = Path(args.output) if args.output else None
    if out is not None and len(jobs.jobs) > 1 and out.suffix and not out.is_dir():
        raise ValueError(f"-o {args.output}: {len(jobs.jobs)} inputs need an output directory, not a file name")
    clashes = jobs.collisions()
    if clashes:
        names = "; ".join(" and ".join(str(j.src) for j in group) + f" -> {group[0].dst}" for group in clashes[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ValueError(f"{len(clashes)} output name(s) would be written twice: {names}{more}; rename one input, "
                         f"or process them in separate runs with different --suffix or -o")
    return jobs


def cmd_process(args: argparse.Namespace, task: str) -> int:
    import time

    import numpy as np
    from tqdm import tqdm

    from restore import io
    from restore.engine.restorer import Restorer, RunStats, is_oom
    from restore.weights import default_denoiser, load_model, resolve_model

    sigma = getattr(args, "sigma", None) or ("blind" if task == "denoise" else None)
    by_color = task == "denoise" and not args.weights and not args.model  # gray input -> gray model, colour -> colour
    sizing = task == "sr" and any(getattr(args, k, None) is not None for k in ("outscale", "width", "height"))
    by_size = sizing and not args.weights and not args.model and args.scale is None  # smallest scale that reaches it

    def pick(color: str, scale: int | None = None) -> Path:
        if args.weights:
            return Path(args.weights)
        if by_color:
            return default_denoiser(sigma, color)
        return resolve_model(args.model, task=task, scale=scale or getattr(args, "scale", None), sigma=sigma,
                             color=color)

    def target_for(img: np.ndarray) -> Any:
        from restore.engine.resample import target_size

        return target_size(img.shape[0], img.shape[1], outscale=args.outscale, width=args.width,
                           height=args.height, fit=args.fit) if sizing else None

    if sizing:  # one-line usage errors before any work
        target_for(np.zeros((8, 8), np.uint8))
    first_scale = None
    if by_size and args.outscale is not None:
        first_scale = next((s for s in SHIPPED_SCALES if s >= args.outscale), SHIPPED_SCALES[-1])
    weights = pick("rgb", first_scale)
    model = load_model(weights)
    meta = model.meta
    if meta.task != task:
        raise ValueError(f"{weights}: a {meta.task} model (x{meta.scale}); use 'restore "
                         f"{'upscale' if meta.task == 'sr' else 'denoise'}'")
    if task == "sr" and args.scale is not None and args.scale != meta.scale:
        raise ValueError(f"{weights}: model is x{meta.scale}, but --scale {args.scale} was asked")
    suffix = args.suffix if args.suffix is not None else _default_suffix(args, task, meta.scale)
    jobs = plan_jobs(args, suffix)
    runner = Restorer(model, device=args.device, tile=args.tile, precision=args.precision,
                      calibration=args.calib)
    runners = {weights: runner}

    def runner_for(img: np.ndarray) -> Restorer:
        if by_size:  # the smallest shipped scale that reaches the target (the resample then only shrinks)
            t = target_for(img)
            need = max(t.height / img.shape[0], t.width / img.shape[1])
            w = pick("rgb", next((s for s in SHIPPED_SCALES if s >= need - 1e-9), SHIPPED_SCALES[-1]))
        elif by_color:
            w = pick("gray" if img.ndim == 2 or img.shape[2] == 2 else "rgb")
        else:
            return runner
        if w not in runners:
            runners[w] = Restorer(load_model(w), device=args.device, tile=args.tile, precision=args.precision,
                                  calibration=args.calib)
        return runners[w]

    for err in jobs.errors:
        _say("error", err)
    done, failed, skipped = 0, len(jobs.errors), 0
    megapixels, t0 = 0.0, time.perf_counter()
    sources = [j.src for j in jobs.jobs]
    for job in tqdm(jobs.jobs, desc=task, unit="img", disable=True if len(jobs.jobs) < 2 else None, leave=False):
        src, dst = job.src, job.dst
        try:  # everything about one file, the output-name checks included: a failure is this file's alone
            if any(io.same_file(dst, f) for f in sources):
                _say("error", f"{src}: output {dst} would overwrite an input; choose -o or --suffix")
                failed += 1
                continue
            if os.path.lexists(dst) and not args.overwrite:
                _say("skip", f"{src}: {dst} exists (use --overwrite)")
                skipped += 1
                continue
            img, info = io.read_image_info(src, allow_large=args.allow_large)
            for note in info.notes:
                _say("note", f"{src}: {note}")
            with tqdm(desc=f"{src.name} tiles", unit="tile", leave=False,
                      disable=not sys.stderr.isatty()) as tiles_bar:
                stats = RunStats(on_forward=lambda n, bar=tiles_bar: bar.update(n - bar.n))
                out = runner_for(img).run(img, stats=stats)
            target = target_for(img)
            if target is not None:
                from restore.engine.resample import resample

                out = resample(out, target, args.resample)
            for note in io.conversion_notes(dst, out, info=info):
                _say("note", f"{dst}: {note}")
            io.write_image(dst, out, info=info, overwrite=args.overwrite)
        except io.ImageReadError as e:
            _say("error", str(e))
            failed += 1
            continue
        except FileExistsError:
            _say("skip", f"{src}: {dst} appeared while this image ran (use --overwrite)")
            skipped += 1
            continue
        except (OSError, ValueError) as e:
            if args.debug:
                raise
            _say("error", f"{src} -> {dst}: {_os_reason(e) if isinstance(e, OSError) else e}")
            failed += 1
            continue
        except Exception as e:  # an allocator failure (PyTorch or ONNX Runtime) is this image's; the rest is a bug
            if args.debug or not is_oom(e):
                raise
            _say("error", f"{src}: out of memory ({img.shape[1]}x{img.shape[0]}); try a smaller --tile "
                          f"(e.g. --tile 256) or --device cpu")
            failed += 1
            continue
        done += 1
        megapixels += out.shape[0] * out.shape[1] / 1e6
        print(f"{src} -> {dst} ({img.shape[1]}x{img.shape[0]} -> {out.shape[1]}x{out.shape[0]})")
    secs = time.perf_counter() - t0
    how = f", {runner.device}, {runner.precision} {runner.backend}" if done else f", {runner.device}"
    extra = (f", {skipped} skipped (output exists; --overwrite replaces it)" if skipped else "") + (
        f", {failed} failed" if failed else "")
    rate = f" ({megapixels / secs:.2f} output MP/s)" if done and secs else ""
    print(f"{done} image(s) written in {secs:.1f} s{rate}{extra} [{meta.family}/{meta.variant} x{meta.scale}{how}]")
    return 1 if failed else 0
