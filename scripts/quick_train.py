"""Train an ESPCN in about a minute on CPU, so the README's main job has real weights to run.

This is a stand-in until the project ships its own trained defaults (a later issue). Training data: the
photographs bundled inside scikit-image (no download); one of them (``coffee``) is held out and written as
the example input. LR patches come from our MATLAB-exact bicubic ``imresize``; the net learns the
full-range Y channel as OpenCV's dnn_superres ESPCN does. At the end it prints Y-PSNR on the held-out
image against bicubic, so you can see the model is real.

    python scripts/quick_train.py --scale 2 --iters 3000 --out experiments/quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata
from tqdm import tqdm

from restore import io
from restore.archs.espcn import ESPCN
from restore.engine.restorer import Restorer
from restore.metrics.imresize import imresize
from restore.metrics.psnr_ssim import calculate_psnr

TRAIN = ("astronaut", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel")
HELD_OUT = "coffee"


def load_rgb(name: str) -> np.ndarray:
    img = getattr(skdata, name)()
    return img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)


def y_pairs(names: tuple[str, ...], scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR Y, HR Y) float32 planes, HR mod-cropped; LR by MATLAB bicubic of the RGB image."""
    out = []
    for n in names:
        hr = load_rgb(n)
        h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
        hr = hr[:h, :w]
        lr = imresize(hr, scale=1 / scale)
        out.append((io.rgb_to_ycrcb_full(lr)[..., 0], io.rgb_to_ycrcb_full(hr)[..., 0]))
    return out


def batch(pairs, rng: np.random.Generator, scale: int, n: int = 32, p: int = 24) -> tuple[torch.Tensor, ...]:
    lrs, hrs = [], []
    for _ in range(n):
        lr, hr = pairs[rng.integers(len(pairs))]
        y, x = rng.integers(lr.shape[0] - p), rng.integers(lr.shape[1] - p)
        a, b = lr[y:y + p, x:x + p], hr[y * scale:(y + p) * scale, x * scale:(x + p) * scale]
        k = int(rng.integers(4))
        a, b = np.rot90(a, k), np.rot90(b, k)
        if rng.random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        lrs.append(a.copy())
        hrs.append(b.copy())
    return torch.from_numpy(np.stack(lrs))[:, None], torch.from_numpy(np.stack(hrs))[:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    ap.add_argument("--iters", type=int, default=3000, help="training iterations (about 45 s on 2 cores)")
    ap.add_argument("--seconds", type=float, default=None, help="optional wall-clock cap")
    ap.add_argument("--out", type=Path, default=Path("experiments/quick"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    pairs = y_pairs(TRAIN, args.scale)
    model = ESPCN(scale=args.scale)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, it = time.monotonic(), 0
    bar = tqdm(total=args.iters, desc=f"ESPCN x{args.scale}", unit="it", mininterval=1.0)
    while it < args.iters and (args.seconds is None or time.monotonic() - start < args.seconds):
        lr, hr = batch(pairs, rng, args.scale)
        loss = F.l1_loss(model(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if it % 100 == 0:
            bar.update(100)
            bar.set_postfix(l1=f"{loss.item():.4f}")
    bar.close()
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"espcn_x{args.scale}.pth"
    torch.save(model.state_dict(), weights)

    hr = load_rgb(HELD_OUT)
    hr = hr[: hr.shape[0] // args.scale * args.scale, : hr.shape[1] // args.scale * args.scale]
    lr = imresize(hr, scale=1 / args.scale)
    io.write_image(args.out / "example.png", lr)
    sr = Restorer(model.eval(), device="cpu", precision="fp32").run(lr)
    bic = imresize(lr, scale=args.scale)  # MATLAB bicubic baseline
    s = args.scale
    print(f"trained {it} iterations in {time.monotonic() - start:.0f} s -> {weights}")
    ours, base = (calculate_psnr(a, hr, s, test_y_channel=True) for a in (sr, bic))
    print(f"held-out '{HELD_OUT}' x{s} Y-PSNR: ESPCN {ours:.2f} dB, bicubic {base:.2f} dB; "
          f"example LR: {args.out / 'example.png'}")


if __name__ == "__main__":
    main()
