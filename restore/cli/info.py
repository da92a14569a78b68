"""``restore info FILE`` (what the loader detects) and ``restore models`` (what ships)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("info", help="what the loader detects in a checkpoint")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list shipped models and the supported architecture families")
    p.add_argument("--zoo", action="store_true",
                   help="list the other architectures loadable through spandrel (optional extra restore[zoo])")
    p.set_defaults(func=cmd_models)


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
