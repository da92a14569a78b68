"""Training / validation datasets and the resumable sampler (numpy + torch; no basicsr import here).

Datasets (registered into BasicSR's ``DATASET_REGISTRY`` by :mod:`restore.train.registry`):

* ``SRImageDataset`` -- ``dataroot_gt`` (HR; a folder or a list of folders) with either ``dataroot_lq``
  (paired LR files, named ``filename_tmpl.format(hr_stem)`` + any image suffix) or no LR folder, in which
  case the LR is made by our MATLAB-exact bicubic (:func:`restore.metrics.imresize.imresize`) of the HR
  mod-cropped to the scale. Training crops are exactly what downscaling the *whole* image and cropping
  would give: the HR region around the patch is resized with a margin wider than the kernel (see
  :func:`lr_patch`), which costs a patch-sized resize instead of a whole-image one. Training images
  smaller than the patch are left out (with a warning).
* ``DenoiseDataset`` -- clean images; training adds Gaussian noise of a fixed ``sigma`` or, blind, a
  ``sigma`` drawn uniformly from ``sigma_range`` per patch (0-255 scale, float, no clipping); validation
  uses ``restore.evaluate.add_noise`` (seed ``noise_seed`` reset per image, as ``restore eval``).

``color``: ``rgb`` (3 channels, gray files replicated), ``gray`` (1 channel; colour files converted with
OpenCV's BT.601 luma) or ``y`` (OpenCV full-range Y, what ESPCN sees; validation then reads RGB and the
restorer handles colour as in ``restore upscale``). ``io_backend: {type: memory}`` decodes every image
once, at construction (before loader workers fork, so they share it).

Randomness: every training sample draws its crop, flips/rotation and noise from its own
``numpy.random.Generator`` seeded by ``(manual_seed, epoch, position in epoch)``, which
:class:`ResumableSampler` hands to the dataset with the index. Samples therefore do not depend on the
number of loader workers or on the process's global RNGs, and a resumed run sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from restore import pixels
from restore.io import image
from restore.io.files import list_images
from restore.metrics.imresize import imresize

# LR pixels of context around a patch; MATLAB's antialiased bicubic at 1/s reaches 2 LR px (+ rounding).
LR_MARGIN = 4
SampleKey = int | tuple[int, tuple[int, int, int]]
log = logging.getLogger("basicsr")


class DataError(ValueError):
    """A data folder that cannot be used as configured."""


# ----------------------------------------------------------------------------------------------- reading


def read_as(path: str | Path, color: str) -> np.ndarray:
    """HxWxC uint8: C = 3 (``rgb``) or 1 (``gray`` / ``y``)."""
    img = image.read_image(path)
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = pixels.to_uint(img, np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if color == "rgb":
        return np.ascontiguousarray(pixels.to_rgb(img))
    if img.ndim == 2:
        return img[..., None]
    if color == "gray":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)[..., None]
    if color == "y":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YCrCb)[..., :1].copy()
    raise ValueError(f"unknown color {color!r}")


class ImageStore:
    """Image files with an optional decode-once in-memory cache."""

    def __init__(self, paths: Sequence[Path], color: str, *, cache: bool) -> None:
        self.paths = list(paths)
        self.color = color
        self.cache: list[np.ndarray] | None = [read_as(p, color) for p in self.paths] if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> np.ndarray:
        return self.cache[i] if self.cache is not None else read_as(self.paths[i], self.color)

    def subset(self, keep: Sequence[int]) -> ImageStore:
        out = ImageStore([], self.color, cache=False)
        out.paths = [self.paths[i] for i in keep]
        out.cache = [self.cache[i] for i in keep] if self.cache is not None else None
        return out


def _size(store: ImageStore, i: int) -> tuple[int, int]:
    """(height, width) without decoding when the image is not cached."""
    if store.cache is not None:
        return store.cache[i].shape[:2]
    from PIL import Image

    with Image.open(store.paths[i]) as im:
        return im.size[1], im.size[0]


def list_folder(folder: str | Path, what: str) -> list[Path]:
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{what}: {d} is not a directory")
    files = list_images(d)
    if not files:
        raise DataError(f"{what}: no images in {d}")
    return files


def pair_lq_paths(gt_paths: Sequence[Path], lq_dir: str | Path, tmpl: str, what: str) -> list[Path]:
    lq = {p.stem: p for p in list_folder(lq_dir, what)}
    out = []
    for g in gt_paths:
        name = tmpl.format(g.stem)
        if name not in lq:
            raise DataError(f"{what}: no LR file {name}.* in {lq_dir} for {g.name}")
        out.append(lq[name])
    return out


# ------------------------------------------------------------------------------------------- transforms


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def lr_patch(hr: np.ndarray, top: int, left: int, size: int, scale: int) -> np.ndarray:
    """LR ``size`` x ``size`` patch at (top, left) of ``imresize(hr, 1/scale)`` (``hr`` mod-cropped).

    Resizes only the HR region around the patch plus :data:`LR_MARGIN` LR px (clamped at the image
    border, where MATLAB's mirroring then happens exactly as for the whole image), so the patch equals the
    whole-image result bit for bit.
    """
    h_lr, w_lr = hr.shape[0] // scale, hr.shape[1] // scale
    t0, l0 = max(0, top - LR_MARGIN), max(0, left - LR_MARGIN)
    t1, l1 = min(h_lr, top + size + LR_MARGIN), min(w_lr, left + size + LR_MARGIN)
    region = hr[t0 * scale: t1 * scale, l0 * scale: l1 * scale]
    small = imresize(region, scale=1.0 / scale)
    if small.ndim == 2:
        small = small[..., None]
    return small[top - t0: top - t0 + size, left - l0: left - l0 + size]


def augment(imgs: Sequence[np.ndarray], hflip: bool, rot: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """BasicSR's ``augment``: horizontal flip, and for ``rot`` vertical flip and transpose (the 8 dihedral
    transforms). Three draws are always taken so the stream does not depend on the options."""
    f_h, f_v, f_t = rng.random(3) < 0.5
    out = []
    for x in imgs:
        if hflip and f_h:
            x = x[:, ::-1]
        if rot and f_v:
            x = x[::-1]
        if rot and f_t:
            x = x.transpose(1, 0, 2)
        out.append(x)
    return out


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWxC uint8 (or float in [0, 1]) -> CxHxW float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return t.float().div_(255.0) if img.dtype == np.uint8 else t.float()


def _split_key(key: SampleKey) -> tuple[int, np.random.Generator]:
    if isinstance(key, tuple):
        idx, seed = key
        return int(idx), np.random.default_rng(list(seed))
    return int(key), np.random.default_rng(int(key))


# ---------------------------------------------------------------------------------------------- datasets


class _Base(Dataset):
    def __init__(self, opt: dict[str, Any]) -> None:
        self.opt = opt
        self.phase = opt["phase"]
        self.scale = int(opt.get("scale", 1))
        self.color = opt.get("color", "rgb")
        self.name = opt["name"]
        cache = (opt.get("io_backend") or {}).get("type", "disk") == "memory"
        what = f"dataset {self.name}"
        # validation reads RGB for 'y' (the restorer converts, as at inference) and for 'rgb'
        self.read_color = self.color if self.phase == "train" else ("gray" if self.color == "gray" else "rgb")
        gt_dirs = _as_list(opt["dataroot_gt"])
        lq_dirs = _as_list(opt.get("dataroot_lq"))
        self.gt_paths = [p for d in gt_dirs for p in list_folder(d, what)]
        self.gt = ImageStore(self.gt_paths, self.read_color, cache=cache)
        self.lq: ImageStore | None = None
        if lq_dirs:
            tmpl = opt.get("filename_tmpl", "{}")
            lq_paths = [p for g, q in zip(gt_dirs, lq_dirs, strict=True)
                        for p in pair_lq_paths(list_folder(g, what), q, tmpl, what)]
            self.lq = ImageStore(lq_paths, self.read_color, cache=cache)
        self.gt_size = opt.get("gt_size")
        if self.phase == "train" and self.gt_size:
            self._drop_small(what)
        self._cum_area = self._area_weights(what) if opt.get("sampling", "image") == "area" else None
        self.hflip = bool(opt.get("use_hflip", False))
        self.rot = bool(opt.get("use_rot", False))

    def __len__(self) -> int:
        return len(self.gt)

    def _area_weights(self, what: str) -> np.ndarray:
        """Cumulative probabilities of drawing each image in proportion to its patch positions (``sampling:
        area``)."""
        if self.phase != "train" or not self.gt_size:
            raise DataError(f"{what}: sampling 'area' is for training with a patch size (gt_size)")
        store, need = (self.lq, self.gt_size // self.scale) if self.lq is not None else (self.gt, self.gt_size)
        counts = np.array([(h - need + 1) * (w - need + 1) for h, w in (_size(store, i) for i in range(len(store)))],
                          dtype=np.float64)
        return np.cumsum(counts) / counts.sum()

    def _pick(self, idx: int, rng: np.random.Generator) -> int:
        """The image a training sample crops: ``idx`` itself, or with ``sampling: area`` an area-weighted draw from
        the key's random stream (the sampler's index is then unused; epochs, their length and resumption stay as
        they are)."""
        if self._cum_area is None:
            return idx
        return min(int(np.searchsorted(self._cum_area, rng.random(), side="right")), len(self._cum_area) - 1)

    def _drop_small(self, what: str) -> None:
        """Leave out training images smaller than the patch (e.g. most of T91 for 256 px x4 patches)."""
        store = self.lq if self.lq is not None else self.gt
        need = self.gt_size // self.scale if self.lq is not None else self.gt_size
        keep = [i for i in range(len(store)) if min(_size(store, i)) >= need]
        if len(keep) == len(store):
            return
        if not keep:
            raise DataError(f"{what}: every image is smaller than the patch (gt_size {self.gt_size})")
        log.warning(f"{what}: {len(store) - len(keep)} of {len(store)} images are smaller than the patch "
                    f"(gt_size {self.gt_size}) and are left out")
        self.gt_paths = [self.gt_paths[i] for i in keep]
        self.gt = self.gt.subset(keep)
        if self.lq is not None:
            self.lq = self.lq.subset(keep)


class SRImageDataset(_Base):
    """Paired (HR + LR files) or HR-only (LR by MATLAB bicubic) super-resolution data."""

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        idx, rng = _split_key(key)
        s = self.scale
        if self.phase != "train":
            return self._val_item(idx, self.gt.get(idx))
        idx = self._pick(idx, rng)
        hr = self.gt.get(idx)
        size = self.gt_size // s
        if self.lq is not None:
            lr = self.lq.get(idx)
            h, w = lr.shape[:2]
            if hr.shape[0] < h * s or hr.shape[1] < w * s:
                raise DataError(f"{self.gt_paths[idx]}: HR {hr.shape[:2]} smaller than LR x{s}")
        else:
            hr = mod_crop(hr, s)
            h, w = hr.shape[0] // s, hr.shape[1] // s
        if h < size or w < size:
            raise DataError(f"{self.gt_paths[idx]}: LR {h}x{w} is smaller than the patch ({size}); "
                            f"lower gt_size or remove the image")
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        gt = hr[top * s: (top + size) * s, left * s: (left + size) * s]
        lq = lr[top: top + size, left: left + size] if self.lq is not None else lr_patch(hr, top, left, size, s)
        gt, lq = augment([gt, lq], self.hflip, self.rot, rng)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "lq_path": str(self.gt_paths[idx]),
                "gt_path": str(self.gt_paths[idx])}

    def _val_item(self, idx: int, hr: np.ndarray) -> dict[str, Any]:
        s = self.scale
        if self.lq is not None:
            lr = self.lq.get(idx)
            hr = hr[: lr.shape[0] * s, : lr.shape[1] * s]
        else:
            hr = mod_crop(hr, s)
            lr = imresize(hr, scale=1.0 / s)
            if lr.ndim == 2:
                lr = lr[..., None]
        return {"lq": _squeeze(lr), "gt": _squeeze(hr), "name": self.gt_paths[idx].stem}


OPPONENT = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]], dtype=np.float64)
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)
"""Rows: luminance and the two chrominance directions of :class:`restore.archs.dncnn.OpponentDnCNN`."""


def opponent_plane(rgb: np.ndarray, plane: str, which: int = 1) -> np.ndarray:
    """The gray plane an :class:`~restore.archs.dncnn.OpponentDnCNN` part sees, HxWx1 float32: ``luma`` = the
    mean of R, G, B (in [0, 1]); ``chroma`` = chrominance row ``which`` (1 or 2) + 0.5 (about [-0.2, 1.2])."""
    x = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 1.0)
    if plane == "luma":
        return x.mean(axis=2, keepdims=True, dtype=np.float32)
    return (x @ OPPONENT[which].astype(np.float32))[..., None] + np.float32(0.5)


class DenoiseDataset(_Base):
    """Clean images + Gaussian noise (fixed ``sigma`` or blind ``sigma_range``), 0-255 scale.

    ``opponent: luma | chroma`` (with ``color: rgb``) trains a part of an opponent-colour DnCNN on gray planes
    of colour images (:func:`opponent_plane`; chroma: each sample takes one of the two chrominance planes at
    random); the noise is added to the plane, so ``sigma`` is the plane's own noise level (sigma / sqrt3 for
    the luminance of colour noise of sigma). Validation uses the luminance / first chrominance plane clipped to
    [0, 1] and quantised to 8 bits (monitoring only)."""

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__(opt)
        self.sigma = opt.get("sigma")
        self.sigma_range = opt.get("sigma_range")
        self.noise_seed = int(opt.get("noise_seed", 0))
        self.opponent = opt.get("opponent")
        if self.opponent not in (None, "luma", "chroma"):
            raise DataError(f"dataset {self.name}: opponent must be 'luma' or 'chroma', not {self.opponent!r}")
        if self.opponent is not None and self.color != "rgb":
            raise DataError(f"dataset {self.name}: opponent planes are made from colour images (color: rgb)")

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        idx, rng = _split_key(key)
        if self.phase == "train":
            idx = self._pick(idx, rng)
        clean = self.gt.get(idx)
        if self.phase != "train":
            from restore.evaluate import add_noise

            if self.opponent is not None:
                clean = np.round(np.clip(opponent_plane(clean, self.opponent)[..., 0], 0, 1) * 255).astype(np.uint8)
            clean = _squeeze(clean)
            noisy = add_noise(clean, float(self.sigma), self.noise_seed)
            return {"lq": noisy, "gt": clean, "name": self.gt_paths[idx].stem}
        size = self.gt_size
        h, w = clean.shape[:2]
        if h < size or w < size:
            raise DataError(f"{self.gt_paths[idx]}: {h}x{w} is smaller than the patch ({size})")
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        (gt,) = augment([clean[top: top + size, left: left + size]], self.hflip, self.rot, rng)
        if self.sigma_range is not None:
            sigma = float(rng.uniform(self.sigma_range[0], self.sigma_range[1]))
        else:
            sigma = float(self.sigma)
        if self.opponent is not None:  # the draw is taken either way, so luma / chroma runs share the crops
            which = 1 + int(rng.integers(0, 2))
            gt = opponent_plane(gt, self.opponent, which)
        gt_t = to_tensor(gt)
        noise = torch.from_numpy(rng.standard_normal(gt_t.shape, dtype=np.float32)) * (sigma / 255.0)
        return {"lq": gt_t + noise, "gt": gt_t, "sigma": torch.tensor(sigma), "lq_path": str(self.gt_paths[idx]),
                "gt_path": str(self.gt_paths[idx])}


def _as_list(v: str | Sequence[str] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def _squeeze(img: np.ndarray) -> np.ndarray:
    return img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img


# ----------------------------------------------------------------------------------------------- sampler


class ResumableSampler(Sampler):
    """BasicSR's ``EnlargedSampler`` (shuffled, ``ratio`` x the dataset per epoch, seeded per epoch) that can
    start mid-epoch and hands each index its own sample seed ``(seed, epoch, position)``.

    With ``batch_size`` (per process) the epoch is one *global* batch sequence split by rank: global batch ``k``
    holds the positions ``k*G .. k*G + G-1`` of the epoch's order (``G = batch_size * world_size``), and rank ``r``
    takes the slice ``k*G + r*batch_size .. k*G + (r+1)*batch_size - 1``; only whole global batches are handed out
    (the tail of fewer than ``G`` positions is dropped, as ``drop_last`` does). So ``N`` ranks x batch ``B`` see the
    batches one process with batch ``N*B`` sees, and ``start`` (a multiple of ``G``) is counted in positions of that
    global sequence. Without ``batch_size`` every position from ``start`` is handed out (one process)."""

    def __init__(self, dataset_len: int, *, ratio: int = 1, seed: int = 0, shuffle: bool = True,
                 batch_size: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if batch_size is None and world_size != 1:
            raise ValueError("several processes split global batches: give batch_size")
        self.n = dataset_len
        self.total = int(math.ceil(dataset_len * ratio))
        self.seed = int(seed)
        self.shuffle = shuffle
        self.batch_size = batch_size
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.start = 0

    @property
    def global_batch(self) -> int | None:
        """Samples per iteration over all ranks (``None`` without ``batch_size``)."""
        return None if self.batch_size is None else self.batch_size * self.world_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        g = self.global_batch
        if g is not None and start % g:
            raise ValueError(f"start {start} is not a multiple of the global batch {g}")
        self.epoch, self.start = int(epoch), int(start)

    def positions(self) -> list[int]:
        """This rank's positions in the epoch's order, from ``start``, in the order they are handed out."""
        if self.batch_size is None:
            return list(range(self.start, self.total))
        g, b = self.world_size * self.batch_size, self.batch_size
        return [k * g + self.rank * b + j for k in range(self.start // g, self.total // g) for j in range(b)]

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.total, generator=g).tolist()
        else:
            order = list(range(self.total))
        for pos in self.positions():
            yield order[pos] % self.n, (self.seed, self.epoch, pos)

    def __len__(self) -> int:
        if self.batch_size is None:
            return self.total - self.start
        g = self.world_size * self.batch_size
        return max(0, self.total // g - self.start // g) * self.batch_size
