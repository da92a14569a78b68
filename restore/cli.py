"""Command line: ``restore {upscale,denoise,eval,info,models}``.

Errors a user can act on (bad file, wrong scale, unknown checkpoint) print one line and exit 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE = 2


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (.pth of any supported family, or ESPCN .pb)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


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
    return folder / f"{src.stem}{suffix}.png"


def cmd_process(args: argparse.Namespace, task: str) -> int:
    from restore import io
    from restore.engine.restorer import Restorer
    from restore.weights import load_model

    model = load_model(args.weights)
    meta = model.meta
    if meta.task != task:
        raise ValueError(f"{args.weights}: a {meta.task} model (x{meta.scale}); use 'restore "
                         f"{'upscale' if meta.task == 'sr' else 'denoise'}'")
    if task == "sr" and args.scale is not None and args.scale != meta.scale:
        raise ValueError(f"{args.weights}: model is x{meta.scale}, but --scale {args.scale} was asked")
    runner = Restorer(model, device=args.device)
    files = _expand_inputs(args.inputs)
    suffix = args.suffix if args.suffix is not None else (f"_x{meta.scale}" if task == "sr" else "_denoised")
    failures = 0
    for src in files:
        dst = _output_path(src, args.output, suffix, len(files))
        if dst.resolve() == src.resolve():
            print(f"restore: skip {src}: output would overwrite the input", file=sys.stderr)
            failures += 1
            continue
        if dst.exists() and not args.overwrite:
            print(f"restore: skip {src}: {dst} exists (use --overwrite)", file=sys.stderr)
            continue
        try:
            img = io.read_image(src)
        except io.ImageReadError as e:
            print(f"restore: error: {e}", file=sys.stderr)
            failures += 1
            continue
        out = runner.run(img)
        io.write_image(dst, out)
        print(f"{src} -> {dst} ({img.shape[1]}x{img.shape[0]} -> {out.shape[1]}x{out.shape[0]})")
    return 1 if failures else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from restore.evaluate import evaluate_denoise, evaluate_sr
    from restore.weights import load_model

    model = load_model(args.weights, device=args.device)
    name = Path(args.weights).stem
    if args.sigma is not None:
        res = evaluate_denoise(model, args.data, sigma=args.sigma, seed=args.seed, name=name,
                               progress=not args.json, device=args.device)
    else:
        scale = args.scale if args.scale is not None else model.meta.scale
        res = evaluate_sr(model, args.data, scale=scale, name=name, progress=not args.json, device=args.device)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    print(f"{'image':<24} {'PSNR':>8} {'SSIM':>7}")
    for r in res.per_image:
        print(f"{r['image']:<24} {r['psnr']:8.4f} {r['ssim']:7.4f}")
    label = "Y-PSNR" if res.task == "sr" else "PSNR"
    print(f"{'mean (' + str(len(res.per_image)) + ' images)':<24} {res.psnr_y:8.4f} {res.ssim_y:7.4f}  "
          f"[{label}, {name}, {'x' + str(res.scale) if res.task == 'sr' else 'sigma ' + str(res.sigma)}]")
    if res.task == "sr":
        print(f"{'':<24} {res.psnr_y_float:8.4f}          [Y-PSNR with BasicSR's unrounded float Y]")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from restore.weights import describe

    info = describe(args.file)
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>16}: {v}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from restore.registry import FAMILIES, family_module

    for name in FAMILIES:
        doc = (family_module(name).__doc__ or "").strip().splitlines()
        print(f"{name:<8} {doc[0] if doc else ''}")
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
            p.add_argument("--scale", type=int, choices=(2, 3, 4), help="check the model's scale")
        _add_model_args(p)
        p.add_argument("--suffix", default=None, help="added to output names (default _x<scale> / _denoised)")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
        p.set_defaults(func=lambda a, t=task: cmd_process(a, t))

    p = sub.add_parser("eval", help="PSNR/SSIM on a benchmark folder (papers' conventions)")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="HR/+LR_bicubic/X{S}/, image_SRF_{S}/, or HR images")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="SR scale (default: the model's)")
    p.add_argument("--sigma", type=float, help="denoising: Gaussian noise level on the 0-255 scale")
    p.add_argument("--seed", type=int, default=0, help="noise seed, reset per image (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="what the loader detects in a checkpoint")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list the supported architecture families")
    p.set_defaults(func=cmd_models)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
