"""Stateless whole-image runner: colour space, range, size-multiple padding and back.

``Restorer(model).run(img)`` takes HxW / HxWxC arrays (uint8, uint16 or float in [0,1]) and returns the
restored array with the same dtype and channel layout. All colour handling comes from ``model.meta``:
- ``rgb`` models: gray input is replicated to RGB and the output averaged back to gray; alpha is
  resized separately (bicubic) and re-attached.
- ``gray`` models: each channel of a colour input is processed as its own gray image.
- ``y_full`` models (ESPCN): OpenCV full-range YCrCb, the network on Y, bilinear Cr/Cb, merged back; for
  uint8 RGB this is OpenCV ``dnn_superres``'s exact pipeline (conversions in uint8).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restore import io
from restore.archs.base import ModelMeta


class Restorer:
    """Run ``model`` on whole images; holds only the model and device (no per-image state)."""

    def __init__(self, model: nn.Module, *, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.meta: ModelMeta = model.meta

    @torch.inference_mode()
    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW float in [0,1] (model's channels) -> NCHW float, padded to the size multiple and cropped."""
        m = self.meta
        h, w = x.shape[-2:]
        mult = max(1, m.size_multiple)
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.model(x.to(self.device) * m.input_range) / m.input_range
        return y[..., : h * m.scale, : w * m.scale]

    def _run_planes(self, planes: np.ndarray) -> np.ndarray:
        """float32 HxWxC with C == model in_channels -> float32 output HxWxC."""
        t = torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1)))[None]
        out = self.forward_tensor(t)[0].float().cpu().numpy()
        return out.transpose(1, 2, 0)

    def run(self, img: np.ndarray) -> np.ndarray:
        m = self.meta
        dtype = img.dtype
        alpha = None
        if img.ndim == 3 and img.shape[2] in (2, 4):
            img, alpha = img[..., :-1], io.to_float(img[..., -1])
            if img.shape[2] == 1:
                img = img[..., 0]
        x = io.to_float(img)
        gray_in = x.ndim == 2
        if m.color_space == "rgb":
            rgb = np.repeat(x[..., None], 3, axis=2) if gray_in else x
            out = self._run_planes(rgb)
            if gray_in:
                out = out.mean(axis=2)
        elif m.color_space == "gray":
            chans = [x] if gray_in else [x[..., c] for c in range(x.shape[2])]
            outs = [self._run_planes(c[..., None])[..., 0] for c in chans]
            out = outs[0] if gray_in else np.stack(outs, axis=2)
        elif m.color_space == "y_full":
            if gray_in:
                out = self._run_planes(x[..., None])[..., 0]
            else:
                ycc = io.rgb_to_ycrcb_full(img)
                y = self._run_planes(ycc[..., :1])[..., 0]
                ycc_up = io.resize_bilinear(ycc, m.scale)
                ycc_up[..., 0] = y
                if dtype == np.uint8 and alpha is None:
                    return io.ycrcb_full_to_rgb(ycc_up, np.uint8)
                out = io.ycrcb_full_to_rgb(ycc_up)
        else:
            raise ValueError(f"unsupported colour space {m.color_space!r} for whole-image runs")
        if alpha is not None:
            a = io.resize_bicubic(alpha, m.scale) if m.scale > 1 else alpha
            out = np.concatenate([out if out.ndim == 3 else out[..., None], a[..., None]], axis=2)
        if dtype in (np.uint8, np.uint16):
            return io.to_uint(out, dtype)
        return out.astype(np.float32)
