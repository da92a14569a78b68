"""Conformance: every reference checkpoint in ../shared/weights on the ../shared/data test sets.

Writes ``docs/conformance.md`` (ours vs paper vs the official code's own figure where one was measured).
Each row is produced by ``restore.evaluate`` (the same code as ``restore eval``); nothing is pasted by hand.

    python scripts/conformance.py [--shared ../shared] [--out docs/conformance.md] [--quick]
        [--opencv-python /tmp/cvcontrib/bin/python]   # venv with opencv-contrib<5: ESPCN vs dnn_superres

``--quick`` evaluates Set5 only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from restore import io
from restore.evaluate import evaluate_denoise, evaluate_sr
from restore.weights import ModelLoadError, load_model

REPO = Path(__file__).resolve().parents[1]

# Papers' Y-PSNR tables: (Set5, Set14, B100) for SR; (Set12, BSD68) for DnCNN.
PAPER_SR = {
    ("IMDN_x2", 2): (38.00, 33.63, 32.19),
    ("IMDN_x3", 3): (34.36, 30.32, 29.09),
    ("IMDN_x4", 4): (32.21, 28.58, 27.56),
    ("CFSR_x4", 4): (32.33, 28.73, 27.63),
}
# Figures measured with the official architecture code on these exact files (../shared/weights/README.md).
OFFICIAL_CODE = {
    ("IMDN_x4", "Set5"): 32.1867, ("IMDN_x4", "Set14"): 28.5773, ("IMDN_x4", "B100"): 27.5522,
    ("IMDN_x2", "Set5"): 37.9105, ("CFSR_x4", "Set5"): 32.3046, ("CFSR_x4", "Set14"): 28.7233,
    ("IMDN_x4", "Urban100_sub"): 26.2852,
}
PAPER_DN = {  # DnCNN paper Table (gray): Set12 / BSD68
    ("DnCNN-S", 15): (32.86, 31.73), ("DnCNN-S", 25): (30.44, 29.23), ("DnCNN-S", 50): (27.18, 26.23),
    ("DnCNN-B", 15): (32.68, 31.61), ("DnCNN-B", 25): (30.36, 29.16), ("DnCNN-B", 50): (27.21, 26.23),
}


@dataclass
class Row:
    model: str
    data: str
    setting: str
    psnr: float | None
    ssim: float | None
    psnr_u8: float | None = None
    paper: float | None = None
    official: float | None = None
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def sr_sets(shared: Path, scale: int, quick: bool) -> list[tuple[str, Path]]:
    d = shared / "data" / "sr"
    sets = [("Set5", d / "Set5"), ("Set14", d / "Set14" / f"image_SRF_{scale}"),
            ("B100", d / "BSD100" / f"image_SRF_{scale}")]
    if scale == 4:
        sets.append(("Urban100_sub", d / "Urban100_sub" / "image_SRF_4"))
    if quick:
        sets = sets[:1]
    return [(n, p) for n, p in sets if p.exists()]


def fmt(x: float | None, nd: int = 2) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def run_sr(name: str, path: Path, shared: Path, quick: bool) -> list[Row]:
    model = load_model(path)
    s = model.meta.scale
    paper = PAPER_SR.get((name, s))
    rows = []
    for i, (set_name, folder) in enumerate(sr_sets(shared, s, quick)):
        r = evaluate_sr(model, folder, scale=s, name=name, progress=False)
        rows.append(Row(name, set_name, f"x{s}", r.psnr_y, r.ssim_y, r.psnr_y_uint8,
                        paper[i] if paper and i < 3 else None, OFFICIAL_CODE.get((name, set_name))))
    return rows


def run_dn(name: str, path: Path, shared: Path, sigmas: list[int], quick: bool) -> list[Row]:
    model = load_model(path)
    kind = "DnCNN-B" if "-B" in name else "DnCNN-S"
    rows = []
    sets = [("Set12", shared / "data/denoise/Set12"), ("BSD68", shared / "data/denoise/BSD68")]
    for sigma in sigmas:
        paper = PAPER_DN.get((kind, sigma))
        for i, (set_name, folder) in enumerate(sets[:1] if quick else sets):
            r = evaluate_denoise(model, folder, sigma=sigma, name=name, progress=False)
            rows.append(Row(name, set_name, f"σ={sigma}", r.psnr_y, r.ssim_y, None, paper[i] if paper else None,
                            note="seed 0 per image"))
    return rows


ESPCN_OPENCV = r"""
import sys, cv2, numpy as np
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(sys.argv[1]); sr.setModel("espcn", int(sys.argv[2]))
img = cv2.imread(sys.argv[3], cv2.IMREAD_COLOR)
cv2.imwrite(sys.argv[4], sr.upsample(img))
y = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb).astype(np.float32) * np.float32(1.0 / 255.0)
net = cv2.dnn.readNetFromTensorflow(sys.argv[1])
net.setInput(cv2.dnn.blobFromImage(y[..., 0], 1.0))
np.save(sys.argv[5], net.forward())
"""


def espcn_vs_opencv(path: Path, scale: int, shared: Path, py: str) -> tuple[float, int, float]:
    """Over Set5 LR: max |ours - OpenCV| of the network's float Y forward, max |ours - dnn_superres| of the
    final uint8 image, and the share of identical uint8 values."""
    model = load_model(path)
    from restore.engine.restorer import Restorer

    runner = Restorer(model, device="cpu", precision="fp32")
    worst_y, worst, same, total = 0.0, 0, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for lr_path in sorted((shared / f"data/sr/Set5/LR_bicubic/X{scale}").glob("*.png")):
            out, fy = Path(tmp) / "cv.png", Path(tmp) / "y.npy"
            subprocess.run([py, "-c", ESPCN_OPENCV, str(path), str(scale), str(lr_path), str(out), str(fy)],
                           check=True)
            lr = io.read_rgb(lr_path)
            y = torch.from_numpy(io.rgb_to_ycrcb_full(lr)[..., 0].copy())[None, None]
            with torch.inference_mode():
                ours_y = model(y).numpy()
            worst_y = max(worst_y, float(np.abs(ours_y - np.load(fy)).max()))
            theirs = io.read_rgb(out).astype(int)
            d = np.abs(runner.run(lr).astype(int) - theirs)
            worst, same, total = max(worst, int(d.max())), same + int((d == 0).sum()), total + d.size
    return worst_y, worst, 100.0 * same / total


def markdown(rows: list[Row], notes: list[str], seconds: float) -> str:
    out = [
        "# Conformance: official checkpoints through `restore`",
        "",
        "Written by `scripts/conformance.py` (do not edit by hand). Y-PSNR/SSIM on the MATLAB BT.601 Y channel,",
        "border = scale, SR rounded to uint8, LR = the MATLAB-bicubic files in `../shared/data`. `PSNR`/`SSIM` keep",
        "Y unrounded (float; BasicSR's `calculate_psnr(test_y_channel=True)`), the convention the papers' tables",
        "follow; `PSNR (uint8 Y)` quantises Y to uint8 first, as the official IMDN test script does and as the",
        "`official code` figures were measured. DnCNN: gray, noise",
        "`N(0, σ/255)` with `np.random.seed(0)` reset per image, unclipped; PSNR on the full image.",
        "`official code` = the figure measured with the official architecture code on these same files",
        "(`../shared/weights/README.md`).",
        "",
        "| checkpoint | set | setting | PSNR | SSIM | paper | Δ paper | PSNR (uint8 Y) | official code "
        "| Δ official | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dp = None if r.paper is None or r.psnr is None else r.psnr - r.paper
        do = None if r.official is None or r.psnr_u8 is None else r.psnr_u8 - r.official
        out.append(
            f"| {r.model} | {r.data} | {r.setting} | {fmt(r.psnr, 4)} | {fmt(r.ssim, 4)} | {fmt(r.paper)} | "
            f"{'–' if dp is None else f'{dp:+.3f}'} | {fmt(r.psnr_u8, 4)} | {fmt(r.official, 4)} | "
            f"{'–' if do is None else f'{do:+.4f}'} | {r.note} |"
        )
    out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    out += ["", f"Total time {seconds:.0f} s on {torch.get_num_threads()} CPU threads, torch {torch.__version__}.", ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "conformance.md")
    ap.add_argument("--quick", action="store_true", help="Set5 / Set12 only")
    ap.add_argument("--opencv-python", help="python of a venv with opencv-contrib-python-headless<5")
    ap.add_argument("--json", type=Path, help="also dump the rows as JSON")
    args = ap.parse_args()
    w = args.shared / "weights"
    if not w.is_dir():
        print(f"conformance: {w} not found; nothing to check", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    for name in ("IMDN_x2", "IMDN_x3", "IMDN_x4", "model_RTC", "model_RTE"):
        print(f"{name} ...", flush=True)
        rows += run_sr(name, w / "imdn" / f"{name}.pth", args.shared, args.quick)
    for s in (2, 3, 4):
        print(f"CFSR_x{s} ...", flush=True)
        rows += run_sr(f"CFSR_x{s}", w / "cfsr" / f"CFSR_x{s}.pth", args.shared, args.quick)
    for rel in ("dscf/team23_DSCF.pth", "ntire_esr/2024/team38_span_ch28_slim.pth",
                "ntire_esr/2024/team39_spantiny_ch26_slim.pth", "ntire_esr/2025/team46_span.pth",
                "ntire_esr/2025/team24_spanf.pth", "ntire_esr/2025/team36_espan.pth"):
        print(f"{rel} ...", flush=True)
        rows += run_sr(Path(rel).stem, w / rel, args.shared, args.quick)
    for s in (2, 3, 4):
        print(f"ESPCN_x{s} ...", flush=True)
        pb = w / "espcn" / f"ESPCN_x{s}.pb"
        got = run_sr(f"ESPCN_x{s}", pb, args.shared, args.quick)
        if args.opencv_python:
            worst_y, worst, pct = espcn_vs_opencv(pb, s, args.shared, args.opencv_python)
            got[0].note = (f"vs OpenCV 4 on Set5: net forward (Y, float) max abs diff {worst_y:.1e}; "
                           f"dnn_superres uint8 image max {worst}/255, {pct:.3f}% identical (.5 rounding ties)")
        rows += got
    print("DnCNN ...", flush=True)
    rows += run_dn("dncnn_25 (KAIR)", w / "dncnn/kair/dncnn_25.pth", args.shared, [25], args.quick)
    for sigma in (15, 25, 50):
        rows += run_dn(f"DnCNN-S-{sigma} (SaoYan)", w / f"dncnn/saoyan/DnCNN-S-{sigma}.pth", args.shared,
                       [sigma], args.quick)
    rows += run_dn("DnCNN-B (SaoYan)", w / "dncnn/saoyan/DnCNN-B.pth", args.shared, [15, 25, 50], args.quick)
    for rel in ("imdn/IMDN_AS.pth", "dscf/team00_EFDN.pth", "ntire_esr/2024/team00_rlfn.pth"):
        try:
            m = load_model(w / rel)
            notes.append(f"`{rel}`: loads strictly as {m.meta.family}/{m.meta.variant} "
                         f"(x{m.meta.scale} net); no matching test set here (RealSR / DIV2K_LSDIR).")
        except ModelLoadError as e:
            notes.append(f"`{rel}`: not a restore family — loader says: {str(e).split(';')[0]}.")
    md = markdown(rows, notes, time.monotonic() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
