"""``restore train``, ``restore test`` and ``restore export``.

``restore train -opt FILE [--root DIR] [--resume] [--set key.sub=value ...] [--launcher none|pytorch|slurm]``
trains with BasicSR (the ``train`` extra), in one process or as one rank of ``torchrun`` / ``srun`` (rank 0
prints the summary); ``restore test -opt FILE [--root DIR] [--set key.sub=value ...] [--json]`` scores weights
on the test sets of an ``options/test/*.yml`` file and ``restore export --weights CKPT [--fuse] -o OUT.pth``
converts a checkpoint, both with torch only. Errors the user can act on are ``ValueError`` subclasses (bad
option file, missing data, a launch without its environment), which ``restore.cli.main`` prints as one line
with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_train(args: argparse.Namespace) -> int:
    from restore.train import basicsr_problem

    problem = basicsr_problem()
    if problem is not None:
        print(f"restore: error: {problem}", file=sys.stderr)
        return 2
    from restore.train.loop import train

    res = train(args.opt, root=args.root, resume=args.resume, overrides=args.overrides, launcher=args.launcher)
    if res.rank != 0:  # rank 0 reports for the run
        return 0
    how = f"resumed from {res.resumed_from}" if res.resumed_from else "from scratch"
    procs = f", {res.world_size} processes x batch {res.batch // res.world_size}" if res.world_size > 1 else ""
    print(f"trained {res.experiment.name}: iterations {res.start_iter} -> {res.end_iter} ({how}{procs}), "
          f"{res.iters_per_second:.2f} it/s; outputs in {res.experiment}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from restore.train.options import load_test_options
    from restore.train.testing import run_test

    opts = load_test_options(args.opt, args.overrides)
    res = run_test(opts, root=args.root, progress=not args.json)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    print(f"{res.name}: {res.network} <- {res.weights} [{res.weights_key}], {res.device}")
    for d in res.datasets:
        names = list(d.means())
        what = f"x{res.scale}" if res.task == "sr" else f"sigma {d.sigma:g}"
        print(f"\n{d.name} ({d.phase}, {what}, {len(d.per_image)} images, {d.data})")
        print(f"{'image':<24}" + "".join(f" {n:>9}" for n in names))
        for r in d.per_image:
            print(f"{r['image']:<24}" + "".join(f" {r[n]:9.4f}" for n in names))
        print(f"{'mean':<24}" + "".join(f" {v:9.4f}" for v in d.means().values()))
    print(f"\nmetrics: {res.metrics_file}")
    return 0


ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def check_export_output(args: argparse.Namespace) -> None:
    """Usage errors of ``restore export -o`` (exit 2, before any work): a folder, the input checkpoint itself,
    an existing file without ``--overwrite``, a name whose suffix says the other format."""
    import os

    from restore.io.files import names_folder, same_file

    out = Path(args.output)
    if names_folder(str(args.output)) or out.is_dir():
        raise ValueError(f"-o {args.output}: is a folder; give a file name (e.g. {out / 'model'}"
                         f"{'.onnx' if args.onnx else '.pth'})")
    if os.path.lexists(out) and os.path.lexists(args.weights) and same_file(out, args.weights):
        raise ValueError(f"-o {args.output}: is the input checkpoint; choose another name")
    suffix = out.suffix.lower()
    if suffix in ONNX_SUFFIXES and not args.onnx:
        raise ValueError(f"-o {args.output}: an .onnx name needs --onnx (without it the output is a PyTorch state "
                         "dict: name it .pth)")
    if suffix in TORCH_SUFFIXES and args.onnx:
        raise ValueError(f"-o {args.output}: --onnx writes an ONNX graph; name it .onnx")
    if os.path.lexists(out) and not args.overwrite:
        raise ValueError(f"-o {args.output}: exists (use --overwrite)")


def cmd_export(args: argparse.Namespace) -> int:
    check_export_output(args)
    if args.onnx:
        return _export_onnx(args)
    if args.fp16 or args.opset is not None:
        raise ValueError("--fp16 and --opset are for --onnx")
    from restore.export import export

    res = export(args.weights, args.output, fuse=args.fuse, key=args.key, overwrite=args.overwrite)
    extra = f", {res.lora_merged} ConvLoRA layers merged" if res.lora_merged else ""
    print(f"{args.weights} [{res.source_key}] -> {res.output}: {res.description}{extra} "
          f"(max |diff| vs trained {res.max_abs_diff:.2e})")
    return 0


def add_parsers(sub: Any) -> None:
    add_train_parser(sub)
    add_test_parser(sub)
    add_export_parser(sub)


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train from a BasicSR-style YAML option file (needs the train extra)")
    p.add_argument("-opt", "--opt", required=True, metavar="FILE", help="option file (options/train/*.yml)")
    p.add_argument("--root", default=".", help="outputs go to ROOT/experiments/<name>/ (default: .)")
    p.add_argument("--resume", action="store_true", help="continue from the latest training state, exactly")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an option, e.g. --set train.total_iter=1000 (repeatable; value read as YAML)")
    p.add_argument("--launcher", choices=("none", "pytorch", "slurm"), default="none",
                   help="distributed training, one process per GPU (or CPU worker): pytorch under torchrun, slurm "
                        "under srun; batch_size_per_gpu is per process (default: none, one process)")
    p.add_argument("--local-rank", "--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # old launchers
    p.set_defaults(func=cmd_train)
    return p


def add_test_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("test", help="score weights on the test sets of a BasicSR-style test option file")
    p.add_argument("-opt", "--opt", required=True, metavar="FILE", help="option file (options/test/*.yml)")
    p.add_argument("--root", default=".",
                   help="outputs go to ROOT/results/<name>/ (metrics.json, images with val.save_img; default: .)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an option, e.g. --set num_gpu=0 (repeatable; value read as YAML)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the content of metrics.json)")
    p.set_defaults(func=cmd_test)
    return p


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="training checkpoint -> deploy-form state dict, or an ONNX graph")
    p.add_argument("--weights", required=True, help="checkpoint (models/net_g_*.pth of a training run, or any)")
    p.add_argument("--fuse", action="store_true",
                   help="also fold re-parameterisations (Conv3XC, CFSR branches, BatchNorm, weighted conv)")
    p.add_argument("--key", choices=("params_ema", "params"), default=None,
                   help="which weights (default: params_ema when present)")
    p.add_argument("-o", "--output", required=True, help="output .pth (flat state dict), or .onnx with --onnx")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (never the input)")
    p.add_argument("--onnx", action="store_true",
                   help="write the fused deploy form as ONNX (dynamic batch/height/width; the model's conventions "
                        "in its metadata), checked with ONNX Runtime against PyTorch")
    p.add_argument("--fp16", action="store_true", help="--onnx: float16 weights and arithmetic (GPU runtimes)")
    p.add_argument("--opset", type=int, default=None, help="--onnx: ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)
    return p


def _export_onnx(args: argparse.Namespace) -> int:
    from restore.engine.cpu_paths import onnxruntime_available
    from restore.export import export_onnx

    if not onnxruntime_available():
        print("restore: error: --onnx needs the onnx extra: pip install 'restore[onnx]'", file=sys.stderr)
        return 2
    res = export_onnx(args.weights, args.output, key=args.key, fp16=args.fp16, opset=args.opset or 17,
                      overwrite=args.overwrite)
    sizes = ", ".join(f"{h}x{w}" for h, w in res.sizes)
    check = (f"ONNX Runtime vs PyTorch max |diff| {res.max_abs_diff:.2e} at {sizes}" if res.sizes
             else "not run by the CPU runtime (fp16)")
    print(f"{args.weights} [{res.source_key}] -> {res.output}: {res.description}, opset {res.opset}, "
          f"{'fp16' if res.fp16 else 'fp32'}; {check}")
    return 0

