"""CPU speed of ``restore`` vs the official implementations, in one process, on the same inputs (issue 7).

For each reference checkpoint in ``<shared>/weights`` that has an official implementation here, this builds the
official network exactly as ``scripts/side_by_side.py`` does (its ``Case``/``build_official``/``official_module``
are imported, not copied: the official files are read at run time from a checkout you fetched yourself, copied
into a temporary directory outside the project, imported from there and deleted at exit; no official code is part
of this project) and runs it as its test script does (``torch.no_grad()``, NCHW float32). Ours runs the same
checkpoint through ``restore.engine.Restorer.forward_tensor`` on the CPU (whole image, no tiling) in each
precision:

* ``auto`` (= ``fp32``): the fastest float32 path the engine picks for this model on this machine (ONNX Runtime /
  fused channels_last / eager, see ``restore.engine.cpu_paths.fastest_fp32``); its output must equal the official output
  within 1e-4 (max abs difference in [0, 1] units, printed; exit status 1 otherwise);
* ``bf16``: the fused network in bfloat16 channels_last;
* ``int8`` (``--int8``): ONNX Runtime static QDQ, calibrated on crops of the input (costs accuracy).

Inputs (:func:`test_input`: seeded, image-like -- smooth random field plus noise, in [0, 1] times the model's input
range): x4 nets 1 x 3 x 180 x 320 (-> 1280 x 720), DnCNN 1 x 1 x 321 x 481 (BSD68 size).
Every variant runs once untimed (the engine chooses / builds its path there), then ``--rounds`` rounds of one
forward per variant, in turn, the starting variant rotating each round; medians are reported, and ratios =
official median / ours median (> 1: ours is faster).

ESPCN: the official model is an OpenCV ``dnn_superres`` TensorFlow graph (not importable here), so the
"official" column for ESPCN is our eager float32 module (``load_model`` of the same ``.pb``, NCHW, under
``torch.no_grad()``), which is bit-identical to the graph's network (scripts/conformance.py); the row says so.

    python scripts/bench_vs_official.py --imdn DIR --cfsr DIR --dscf DIR --ntire2024 DIR --kair DIR
        [--models imdn cfsr dscf span_tiny dncnn espcn] [--threads N] [--rounds 5] [--int8] [--json]
        [--out docs/kernels.md] [--note TEXT] [--shared ../shared]

Source directories follow ``scripts/side_by_side.py`` (a checkout, a bare git directory, or a directory holding
a bare clone in ``repo/``). Models whose source is not given are skipped with a note; with no source at all the
script exits with a message (``--models espcn`` alone needs none). ``--out FILE`` writes the table as a section
between ``<!-- bench-vs-official:begin -->`` and ``<!-- bench-vs-official:end -->`` (replaced when present,
appended otherwise). Timings on a busy machine are noisy: only ratios from the same run are comparable.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
import side_by_side as sbs  # noqa: E402  (also puts the project root on sys.path)
from doc_sections import markers, replace_section  # noqa: E402

REPO = sbs.REPO
SECTION = "bench-vs-official"  # --section picks another block of --out (keep each CPU kind's table)
BEGIN, END = markers(SECTION)
TOLERANCE = 1e-4  # ours (fp32) vs official, max abs difference in [0, 1] units
OFFICIAL = "official"
VARIANTS = ("auto", "bf16", "int8")  # ours, in the engine's precisions ("auto" = the fp32 path it picks)


@dataclass(frozen=True)
class Spec:
    key: str
    label: str
    ckpt: str  # relative to <shared>/weights; for those with an official build, a side_by_side.CASES ckpt
    size: tuple[int, int]  # LR input (H, W)
    official: bool = True  # False: our eager fp32 module stands in for the official code (ESPCN)


MODELS: dict[str, Spec] = {s.key: s for s in (
    Spec("imdn", "IMDN x4", "imdn/IMDN_x4.pth", (180, 320)),
    Spec("cfsr", "CFSR x4", "cfsr/CFSR_x4.pth", (180, 320)),
    Spec("dscf", "DSCF x4 (NTIRE 2025 team23)", "dscf/team23_DSCF.pth", (180, 320)),
    Spec("span_tiny", "SPAN-tiny ch26 x4 (NTIRE 2024 team39)", "ntire_esr/2024/team39_spantiny_ch26_slim.pth",
         (180, 320)),
    Spec("dncnn", "DnCNN-17 gray sigma 25 (KAIR)", "dncnn/kair/dncnn_25.pth", (321, 481)),
    Spec("espcn", "ESPCN x4", "espcn/ESPCN_x4.pb", (180, 320), official=False),
)}
ESPCN_NOTE = ("ESPCN's official model is an OpenCV dnn_superres graph (not importable here): its baseline is our "
              "eager fp32 module (bit-identical network), NCHW, torch.no_grad()")


@dataclass
class Row:
    key: str
    label: str
    ckpt: str
    input: str = ""
    output: str = ""
    baseline: str = ""  # what the official column ran
    ms: dict[str, float] = field(default_factory=dict)  # variant -> median ms
    runs_ms: dict[str, list[float]] = field(default_factory=dict)
    path: dict[str, str] = field(default_factory=dict)  # variant -> engine backend that ran
    diff: dict[str, float] = field(default_factory=dict)  # variant -> max |ours - official| in [0, 1]
    note: str = ""  # skipped / error

    @property
    def ok(self) -> bool:
        return not self.note and self.diff.get("auto", math.inf) <= TOLERANCE


# ------------------------------------------------------------------------------------------ pure parts


def case_for(spec: Spec) -> sbs.Case | None:
    """The side_by_side case that builds ``spec``'s official network (None for ESPCN)."""
    if not spec.official:
        return None
    return next(c for c in sbs.CASES if c.ckpt == spec.ckpt)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    for key, repo in sbs.SOURCES.items():
        ap.add_argument(f"--{key}", type=Path, metavar="DIR", help=f"checkout or bare git dir of {repo}")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="M",
                    help=f"subset of {', '.join(MODELS)} (default: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch (and ONNX Runtime) CPU threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds, one forward per variant each (default 5)")
    ap.add_argument("--int8", action="store_true", help="also time ours in int8 (ONNX Runtime QDQ)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--out", type=Path, help="write the table as a section of this markdown file")
    ap.add_argument("--section", default=SECTION,
                    help=f"marked block of --out to replace (default {SECTION}; another name keeps another CPU's)")
    ap.add_argument("--note", default="", help="a line added under the table (e.g. what else ran on the machine)")
    ap.add_argument("--shared", type=Path, default=REPO / "../shared")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.threads < 0:
        ap.error("--rounds must be >= 1 and --threads >= 0")
    needed = {c.source for c in map(case_for, (MODELS[m] for m in args.models)) if c is not None}
    if needed and not any(getattr(args, k) for k in sbs.SOURCES):
        flags = " ".join(f"--{k} DIR" for k in sbs.SOURCES if k in needed)
        ap.error(f"no official source directory given: pass {flags} (checkouts or bare git dirs of "
                 f"{', '.join(sbs.SOURCES[k] for k in sbs.SOURCES if k in needed)}, fetched outside this project); "
                 "only --models espcn runs without one")
    return args


def variants(int8: bool, bf16: bool | None = None) -> list[str]:
    """The official code, then ours in each precision; bf16 only where this CPU runs bf16 convolutions at all
    (``bf16=None``: ask :func:`restore.engine.cpu_paths.bf16_convolutions`; oneDNN refuses them on AVX2-only
    CPUs: the column then reads n/a)."""
    if bf16 is None:
        from restore.engine.cpu_paths import bf16_convolutions

        bf16 = bf16_convolutions()
    return [OFFICIAL, *(v for v in VARIANTS if (v != "int8" or int8) and (v != "bf16" or bf16))]


def median_ms(runs: Sequence[float]) -> float:
    return float(statistics.median(runs)) if runs else math.nan


def ratio(official_ms: float, ours_ms: float) -> float:
    """Speed-up of ours over the official code (official / ours; > 1: ours is faster)."""
    if not (official_ms > 0 and ours_ms > 0) or math.isinf(official_ms) or math.isinf(ours_ms):
        return math.nan
    return official_ms / ours_ms


def interleave(fns: dict[str, Callable[[], object]], rounds: int,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """``rounds`` rounds of one call of each function, in turn (the first one rotating each round); ms per call."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = clock()
            fns[n]()
            times[n].append((clock() - t0) * 1e3)
    return times


def test_input(channels: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A seeded image-like input in [0, 1]: uniform noise at 1/8 size, bicubic-upsampled, plus Gaussian noise
    (sigma 0.03), clamped. (Plain ``torch.rand`` noise drives the SPAN nets' outputs to +-120, where float32
    rounding alone exceeds the 1e-4 check; timings do not depend on the values.)"""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, channels, h // 8 + 1, w // 8 + 1, generator=g)
    base = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    return (base + 0.03 * torch.randn(1, channels, h, w, generator=g)).clamp(0.0, 1.0)


def _cell(ms: float, official_ms: float, path: str = "") -> str:
    if math.isnan(ms):
        return "n/a"
    r = ratio(official_ms, ms)
    return f"{ms:.1f}" + (f" ({r:.2f}x)" if not math.isnan(r) else "") + (f" {path}" if path else "")


def format_table(rows: Sequence[Row], int8: bool) -> str:
    """Markdown table: median ms per variant, speed-up vs official, fp32 path and max abs diff."""
    head = ["net (LR input -> output)", "official ms", "ours auto/fp32 ms (x official) path", "ours bf16 ms (x)"]
    if int8:
        head.append("ours int8 ms (x)")
    head += ["max abs diff fp32 / bf16" + (" / int8" if int8 else ""), "fp32 == official (1e-4)"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 2) + " --- |"]
    for r in rows:
        name = f"{r.label} ({r.input} -> {r.output})" if r.input else r.label
        if r.note:
            lines.append(f"| {name} | " + " | ".join(["n/a"] * (len(head) - 2)) + f" | {r.note} |")
            continue
        off = r.ms.get(OFFICIAL, math.nan)
        base = f"{off:.1f}" + ("*" if r.baseline.startswith("ours") else "")
        cells = [name, base, _cell(r.ms.get("auto", math.nan), off, f"`{r.path.get('auto', '?')}`"),
                 _cell(r.ms.get("bf16", math.nan), off)]
        if int8:
            cells.append(_cell(r.ms.get("int8", math.nan), off))
        diffs = [v for v in ("auto", "bf16", "int8") if v != "int8" or int8]
        cells.append(" / ".join(f"{r.diff[v]:.2g}" if v in r.diff else "n/a" for v in diffs))
        cells.append("yes" if r.ok else "**no**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def section(rows: Sequence[Row], *, command: str, machine: str, threads: int, rounds: int, int8: bool,
            note: str = "", tag: str = SECTION) -> str:
    """The markdown section written by ``--out`` (between the markers of ``tag``: one section per CPU kind)."""
    begin, end = markers(tag)
    text = [
        begin,
        f"Written by `scripts/bench_vs_official.py` (see its docstring). Command: `{command}`",
        "",
        f"Machine: {machine}; {threads} threads; torch {torch.__version__}{_ort_version()}. Median of {rounds} "
        "interleaved rounds (ms per forward, 1 image, the same seeded image-like input for every variant); in "
        "brackets the speed-up vs the official code (official / ours); path = the float32 path the engine chose; "
        "max abs diff vs the official output in [0, 1] units.",
        "",
        format_table(rows, int8).rstrip("\n"),
        "",
    ]
    if any(r.baseline.startswith("ours") for r in rows):
        text.append(f"\\* {ESPCN_NOTE}.")
    if note:
        text.append(note)
    text.append(end)
    return "\n".join(text) + "\n"


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return ", no onnxruntime"
    return f", onnxruntime {onnxruntime.__version__}"


def machine_name() -> str:
    import os

    from restore.engine.allocator import keep_freed_memory
    from restore.engine.cpu_paths import simd_summary

    malloc = ("freed memory kept in the process (restore.engine.allocator), for the official code too" if
              keep_freed_memory() else "the C library's default (RESTORE_MALLOC=default or not glibc)")
    return f"{simd_summary()}; {os.cpu_count()} CPUs; malloc: {malloc}"


# ------------------------------------------------------------------------------------------ measuring


def _official(spec: Spec, sources: dict[str, Path | None], weights: Path, tmp: Path,
              cache: dict[str, tuple[sbs.Source, Path]]) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """A function running the official net on a model-range NCHW tensor, and a label saying what it is."""
    from restore.weights import load_model

    case = case_for(spec)
    if case is None:
        net = load_model(weights / spec.ckpt).eval()
        return net, "ours eager fp32 (official-equivalent)"
    if case.source not in cache:
        given = sources.get(case.source)
        if given is None:
            raise LookupError(f"source not given (--{case.source} DIR: {sbs.SOURCES[case.source]})")
        cache[case.source] = (sbs.Source(given), tmp / case.source)
    src, root = cache[case.source]
    mod = sbs.official_module(case, src, root)
    target, _ = sbs.build_official(case, mod, root, weights / spec.ckpt)
    if case.noise_net:
        return (lambda x: x - target(x)), f"{sbs.SOURCES[case.source]}@{src.commit()} `{case.cls}`"
    return target, f"{sbs.SOURCES[case.source]}@{src.commit()} `{case.cls}`"


def measure(spec: Spec, sources: dict[str, Path | None], weights: Path, tmp: Path, *, rounds: int, int8: bool,
            cache: dict[str, tuple[sbs.Source, Path]]) -> Row:
    from restore.engine.restorer import Restorer
    from restore.weights import load_model

    row = Row(spec.key, spec.label, spec.ckpt)
    if not (weights / spec.ckpt).is_file():
        row.note = f"checkpoint not found: {spec.ckpt}"
        return row
    try:
        official, row.baseline = _official(spec, sources, weights, tmp, cache)
    except LookupError as e:
        row.note = str(e)
        return row
    meta = load_model(weights / spec.ckpt).meta
    mult = max(1, int(meta.size_multiple))
    h, w = (-(-s // mult) * mult for s in spec.size)
    x = test_input(meta.in_channels, h, w)
    rng = float(meta.input_range)
    xr = x * rng
    row.input = f"{meta.in_channels}x{h}x{w}"
    restorers = {v: Restorer(load_model(weights / spec.ckpt), device="cpu", precision="fp32" if v == "auto" else v,
                             tile=None) for v in variants(int8)[1:]}

    def run_official() -> torch.Tensor:
        with torch.no_grad():
            return official(xr.clone())

    fns: dict[str, Callable[[], torch.Tensor]] = {OFFICIAL: run_official}
    fns.update({v: (lambda r=r: r.forward_tensor(x)) for v, r in restorers.items()})
    ref = run_official().float() / rng  # warm-up, and the reference output
    row.output = "x".join(str(d) for d in ref.shape[1:])
    for v, r in restorers.items():
        y = fns[v]()  # warm-up: the engine picks (auto) or builds (int8) its path here
        row.path[v] = r.backend
        row.diff[v] = float((y.float() - ref).abs().max()) if y.shape == ref.shape else math.inf
    times = interleave(fns, rounds)
    row.runs_ms = {k: [round(t, 2) for t in v] for k, v in times.items()}
    row.ms = {k: median_ms(v) for k, v in times.items()}
    return row


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if argv is None:  # run as a script: on SIGTERM (e.g. `timeout`) still delete the copied official files
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.threads:
        torch.set_num_threads(args.threads)
    from restore.engine.allocator import keep_freed_memory

    keep_freed_memory()  # process-wide: decided before anything is timed, so both sides run under one allocator
    weights = args.shared.resolve() / "weights"
    if not weights.is_dir():
        print(f"error: {weights}: no such directory (reference checkpoints)", file=sys.stderr)
        return 2
    sources = {k: getattr(args, k) for k in sbs.SOURCES}
    rows: list[Row] = []
    cache: dict[str, tuple[sbs.Source, Path]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_vs_official_") as tmp:
        if Path(tmp).resolve().is_relative_to(REPO):
            print(f"error: temporary directory {tmp} is inside the project; set TMPDIR elsewhere", file=sys.stderr)
            return 2
        for key in args.models:
            spec = MODELS[key]
            try:
                row = measure(spec, sources, weights, Path(tmp), rounds=args.rounds, int8=args.int8, cache=cache)
            except Exception as e:  # report and go on with the other models
                msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
                row = Row(spec.key, spec.label, spec.ckpt, note=f"error: {type(e).__name__}: {msg}")
            rows.append(row)
            if not args.json:
                off = row.ms.get(OFFICIAL, math.nan)
                print(f"{key:10s} " + (row.note or "  ".join(
                    f"{v} {row.ms[v]:.1f} ms ({ratio(off, row.ms[v]):.2f}x)" for v in row.ms)), flush=True)
    threads = torch.get_num_threads()
    command = "python scripts/bench_vs_official.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.json:
        print(json.dumps({"machine": machine_name(), "threads": threads, "torch": torch.__version__,
                          "rounds": args.rounds, "tolerance": TOLERANCE,
                          "rows": [vars(r) | {"ok": r.ok} for r in rows]}))
    else:
        print(f"\n{machine_name()}; {threads} threads; median of {args.rounds} interleaved rounds\n")
        print(format_table(rows, args.int8))
        if any(r.baseline.startswith("ours") for r in rows):
            print(f"* {ESPCN_NOTE}")
    if args.out is not None:
        doc = args.out.read_text() if args.out.exists() else ""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(replace_section(doc, section(
            rows, command=command.strip(), machine=machine_name(), threads=threads, rounds=args.rounds,
            int8=args.int8, note=args.note, tag=args.section)))
        if not args.json:
            print(f"wrote {args.out}")
    bad = [r.key for r in rows if r.note.startswith("error") or (not r.note and not r.ok)]
    if bad:
        print(f"FAILED (error, or fp32 differs from official by more than {TOLERANCE}): {', '.join(bad)}",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
