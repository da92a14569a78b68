"""Spatial-affinity distillation loss, chunked so memory stays bounded (torch only).

DSCLoRA (Chai et al., CVPR Workshops 2025, arXiv:2504.11271) distils the teacher's *spatial affinity*:
for a feature map ``F`` (C x H x W) each pixel's C-vector is L2-normalised, and the affinity matrix is
``A = F^T F`` (HW x HW, cosine similarity of every pixel pair). The loss is the mean absolute difference
between the student's and the teacher's matrices, averaged over the chosen layer pairs (student and
teacher channel counts may differ; the spatial sizes must agree).

On a 64 x 64 LR patch ``A`` has 4096^2 = 16.8M entries per image (64 MiB in fp32), times the batch and
twice (student, teacher) plus autograd's copies. :func:`affinity_l1` never builds ``A``: the forward sums
``|A_s - A_t|`` over row blocks of ``chunk`` pixels, and a custom backward recomputes each block's sign
``S = sign(A_s - A_t)`` and accumulates the exact gradient ``dL/dF_s = F_s (S + S^T) / count`` block by
block, so peak extra memory is ``batch x chunk x HW`` floats. It runs in fp32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def normalise_pixels(feat: Tensor, eps: float = 1e-12) -> Tensor:
    """(B, C, H, W) -> (B, HW, C) with every pixel's channel vector of unit L2 norm (half -> fp32)."""
    b, c, h, w = feat.shape
    if feat.dtype in (torch.float16, torch.bfloat16):
        feat = feat.float()
    f = F.normalize(feat, p=2.0, dim=1, eps=eps)
    return f.reshape(b, c, h * w).transpose(1, 2)


class _AffinityL1(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, fs: Tensor, ft: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        b, n, _ = fs.shape
        total = torch.zeros((), dtype=torch.float64, device=fs.device)
        with torch.autocast(fs.device.type, enabled=False):
            for i in range(0, n, chunk):
                a_s = fs[:, i:i + chunk] @ fs.transpose(1, 2)
                a_t = ft[:, i:i + chunk] @ ft.transpose(1, 2)
                total += (a_s - a_t).abs().sum(dtype=torch.float64)
        ctx.save_for_backward(fs, ft)
        ctx.chunk = chunk
        return (total / (b * n * n)).to(fs.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        fs, ft = ctx.saved_tensors
        b, n, _ = fs.shape
        grad = torch.zeros_like(fs)
        with torch.autocast(fs.device.type, enabled=False):
            for i in range(0, n, ctx.chunk):
                sl = slice(i, i + ctx.chunk)
                s = torch.sign(fs[:, sl] @ fs.transpose(1, 2) - ft[:, sl] @ ft.transpose(1, 2))  # (B, c, N)
                grad[:, sl] += s @ fs  # d/d f_i of sum_j s_ij <f_i, f_j>
                grad += s.transpose(1, 2) @ fs[:, sl]  # d/d f_j
        return grad * (grad_out / (b * n * n)), None, None


def affinity_l1(feat_s: Tensor, feat_t: Tensor, chunk: int = 1024) -> Tensor:
    """Mean |A_s - A_t| of the pixel-normalised spatial affinities of two (B, C, H, W) feature maps."""
    if feat_s.shape[0] != feat_t.shape[0] or feat_s.shape[2:] != feat_t.shape[2:]:
        raise ValueError(f"affinity needs equal batch and spatial size: student {tuple(feat_s.shape)}, "
                         f"teacher {tuple(feat_t.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    fs = normalise_pixels(feat_s)
    ft = normalise_pixels(feat_t.detach()).to(fs.dtype)
    return _AffinityL1.apply(fs, ft, int(chunk))


def affinity_l1_reference(feat_s: Tensor, feat_t: Tensor) -> Tensor:
    """Unchunked definition (builds the HW x HW matrices); for tests."""
    fs, ft = normalise_pixels(feat_s), normalise_pixels(feat_t)
    return (fs @ fs.transpose(1, 2) - ft @ ft.transpose(1, 2)).abs().mean()


class SpatialAffinityLoss(nn.Module):
    """``loss_weight`` x mean over layer pairs of :func:`affinity_l1`.

    ``student_layers`` / ``teacher_layers`` name the modules (``net.get_submodule`` paths) whose outputs
    are compared, pairwise; a module returning a tuple contributes its first element. The model registers
    the hooks; this module only computes the loss from the captured features.
    """

    def __init__(self, *, student_layers: Sequence[str], teacher_layers: Sequence[str], loss_weight: float = 1.0,
                 chunk_size: int = 1024) -> None:
        super().__init__()
        if len(student_layers) != len(teacher_layers) or not student_layers:
            raise ValueError("student_layers and teacher_layers must be non-empty and of equal length")
        self.student_layers = list(student_layers)
        self.teacher_layers = list(teacher_layers)
        self.loss_weight = float(loss_weight)
        self.chunk_size = int(chunk_size)

    def forward(self, feats_s: Sequence[Tensor], feats_t: Sequence[Tensor]) -> Tensor:
        losses = [affinity_l1(s, t, self.chunk_size) for s, t in zip(feats_s, feats_t, strict=True)]
        return self.loss_weight * torch.stack(losses).mean()
