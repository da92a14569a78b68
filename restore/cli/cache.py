"""``restore cache info|clear``: the tuning cache (:mod:`restore.engine.path_cache`)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("cache", help="show or clear the tuning cache (CPU path choices, exported graphs)",
                       description="The CPU path each model runs fastest on this machine and its exported ONNX "
                                   "graph are kept in a cache folder ($RESTORE_CACHE_DIR, else ~/.cache/restore), so "
                                   "a second run does not measure again.")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_cache)


def cmd_cache(args: argparse.Namespace) -> int:
    from restore.engine import path_cache

    if args.action == "clear":
        n = path_cache.clear()
        print(json.dumps({"removed": n}) if args.json else f"removed {n} file(s) from {path_cache.cache_dir()}")
        return 0
    info = path_cache.info()
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"tuning cache: {info['folder']}")
    for kind, what in (("paths", "CPU path choices"), ("onnx", "exported ONNX graphs")):
        print(f"  {what}: {info[kind]['entries']} ({info[kind]['bytes'] / 1e6:.2f} MB)")
    return 0
