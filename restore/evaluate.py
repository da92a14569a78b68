"""Benchmark evaluation with the papers' conventions (``restore eval``).

Super-resolution: LR and HR read as 3-channel RGB uint8 (gray replicated, as BasicSR/cv2 read them),
the model output rounded to uint8, then PSNR/SSIM on the MATLAB BT.601 Y channel with ``scale`` pixels
cropped from each border. HR larger than LR*scale is cropped to it (mod-crop). The headline ``psnr_y`` /
``ssim_y`` use BasicSR's unrounded float Y (``calculate_psnr(..., test_y_channel=True)``): with it the IMDN
and CFSR checkpoints reproduce their papers' tables within 0.01 dB. ``psnr_y_uint8`` quantises Y to uint8
first (what the official IMDN test script does, and how the official-code figures in
../shared/weights/README.md were measured); it is ~0.01-0.09 dB lower.

Dataset layouts (``find_pairs``):
(a) ``DIR/HR/*`` + ``DIR/LR_bicubic/X{S}/<stem>x{S}.<ext>`` (or the same file name);
(b) a SelfExSR ``image_SRF_{S}`` folder (``DIR`` itself or ``DIR/image_SRF_{S}``) of ``*_HR`` / ``*_LR`` pairs;
(c) HR images only: LR made by our MATLAB-exact bicubic ``imresize``.

Denoising: clean image ``x`` (uint8 -> /255, float64), noise ``N(0, (sigma/255)^2)`` drawn with
``np.random.seed(seed)`` reset before every image (KAIR's convention, seed 0), added without clipping or
quantisation; the output is clipped, rounded to uint8 and compared with the clean image (no border crop).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from tqdm import tqdm

from restore import pixels
from restore.engine.restorer import Restorer
from restore.errors import DatasetError
from restore.io import image
from restore.io.files import list_images
from restore.metrics.imresize import imresize
from restore.metrics.psnr_ssim import calculate_psnr, calculate_ssim


@dataclass(frozen=True)
class Pair:
    name: str
    hr: Path
    lr: Path | None  # None: make LR with MATLAB bicubic


@dataclass
class EvalResult:
    model: str
    task: str
    data: str
    scale: int
    sigma: float | None
    per_image: list[dict[str, float | str]] = field(default_factory=list)

    @property
    def psnr_y(self) -> float:
        return float(np.mean([r["psnr"] for r in self.per_image]))

    @property
    def psnr_y_uint8(self) -> float:
        """Y quantised to uint8 before PSNR (the official IMDN test script's way); NaN for denoising runs."""
        vals = [r["psnr_uint8_y"] for r in self.per_image if "psnr_uint8_y" in r]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def ssim_y(self) -> float:
        return float(np.mean([r["ssim"] for r in self.per_image]))

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "task": self.task,
            "data": self.data,
            "scale": self.scale,
            "sigma": self.sigma,
            "images": len(self.per_image),
            "psnr_y" if self.task == "sr" else "psnr": round(self.psnr_y, 4),
            "ssim_y" if self.task == "sr" else "ssim": round(self.ssim_y, 4),
            **({"psnr_y_uint8": round(self.psnr_y_uint8, 4)} if self.task == "sr" else {}),
            "per_image": self.per_image,
        }


def _stem_key(p: Path) -> str:
    return p.stem


def find_pairs(data: str | Path, scale: int) -> list[Pair]:
    """Pairs of HR/LR files for ``scale`` in any of the three supported layouts."""
    d = Path(data)
    if not d.is_dir():
        raise DatasetError(f"{d}: not a directory")
    # (a) HR/ + LR_bicubic/X{S}/
    hr_dir, lr_dir = d / "HR", d / "LR_bicubic" / f"X{scale}"
    if hr_dir.is_dir():
        if not lr_dir.is_dir():
            return [Pair(p.stem, p, None) for p in list_images(hr_dir)]
        lrs = {_stem_key(p): p for p in list_images(lr_dir)}
        pairs = []
        for hr in list_images(hr_dir):
            lr = lrs.get(f"{hr.stem}x{scale}") or lrs.get(hr.stem)
            if lr is None:
                raise DatasetError(f"{lr_dir}: no LR file for {hr.name} (expected {hr.stem}x{scale}.*)")
            pairs.append(Pair(hr.stem, hr, lr))
        return pairs
    # (b) SelfExSR image_SRF_{S}
    srf = d if re.fullmatch(rf"image_SRF_{scale}", d.name) else d / f"image_SRF_{scale}"
    if srf.is_dir():
        pairs = []
        for hr in sorted(srf.glob("*_HR.*")):
            lr = hr.with_name(hr.name.replace("_HR.", "_LR."))
            if not lr.is_file():
                raise DatasetError(f"{srf}: {hr.name} has no matching {lr.name}")
            pairs.append(Pair(hr.name.rsplit("_HR.", 1)[0], hr, lr))
        if pairs:
            return pairs
    if any(d.glob("image_SRF_*")):
        found = sorted(p.name for p in d.glob("image_SRF_*"))
        raise DatasetError(f"{d}: no image_SRF_{scale} folder for scale {scale} (found {', '.join(found)})")
    # (c) HR images only
    hrs = list_images(d)
    if not hrs:
        raise DatasetError(
            f"{d}: no images; expected HR/ + LR_bicubic/X{scale}/, image_SRF_{scale}/ or a folder of HR images"
        )
    return [Pair(p.stem, p, None) for p in hrs]


def sr_pairs(pairs: list[Pair], scale: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR uint8 RGB, HR uint8 RGB mod-cropped to LR*scale)."""
    for pair in pairs:
        hr = image.read_rgb(pair.hr)
        if pair.lr is None:
            h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
            hr = hr[:h, :w]
            _check_size(pair.hr, hr, scale)
            lr = imresize(hr, scale=1.0 / scale)
        else:
            lr = image.read_rgb(pair.lr)
            h, w = lr.shape[0] * scale, lr.shape[1] * scale
            if hr.shape[0] < h or hr.shape[1] < w:
                raise DatasetError(f"{pair.hr}: HR {hr.shape[:2]} smaller than LR x{scale} ({h}, {w})")
            hr = hr[:h, :w]
        _check_size(pair.hr, hr, scale)
        yield pair.name, lr, hr


SSIM_MIN = 11  # the SSIM window


def _check_size(path: Path, img: np.ndarray, border: int) -> None:
    """DatasetError naming ``path`` when ``img`` is too small to score (the SSIM window after the border crop)."""
    need = SSIM_MIN + 2 * border
    if img.shape[0] < need or img.shape[1] < need:
        raise DatasetError(f"{path}: {img.shape[1]}x{img.shape[0]} is too small to score (at least {need}x{need} "
                           f"pixels{f' after cropping to a multiple of {border}' if border else ''})")


def evaluate_sr(model: nn.Module, data: str | Path, *, scale: int, name: str = "", progress: bool = True,
                device: str = "cpu", precision: str = "fp32", calibration: object = None,
                tta: bool = False) -> EvalResult:
    meta = model.meta
    if meta.task != "sr":
        raise ValueError(f"{name or meta.family}: a {meta.task} model; use --sigma for denoisers")
    if meta.scale != scale:
        raise ValueError(f"{name or meta.family}: model is x{meta.scale}, asked to evaluate x{scale}")
    runner = Restorer(model, device=device, precision=precision, calibration=calibration,  # type: ignore[arg-type]
                      tta=tta)
    pairs = find_pairs(data, scale)
    res = EvalResult(model=name or meta.variant, task="sr", data=str(data), scale=scale, sigma=None)
    for img_name, lr, hr in tqdm(sr_pairs(pairs, scale), total=len(pairs), disable=not progress,
                                 desc=f"x{scale} {Path(data).name}", leave=False):
        sr = runner.run(lr)
        res.per_image.append({
            "image": img_name,
            "psnr": calculate_psnr(sr, hr, crop_border=scale, test_y_channel=True),
            "ssim": calculate_ssim(sr, hr, crop_border=scale, test_y_channel=True),
            "psnr_uint8_y": calculate_psnr(sr, hr, crop_border=scale, test_y_channel=True, round_y=True),
        })
    return res


def add_noise(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian noise (KAIR convention: seed reset per image, float64, no clipping)."""
    np.random.seed(seed)
    x = clean.astype(np.float64) / 255.0
    return (x + np.random.normal(0.0, sigma / 255.0, x.shape)).astype(np.float32)


def evaluate_denoise(model: nn.Module | Callable[[str, np.ndarray | None], nn.Module], data: str | Path, *,
                     sigma: float, seed: int = 0,
                     name: str = "", progress: bool = True, device: str = "cpu", precision: str = "fp32",
                     calibration: object = None, tta: bool = False) -> EvalResult:
    """``model``: one denoiser, or a function from an image's colour ("gray" / "rgb") and its noisy version (None
    when it is asked before the noise is added, for the model's input channels) to the model for it (what
    ``restore denoise`` does without --model: :func:`restore.weights.default_denoiser`); the result's name then
    lists the models used."""
    pick = model if not isinstance(model, nn.Module) else None
    runners: dict[int, tuple[Restorer, str]] = {}

    def runner_for(color: str, noisy: np.ndarray | None = None) -> tuple[Restorer, Any]:
        net = pick(color, noisy) if pick is not None else model
        meta = net.meta
        if meta.task != "denoise":
            raise ValueError(f"{name or meta.family}: an x{meta.scale} SR model; use --scale for SR models")
        if id(net) not in runners:
            runners[id(net)] = (Restorer(net, device=device, precision=precision,  # type: ignore[arg-type]
                                         calibration=calibration, tta=tta), meta.variant)
        return runners[id(net)][0], meta

    if pick is None:
        runner_for("rgb")  # a wrong task is an error before anything is read
    files = list_images(data)
    if not files:
        raise DatasetError(f"{data}: no images")
    res = EvalResult(model=name, task="denoise", data=str(data), scale=1, sigma=sigma)
    used: list[str] = []
    for f in tqdm(files, disable=not progress, desc=f"sigma {sigma:g} {Path(data).name}", leave=False):
        img = image.read_image(f)
        _check_size(f, img, 0)
        color = "rgb" if img.ndim == 3 and img.shape[2] >= 3 else "gray"
        runner, meta = runner_for(color)
        # a colour image under a gray model is denoised channel by channel (what `restore denoise` does)
        clean = pixels.to_rgb(img) if meta.in_channels == 3 or img.ndim == 3 else img
        noisy = add_noise(clean, sigma, seed)
        runner, meta = runner_for(color, noisy)  # a pick may look at the noisy image (--sigma auto)
        if meta.variant not in used:
            used.append(meta.variant)
        out = pixels.to_uint(runner.run(noisy), np.uint8)
        res.per_image.append({
            "image": f.stem,
            "psnr": calculate_psnr(out, clean, crop_border=0),
            "ssim": calculate_ssim(out, clean, crop_border=0),
        })
    res.model = name or " / ".join(used)
    return res
