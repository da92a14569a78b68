"""Where each shipped per-sigma denoiser beats the blind one: the bands of ``--sigma auto``.

``restore denoise`` without ``--sigma`` estimates each image's noise level (``restore.metrics.noise``) and runs
the sigma 15 / 25 / 50 model when the estimate falls in that model's band (``restore.weights.SIGMA_BANDS``), else
the blind model. A model trained at one sigma is the best there and loses to the blind model some way off it;
this script measures how far. For each shipped level S it adds noise at a grid of sigmas around S (factors
``GRID``) to held-out crops (and, in the row marked "8-bit file", noise at S clipped and rounded to uint8 as a
saved file holds it), runs the S model and the blind model (fp32, untiled; the colour defaults on the colour
crops, the gray ones on their gray versions, ``--colors``) and reports both PSNRs, the estimator's reading, and the
widest interval of grid points around S where the S model wins; each colour's band
(``SIGMA_BANDS[colour][S]``, on the estimate's scale) ends near its crossovers.

Held-out images: the colour images of Set14 (an SR test set: neither trained on nor a denoising benchmark),
``--crop`` px centre crops, the first ``--limit`` of them. Noise as ``restore eval`` adds it (seed 0 per image,
float, not clipped); outputs clipped and rounded to uint8, PSNR on RGB, no border crop.

    OMP_NUM_THREADS=1 python scripts/sigma_bands.py [--limit 5] [--crop 192] [--colors rgb gray] [--no-write]

Writes the table to ``docs/results.md`` (section ``sigma-bands``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from doc_sections import block, write_section  # noqa: E402

SET14 = ROOT.parent / "shared" / "data" / "sr" / "Set14" / "image_SRF_2"
LEVELS = (15, 25, 50)
GRID = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)  # sigma = level x factor
SECTION = "sigma-bands"


def held_out(limit: int, crop: int) -> list[tuple[str, np.ndarray]]:
    from restore import io

    out = []
    for f in sorted(SET14.glob("*_HR.png")):
        img = io.read_image(f)
        if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < crop:
            continue
        h, w = img.shape[:2]
        top, left = (h - crop) // 2, (w - crop) // 2
        out.append((f.stem.removesuffix("_HR"), np.ascontiguousarray(img[top:top + crop, left:left + crop])))
        if len(out) == limit:
            break
    return out


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of a uint8 RGB image, uint8."""
    return np.round(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)


def band(rows: list[dict], level: int) -> tuple[float, float] | None:
    """The widest run of consecutive grid sigmas containing ``level`` where the level's model beats blind."""
    sig = [r["sigma"] for r in rows]
    if level not in sig or rows[sig.index(level)]["gain"] <= 0:
        return None
    i = j = sig.index(level)
    while i > 0 and rows[i - 1]["gain"] > 0:
        i -= 1
    while j < len(rows) - 1 and rows[j + 1]["gain"] > 0:
        j += 1
    return sig[i], sig[j]


def measure(images: list[tuple[str, np.ndarray]], color: str) -> dict[int, list[dict]]:
    """Per level: one row per grid sigma, the ``color`` defaults ("rgb"; "gray": on the crops' gray versions)."""
    from tqdm import tqdm

    from restore import pixels
    from restore.engine.restorer import Restorer
    from restore.evaluate import add_noise
    from restore.metrics.noise import estimate_noise_sigma
    from restore.metrics.psnr_ssim import calculate_psnr
    from restore.weights import default_denoiser, load_model

    nets = {lv: Restorer(load_model(default_denoiser(lv, color)), tile=None, precision="fp32")
            for lv in ("15", "25", "50", "blind")}
    if color == "gray":
        images = [(n, luma(c)) for n, c in images]
    out: dict[int, list[dict]] = {}
    work = [(lv, round(lv * g, 1)) for lv in LEVELS for g in GRID]
    for lv, sigma in tqdm(work, desc=f"sigma bands ({color})", unit="sigma"):
        own, blind, est = [], [], []
        for _, clean in images:
            noisy = add_noise(clean, sigma, 0)
            est.append(estimate_noise_sigma(noisy))
            for net, acc in ((nets[str(lv)], own), (nets["blind"], blind)):
                acc.append(calculate_psnr(pixels.to_uint(net.run(noisy), np.uint8), clean, crop_border=0))
        out.setdefault(lv, []).append(row(sigma, own, blind, est))
    for lv in tqdm(LEVELS, desc=f"sigma bands ({color}, 8-bit files)", unit="sigma"):
        own, blind, est = [], [], []
        for _, clean in images:  # what an 8-bit file holds: the noise clipped to 0-255 and rounded
            noisy = pixels.to_uint(add_noise(clean, lv, 0), np.uint8)
            est.append(estimate_noise_sigma(noisy))
            for net, acc in ((nets[str(lv)], own), (nets["blind"], blind)):
                acc.append(calculate_psnr(net.run(noisy), clean, crop_border=0))  # uint8 in, uint8 out
        out[lv].append({**row(lv, own, blind, est), "file": True})
    clean_est = [estimate_noise_sigma(clean) for _, clean in images]
    out[0] = [{"sigma": 0, "estimate": float(np.mean(clean_est)), "estimate_min": float(np.min(clean_est)),
               "estimate_max": float(np.max(clean_est))}]
    return out


def row(sigma: float, own: list[float], blind: list[float], est: list[float]) -> dict:
    return {"sigma": sigma, "own": float(np.mean(own)), "blind": float(np.mean(blind)),
            "gain": float(np.mean(own) - np.mean(blind)), "estimate": float(np.mean(est)),
            "estimate_min": float(np.min(est)), "estimate_max": float(np.max(est))}


def table(results: dict[str, dict[int, list[dict]]], images: list[tuple[str, np.ndarray]], crop: int) -> str:
    from restore.weights import SIGMA_BANDS, default_denoiser

    lines = ["## `--sigma auto`: where each per-sigma model beats the blind one", "",
             f"Written by `scripts/sigma_bands.py`. Held out: {len(images)} colour Set14 images "
             f"({', '.join(n for n, _ in images)}), {crop}x{crop} centre crops (gray: their BT.601 luma); noise as "
             "`restore eval` adds it; PSNR (dB), fp32. Estimate: `restore.metrics.noise.estimate_noise_sigma` on the "
             "noisy crop (mean, and min-max over the crops). Gain: the level's model minus the blind one.", ""]
    for color, per_level in results.items():
        blind = default_denoiser("blind", color).stem
        clean = per_level[0][0]
        lines += [f"{color}: the clean crops read {clean['estimate']:.1f} ({clean['estimate_min']:.1f}-"
                  f"{clean['estimate_max']:.1f}).", ""]
        for lv, all_rows in per_level.items():
            if not lv:
                continue
            rows = [r for r in all_rows if not r.get("file")]
            name = default_denoiser(str(lv), color).stem
            lines += [f"| {color} sigma | `{name}` | `{blind}` | gain | estimate (min-max) |",
                      "|---:|---:|---:|---:|---|"]
            lines += [f"| {r['sigma']:g}{' (8-bit file)' * bool(r.get('file'))} | {r['own']:.2f} | {r['blind']:.2f} | "
                      f"{r['gain']:+.2f} | {r['estimate']:.1f} ({r['estimate_min']:.1f}-{r['estimate_max']:.1f}) |"
                      for r in all_rows]
            b = band(rows, lv)
            lines += ["", f"{color}, sigma {lv}: `{name}` wins from sigma {b[0]:g} to {b[1]:g} on this grid." if b
                      else f"{color}, sigma {lv}: `{name}` does not beat the blind model at sigma {lv} here.", ""]
    lines.append("Shipped bands (`restore.weights.SIGMA_BANDS`, estimated sigma -> model; anything else -> "
                 "blind): " + "; ".join(f"{color}: " + ", ".join(f"{lo:g}-{hi:g} -> sigma {lv}"
                                                                for lv, (lo, hi) in bands.items())
                                       for color, bands in SIGMA_BANDS.items()) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=5, help="held-out images (default 5)")
    ap.add_argument("--crop", type=int, default=192, help="centre crop side in px (default 192)")
    ap.add_argument("--colors", nargs="+", choices=("rgb", "gray"), default=["rgb", "gray"],
                    help="which defaults to measure (default both)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/results.md alone")
    a = ap.parse_args(argv)
    if not SET14.is_dir():
        print(f"sigma_bands: {SET14} is missing (../shared/data)", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    images = held_out(a.limit, a.crop)
    text = table({c: measure(images, c) for c in a.colors}, images, a.crop)
    print(text)
    if not a.no_write:
        write_section(ROOT / "docs" / "results.md", block(SECTION, text), title="# Results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
