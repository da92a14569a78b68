"""``restore train`` and ``restore export`` sub-commands (wired into :mod:`restore.cli`).

``restore train -opt FILE [--root DIR] [--resume] [--set key.sub=value ...]`` trains with BasicSR (the
``train`` extra); ``restore export --weights CKPT [--fuse] -o OUT.pth`` needs torch only. Errors the user
can act on are ``ValueError`` subclasses (bad option file, missing data), which ``restore.cli.main`` prints
as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_train(args: argparse.Namespace) -> int:
    try:
        import basicsr  # noqa: F401
    except ImportError:
        print("restore: error: 'restore train' needs BasicSR: pip install 'restore[train]' "
              "(the basicsr-fixed package)", file=sys.stderr)
        return 2
    from restore.train.loop import train

    res = train(args.opt, root=args.root, resume=args.resume, overrides=args.overrides)
    how = f"resumed from {res.resumed_from}" if res.resumed_from else "from scratch"
    print(f"trained {res.experiment.name}: iterations {res.start_iter} -> {res.end_iter} ({how}), "
          f"{res.iters_per_second:.2f} it/s; outputs in {res.experiment}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from restore.export import export

    res = export(args.weights, args.output, fuse=args.fuse, key=args.key)
    extra = f", {res.lora_merged} ConvLoRA layers merged" if res.lora_merged else ""
    print(f"{args.weights} [{res.source_key}] -> {res.output}: {res.description}{extra} "
          f"(max |diff| vs trained {res.max_abs_diff:.2e})")
    return 0


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train from a BasicSR-style YAML option file (needs the train extra)")
    p.add_argument("-opt", "--opt", required=True, metavar="FILE", help="option file (options/train/*.yml)")
    p.add_argument("--root", default=".", help="outputs go to ROOT/experiments/<name>/ (default: .)")
    p.add_argument("--resume", action="store_true", help="continue from the latest training state, exactly")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an option, e.g. --set train.total_iter=1000 (repeatable; value read as YAML)")
    p.set_defaults(func=cmd_train)
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
