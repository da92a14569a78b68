"""Evaluate every shipped model with ``restore eval`` and write ``docs/results.md`` (+ the README's x4 table).

Rows: each model in ``restore/weights/manifest.json`` (``restore eval --model NAME``), MATLAB bicubic, and,
when ``../shared/weights`` is present, the official checkpoints of the same families as reference rows
(``restore eval --weights FILE``). SR: Y-PSNR / SSIM (BT.601, ``scale`` px border, MATLAB-bicubic LR) on
Set5, Set14, B100 (x4 only: the shared data has no B100 x2/x3). Denoising: PSNR on Set12 / BSD68 (gray) and
CBSD68 / Kodak24 (colour), Gaussian noise seeded per image (seed 0), not clipped; blind models at 15/25/50 on
the small set (Set12 / Kodak24) and at 25 on the large one (BSD68 / CBSD68).

Every figure is cached in ``docs/results.json`` under the evaluated file's sha256, so re-running only
evaluates new or changed weights. The measured PSNRs are also written into the manifest (``psnr``), and a
before/after crop (``docs/img/before_after_x4.png``: bicubic vs. the default x4 model on the example image)
is rendered for the README.

    python scripts/make_results.py [--no-reference] [--skip-denoise]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from doc_sections import block, carry_sections, replace_section  # noqa: E402

SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
REF = SHARED / "weights"
MANIFEST = ROOT / "restore" / "weights" / "manifest.json"
CACHE = ROOT / "docs" / "results.json"
OUT = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
EXAMPLE = ROOT / "web" / "examples" / "coffee.png"
BEFORE_AFTER = ROOT / "docs" / "img" / "before_after_x4.png"

SR_SETS = {  # name -> (folder, scales)
    "Set5": ("sr/Set5", (2, 3, 4)),
    "Set14": ("sr/Set14", (2, 3, 4)),
    "B100": ("sr/BSD100", (4,)),
}
GRAY_SETS = {"Set12": "denoise/Set12", "BSD68": "denoise/BSD68"}
COLOR_SETS = {"CBSD68": "denoise/CBSD68", "Kodak24": "denoise/Kodak24"}
SIGMAS = (15, 25, 50)

# official checkpoints used as reference rows (never shipped): (label, file, task, scale, sigma, color)
REFERENCES = [
    ("ESPCN (OpenCV, official)", "espcn/ESPCN_x2.pb", "sr", 2, None, "y"),
    ("ESPCN (OpenCV, official)", "espcn/ESPCN_x3.pb", "sr", 3, None, "y"),
    ("ESPCN (OpenCV, official)", "espcn/ESPCN_x4.pb", "sr", 4, None, "y"),
    ("SPAN-tiny ch26 (NTIRE 2024 team39)", "ntire_esr/2024/team39_spantiny_ch26_slim.pth", "sr", 4, None, "rgb"),
    ("DSCF (NTIRE 2025 team23)", "dscf/team23_DSCF.pth", "sr", 4, None, "rgb"),
    ("IMDN (official)", "imdn/IMDN_x2.pth", "sr", 2, None, "rgb"),
    ("IMDN (official)", "imdn/IMDN_x3.pth", "sr", 3, None, "rgb"),
    ("IMDN (official)", "imdn/IMDN_x4.pth", "sr", 4, None, "rgb"),
    ("CFSR (official)", "cfsr/CFSR_x2.pth", "sr", 2, None, "rgb"),
    ("CFSR (official)", "cfsr/CFSR_x3.pth", "sr", 3, None, "rgb"),
    ("CFSR (official)", "cfsr/CFSR_x4.pth", "sr", 4, None, "rgb"),
    ("DnCNN-S (SaoYan, official)", "dncnn/saoyan/DnCNN-S-15.pth", "denoise", 1, "15", "gray"),
    ("DnCNN (KAIR, official)", "dncnn/kair/dncnn_25.pth", "denoise", 1, "25", "gray"),
    ("DnCNN-S (SaoYan, official)", "dncnn/saoyan/DnCNN-S-50.pth", "denoise", 1, "50", "gray"),
    ("DnCNN-B (SaoYan, official)", "dncnn/saoyan/DnCNN-B.pth", "denoise", 1, "blind", "gray"),
]


# identical-budget comparison (issue 6): DnCNN sigma 25 with and without optimal weighted convolution, each pair from
# the same initial weights and seed, one cosine cycle from lr 1e-3 (training checkpoints under experiments/): 500
# iterations in fp32 (session 3) and 2000 in bf16 autocast + NHWC (session 6)
WEIGHTED = "DnCNN-S sigma 25, weighted conv (den 0.7)"
COMPARISON = [
    ("DnCNN-S sigma 25, plain (first cycle)", "500, fp32", "experiments/dncnn_s25/models/net_g_500.pth"),
    (WEIGHTED, "500, fp32", "experiments/dncnn_s25_weighted/models/net_g_500.pth"),
    ("DnCNN-S sigma 25, plain", "2000, bf16", "experiments/dncnn_s25_2k/models/net_g_2000.pth"),
    (WEIGHTED, "2000, bf16", "experiments/dncnn_s25_weighted_2k/models/net_g_2000.pth"),
]


def comparison_rows(cache: dict) -> list[str]:
    """Evaluate (when the checkpoints exist) and format the weighted-vs-plain comparison; cached by checkpoint.
    The checkpoints are not committed (experiments/ stays local): a pair measured on an earlier machine is shown
    from the cache, a row with neither checkpoint nor cached figures is left out."""
    sets = [(f"{n} σ25", d) for n, d in GRAY_SETS.items()]
    lines = ["| model | iterations, precision | " + " | ".join(n for n, _ in sets) + " |",
             "|---|---|" + "---:|" * len(sets)]
    for label, budget, rel in COMPARISON:
        ckpt = ROOT / rel
        key = f"cmp:{label}" if budget.startswith("500,") else f"cmp:{rel}"  # session 3's cache keys kept
        if not ckpt.is_file() and not any(f"{key}|{n}|x1" in cache for n, _ in sets):
            continue
        for set_name, d in sets:
            ck = f"{key}|{set_name}|x1"
            if ck not in cache and ckpt.is_file() and (DATA / d).is_dir():
                cache[ck] = restore_eval(["--weights", str(ckpt)], DATA / d, sigma=25)
                save_cache(cache)
        lines.append(f"| {label} | {budget} | " + " | ".join(cell(cache, key, n, 1, ssim=False) for n, _ in sets)
                     + " |")
    return lines


# test-time augmentation (``--tta``): one SR model per network size and the gray sigma-25 denoiser, on the small
# sets (8 network passes an image); the colour denoisers' TTA row is scripts/bench_denoise.py's
TTA_JOBS = [("espcn_x2", "Set5"), ("espcn_x2", "Set14"), ("span_tiny_x4", "Set5"), ("span_tiny_x4", "Set14"),
            ("dncnn_s25", "Set12 σ25")]


def tta_rows(rows: dict[str, list[dict]], cache: dict) -> list[str]:
    """Evaluate (cached under the weights' sha256 + ``|tta``) and format ``TTA_JOBS``: PSNR without and with
    ``--tta`` and the gain; jobs whose model is not shipped or whose set is absent are left out."""
    lines = ["| model | set | PSNR | PSNR with `--tta` | gain |", "|---|---|---:|---:|---:|"]
    ours = {r["name"]: r for r in rows["ours"]}
    for name, wanted in TTA_JOBS:
        row = ours.get(name)
        job = next((j for j in jobs_for(row["task"], row["scale"], row["sigma"], row["color"]) if j[0] == wanted),
                   None) if row else None
        if row is None or job is None:
            continue
        set_name, folder, scale, sigma = job
        ck = f"{row['key']}|{set_name}|x{scale or 1}"
        if ck + "|tta" not in cache and folder.is_dir():
            cache[ck + "|tta"] = restore_eval([*row["source"], "--tta"], folder, scale=scale, sigma=sigma)
            save_cache(cache)
        if ck not in cache or ck + "|tta" not in cache:
            continue
        plain, tta = (cache[k].get("psnr_y", cache[k].get("psnr")) for k in (ck, ck + "|tta"))
        label = "Y-PSNR" if row["task"] == "sr" else "PSNR"
        lines.append(f"| {name} | {set_name}{f' x{scale}' if scale else ''} | {plain:.2f} ({label}) | {tta:.2f} | "
                     f"{tta - plain:+.2f} |")
    return lines


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_cache() -> dict[str, dict]:
    return json.loads(CACHE.read_text()) if CACHE.is_file() else {}


def save_cache(cache: dict[str, dict]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".json.part")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    tmp.replace(CACHE)


def restore_eval(source: list[str], data: Path, *, scale: int | None = None, sigma: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "restore.cli", "eval", *source, "--data", str(data), "--json"]
    if scale is not None:
        cmd += ["--scale", str(scale)]
    if sigma is not None:
        cmd += ["--sigma", str(sigma)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip().splitlines()[-1:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out.pop("per_image", None)
    return out


def bicubic_sr(data: Path, scale: int) -> dict:
    """MATLAB bicubic upscaling of the shipped LR files, scored like ``restore eval``."""
    from restore.evaluate import find_pairs, sr_pairs
    from restore.metrics.imresize import imresize
    from restore.metrics.psnr_ssim import calculate_psnr, calculate_ssim

    pairs = find_pairs(data, scale)
    ps, ss = [], []
    for _name, lr, hr in sr_pairs(pairs, scale):
        sr = np.clip(np.round(imresize(lr.astype(np.float64), scale)), 0, 255)
        h, w = hr.shape[:2]
        sr = sr[:h, :w]
        ps.append(calculate_psnr(sr, hr, crop_border=scale, test_y_channel=True))
        ss.append(calculate_ssim(sr, hr, crop_border=scale, test_y_channel=True))
    return {"psnr_y": round(float(np.mean(ps)), 4), "ssim_y": round(float(np.mean(ss)), 4), "images": len(ps)}


def jobs_for(task: str, scale: int, sigma: str | None, color: str, *,
             ours: bool = False) -> list[tuple[str, Path, int | None, int | None]]:
    """(set label, folder, --scale, --sigma) evaluations for one model."""
    if task == "sr":
        return [(n, DATA / d, scale, None) for n, (d, scales) in SR_SETS.items() if scale in scales]
    sets = COLOR_SETS if color == "rgb" else GRAY_SETS
    if sigma != "blind":
        return [(f"{n} σ{sigma}", DATA / d, None, int(sigma)) for n, d in sets.items()]
    # blind models: every sigma on the small set (Set12 / Kodak24), sigma 25 on the large one (BSD68 / CBSD68)
    small, large = (("Kodak24", "CBSD68") if color == "rgb" else ("Set12", "BSD68"))
    jobs = ([(f"{small} σ{s}", DATA / sets[small], None, s) for s in SIGMAS]
            + [(f"{large} σ25", DATA / sets[large], None, 25)])
    if ours and color == "gray":  # our gray blind model also serves colour inputs, channel by channel
        jobs += jobs_for(task, scale, sigma, "rgb")
    return jobs


def evaluate_all(models: list[dict], cache: dict, *, reference: bool, skip_denoise: bool) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {"ours": [], "reference": []}
    todo = []
    for m in models:
        f = MANIFEST.parent / m["file"]
        rows["ours"].append({**m, "key": sha256(f), "source": ["--model", m["name"]], "label": m["name"]})
    if reference and REF.is_dir():
        for label, rel, task, scale, sigma, color in REFERENCES:
            f = REF / rel
            if f.is_file():
                rows["reference"].append({"label": label, "file": rel, "task": task, "scale": scale, "sigma": sigma,
                                          "color": color, "key": sha256(f), "source": ["--weights", str(f)]})
    for row in rows["ours"] + rows["reference"]:
        if skip_denoise and row["task"] == "denoise":
            continue
        for set_name, folder, scale, sigma in jobs_for(row["task"], row["scale"], row["sigma"], row["color"],
                                                       ours="name" in row):
            ck = f"{row['key']}|{set_name}|x{scale or 1}"
            if ck not in cache and folder.is_dir():
                todo.append((row, set_name, folder, scale, sigma, ck))
    for row, _set, folder, scale, sigma, ck in tqdm(todo, desc="restore eval", unit="run"):
        cache[ck] = restore_eval(row["source"], folder, scale=scale, sigma=sigma)
        save_cache(cache)
    for scale in (2, 3, 4):
        for set_name, (d, scales) in SR_SETS.items():
            ck = f"bicubic|{set_name}|x{scale}"
            if scale in scales and ck not in cache and (DATA / d).is_dir():
                cache[ck] = bicubic_sr(DATA / d, scale)
                save_cache(cache)
    return rows


def cell(cache: dict, key: str, set_name: str, scale: int, *, ssim: bool = True) -> str:
    r = cache.get(f"{key}|{set_name}|x{scale}")
    if r is None:
        return "—"
    p = r.get("psnr_y", r.get("psnr"))
    s = r.get("ssim_y", r.get("ssim"))
    return f"{p:.2f} / {s:.4f}" if ssim else f"{p:.2f}"


def sr_table(rows: dict[str, list[dict]], cache: dict, scale: int) -> list[str]:
    sets = [n for n, (_, scales) in SR_SETS.items() if scale in scales]
    lines = [f"| x{scale} model | params | " + " | ".join(sets) + " |", "|---|---:|" + "---:|" * len(sets)]
    lines.append("| bicubic (MATLAB) | 0 | " + " | ".join(cell(cache, "bicubic", s, scale) for s in sets) + " |")
    for group, fmt in (("ours", "**{}** (ours)"), ("reference", "{}")):
        for r in rows[group]:
            if r["task"] == "sr" and r["scale"] == scale:
                params = r.get("params") or params_of(REF / r["file"])
                lines.append(f"| {fmt.format(r['label'])} | {params:,} | "
                             + " | ".join(cell(cache, r["key"], s, scale) for s in sets) + " |")
    return lines


def params_of(path: Path) -> int:
    from restore.weights import load_model

    return int(load_model(path).meta.params)


def denoise_table(rows: dict[str, list[dict]], cache: dict, color: str) -> list[str]:
    sets = COLOR_SETS if color == "rgb" else GRAY_SETS
    cols = [f"{n} σ{s}" for s in SIGMAS for n in sets]
    lines = ["| model | σ trained | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for group, fmt in (("ours", "**{}** (ours)"), ("reference", "{}")):
        for r in rows[group]:
            per_channel = color == "rgb" and r["color"] == "gray" and r["sigma"] == "blind" and group == "ours"
            if r["task"] == "denoise" and (r["color"] == color or per_channel):
                label = fmt.format(r["label"]) + (" (gray model, per channel)" if per_channel else "")
                lines.append(f"| {label} | {r['sigma']} | "
                             + " | ".join(cell(cache, r["key"], c, 1, ssim=False) for c in cols) + " |")
    return lines


def training_data(stages: list[dict]) -> str:
    """The training folders of all stages (first use order) with their image counts: ``T91 (91), ...``."""
    seen: dict[str, int] = {}
    for s in stages:
        for folder, count in s.get("train_data", {}).items():
            seen.setdefault(Path(folder).name, count)
    return ", ".join(f"{name} ({count})" for name, count in seen.items())


def training_table(models: list[dict]) -> list[str]:
    lines = ["| model | params | stages (option file: iterations) | training images | wall-clock | file |",
             "|---|---:|---|---|---:|---|"]
    for m in models:
        stages = "; ".join(f"`{s['option_file']}`: {s['iterations']}/{s['total_iter']}" for s in m["stages"])
        secs = sum(s["wall_seconds"] for s in m["stages"])
        size = f"{m['bytes'] / 1024:.0f} KiB"
        lines.append(f"| {m['name']} | {m['params']:,} | {stages} | {training_data(m['stages'])} | "
                     f"{secs / 60:.0f} min | {size} |")
    return lines


COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def budget_note(models: list[dict]) -> str:
    """The README's paragraph on what the shipped models got (hours, iterations, the x2/x3 Set5 figures), from
    the manifest, so no figure in it is typed by hand."""
    by_name = {m["name"]: m for m in models}
    x4, x3, x2 = (by_name.get(f"span_tiny_x{s}_distilled") for s in (4, 3, 2))
    if x4 is None:
        return ""
    unique = {s["stage"]: s["wall_seconds"] for m in models for s in m["stages"]}
    student = [s for s in x4["stages"] if s["option_file"].endswith("/span_tiny_x4.yml")]
    distil = sum(s["iterations"] for s in x4["stages"] if "dsclora" in s["option_file"])
    body = sum(s["iterations"] for s in (x2 or {}).get("stages", []) if s["stage"].startswith("span_tiny_x4"))
    text = (f"These were trained on 2 CPU cores, one thread per training queue (about "
            f"{sum(unique.values()) / 3600:.1f} hours of stage wall-clock in all, "
            f"{sum(s['wall_seconds'] for s in x4['stages']) / 3600:.1f} h for the default x4 model; "
            "`scripts/train_release.py`), so they sit below the official checkpoints trained on GPUs for days; the "
            "option files in `options/train/` hold the full recipes. The default x4 model, `span_tiny_x4_distilled`, "
            f"is `span_tiny_x4` ({sum(s['iterations'] for s in student):,} iterations of L1 in "
            f"{COUNT_WORDS[min(len(student), 10)]} cosine cycles) plus {distil:,} iterations of ConvLoRA with output "
            "distillation from the official CFSR x4 (used at training time only; DSCLoRA's spatial-affinity term "
            "lowered PSNR at both weights tried, 0.5 and 0.05, so it is off).")
    if x2 is not None and x3 is not None and "Set5" in x2.get("psnr", {}) and "Set5" in x3.get("psnr", {}):
        text += (f" The x2 and x3 defaults (`span_tiny_x2_distilled`: Set5 {x2['psnr']['Set5']:.2f} dB, "
                 f"`span_tiny_x3_distilled`: {x3['psnr']['Set5']:.2f} dB) are the "
                 f"{body:,}-iteration x4 model with its sub-pixel tail resampled to "
                 "the new scale (`path.resample_tail_g`), 5000 more iterations each on the shared training sets plus "
                 "three scikit-image photographs, then the same distillation stage with eight photographs from "
                 "Debian's plasma-workspace-wallpapers added (`scripts/prepare_extra_data.py`).")
    return "\n".join(textwrap.wrap(text, 118, break_on_hyphens=False))


def before_after(models: list[dict]) -> bool:
    """Bicubic vs. the default x4 model on a crop of the example image, side by side (nearest-zoomed)."""
    default = next((m for m in models if m["task"] == "sr" and m["scale"] == 4 and m.get("default")), None)
    if default is None or not EXAMPLE.is_file():
        return False
    from restore import io
    from restore.engine.restorer import Restorer
    from restore.metrics.imresize import imresize
    from restore.weights import load_model

    lr = io.read_rgb(EXAMPLE)
    sr = Restorer(load_model(MANIFEST.parent / default["file"]), precision="fp32").run(lr)
    bic = np.clip(np.round(imresize(lr.astype(np.float64), 4)), 0, 255).astype(np.uint8)
    h, w = sr.shape[:2]
    cy, cx, side = h // 2 - 96, w // 2 - 160, 192
    crops = [np.asarray(a[cy:cy + side, cx:cx + side], dtype=np.uint8) for a in (bic, sr)]
    gap = np.full((side, 8, 3), 255, np.uint8)
    io.write_image(BEFORE_AFTER, np.concatenate([crops[0], gap, crops[1]], axis=1), overwrite=True)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-reference", action="store_true", help="skip the official checkpoints' rows")
    ap.add_argument("--skip-denoise", action="store_true", help="evaluate SR models only")
    a = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"make_results: {DATA} not found (the benchmark sets live beside the project)", file=sys.stderr)
        return 2
    doc = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {"models": []}
    models = doc["models"]
    cache = load_cache()
    rows = evaluate_all(models, cache, reference=not a.no_reference, skip_denoise=a.skip_denoise)
    for m, r in zip(models, rows["ours"], strict=True):  # measured figures into the manifest
        found = {set_name: cache.get(f"{r['key']}|{set_name}|x{scale or 1}")
                 for set_name, _, scale, _ in jobs_for(m["task"], m["scale"], m["sigma"], m["color"], ours=True)}
        m["psnr"] = {k: v.get("psnr_y", v.get("psnr")) for k, v in found.items() if v is not None}
    if models:
        tmp = MANIFEST.with_suffix(".json.part")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(MANIFEST)

    x4 = sr_table(rows, cache, 4)
    md = ["# Results", "",
          "Written by `python scripts/make_results.py` from `restore eval` runs (cached in `docs/results.json`). "
          "SR: Y-PSNR (dB) / SSIM, BT.601 Y, `scale` px border cropped, LR = the shared MATLAB-bicubic files; "
          "denoising: PSNR (dB), Gaussian noise seeded per image (seed 0), not clipped. Rows in bold are the "
          "weights shipped in `restore/weights/` (trained by this project, see the training table); the others "
          "are official third-party checkpoints evaluated the same way, for reference (never shipped).", ""]
    for scale in (4, 3, 2):
        md += [f"## Super-resolution x{scale}", "", *(x4 if scale == 4 else sr_table(rows, cache, scale)), ""]
    md += ["## Denoising, gray", "", *denoise_table(rows, cache, "gray"), "",
           "## Denoising, colour", "", *denoise_table(rows, cache, "rgb"), "",
           "## Optimal weighted convolution vs plain DnCNN (identical budget)", "",
           "Each pair trained by `scripts/train_release.py` (`dncnn_s25`'s first cycle and `dncnn_s25_weighted`; "
           "`dncnn_s25_2k` and `dncnn_s25_weighted_2k`): the same option file apart from `weighted: true`, same "
           "seed and initial kernels, batch 32, 40x40 patches from Train400, one cosine cycle from lr 1e-3. "
           "PSNR (dB), noise seed 0.", "",
           *comparison_rows(cache), "",
           "## Test-time augmentation (`--tta`)", "",
           "`restore upscale|denoise|eval --tta` runs each tile through the 8 flips / 90-degree rotations and "
           "averages the outputs (restore/engine/tta.py): 8x the network time. Same sets and conventions as above; "
           "the colour denoisers' figures are in the side-by-side table below (`ours-tta`).", "",
           *tta_rows(rows, cache), "",
           "## How each shipped model was trained", "",
           "All on CPU (this project's 2-core dev machine; no GPU was available), with "
           "`scripts/train_release.py` (option file + the `--set` overrides recorded per stage in "
           "`restore/weights/manifest.json`). Iterations are what each stage reached out of its plan.", "",
           *training_table(models), ""]
    if before_after(models):
        md += ["## Before / after", "", "![bicubic vs default x4](img/before_after_x4.png)", "",
               "Left: MATLAB bicubic x4. Right: the default x4 model. Crop of `web/examples/coffee.png` "
               "(scikit-image sample image, CC0) upscaled x4.", ""]
    old = OUT.read_text() if OUT.is_file() else ""
    # the marked sections other scripts write here (bench_denoise's denoise-bench, sigma_bands' sigma-bands) stay
    OUT.write_text(carry_sections("\n".join(md), old))
    readme = README.read_text()
    readme = replace_section(readme, block("results-x4", "\n".join(x4)), append=False)
    if note := budget_note(models):
        readme = replace_section(readme, block("results-budget", note), append=False)
    README.write_text(readme)
    print(f"wrote {OUT.relative_to(ROOT)}, {MANIFEST.relative_to(ROOT)}, README x4 table and budget note")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
