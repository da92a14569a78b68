"""Peak memory and time of whole-image vs tiled inference on the CPU, by input size.

Every configuration runs in its own subprocess (so peak RSS is that configuration's alone): it builds a
small x4 network with random weights (ESPCN-RGB by default, or SPAN ch26), a random uint8 RGB image of the
requested size (4:3), runs ``Restorer.run`` once and reports the seconds and the process's peak resident
memory (``VmHWM`` from /proc/self/status; ``ru_maxrss`` where /proc is missing) next to the resident memory
just before the run (model, input and interpreter).

Whole-image runs are skipped where they would not fit in ``--max-gb`` (default: 60% of the memory available
now); the table then says how much they would need: extrapolated per pixel from the largest whole-image run
of this invocation that worked (with a 10% margin), else the engine's conservative estimate (the one
``tile="auto"`` uses, several times the real need).

    python scripts/bench_tiling.py --sizes 1 4 12
    python scripts/bench_tiling.py --sizes 1 --modes whole 256 512 auto acs --model span

Not a test: it is slow (minutes at 12 MP and above) and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GB = 1024**3


def _proc_status(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status in bytes (None where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss() -> int:
    hwm = _proc_status("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def image_size(megapixels: float) -> tuple[int, int]:
    """(height, width) of a 4:3 image with about ``megapixels`` million pixels."""
    w = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    return round(w * 3 / 4), w


def build_model(name: str, scale: int):  # noqa: ANN201
    import torch

    torch.manual_seed(0)
    if name == "espcn":
        from restore.archs.espcn import ESPCN

        return ESPCN(scale=scale, channels=3).eval()
    if name == "span":
        from restore.archs.span import SPAN

        return SPAN(feature_channels=26, upscale=scale, form="deploy").eval()
    raise SystemExit(f"unknown model {name!r} (espcn or span)")


def parse_mode(mode: str) -> int | str | None:
    if mode == "whole":
        return None
    if mode in ("auto", "acs"):
        return mode
    return int(mode)


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from restore.engine.restorer import Restorer, RunStats

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.scale)
    h, w = image_size(args.mp)
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    runner = Restorer(model, device="cpu", precision="fp32", tile=parse_mode(args.mode))
    before = _proc_status("VmRSS") or 0
    stats = RunStats()
    t0 = time.perf_counter()
    out = runner.run(img, stats=stats)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak": peak_rss(), "before": before, "out_bytes": out.nbytes,
                      "shape": [h, w], "tiles": stats.tiles, "windows": stats.windows}))


def whole_estimate(model_name: str, scale: int, mp: float) -> int:
    """Bytes a whole-image run needs by the engine's estimate: activations for the whole input (as
    ``tile="auto"`` counts them), the float32 planes in, the network output and its uint8 copy."""
    from restore.engine.restorer import bytes_per_pixel

    model = build_model(model_name, scale)
    h, w = image_size(mp)
    px = h * w
    return int(bytes_per_pixel(model, model.meta) * px + 4 * 3 * px + 3 * px * scale**2)


def available() -> int:
    import torch

    from restore.engine.restorer import available_memory

    return available_memory(torch.device("cpu"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 12, 48], help="input megapixels")
    p.add_argument("--modes", nargs="+", default=["whole", "512"],
                   help="whole, a tile side in LR px, auto or acs (default: whole 512)")
    p.add_argument("--model", default="espcn", choices=["espcn", "span"])
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-gb", type=float, default=None, help="skip whole-image runs estimated above this")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mp", type=float, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    limit = args.max_gb * GB if args.max_gb is not None else 0.6 * available()
    print(f"model {args.model} x{args.scale} (random weights), CPU, {args.threads} thread(s); "
          f"whole-image runs limited to {limit / GB:.1f} GB")
    header = f"{'input':>7} {'LR size':>11} {'output':>8} {'mode':>7} {'seconds':>8} {'peak RSS':>9} " \
             f"{'before':>7} {'out arr':>7}  note"
    print(header)
    print("-" * len(header))
    per_px: tuple[float, int, float] | None = None  # largest whole run so far: bytes per LR px, base RSS, MP
    for mp in sorted(args.sizes):
        h, w = image_size(mp)
        out_mp = h * w * args.scale**2 / 1e6
        for mode in args.modes:
            parse_mode(mode)
            row = f"{mp:>5g}MP {h:>5}x{w:<5} {out_mp:>6.0f}MP {mode:>7}"
            if mode == "whole":
                if per_px is not None:
                    need, how = per_px[1] + 1.1 * per_px[0] * h * w, f"extrapolated from {per_px[2]:g} MP"
                else:
                    need, how = whole_estimate(args.model, args.scale, mp), "engine estimate"
                if need > limit:
                    print(f"{row} {'':>8} {'':>9} {'':>7} {'':>7}  skipped (would need ~{need / GB:.0f} GB, {how})")
                    continue
            cmd = [sys.executable, __file__, "--child", "--mp", str(mp), "--mode", mode, "--model", args.model,
                   "--scale", str(args.scale), "--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
                print(f"{row} failed: {reason[:80]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            if mode == "whole":
                per_px = ((r["peak"] - r["before"]) / (h * w), r["before"], mp)
            tiles = r["tiles"][-1] if r["tiles"] else None
            note = f"{r['windows']} window(s)" + (f", tile {tiles}" if tiles and mode != "whole" else "")
            print(f"{row} {r['seconds']:>8.1f} {r['peak'] / GB:>7.2f}GB {r['before'] / GB:>5.2f}GB "
                  f"{r['out_bytes'] / GB:>5.2f}GB  {note}", flush=True)


if __name__ == "__main__":
    main()
