"""Re-parameterisable convolution blocks shared by several families.

``Conv3XC`` is the training-time block of SPAN (Wan et al., "Swift Parameter-free Attention
Network for Efficient Super-Resolution", CVPR Workshops 2024; official code
https://github.com/hongyuanyu/SPAN, Apache-2.0, ``basicsr/archs/span_arch.py``). It is re-written
here from the paper and the official code's description; no code was copied.

Train form (state-dict keys as in the official checkpoints)::

    y = conv.2(conv.1(conv.0(pad1(x)))) + sk(x)

with ``conv.0`` a 1x1 conv ``C_in -> gain*C_in``, ``conv.1`` an unpadded 3x3 conv
``gain*C_in -> gain*C_out`` (the zero padding is applied to the *input* of the 1x1, so border
pixels see the 1x1's bias, exactly like a single padded 3x3 conv on ``x``), ``conv.2`` a 1x1 conv
``gain*C_out -> C_out`` and ``sk`` a 1x1 skip ``C_in -> C_out``. Every branch is linear, so the sum
collapses into one padded 3x3 conv, ``eval_conv`` (deploy form, keys ``<name>.eval_conv.weight`` /
``<name>.eval_conv.bias``). Like the official module, a train-form block in ``eval()`` mode runs the
collapsed kernel (computed on the fly, gradients flow), in ``train()`` mode the three-branch path.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def collapse_1x1_kxk_1x1(
    w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None, w3: Tensor, b3: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Single kxk kernel/bias equal to 1x1 (w1,b1) -> kxk (w2,b2) -> 1x1 (w3,b3), all groups=1.

    Exact when the kxk conv's zero padding is applied *before* the first 1x1 (so the padded
    positions carry ``b1``), which is how ``Conv3XC`` runs its train form.
    """
    m1 = w1[:, :, 0, 0]  # (g*Cin, Cin)
    m3 = w3[:, :, 0, 0]  # (Cout, g*Cout)
    weight = torch.einsum("om,mnhw,ni->oihw", m3, w2, m1)
    bias = torch.zeros(w2.shape[0], dtype=w2.dtype, device=w2.device)
    if b1 is not None:
        bias = bias + torch.einsum("mnhw,n->m", w2, b1)
    if b2 is not None:
        bias = bias + b2
    bias = m3 @ bias
    if b3 is not None:
        bias = bias + b3
    return weight, bias


def pad_1x1_to(w: Tensor, kernel_size: int) -> Tensor:
    """Centre a 1x1 kernel inside a zero ``kernel_size`` x ``kernel_size`` kernel."""
    p = (kernel_size - 1) // 2
    return F.pad(w, [p, p, p, p])


class Conv3XC(nn.Module):
    """SPAN's expand-and-collapse 3x3 conv: train form (``sk`` + ``conv``) or deploy form (``eval_conv``)."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        gain: int = 2,
        stride: int = 1,
        bias: bool = True,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.gain = gain
        self.stride = stride
        self.has_bias = bias
        self.deploy = deploy
        if deploy:
            self.eval_conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        else:
            self.sk = nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=bias)
            self.conv = nn.Sequential(
                nn.Conv2d(in_channels, in_channels * gain, 1, padding=0, bias=bias),
                nn.Conv2d(in_channels * gain, out_channels * gain, 3, stride=stride, padding=0, bias=bias),
                nn.Conv2d(out_channels * gain, out_channels, 1, padding=0, bias=bias),
            )

    def fused_kernel(self) -> tuple[Tensor, Tensor | None]:
        """The deploy-form 3x3 weight and bias (not detached)."""
        if self.deploy:
            return self.eval_conv.weight, self.eval_conv.bias
        c0, c1, c2 = self.conv
        weight, bias = collapse_1x1_kxk_1x1(c0.weight, c0.bias, c1.weight, c1.bias, c2.weight, c2.bias)
        weight = weight + pad_1x1_to(self.sk.weight, 3)
        if not self.has_bias:
            return weight, None
        return weight, bias + self.sk.bias

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.eval_conv(x)
        if self.training:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        weight, bias = self.fused_kernel()
        return F.conv2d(x, weight, bias, stride=self.stride, padding=1)

    @torch.no_grad()
    def fuse(self) -> Conv3XC:
        """Return the deploy-form block (a copy; ``self`` is unchanged)."""
        if self.deploy:
            return copy.deepcopy(self)
        weight, bias = self.fused_kernel()
        out = Conv3XC(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            gain=self.gain,
            stride=self.stride,
            bias=self.has_bias,
            deploy=True,
        ).to(device=weight.device, dtype=weight.dtype)
        out.eval_conv.weight.copy_(weight)
        if bias is not None:
            out.eval_conv.bias.copy_(bias)
        out.train(self.training)
        return out

    def extra_repr(self) -> str:
        form = "deploy" if self.deploy else f"train, gain={self.gain}"
        return f"{self.in_channels}->{self.out_channels}, stride={self.stride}, {form}"
