"""``restore eval``: PSNR / SSIM of a model on a benchmark folder, with the papers' conventions."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from restore.cli.args import add_model_args, add_precision_args, add_tta_arg, noise_level, resolved_precision


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM on a benchmark folder (papers' conventions)",
                       description="Score a model on a benchmark folder. With --sigma and no --model/--weights: the "
                                   "denoiser 'restore denoise --sigma S' picks for each image (gray or colour).")
    add_model_args(p, required=False, device="cpu")
    p.add_argument("--data", required=True, help="HR/+LR_bicubic/X{S}/, image_SRF_{S}/, or HR images")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="SR scale (default: the model's)")
    p.add_argument("--sigma", type=noise_level, help="denoising: Gaussian noise level on the 0-255 scale")
    p.add_argument("--auto-sigma", action="store_true",
                   help="with --sigma S and no model: score what 'restore denoise' without --sigma picks, the model "
                        "for the noise level estimated on each noisy image (S is not told to it)")
    p.add_argument("--seed", type=int, default=0, help="noise seed, reset per image (default 0)")
    add_precision_args(p, default="fp32")
    add_tta_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from restore.evaluate import evaluate_denoise, evaluate_sr
    from restore.weights import load_model, resolve_model

    if args.auto_sigma and (args.weights or args.model or args.sigma is None):
        raise ValueError("restore eval: --auto-sigma scores the default denoiser: pass --sigma S, without "
                         "--model/--weights")
    if args.weights:
        weights, name = Path(args.weights), Path(args.weights).stem
    elif args.model:
        weights, name = resolve_model(args.model, task="any"), args.model
    elif args.sigma is not None:
        return _eval_default_denoiser(args)
    else:
        raise ValueError("restore eval: pass --model NAME or --weights FILE (or --sigma S alone for the default "
                         "denoiser)")
    model = load_model(weights, device=args.device)
    if args.sigma is not None:
        evaluate = functools.partial(evaluate_denoise, model, args.data, sigma=args.sigma, seed=args.seed, name=name,
                                     progress=not args.json, device=args.device, tta=args.tta)
    else:
        scale = args.scale if args.scale is not None else model.meta.scale
        evaluate = functools.partial(evaluate_sr, model, args.data, scale=scale, name=name, progress=not args.json,
                                     device=args.device, tta=args.tta)
    precision = resolved_precision(args.precision, args.device, model.meta)
    res = evaluate(precision=args.precision, calibration=args.calib)
    ref = evaluate(precision="fp32") if precision != "fp32" else None  # the honest cost of a lossy precision
    if args.json:
        cost = {"psnr_fp32": round(ref.psnr_y, 4), "psnr_cost_db": round(res.psnr_y - ref.psnr_y, 4),
                "ssim_fp32": round(ref.ssim_y, 4)} if ref is not None else {}
        print(json.dumps({**res.to_dict(), "precision": precision, "tta": args.tta, **cost}))
        return 0
    _print_table(res, name)
    label = "Y-PSNR" if res.task == "sr" else "PSNR"
    if ref is not None:
        calib = (f"; int8 calibrated on {args.calib}" if args.calib else
                 "; int8 calibrated on crops of the first image of the set") if precision == "int8" else ""
        print(f"{'':<24} {ref.psnr_y:8.4f} {ref.ssim_y:7.4f}  [same in fp32: {precision} costs "
              f"{res.psnr_y - ref.psnr_y:+.4f} dB {label}, {res.ssim_y - ref.ssim_y:+.4f} SSIM{calib}]")
    return 0


def _eval_default_denoiser(args: argparse.Namespace) -> int:
    """``restore eval --sigma S --data DIR`` without a model: each image through the model ``restore denoise
    --sigma S`` would pick for it (gray or colour default for that noise level); with ``--auto-sigma`` the one
    ``restore denoise`` picks without --sigma (from the noise level estimated on the noisy image)."""
    from restore.evaluate import evaluate_denoise
    from restore.weights import auto_sigma, default_denoiser, load_model

    models: dict[Path, Any] = {}
    used: list[str] = []

    def model_for(color: str, noisy: Any = None) -> Any:
        level: Any = args.sigma
        if args.auto_sigma:
            level = auto_sigma(noisy, color)[0] if noisy is not None else "blind"
        path = default_denoiser(level, color)
        if path not in models:
            models[path] = load_model(path, device=args.device)
        if noisy is not None:
            used.append(path.stem)
        return models[path]

    res = evaluate_denoise(model_for, args.data, sigma=args.sigma, seed=args.seed, name="", progress=not args.json,
                           device=args.device, precision=args.precision, calibration=args.calib, tta=args.tta)
    counts = {stem: used.count(stem) for stem in dict.fromkeys(used)}
    picked = (" / ".join(f"{stem} x{n}" for stem, n in counts.items()) if args.auto_sigma else " / ".join(counts))
    res.model = (("auto-sigma: " if args.auto_sigma else "default: ") + picked + (" (tta x8)" if args.tta else ""))
    if args.json:
        print(json.dumps({**res.to_dict(), "precision": args.precision, "tta": args.tta}))
        return 0
    _print_table(res, res.model)
    return 0


def _print_table(res: Any, name: str) -> None:
    print(f"{'image':<24} {'PSNR':>8} {'SSIM':>7}")
    for r in res.per_image:
        print(f"{r['image']:<24} {r['psnr']:8.4f} {r['ssim']:7.4f}")
    label = "Y-PSNR" if res.task == "sr" else "PSNR"
    print(f"{'mean (' + str(len(res.per_image)) + ' images)':<24} {res.psnr_y:8.4f} {res.ssim_y:7.4f}  "
          f"[{label}, {name}, {'x' + str(res.scale) if res.task == 'sr' else 'sigma ' + str(res.sigma)}]")
    if res.task == "sr":
        print(f"{'':<24} {res.psnr_y_uint8:8.4f}          [Y-PSNR with Y quantised to uint8]")

