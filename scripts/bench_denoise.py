"""Side-by-side colour denoising benchmark (issue 20): our shipped colour DnCNN vs CBM3D and OpenCV NLM.

Sets CBSD68 and Kodak24 at sigma 15 / 25 / 50. The noisy input is made exactly as ``restore eval`` makes it
(``restore.evaluate.add_noise(clean, sigma, seed=0)``: float32, not clipped, seed reset per image). Methods:

- ``ours``: the model ``restore denoise --sigma S`` picks for a colour image; ``ours-tta``: the same model with
  ``--tta`` (the 8 flips / rotations averaged, 8x the time); ``ours-auto``: what it does without ``--sigma`` (the
  noise level estimated on each noisy image picks the sigma 15 / 25 / 50 model or the blind one; the estimate is
  timed with it); ``ours-blind``: ``--sigma blind``, the blind model at every sigma. All run fp32, untiled, on
  the float noisy image. When ``ours`` and ``ours-blind`` are the same file at every sigma the table shows one
  row.
- ``cbm3d``: ``bm3d.bm3d_rgb(noisy, sigma / 255)`` with the package's default profile ('np') on the same float image.
- ``nlm``: ``cv2.fastNlMeansDenoisingColored`` on the noisy image clipped and rounded to uint8 (it takes uint8
  only), with ``h`` / ``hColor`` per sigma from ``NLM_H`` (tuned on training images by ``--tune-nlm``).

Every output is clipped to [0, 1], rounded to uint8 and scored against the clean uint8 image with PSNR / SSIM on
RGB, no border crop (``restore eval``'s convention). Seconds per megapixel time the denoising call alone.
Per-image figures are cached in ``docs/denoise_bench.json`` (key: method, weights sha256 / package version /
NLM parameters, set, sigma, image), written atomically after each image and sigma, so a rerun computes only what
is missing and an interrupted run resumes. The table goes into ``docs/results.md`` and ``README.md`` (section
``denoise-bench``) with the picture ``docs/img/denoise_compare.png`` (Kodak24 crop at sigma 25).

    OMP_NUM_THREADS=1 python scripts/bench_denoise.py [--sets CBSD68 Kodak24] [--sigmas 15 25 50]
        [--methods ours ours-tta ours-auto ours-blind cbm3d nlm] [--limit N] [--no-write] [--threads 1] [--tune-nlm]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch load their thread pools

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from doc_sections import block, replace_section, write_section  # noqa: E402

from restore import io  # noqa: E402
from restore.evaluate import add_noise  # noqa: E402
from restore.metrics.psnr_ssim import calculate_psnr, calculate_ssim  # noqa: E402

if TYPE_CHECKING:
    from restore.engine.restorer import Restorer

DATA = ROOT.parent / "shared" / "data"
SETS = {"CBSD68": DATA / "denoise" / "CBSD68", "Kodak24": DATA / "denoise" / "Kodak24"}
SIGMAS = (15, 25, 50)
METHODS = ("ours", "ours-tta", "ours-auto", "ours-blind", "cbm3d", "nlm")
TUNE_DATA = DATA / "train" / "BSD200"  # training images only: never a test set
TUNE_IMAGES = 4
CACHE = ROOT / "docs" / "denoise_bench.json"
RESULTS = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
PICTURE = ROOT / "docs" / "img" / "denoise_compare.png"
MANIFEST = ROOT / "restore" / "weights" / "manifest.json"
TAG = "denoise-bench"
PICTURE_SET, PICTURE_SIGMA, CROP, ZOOM = "Kodak24", 25, 160, 2
# DnCNN paper (Zhang et al., IEEE TIP 2017), colour denoising table: CBSD68 PSNR (dB) at sigma 15 / 25 / 50
PAPER = {"CDnCNN-B": (33.89, 31.23, 27.92), "CBM3D": (33.52, 30.71, 27.38)}

# cv2.fastNlMeansDenoisingColored (h, hColor) per sigma, OpenCV's default 7x7 template / 21x21 search windows.
# Chosen once by `OMP_NUM_THREADS=1 python scripts/bench_denoise.py --tune-nlm` (OpenCV 5.1.0, 1 thread): a grid
# over h, hColor = sigma x {0.4, 0.6, .., 1.2}, refined by +-0.1 sigma around the best, scored by mean PSNR on the
# first 4 images of ../shared/data/train/BSD200 (training images, never a test set). It printed: sigma 15 h=9
# hColor=10.5 (29.45 dB), sigma 25 h=15 hColor=17.5 (26.66 dB), sigma 50 h=30 hColor=30 (24.14 dB).
NLM_H = {15: (9.0, 10.5), 25: (15.0, 17.5), 50: (30.0, 30.0)}
NLM_TEMPLATE, NLM_SEARCH = 7, 21


@dataclass(frozen=True)
class Method:
    """One denoiser at one sigma. ``row``: its table row; ``kind`` + ``version``: its cache identity (what changes
    its output); ``label``: the model name shown in the table; ``run``: noisy float RGB -> output (float in [0, 1]
    or uint8); ``setup``: untimed preparation (model loading) done before the first timed call."""

    row: str
    kind: str
    version: str
    label: str
    run: Callable[[np.ndarray], np.ndarray]
    setup: Callable[[], object] = lambda: None


@dataclass(frozen=True)
class Cell:
    """Mean figures of one method on one set at one sigma."""

    psnr: float
    ssim: float
    images: int
    seconds: float
    megapixels: float


# ------------------------------------------------------------------------------------------------ methods


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_name(path: Path) -> str:
    """The manifest name of a shipped weights file (its stem when the manifest does not list it)."""
    models = json.loads(MANIFEST.read_text())["models"] if MANIFEST.is_file() else []
    return next((str(m["name"]) for m in models if m["file"] == path.name), path.stem)


@functools.cache
def restorer(path: Path, tta: bool = False) -> Restorer:
    """fp32, untiled Restorer for ``path`` (``tta``: test-time augmentation), warmed up once (the CPU backend is
    chosen on the first window)."""
    from restore.engine.restorer import Restorer
    from restore.weights import load_model

    runner = Restorer(load_model(path), precision="fp32", tile=None, tta=tta)
    runner.run(np.zeros((128, 128, 3), np.float32))
    return runner


def ours_method(row: str, path: Path, tta: bool = False) -> Method:
    """A shipped model (``tta``: with test-time augmentation); its cache identity is the sha256 of the weights
    file (and the kind ``ours-tta`` with ``tta``)."""
    return Method(row, "ours-tta" if tta else "ours", sha256(path), model_name(path) + " + tta" * tta,
                  lambda noisy: restorer(path, tta).run(noisy), setup=lambda: restorer(path, tta))


def auto_method() -> Method:
    """``restore denoise`` without ``--sigma``: the noise level estimated on each image picks the shipped colour
    model (``restore.weights.SIGMA_BANDS``). Cache identity: the estimator's source, the bands and every
    candidate's sha256."""
    from restore.weights import SIGMA_BANDS, auto_sigma, default_denoiser

    paths = {level: default_denoiser(level, "rgb") for level in (*SIGMA_BANDS["rgb"], "blind")}
    estimator = hashlib.sha256((ROOT / "restore" / "metrics" / "noise.py").read_bytes()).hexdigest()[:16]
    ident = f"auto estimator {estimator} " + json.dumps(SIGMA_BANDS["rgb"], sort_keys=True) + " " + " ".join(
        f"{k}:{sha256(p)}" for k, p in paths.items())

    def run(noisy: np.ndarray) -> np.ndarray:
        return restorer(paths[auto_sigma(noisy, "rgb")[0]]).run(noisy)

    return Method("ours-auto", "ours-auto", ident, "auto: " + " / ".join(model_name(p) for p in paths.values()),
                  run, setup=lambda: [restorer(p) for p in paths.values()])


def cbm3d_method(sigma: int, threads: int = 1) -> Method:
    """CBM3D with the bm3d package's default profile ('np'), ``threads`` worker threads."""
    import bm3d

    profile = bm3d.BM3DProfile()  # what profile='np' selects
    profile.num_threads = threads
    ident = f"bm3d {version('bm3d')} bm4d {version('bm4d')} profile np"
    return Method("cbm3d", "cbm3d", ident, "CBM3D", lambda noisy: bm3d.bm3d_rgb(noisy, sigma / 255.0, profile))


def nlm_input(noisy: np.ndarray) -> np.ndarray:
    """The uint8 image OpenCV's NLM gets: the noisy float image clipped and rounded."""
    return io.to_uint(noisy, np.uint8)


def nlm_denoise(noisy: np.ndarray, h: float, h_color: float) -> np.ndarray:
    """``cv2.fastNlMeansDenoisingColored`` on RGB (OpenCV expects BGR); uint8 RGB out."""
    bgr = cv2.cvtColor(nlm_input(noisy), cv2.COLOR_RGB2BGR)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h_color, NLM_TEMPLATE, NLM_SEARCH)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def nlm_method(sigma: int) -> Method:
    h, h_color = NLM_H[sigma]
    ident = f"cv2 {cv2.__version__} h={h:g} hColor={h_color:g} template={NLM_TEMPLATE} search={NLM_SEARCH}"
    return Method("nlm", "nlm", ident, "OpenCV NLM", lambda noisy: nlm_denoise(noisy, h, h_color))


def build_methods(names: Sequence[str], sigma: int, threads: int) -> list[Method]:
    """The methods ``names`` at ``sigma``, our models resolved the way ``restore denoise`` resolves them."""
    from restore.weights import resolve_model

    out = []
    for name in names:
        if name == "ours-auto":
            out.append(auto_method())
        elif name in ("ours", "ours-tta", "ours-blind"):
            wanted = "blind" if name == "ours-blind" else str(sigma)
            out.append(ours_method(name, resolve_model(None, task="denoise", sigma=wanted, color="rgb"),
                                   tta=name == "ours-tta"))
        elif name == "cbm3d":
            out.append(cbm3d_method(sigma, threads))
        else:
            out.append(nlm_method(sigma))
    return out


# ------------------------------------------------------------------------------------------- measuring


def cache_key(method: Method, set_name: str, sigma: int, image: str) -> str:
    return f"{method.kind}|{method.version}|{set_name}|{sigma}|{image}"


def load_cache(path: Path) -> dict[str, dict]:
    doc = json.loads(path.read_text()) if path.is_file() else {}
    return {"results": doc.get("results", {}), "picture": doc.get("picture", {})}


def save_cache(cache: dict[str, dict], path: Path) -> None:
    """Atomic write (temporary file + ``os.replace``): an interrupted run leaves the previous cache intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def score(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """PSNR / SSIM of ``out`` (clipped, rounded to uint8) against the clean uint8 image, no border crop."""
    out8 = out if out.dtype == np.uint8 else io.to_uint(np.asarray(out, np.float32), np.uint8)
    return calculate_psnr(out8, clean, crop_border=0), calculate_ssim(out8, clean, crop_border=0)


def measure(method: Method, noisy: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    method.setup()
    t0 = time.perf_counter()
    out = method.run(noisy)
    seconds = time.perf_counter() - t0
    psnr, ssim = score(out, clean)
    return {"psnr": psnr, "ssim": ssim, "seconds": seconds, "pixels": clean.shape[0] * clean.shape[1]}


def run_bench(images: dict[str, list[Path]], methods: dict[int, list[Method]], cache: dict[str, dict],
              cache_path: Path | None) -> int:
    """Measure every (set, image, sigma, method) not in ``cache``; the cache is saved (when ``cache_path`` is
    given) after each image and sigma that added entries. Returns the number of new entries."""
    results, added = cache["results"], 0
    work = [(s, f, sigma) for s, files in images.items() for f in files for sigma in methods]
    for set_name, f, sigma in tqdm(work, desc="denoise bench", unit="img"):
        todo = [m for m in methods[sigma] if cache_key(m, set_name, sigma, f.stem) not in results]
        if not todo:
            continue
        clean = io.to_rgb(io.read_image(f))
        noisy = add_noise(clean, sigma, seed=0)
        for m in todo:
            key = cache_key(m, set_name, sigma, f.stem)
            if key not in results:  # two rows may share one model file
                results[key] = measure(m, noisy, clean)
                added += 1
        if cache_path is not None:
            save_cache(cache, cache_path)
    return added


# ------------------------------------------------------------------------------------------- summarising


def summarize(results: dict[str, dict], images: dict[str, list[Path]],
              methods: dict[int, list[Method]]) -> dict[tuple[str, str, int], Cell]:
    """(row, set, sigma) -> mean over the images of ``images`` that are in ``results``."""
    cells = {}
    for sigma, ms in methods.items():
        for m in ms:
            for set_name, files in images.items():
                hits = [results[k] for f in files if (k := cache_key(m, set_name, sigma, f.stem)) in results]
                if hits:
                    cells[m.row, set_name, sigma] = Cell(
                        float(np.mean([r["psnr"] for r in hits])), float(np.mean([r["ssim"] for r in hits])),
                        len(hits), sum(r["seconds"] for r in hits), sum(r["pixels"] for r in hits) / 1e6)
    return cells


def by_row(methods: dict[int, list[Method]]) -> dict[str, list[Method]]:
    """row -> its methods, one per sigma."""
    rows: dict[str, list[Method]] = {}
    for ms in methods.values():
        for m in ms:
            rows.setdefault(m.row, []).append(m)
    return rows


def row_name(methods: dict[int, list[Method]], row: str) -> str:
    """The model names of ``row`` over the sigmas, without repeats: 'cdncnn_s15 / cdncnn_s25'."""
    return " / ".join(dict.fromkeys(m.label for m in by_row(methods).get(row, [])))


def row_labels(methods: dict[int, list[Method]]) -> dict[str, str]:
    """Table label of each row, in ``METHODS`` order; ``ours-blind`` is folded into ``ours`` when both are the
    same weights at every sigma."""
    rows = by_row(methods)
    same = ("ours" in rows and "ours-blind" in rows
            and [m.version for m in rows["ours"]] == [m.version for m in rows["ours-blind"]])
    how = {"ours": "ours, default with and without `--sigma`" if same else "ours, default for `--sigma S`",
           "ours-tta": "ours, default for `--sigma S` with `--tta`",
           "ours-auto": "ours, default without `--sigma`: the noise level estimated per image",
           "ours-blind": "ours, `--sigma blind`"}
    labels = {}
    for row in METHODS:
        if row not in rows or (same and row == "ours-blind"):
            continue
        name = row_name(methods, row)
        labels[row] = f"**{name}** ({how[row]})" if row in how else name + (" (uint8 input)" * (row == "nlm"))
    return labels


def table(cells: dict[tuple[str, str, int], Cell], labels: dict[str, str], sets: Sequence[str],
          sigmas: Sequence[int]) -> list[str]:
    """Markdown table: one row per method, PSNR / SSIM per (set, sigma), then seconds per megapixel."""
    cols = [(s, sigma) for s in sets for sigma in sigmas]
    lines = ["| method | " + " | ".join(f"{s} σ{sigma}" for s, sigma in cols) + " | s/MP |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for row, label in labels.items():
        found = [cells.get((row, s, sigma)) for s, sigma in cols]
        texts = [f"{c.psnr:.2f} / {c.ssim:.4f}" if c else "—" for c in found]
        mp = sum(c.megapixels for c in found if c)
        speed = f"{sum(c.seconds for c in found if c) / mp:.2f}" if mp else "—"
        lines.append(f"| {label} | " + " | ".join(texts) + f" | {speed} |")
    return lines


def verdict(cells: dict[tuple[str, str, int], Cell], name: str, sets: Sequence[str], sigmas: Sequence[int],
            row: str = "ours") -> str:
    """Which cells our default (model ``name``; ``row`` "ours-tta": with ``--tta``) wins / loses against CBM3D, by
    how many dB (PSNR); a difference under 0.005 dB is a tie."""
    diffs = {(s, sigma): cells[row, s, sigma].psnr - cells["cbm3d", s, sigma].psnr
             for s in sets for sigma in sigmas if (row, s, sigma) in cells and ("cbm3d", s, sigma) in cells}
    who = {"ours": "our default", "ours-tta": "our default with `--tta`",
           "ours-auto": "our default without `--sigma`"}.get(row, row)
    if not diffs:
        return f"No cell has both {who} and CBM3D: no comparison."

    def listed(items: list[tuple[tuple[str, int], float]]) -> str:
        return ", ".join(f"{s} σ{sigma} ({d:+.2f} dB)" for (s, sigma), d in items)

    wins = [(c, d) for c, d in diffs.items() if d >= 0.005]
    losses = [(c, d) for c, d in diffs.items() if d <= -0.005]
    ties = [(c, d) for c, d in diffs.items() if abs(d) < 0.005]
    parts = [f"{who[0].upper()}{who[1:]} ({name}) vs CBM3D, PSNR: wins {len(wins)} of {len(diffs)} cells"
             + (f": {listed(wins)}" if wins else "")]
    if losses:
        parts.append(f"loses {len(losses)}: {listed(losses)}")
    if ties:
        parts.append(f"ties {len(ties)}: {listed(ties)}")
    return "; ".join(parts) + "."


def coverage(cells: dict[tuple[str, str, int], Cell], images: dict[str, list[Path]]) -> str:
    """'CBSD68: 68 images, Kodak24: 24 images', saying so when a run covered only part of a set."""
    parts = []
    for s, files in images.items():
        total = len(io.list_images(SETS[s])) if s in SETS and SETS[s].is_dir() else len(files)
        n = min((c.images for (_, cs, _), c in cells.items() if cs == s), default=0)
        parts.append(f"{s}: {n} images" if n == total else f"{s}: only the first {n} of {total} images")
    return "; ".join(parts)


def section_body(cells: dict[tuple[str, str, int], Cell], methods: dict[int, list[Method]],
                 images: dict[str, list[Path]], *, threads: int, picture: str | None) -> list[str]:
    """The table, the computed verdict and the notes shared by docs/results.md and the README."""
    sets, sigmas = list(images), list(methods)
    nlm = ", ".join(f"σ{s}: {NLM_H[s][0]:g}/{NLM_H[s][1]:g}" for s in sigmas)
    lines = [*table(cells, row_labels(methods), sets, sigmas), "",
             verdict(cells, row_name(methods, "ours"), sets, sigmas), "",
             *([verdict(cells, row_name(methods, "ours"), sets, sigmas, row="ours-tta"), ""]
               if "ours-tta" in by_row(methods) else []),
             *([verdict(cells, "noise level estimated per image", sets, sigmas, row="ours-auto"), ""]
               if "ours-auto" in by_row(methods) else []),
             f"PSNR (dB) / SSIM on RGB, no border crop ({coverage(cells, images)}); noise as in `restore eval` "
             "(seed 0 per image, float, not clipped), every output clipped and rounded to uint8. OpenCV NLM "
             "(`cv2.fastNlMeansDenoisingColored`) takes uint8 only, so it gets the noisy image clipped and rounded "
             f"to uint8 (h/hColor {nlm}, chosen on BSD200 training images by `--tune-nlm`); the others get the "
             f"float image. s/MP: seconds per megapixel of the denoising call alone, {threads} thread"
             f"{'s' * (threads > 1)}, on a "
             "shared 2-core CPU (training jobs running beside it), so only a rough guide.",
             "",
             "Reference, DnCNN paper (Zhang et al., IEEE TIP 2017) on CBSD68 σ15 / 25 / 50: "
             + "; ".join(f"{k} {' / '.join(f'{v:.2f}' for v in vs)} dB" for k, vs in PAPER.items()) + "."]
    if picture:
        lines += ["", f"![clean / noisy / ours / CBM3D]({picture})", "",
                  f"{PICTURE_SET} σ{PICTURE_SIGMA}, the {CROP}x{CROP} crop with the highest variance (zoomed "
                  f"{ZOOM}x): clean, noisy, our default, CBM3D; PSNR of the crop in the labels."]
    return lines


# ------------------------------------------------------------------------------------------------- picture


def best_crop(images: Sequence[np.ndarray], side: int, stride: int = 8) -> tuple[int, int, int]:
    """(image index, y, x) of the ``side`` x ``side`` window with the highest gray-level variance."""
    best = (-1.0, 0, 0, 0)
    for i, img in enumerate(images):
        g = img.astype(np.float64).mean(axis=2)
        s1 = np.pad(g.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        s2 = np.pad((g * g).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

        def box(s: np.ndarray) -> np.ndarray:
            return (s[side::stride, side::stride] - s[:-side:stride, side::stride]
                    - s[side::stride, :-side:stride] + s[:-side:stride, :-side:stride])

        var = box(s2) / side**2 - (box(s1) / side**2) ** 2
        y, x = np.unravel_index(int(np.argmax(var)), var.shape)
        if var[y, x] > best[0]:
            best = (float(var[y, x]), i, int(y) * stride, int(x) * stride)
    return best[1], best[2], best[3]


def font(size: int = 14) -> object:
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def labelled_strip(panels: Sequence[tuple[str, np.ndarray]], gap: int = 8, head: int = 24) -> np.ndarray:
    """Panels side by side (each nearest-zoomed ``ZOOM``x) under their labels, on white."""
    from PIL import Image, ImageDraw

    h, w = panels[0][1].shape[0] * ZOOM, panels[0][1].shape[1] * ZOOM
    canvas = Image.new("RGB", (len(panels) * (w + gap) - gap, h + head), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (text, img) in enumerate(panels):
        canvas.paste(Image.fromarray(img).resize((w, h), Image.NEAREST), (k * (w + gap), head))
        draw.text((k * (w + gap) + 2, 4), text, fill="black", font=font())
    return np.asarray(canvas)


def make_picture(files: list[Path], ours: Method, cbm3d: Method, cache: dict[str, dict], out: Path) -> bool:
    """clean / noisy / ours / CBM3D on the most textured crop of ``files`` at ``PICTURE_SIGMA``; skipped when
    ``out`` already shows the same crop, weights and CBM3D version. Returns whether it was (re)written."""
    cleans = [io.to_rgb(io.read_image(f)) for f in files]
    i, y, x = best_crop(cleans, CROP)
    key = f"{files[i].name}|{y}|{x}|{ours.version}|{cbm3d.version}|zoom{ZOOM}"
    if out.is_file() and cache["picture"].get("key") == key:
        return False
    clean = cleans[i]
    noisy = add_noise(clean, PICTURE_SIGMA, seed=0)
    panels = [("clean", clean), (f"noisy σ{PICTURE_SIGMA}", nlm_input(noisy)), (f"ours: {ours.label}", ours.run(noisy)),
              ("CBM3D", cbm3d.run(noisy))]
    crops = []
    for text, img in panels:
        img8 = img if img.dtype == np.uint8 else io.to_uint(np.asarray(img, np.float32), np.uint8)
        c = img8[y:y + CROP, x:x + CROP]
        ref = clean[y:y + CROP, x:x + CROP]
        crops.append((text if not crops else f"{text} {calculate_psnr(c, ref, crop_border=0):.2f} dB", c))
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_image(out, labelled_strip(crops), overwrite=True)
    cache["picture"] = {"key": key, "image": files[i].name, "y": y, "x": x}
    return True


# ----------------------------------------------------------------------------------------------- writing


def insert_readme(readme: str, section: str) -> str:
    """Replace the README's ``denoise-bench`` block, or put it after the paragraph that starts with 'Denoisers:'
    (at the end when there is none)."""
    if f"<!-- {TAG}:begin -->" in readme:
        return replace_section(readme, section)
    i = readme.find("\nDenoisers:")
    j = readme.find("\n\n", i + 1) if i >= 0 else -1
    if j < 0:
        return replace_section(readme, section)
    return readme[:j] + "\n\n" + section.strip("\n") + readme[j:]


def write_docs(body: list[str], readme_body: list[str]) -> None:
    text = "\n".join(body)
    write_section(RESULTS, block(TAG, "## Colour denoising vs CBM3D and OpenCV NLM\n\n" + text), title="# Results")
    README.write_text(insert_readme(README.read_text(), block(TAG, "\n".join(readme_body))))


# ------------------------------------------------------------------------------------------------ tuning


def nlm_psnr(pairs: Sequence[tuple[np.ndarray, np.ndarray]], h: float, h_color: float) -> float:
    """Mean PSNR of NLM with (h, hColor) over (noisy, clean) pairs."""
    return float(np.mean([score(nlm_denoise(noisy, h, h_color), clean)[0] for noisy, clean in pairs]))


def tune_sigma(cleans: Sequence[np.ndarray], sigma: int) -> tuple[tuple[float, float], float, int]:
    """Best (h, hColor) at ``sigma`` by mean PSNR on ``cleans``: a grid of sigma x {0.4, 0.6, .., 1.2} for both,
    then +-0.1 sigma around the best. Returns it, its PSNR and the number of settings tried."""
    pairs = [(add_noise(c, sigma, seed=0), c) for c in cleans]
    seen: dict[tuple[float, float], float] = {}

    def best_of(grid: list[tuple[float, float]]) -> tuple[float, float]:
        for hh in grid:
            if hh not in seen:
                seen[hh] = nlm_psnr(pairs, *hh)
        return max(grid, key=seen.__getitem__)

    coarse = [round(sigma * f, 1) for f in (0.4, 0.6, 0.8, 1.0, 1.2)]
    h0, c0 = best_of([(h, hc) for h in coarse for hc in coarse])
    step = round(0.1 * sigma, 1)
    best = best_of([(round(h0 + dh, 1), round(c0 + dc, 1)) for dh in (-step, 0.0, step) for dc in (-step, 0.0, step)])
    return best, seen[best], len(seen)


def tune_nlm(files: Sequence[Path], sigmas: Sequence[int]) -> dict[int, tuple[float, float]]:
    """``tune_sigma`` at every sigma on ``files`` (training images), printed as the ``NLM_H`` line to paste."""
    cleans = [io.to_rgb(io.read_image(f)) for f in files]
    chosen = {}
    for sigma in sigmas:
        chosen[sigma], psnr, tried = tune_sigma(cleans, sigma)
        print(f"sigma {sigma}: h={chosen[sigma][0]:g} hColor={chosen[sigma][1]:g}  mean PSNR {psnr:.2f} dB "
              f"({len(files)} images of {TUNE_DATA.name}: {', '.join(f.name for f in files)}; {tried} settings)",
              flush=True)
    print("NLM_H = {" + ", ".join(f"{s}: ({h:g}, {c:g})" for s, (h, c) in chosen.items()) + "}")
    return chosen


# -------------------------------------------------------------------------------------------------- main


def shown(path: Path) -> str:
    """``path`` relative to the project root when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--sigmas", nargs="+", type=int, choices=SIGMAS, default=list(SIGMAS))
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set (quick checks)")
    ap.add_argument("--no-write", action="store_true",
                    help="print the table only: docs/results.md, README.md and the picture stay as they are "
                         "(per-image results still go into the cache)")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV / CBM3D threads (default 1)")
    ap.add_argument("--tune-nlm", action="store_true",
                    help=f"choose NLM h/hColor per sigma on the first {TUNE_IMAGES} images of {TUNE_DATA} and exit")
    a = ap.parse_args(argv)
    if a.limit is not None and a.limit < 1:
        ap.error("--limit must be >= 1")
    if a.threads < 1:
        ap.error("--threads must be >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    set_threads(a.threads)
    if a.tune_nlm:
        if not TUNE_DATA.is_dir():
            print(f"bench_denoise: {TUNE_DATA} not found", file=sys.stderr)
            return 2
        tune_nlm(io.list_images(TUNE_DATA)[:TUNE_IMAGES], a.sigmas)
        return 0
    missing = [str(SETS[s]) for s in a.sets if not SETS[s].is_dir()]
    if missing:
        print(f"bench_denoise: not found: {', '.join(missing)} (the shared data lives beside the project)",
              file=sys.stderr)
        return 2
    images = {s: io.list_images(SETS[s])[:a.limit] for s in a.sets}
    methods = {sigma: build_methods(a.methods, sigma, a.threads) for sigma in a.sigmas}
    cache = load_cache(CACHE)
    added = run_bench(images, methods, cache, CACHE)
    cells = summarize(cache["results"], images, methods)
    print("\n".join(section_body(cells, methods, images, threads=a.threads, picture=None)))
    print(f"\n{added} new result(s); cache {shown(CACHE)}")
    if a.no_write:
        return 0
    at = {m.row: m for m in methods.get(PICTURE_SIGMA, [])}
    if PICTURE_SET in images and {"ours", "cbm3d"} <= at.keys():
        make_picture(images[PICTURE_SET], at["ours"], at["cbm3d"], cache, PICTURE)
        save_cache(cache, CACHE)
    pic = PICTURE.is_file()
    body = section_body(cells, methods, images, threads=a.threads, picture="img/denoise_compare.png" if pic else None)
    readme = section_body(cells, methods, images, threads=a.threads,
                          picture="docs/img/denoise_compare.png" if pic else None)
    write_docs(body, ["Colour denoising vs CBM3D and OpenCV NLM (`scripts/bench_denoise.py`, details in "
                      "[docs/results.md](docs/results.md)):", "", *readme])
    print(f"wrote {shown(RESULTS)}, {shown(README)}" + (f", {shown(PICTURE)}" if pic else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
