"""Stateless runner: colour space, range, size-multiple padding and back, whole-image or tiled.

``Restorer(model).run(img)`` takes HxW / HxWxC arrays (uint8, uint16 or float in [0,1]) and returns the
restored array with the same dtype and channel layout. All colour handling comes from ``model.meta``:
- ``rgb`` models: gray input is replicated to RGB and the output averaged back to gray; alpha is
  resized separately (bicubic) and re-attached.
- ``gray`` models: each channel of a colour input is processed as its own gray image.
- ``y_full`` models (ESPCN): OpenCV full-range YCrCb, the network on Y, bilinear Cr/Cb, merged back; for
  uint8 RGB this is OpenCV ``dnn_superres``'s exact pipeline (conversions in uint8).

Tiling (``tile=``) happens below the colour handling, on the planes the network sees (see
:mod:`restore.engine.tiling`): ``None`` runs the whole image in one pass; an int runs tiles of at most that
many LR px a side; ``"auto"`` picks the largest tile that a conservative memory estimate allows. Networks
with a finite ``meta.receptive_field`` get exact tiles (context = receptive field rounded up to the size
multiple, or ``overlap`` if larger); networks with global statistics (``receptive_field is None``, e.g.
IMDN) get feathered tiles overlapping by ``overlap`` px (default 32), which only approximates the
whole-image output. With an int or ``"auto"`` tile, an out-of-memory error halves the tile and retries.
Integer outputs are assembled tile by tile directly in the output dtype where the colour path allows it
(RGB models on colour input, gray models, alpha), so no full-size float image is built.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restore import io
from restore.archs.base import ModelMeta
from restore.engine import tiling

log = logging.getLogger(__name__)

TileSpec = int | Literal["auto"] | None
DEFAULT_FEATHER_OVERLAP = 32
MIN_TILE = 16
LIVE_TENSORS = 10  # conservative number of simultaneously live activations of the widest layer
CPU_MEMORY_FRACTION = 0.25
CUDA_MEMORY_FRACTION = 0.5


def is_oom(err: BaseException) -> bool:
    """True for allocator failures (CUDA / MPS 'out of memory', CPU "can't allocate memory")."""
    msg = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def available_memory(device: torch.device) -> int:
    """Free bytes for activations: CUDA ``mem_get_info`` (plus the caching allocator's unused reserve) on
    CUDA devices, ``MemAvailable`` from ``/proc/meminfo`` (else ``sysconf``) for everything else."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        reserve = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, reserve))
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def bytes_per_pixel(model: nn.Module, meta: ModelMeta) -> float:
    """Conservative device bytes per LR input pixel: ``LIVE_TENSORS`` activations as wide as the widest
    layer (max in/out channels over the weights), the network's output (``out_channels * scale**2``, plus
    its float32 copy) and the input, all at the parameters' element size."""
    widest = meta.in_channels
    elem = 4
    for p in model.parameters():
        if p.ndim >= 2:
            widest = max(widest, int(p.shape[0]), int(p.shape[1]))
        elem = max(elem, p.element_size())
    out = meta.out_channels * meta.scale**2
    return float(elem * (LIVE_TENSORS * widest + 2 * out + 2 * meta.in_channels))


class Restorer:
    """Run ``model`` on images; holds only the model, device and tiling settings (no per-image state)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        tile: TileSpec = None,
        overlap: int | None = None,
    ) -> None:
        integral = isinstance(tile, int | np.integer) and not isinstance(tile, bool)
        if not (tile is None or (isinstance(tile, str) and tile == "auto") or (integral and tile >= 1)):
            raise ValueError(f"tile must be None, 'auto' or a positive int, got {tile!r}")
        tile = int(tile) if integral else tile
        if overlap is not None and (not isinstance(overlap, int) or overlap < 0):
            raise ValueError(f"overlap must be None or a non-negative int, got {overlap!r}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.meta: ModelMeta = model.meta
        self.tile: TileSpec = tile
        self.multiple = max(1, self.meta.size_multiple)
        self.feather = self.meta.receptive_field is None
        # exact mode: context >= receptive field; feathered: the blending overlap
        self.context = tiling.context_for(self.meta.receptive_field, self.multiple, overlap,
                                          default_overlap=DEFAULT_FEATHER_OVERLAP)

    @torch.inference_mode()
    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW float in [0,1] (model's channels) -> NCHW float, padded to the size multiple and cropped.

        One pass over the whole tensor (no tiling); the result stays on the device.
        """
        m = self.meta
        h, w = x.shape[-2:]
        mult = max(1, m.size_multiple)
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.model(x.to(self.device) * m.input_range) / m.input_range
        return y[..., : h * m.scale, : w * m.scale]

    # ------------------------------------------------------------------------------------------ tiling

    def auto_tile(self) -> int:
        """Tile side (LR px) for ``tile="auto"`` from the memory available now."""
        frac = CUDA_MEMORY_FRACTION if self.device.type == "cuda" else CPU_MEMORY_FRACTION
        budget = available_memory(self.device) * frac
        return tiling.tile_for_budget(budget, bytes_per_pixel(self.model, self.meta), self.context,
                                      self.multiple, min_tile=MIN_TILE)

    def _forward_gray_mean(self, x: torch.Tensor) -> torch.Tensor:
        """RGB model on replicated gray: the output's channel mean, taken on the CPU in float32 (the same
        values as numpy's ``mean(axis=2)`` of the whole-image output)."""
        return self.forward_tensor(x).float().cpu().mean(1, keepdim=True)

    def _run_planes(self, planes: np.ndarray, out_dtype: type[np.generic] = np.float32,
                    out: np.ndarray | None = None, *, gray_mean: bool = False) -> np.ndarray:
        """float32 HxWxC with C == model in_channels -> output HxWxC' (``out_dtype`` or into ``out``);
        ``gray_mean``: C' = 1, the mean of the model's output channels."""
        h, w = planes.shape[:2]
        forward = self._forward_gray_mean if gray_mean else self.forward_tensor
        if self.tile is None:  # whole image: one tile, no retry (errors propagate as before)
            return tiling.run_tiled(forward, planes, scale=self.meta.scale, tile=max(h, w),
                                    context=0, multiple=1, out_dtype=out_dtype, out=out)
        tile = self.auto_tile() if self.tile == "auto" else int(self.tile)
        tile = max(self.multiple, tiling.round_down(tile, self.multiple))
        while True:
            try:
                return tiling.run_tiled(forward, planes, scale=self.meta.scale, tile=tile,
                                        context=self.context, multiple=self.multiple, out_dtype=out_dtype,
                                        feather=self.feather, out=out)
            except RuntimeError as e:
                smallest = tile <= self.multiple
                if not is_oom(e) or smallest:
                    raise
            # retry outside the except block, so the failed attempt's tensors can be freed
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            new = max(self.multiple, tiling.round_down(min(tile, max(h, w)) // 2, self.multiple))
            log.warning("out of memory with %d px tiles; retrying with %d px", tile, new)
            tile = new

    # --------------------------------------------------------------------------------------- images

    def run(self, img: np.ndarray) -> np.ndarray:
        m = self.meta
        dtype = img.dtype
        out_dtype = dtype.type if dtype in (np.uint8, np.uint16) else np.float32
        alpha = None
        if img.ndim == 3 and img.shape[2] in (2, 4):
            img, alpha = img[..., :-1], io.to_float(img[..., -1])
            if img.shape[2] == 1:
                img = img[..., 0]
        x = io.to_float(img)
        gray_in = x.ndim == 2
        h, w = x.shape[:2]
        n_out = 1 if gray_in else x.shape[2]
        shape = (h * m.scale, w * m.scale, n_out + (alpha is not None))
        if m.color_space == "rgb" and not gray_in:
            out = np.empty(shape, dtype=out_dtype)
            self._run_planes(x, out=out[..., :n_out])
        elif m.color_space == "rgb":
            rgb = np.repeat(x[..., None], 3, axis=2)
            out = np.empty(shape, dtype=out_dtype)
            self._run_planes(rgb, out=out[..., :1], gray_mean=True)
        elif m.color_space == "gray":
            out = np.empty(shape, dtype=out_dtype)
            for c in range(n_out):
                plane = x[..., None] if gray_in else x[..., c:c + 1]
                self._run_planes(plane, out=out[..., c:c + 1])
        elif m.color_space == "y_full":
            out = np.empty(shape, dtype=out_dtype)
            if gray_in:
                self._run_planes(x[..., None], out=out[..., :1])
            else:
                ycc = io.rgb_to_ycrcb_full(img)
                y = self._run_planes(ycc[..., :1])[..., 0]
                ycc_up = io.resize_bilinear(ycc, m.scale)
                ycc_up[..., 0] = y
                del y
                if dtype == np.uint8 and alpha is None:
                    out[..., :n_out] = io.ycrcb_full_to_rgb(ycc_up, np.uint8)
                else:
                    tiling.store(out[..., :n_out], io.ycrcb_full_to_rgb(ycc_up))
        else:
            raise ValueError(f"unsupported colour space {m.color_space!r} for whole-image runs")
        if alpha is not None:
            a = io.resize_bicubic(alpha, m.scale) if m.scale > 1 else alpha
            tiling.store(out[..., -1], a)
        return out[..., 0] if out.shape[2] == 1 else out
