"""``restore upscale`` and ``restore denoise``: files, folders or globs in, one output per input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from restore.cli.args import add_model_args, add_precision_args, tile


def add_parsers(sub: Any) -> None:
    for verb, task in (("upscale", "sr"), ("denoise", "denoise")):
        p = sub.add_parser(verb, help=f"{'upscale' if task == 'sr' else 'denoise'} images")
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
        p.add_argument("-o", "--output", help="output file (one input) or directory")
        if task == "sr":
            p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (checks the model's)")
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


def _expand_inputs(inputs: Sequence[str]) -> list[Path]:
    from restore import io

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(io.list_images(p))
        elif p.exists():
            files.append(p)
        else:
            matches = sorted(Path().glob(item)) if any(c in item for c in "*?[") else []
            if not matches:
                raise FileNotFoundError(f"{item}: no such file, directory or matching glob")
            files.extend(m for m in matches if m.suffix.lower() in io.IMAGE_SUFFIXES)
    return files


def _output_path(src: Path, out: str | None, suffix: str, n_inputs: int) -> Path:
    if out is not None and n_inputs == 1 and Path(out).suffix and not Path(out).is_dir():
        return Path(out)
    folder = Path(out) if out is not None else src.parent
    ext = src.suffix.lower() if src.suffix.lower() in (".png", ".tif", ".tiff", ".webp") else ".png"
    return folder / f"{src.stem}{suffix}{ext}"


def cmd_process(args: argparse.Namespace, task: str) -> int:
    import time

    import numpy as np
    from tqdm import tqdm

    from restore import io
    from restore.engine.restorer import Restorer, RunStats, is_oom
    from restore.weights import load_model, resolve_model

    sigma = getattr(args, "sigma", None) or ("blind" if task == "denoise" else None)
    by_color = task == "denoise" and not args.weights and not args.model  # gray input -> gray model, colour -> colour

    def pick(color: str | None) -> Path:
        return Path(args.weights) if args.weights else resolve_model(
            args.model, task=task, scale=getattr(args, "scale", None), sigma=sigma, color=color)

    weights = pick("rgb")
    model = load_model(weights)
    meta = model.meta
    if meta.task != task:
        raise ValueError(f"{weights}: a {meta.task} model (x{meta.scale}); use 'restore "
                         f"{'upscale' if meta.task == 'sr' else 'denoise'}'")
    if task == "sr" and args.scale is not None and args.scale != meta.scale:
        raise ValueError(f"{weights}: model is x{meta.scale}, but --scale {args.scale} was asked")
    files = _expand_inputs(args.inputs)
    if not files:
        raise FileNotFoundError(f"no images found in {' '.join(args.inputs)}")
    if args.output and len(files) > 1 and Path(args.output).suffix and not Path(args.output).is_dir():
        raise ValueError(f"-o {args.output}: {len(files)} inputs need an output directory, not a file name")
    runner = Restorer(model, device=args.device, tile=args.tile, precision=args.precision,
                      calibration=args.calib)
    runners = {weights: runner}

    def runner_for(img: np.ndarray) -> Restorer:
        if not by_color:
            return runner
        w = pick("gray" if img.ndim == 2 or img.shape[2] == 2 else "rgb")
        if w not in runners:
            runners[w] = Restorer(load_model(w), device=args.device, tile=args.tile, precision=args.precision,
                                  calibration=args.calib)
        return runners[w]

    suffix = args.suffix if args.suffix is not None else (f"_x{meta.scale}" if task == "sr" else "_denoised")
    done = failed = skipped = 0
    megapixels, t0 = 0.0, time.perf_counter()
    for src in tqdm(files, desc=task, unit="img", disable=len(files) < 2, leave=False):
        dst = _output_path(src, args.output, suffix, len(files))
        if any(io.same_file(dst, f) for f in files):
            print(f"restore: error: {src}: output {dst} would overwrite an input; choose -o or --suffix",
                  file=sys.stderr)
            failed += 1
            continue
        if dst.exists() and not args.overwrite:
            print(f"restore: skip {src}: {dst} exists (use --overwrite)", file=sys.stderr)
            skipped += 1
            continue
        try:
            img, info = io.read_image_info(src, allow_large=args.allow_large)
            for note in info.notes:
                print(f"restore: note: {src}: {note}", file=sys.stderr)
            with tqdm(desc=f"{src.name} tiles", unit="tile", leave=False,
                      disable=not sys.stderr.isatty()) as tiles_bar:
                stats = RunStats(on_forward=lambda n, bar=tiles_bar: bar.update(n - bar.n))
                out = runner_for(img).run(img, stats=stats)
            for note in io.conversion_notes(dst, out, info=info):
                print(f"restore: note: {dst}: {note}", file=sys.stderr)
            io.write_image(dst, out, info=info, overwrite=args.overwrite)
        except io.ImageReadError as e:
            print(f"restore: error: {e}", file=sys.stderr)
            failed += 1
            continue
        except (RuntimeError, MemoryError) as e:
            if args.debug or not (isinstance(e, MemoryError) or is_oom(e)):
                raise
            print(f"restore: error: {src}: out of memory ({img.shape[1]}x{img.shape[0]}); try a smaller --tile "
                  f"(e.g. --tile 256) or --device cpu", file=sys.stderr)
            failed += 1
            continue
        except (OSError, ValueError) as e:
            if args.debug:
                raise
            print(f"restore: error: {src} -> {dst}: {e}", file=sys.stderr)
            failed += 1
            continue
        done += 1
        megapixels += out.shape[0] * out.shape[1] / 1e6
        print(f"{src} -> {dst} ({img.shape[1]}x{img.shape[0]} -> {out.shape[1]}x{out.shape[0]})")
    secs = time.perf_counter() - t0
    print(f"{done} image(s) written in {secs:.1f} s ({megapixels / secs if secs else 0:.2f} output MP/s)"
          f"{f', {skipped} skipped' if skipped else ''}{f', {failed} failed' if failed else ''}"
          f" [{meta.family}/{meta.variant} x{meta.scale}, {runner.device}, {runner.precision} {runner.backend}]")
    return 1 if failed else 0
