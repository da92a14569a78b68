"""``restore train``, ``restore test`` and ``restore export``.

``restore train -opt FILE [--root DIR] [--resume] [--set key.sub=value ...]`` trains with BasicSR (the
``train`` extra); ``restore test -opt FILE [--root DIR] [--set key.sub=value ...] [--json]`` scores weights on
the test sets of an ``options/test/*.yml`` file and ``restore export --weights CKPT [--fuse] -o OUT.pth``
converts a checkpoint, both with torch only. Errors the user
can act on are ``ValueError`` subclasses (bad option file, missing data), which ``restore.cli.main`` prints
as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def cmd_train(args: argparse.Namespace) -> int:
    from restore.train import basicsr_problem

    problem = basicsr_problem()
    if problem is not None:
        print(f"restore: error: {problem}", file=sys.stderr)
        return 2
    from restore.train.loop import train

    res = train(args.opt, root=args.root, resume=args.resume, overrides=args.overrides)
    how = f"resumed from {res.resumed_from}" if res.resumed_from else "from scratch"
    print(f"trained {res.experiment.name}: iterations {res.start_iter} -> {res.end_iter} ({how}), "
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


def cmd_export(args: argparse.Namespace) -> int:
    from restore.export import export

    res = export(args.weights, args.output, fuse=args.fuse, key=args.key)
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
    p = subparsers.add_parser("export", help="training checkpoint -> deploy-form state dict")
    p.add_argument("--weights", required=True, help="checkpoint (models/net_g_*.pth of a training run, or any)")
    p.add_argument("--fuse", action="store_true",
                   help="also fold re-parameterisations (Conv3XC, CFSR branches, BatchNorm, weighted conv)")
    p.add_argument("--key", choices=("params_ema", "params"), default=None,
                   help="which weights (default: params_ema when present)")
    p.add_argument("-o", "--output", required=True, help="output .pth (flat state dict)")
    p.set_defaults(func=cmd_export)
    return p
