"""Command line: ``restore {upscale,denoise,eval,info,models}``.

Errors a user can act on (bad file, wrong scale, unknown checkpoint) print one line and exit 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE = 2


def _add_model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--model", help="a shipped model by name (see 'restore models')")
    g.add_argument("--weights", help="checkpoint (.pth of any supported family, or ESPCN .pb)")
    p.add_argument("--device", default="auto" if not required else "cpu", choices=("auto", "cpu", "cuda"),
                   help="where to run (auto: cuda when available)")


PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")


AUTO_PRECISION = ("fp16 on CUDA for half-safe models, on the CPU the fastest fp32 path (ONNX Runtime, PyTorch "
                  "channels_last or eager, timed on the first input)")


def _add_precision_args(p: argparse.ArgumentParser, *, default: str = "auto", auto: str = AUTO_PRECISION) -> None:
    p.add_argument("--precision", default=default, choices=PRECISION_CHOICES,
                   help=f"auto: {auto}; bf16: faster on CPUs with AVX512_BF16/AMX, ~0.01-0.07 dB lower, "
                        f"unavailable on AVX2-only CPUs; int8: CPU, ONNX Runtime, 0.1-1.9 dB lower (default {default})")
    p.add_argument("--calib", metavar="DIR", default=None,
                   help="--precision int8: calibrate on these typical input images (used at their size; default: "
                        "crops of the first image / frames being processed)")


def _resolved_precision(precision: str, device: str, meta: object) -> str:
    """The precision ``Restorer(precision=...)`` will run ("auto" resolved)."""
    if precision == "int8":
        return precision
    from restore.engine.restorer import DTYPE_NAMES, resolve_device, resolve_precision

    return DTYPE_NAMES[resolve_precision(precision, resolve_device(device), meta)]  # type: ignore[arg-type]


def _tile(value: str) -> int | str | None:
    if value in ("auto", "acs"):
        return value
    if value in ("0", "none"):
        return None
    try:
        n = int(value)
    except ValueError:
        msg = f"--tile takes a size in LR pixels, 'auto', 'acs' or 0, not {value!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if n < 8:
        raise argparse.ArgumentTypeError("--tile must be at least 8 pixels (0 disables tiling)")
    return n


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


def cmd_eval(args: argparse.Namespace) -> int:
    from restore.evaluate import evaluate_denoise, evaluate_sr
    from restore.weights import load_model, resolve_model

    if args.weights:
        weights, name = Path(args.weights), Path(args.weights).stem
    else:
        weights, name = resolve_model(args.model, task="any"), args.model
    model = load_model(weights, device=args.device)
    if args.sigma is not None:
        evaluate = functools.partial(evaluate_denoise, model, args.data, sigma=args.sigma, seed=args.seed, name=name,
                                     progress=not args.json, device=args.device)
    else:
        scale = args.scale if args.scale is not None else model.meta.scale
        evaluate = functools.partial(evaluate_sr, model, args.data, scale=scale, name=name, progress=not args.json,
                                     device=args.device)
    precision = _resolved_precision(args.precision, args.device, model.meta)
    res = evaluate(precision=args.precision, calibration=args.calib)
    ref = evaluate(precision="fp32") if precision != "fp32" else None  # the honest cost of a lossy precision
    if args.json:
        cost = {"psnr_fp32": round(ref.psnr_y, 4), "psnr_cost_db": round(res.psnr_y - ref.psnr_y, 4),
                "ssim_fp32": round(ref.ssim_y, 4)} if ref is not None else {}
        print(json.dumps({**res.to_dict(), "precision": precision, **cost}))
        return 0
    print(f"{'image':<24} {'PSNR':>8} {'SSIM':>7}")
    for r in res.per_image:
        print(f"{r['image']:<24} {r['psnr']:8.4f} {r['ssim']:7.4f}")
    label = "Y-PSNR" if res.task == "sr" else "PSNR"
    print(f"{'mean (' + str(len(res.per_image)) + ' images)':<24} {res.psnr_y:8.4f} {res.ssim_y:7.4f}  "
          f"[{label}, {name}, {'x' + str(res.scale) if res.task == 'sr' else 'sigma ' + str(res.sigma)}]")
    if res.task == "sr":
        print(f"{'':<24} {res.psnr_y_uint8:8.4f}          [Y-PSNR with Y quantised to uint8]")
    if ref is not None:
        calib = (f"; int8 calibrated on {args.calib}" if args.calib else
                 "; int8 calibrated on crops of the first image of the set") if precision == "int8" else ""
        print(f"{'':<24} {ref.psnr_y:8.4f} {ref.ssim_y:7.4f}  [same in fp32: {precision} costs "
              f"{res.psnr_y - ref.psnr_y:+.4f} dB {label}, {res.ssim_y - ref.ssim_y:+.4f} SSIM{calib}]")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from restore.weights import describe

    info = describe(args.file)
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            for i, line in enumerate(v if isinstance(v, list) else [v]):
                print(f"{k:>16}: {line}" if i == 0 else f"{'':>16}  {line}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from restore.registry import FAMILIES, family_module
    from restore.weights import shipped_models

    if args.zoo:
        from restore.zoo import spandrel_version, zoo_architectures

        names = zoo_architectures()  # ModelLoadError naming the extra when spandrel is absent
        print(f"{len(names)} architectures through spandrel {spandrel_version()}, used when no restore family "
              f"matches a checkpoint (receptive field unknown: tiles are feathered):")
        for name in names:
            print(f"  {name}")
        return 0
    models = shipped_models()
    if models:
        print(f"{'name':<24} {'task':<8} {'scale':>5} {'params':>9}  PSNR")
        for m in models:
            psnr = ", ".join(f"{k} {v}" for k, v in dict(m.get("psnr", {})).items())
            print(f"{m['name']:<24} {m['task']:<8} {m.get('scale', 1):>5} {m.get('params', 0):>9,}  {psnr}")
    else:
        print("no shipped models in this version: use --weights FILE with any supported checkpoint")
    print("\nsupported architecture families (auto-detected by 'restore info FILE'):")
    for name in FAMILIES:
        doc = (family_module(name).__doc__ or "").strip().splitlines()
        print(f"  {name:<8} {doc[0] if doc else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from restore import __version__

    ap = argparse.ArgumentParser(prog="restore", description="Lightweight super-resolution and denoising.")
    ap.add_argument("--version", action="version", version=f"restore {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    for verb, task in (("upscale", "sr"), ("denoise", "denoise")):
        p = sub.add_parser(verb, help=f"{'upscale' if task == 'sr' else 'denoise'} images")
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
        p.add_argument("-o", "--output", help="output file (one input) or directory")
        if task == "sr":
            p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (checks the model's)")
        else:
            p.add_argument("--sigma", choices=("15", "25", "50", "blind"),
                           help="noise level of the shipped model to use")
        _add_model_args(p, required=False)
        p.add_argument("--tile", type=_tile, default="auto",
                       help="tile size in LR px, 'auto' (from free memory, default), 'acs' (IMDN crops) or 0 (none)")
        _add_precision_args(p)
        p.add_argument("--suffix", default=None, help="added to output names (default _x<scale> / _denoised)")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
        p.add_argument("--allow-large", action="store_true",
                       help="read images over the decompression-bomb pixel limit")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        p.set_defaults(func=lambda a, t=task: cmd_process(a, t))

    p = sub.add_parser("eval", help="PSNR/SSIM on a benchmark folder (papers' conventions)")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="HR/+LR_bicubic/X{S}/, image_SRF_{S}/, or HR images")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="SR scale (default: the model's)")
    p.add_argument("--sigma", type=float, help="denoising: Gaussian noise level on the 0-255 scale")
    p.add_argument("--seed", type=int, default=0, help="noise seed, reset per image (default 0)")
    _add_precision_args(p, default="fp32")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="what the loader detects in a checkpoint")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list shipped models and the supported architecture families")
    p.add_argument("--zoo", action="store_true",
                   help="list the other architectures loadable through spandrel (optional extra restore[zoo])")
    p.set_defaults(func=cmd_models)

    from restore.train.cli import add_export_parser, add_test_parser, add_train_parser

    add_train_parser(sub)
    add_test_parser(sub)
    add_export_parser(sub)

    from restore.bench import add_bench_parser
    from restore.engine.video import add_video_parser

    add_bench_parser(sub)

    add_video_parser(sub)

    from restore.web_cli import add_web_parser

    add_web_parser(sub)
    return ap


def _early_environment(argv: Sequence[str]) -> None:
    """Settings that must be in place before torch (and its OpenMP runtime) is imported: ``restore video``
    runs the network beside decoder and encoder threads, where spinning OpenMP workers (the default) take the
    cores the encoder needs (see :mod:`restore.engine.video`); an explicit ``OMP_WAIT_POLICY`` is kept."""
    import os

    if list(argv[:1]) == ["video"] and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    _early_environment(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "debug", False):
        return int(args.func(args) or 0)
    from restore.evaluate import DatasetError
    from restore.io import ImageReadError
    from restore.weights import ModelLoadError

    try:
        return int(args.func(args) or 0)
    except (ModelLoadError, ImageReadError, DatasetError, FileNotFoundError, ValueError) as e:
        print(f"restore: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("restore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
