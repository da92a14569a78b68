"""int8 on the CPU: what it costs in dB and what it gains in speed, per shipped model (issue 23, goal 2).

For each shipped model this builds the engine's int8 path exactly as ``restore eval --precision int8`` does
(:func:`restore.engine.cpu_paths.optimize_for_inference`: ONNX Runtime QDQ, per-channel symmetric weights, the
accuracy plan of :func:`restore.engine.cpu_paths.plan_int8` that keeps in float32 the convolutions whose
quantisation would cost more than the budget), calibrated on *training* images (``--calib``: T91 for SR, Train400
for gray denoisers; never a test set), then scores it against the float32 path on the test sets:

* Y-PSNR cost (int8 - fp32, dB) on Set5 and Set14 (SR) / Set12 (gray denoisers, sigma of the model; blind at 25),
  targets 0.05 dB (SR) and 0.1 dB (denoisers);
* speed: median seconds of one forward of the int8 runner vs the fp32 ONNX Runtime runner on one seeded image-like
  input (SR: 180 x 320 LR; denoisers 321 x 481), ``--rounds`` alternating rounds, ratio fp32 / int8 (> 1: faster);
* the plan: how many convolutions run in int8.

    python scripts/bench_int8.py [--models espcn_x2 span_tiny_x4 dncnn_s25 ...] [--shared ../shared]
        [--rounds 5] [--out docs/benchmarks.md] [--json]

The CPU flags are printed with the table (int8 is fast only with VNNI / AMX-INT8: on an AVX2-only CPU expect
ratios near or below 1). ``--out`` writes the table between ``<!-- bench-int8:begin/end -->``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(REPO))
from doc_sections import block, write_section  # noqa: E402

DEFAULT_MODELS = ("espcn_x2", "espcn_x3", "espcn_x4", "span_tiny_x2", "span_tiny_x4", "dncnn_s25", "dncnn_blind")
TARGET_DB = {"sr": 0.05, "denoise": 0.1}


def speed(fp32, int8, x, rounds: int) -> tuple[float, float]:
    import torch

    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    runners = {"fp32": fp32, "int8": int8}
    with torch.inference_mode():
        for r in runners.values():
            r(x)
        for i in range(rounds):
            for key in (("fp32", "int8") if i % 2 == 0 else ("int8", "fp32")):
                t = time.perf_counter()
                runners[key](x)
                times[key].append(time.perf_counter() - t)
    return statistics.median(times["fp32"]), statistics.median(times["int8"])


def bench_model(name: str, shared: Path, rounds: int) -> dict:
    import torch

    from restore.engine.cpu_paths import optimize_for_inference
    from restore.evaluate import evaluate_denoise, evaluate_sr
    from restore.weights import load_model, resolve_model

    model = load_model(resolve_model(name, task="any"))
    meta = model.meta
    data = shared / "data"
    if meta.task == "sr":
        calib = data / "train" / "T91"
        sets = {"Set5": data / "sr" / "Set5", "Set14": data / "sr" / "Set14"}
        size = (180, 320)
    else:
        calib = data / "train" / "Train400"
        sets = {"Set12": data / "denoise" / "Set12"}
        size = (321, 481)
    sigma = float(meta.sigma) if getattr(meta, "sigma", None) else 25.0
    row: dict = {"model": name, "task": meta.task, "sets": {}}
    for label, folder in sets.items():
        run = {}
        for precision in ("fp32", "int8"):
            kw = dict(name=name, progress=False, precision=precision, calibration=calib if precision == "int8"
                      else None)
            res = (evaluate_sr(model, folder, scale=meta.scale, **kw) if meta.task == "sr"
                   else evaluate_denoise(model, folder, sigma=sigma, **kw))
            run[precision] = res.psnr_y
        row["sets"][label] = {"fp32": round(run["fp32"], 4), "int8": round(run["int8"], 4),
                              "cost_db": round(run["int8"] - run["fp32"], 4)}
    g = torch.Generator().manual_seed(0)
    h, w = size
    smooth = torch.nn.functional.interpolate(torch.rand(1, meta.in_channels, h // 8, w // 8, generator=g),
                                             size=(h, w), mode="bicubic", align_corners=False)
    x = (smooth + 0.05 * torch.randn(1, meta.in_channels, h, w, generator=g)).clamp(0, 1) * meta.input_range
    fp32 = optimize_for_inference(model, precision="fp32", backend="onnxruntime")
    int8 = optimize_for_inference(model, precision="int8", calibration=calib)
    t32, t8 = speed(fp32, int8, x, rounds)
    plan = int8.int8_plan
    row.update(plan=plan.describe() if plan is not None else "", quantised=len(plan.quantised) if plan else 0,
               convs=(len(plan.quantised) + len(plan.kept_float)) if plan else 0,
               fp32_ms=round(t32 * 1e3, 2), int8_ms=round(t8 * 1e3, 2), speedup=round(t32 / t8, 3),
               input=f"{meta.in_channels}x{h}x{w}")
    worst = min(v["cost_db"] for v in row["sets"].values())
    row["meets_accuracy"] = -worst <= TARGET_DB[meta.task] + 1e-9
    return row


def table(rows: list[dict], flags: str, threads: int, command: str) -> str:
    lines = [f"int8 (ONNX Runtime QDQ with the accuracy plan) vs the float32 ONNX Runtime path, {threads} threads. "
             f"CPU: {flags}. Written by `{command}`.", "",
             "| model | int8 convolutions | cost dB (per set, target) | fp32 ms | int8 ms | fp32/int8 |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        costs = ", ".join(f"{k} {v['cost_db']:+.3f}" for k, v in r["sets"].items())
        lines.append(f"| {r['model']} | {r['quantised']} of {r['convs']} | {costs} (≤ {TARGET_DB[r['task']]}) | "
                     f"{r['fp32_ms']:.1f} | {r['int8_ms']:.1f} | {r['speedup']:.2f}x |")
    lines += ["", "The plan quantises a convolution only while the measured output error on the calibration images "
              "(training images) stays inside the budget for the target; on a CPU without VNNI the int8 "
              "convolutions are emulated with 16-bit multiplies and are rarely faster than float32."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (args.shared / "data").is_dir():
        print(f"bench_int8: no data under {args.shared} (needs the shared test and training sets)", file=sys.stderr)
        return 2
    import torch

    from restore.engine.cpu_paths import simd_summary

    flags = simd_summary()
    rows = []
    for name in args.models:
        print(f"[{len(rows) + 1}/{len(args.models)}] {name} ...", file=sys.stderr, flush=True)
        rows.append(bench_model(name, args.shared, args.rounds))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    command = "python scripts/bench_int8.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = table(rows, flags, torch.get_num_threads(), command.strip())
    if args.json:
        print(json.dumps({"cpu": flags, "rows": rows}))
    else:
        print(text)
    if args.out:
        write_section(args.out, block("bench-int8", text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
