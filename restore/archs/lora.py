"""ConvLoRA: low-rank adaptation of convolutions, as used by DSCLoRA.

Papers / code:
  * Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022; the conv layout
    follows ``loralib``'s ``ConvLoRA`` (https://github.com/microsoft/LoRA, MIT).
  * Chai et al., "Distillation-Supervised Convolutional Low-Rank Adaptation for Efficient Image
    Super-Resolution" (DSCLoRA), CVPR Workshops 2025; official code https://github.com/Yaozzz666/DSCF-SR
    (MIT), ``models/team23_DSCF.py`` (``Lora_Conv2d`` and its layer-wise rank table).

Re-implemented from those descriptions; no code copied.

For a k x k conv with weight ``W`` of shape (Cout, Cin, k, k)::

    dW = (B @ A).view(Cout, Cin, k, k) * (alpha / r),  A: (r*k, Cin*k),  B: (Cout*k, r*k)

``A`` starts Kaiming-uniform (a = sqrt(5)), ``B`` at zero (so dW = 0 at injection) and ``W`` is
frozen. :class:`ConvLoRA` subclasses ``nn.Conv2d`` (as DSCF's ``Lora_Conv2d`` does), so an injected
layer keeps the key names ``<name>.weight`` / ``<name>.bias`` and adds ``<name>.lora_A`` /
``<name>.lora_B``. :meth:`ConvLoRA.merge` returns the plain ``nn.Conv2d`` with ``W + dW``.

DSCLoRA adapts every SPAB conv (its "SConvLB" block, rank 2, alpha 4) plus ``conv_2`` and the
upsampler conv (rank 8, alpha 16), per the layer table in DSCF-SR's ``team23_DSCF.py``: see
:data:`DSCF_LORA_TARGETS` and :func:`inject_dscf_lora`. The released checkpoint agrees on the layer
choice: against NTIRE 2024 team39's SPAN-tiny ch26 (same shapes, its apparent starting point),
``team23_DSCF.pth`` moves exactly the SPAB convs, ``conv_2`` and ``upsampler.0`` (max |dW| 7e-4 to
9e-3), while ``conv_1`` and ``conv_cat`` move by under 5e-6. The ranks cannot be read back from
the merged weights.

Unlike DSCF's ``Lora_Conv2d``, which folds dW into ``weight`` in place whenever ``eval()`` is
called, :class:`ConvLoRA` never mutates itself: merging is the explicit :meth:`ConvLoRA.merge` /
:func:`merge_conv_lora`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# DSCF-SR's layer-wise table (module name -> (rank, alpha)) for a deploy-form SPAN.
DSCF_LORA_TARGETS: dict[str, tuple[int, float]] = {
    **{f"block_{i}.c{j}_r.eval_conv": (2, 4.0) for i in range(1, 7) for j in (1, 2, 3)},
    "conv_2.eval_conv": (8, 16.0),
    "upsampler.0": (8, 16.0),
}


class ConvLoRA(nn.Conv2d):
    """``nn.Conv2d`` with a frozen base weight plus a trainable low-rank update (loralib layout)."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        r: int,
        alpha: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {r}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
        )
        self.r = r
        self.alpha = alpha
        self.scaling = alpha / r
        k = kernel_size
        self.lora_A = nn.Parameter(torch.empty(r * k, in_channels * k))
        self.lora_B = nn.Parameter(torch.zeros(out_channels * k, r * k))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.weight.requires_grad_(False)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, r: int, alpha: float) -> ConvLoRA:
        """Wrap a square-kernel, ungrouped conv, copying its weight and bias (dW starts at zero)."""
        k = conv.kernel_size
        if conv.groups != 1 or k[0] != k[1] or isinstance(conv.padding, str):
            raise ValueError(f"ConvLoRA needs an ungrouped square-kernel conv with int padding: {conv}")
        if conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1]:
            raise ValueError(f"ConvLoRA needs symmetric stride and padding: {conv}")
        out = cls(
            in_channels=conv.in_channels,
            out_channels=conv.out_channels,
            kernel_size=k[0],
            r=r,
            alpha=alpha,
            stride=conv.stride[0],
            padding=conv.padding[0],
            dilation=conv.dilation[0],
            bias=conv.bias is not None,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(conv.weight)
            if conv.bias is not None:
                out.bias.copy_(conv.bias)
        out.train(conv.training)
        return out

    def delta_weight(self) -> Tensor:
        return (self.lora_B @ self.lora_A).view(self.weight.shape) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x,
            self.weight + self.delta_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    @torch.no_grad()
    def merge(self) -> nn.Conv2d:
        """Plain ``nn.Conv2d`` with weight ``W + dW`` (``self`` is unchanged)."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=self.bias is not None,
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        conv.weight.copy_(self.weight + self.delta_weight())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        conv.train(self.training)
        return conv

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}"


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_conv_lora(model: nn.Module, targets: Mapping[str, tuple[int, float]]) -> nn.Module:
    """Replace each named ``nn.Conv2d`` with a :class:`ConvLoRA` (``name -> (rank, alpha)``), in place."""
    for name, (r, alpha) in targets.items():
        conv = model.get_submodule(name)
        if isinstance(conv, ConvLoRA):
            raise ValueError(f"{name} already carries ConvLoRA")
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"{name} is {type(conv).__name__}, not nn.Conv2d")
        _set_submodule(model, name, ConvLoRA.from_conv(conv, r=r, alpha=alpha))
    return model


def inject_dscf_lora(model: nn.Module, targets: Mapping[str, tuple[int, float]] | None = None) -> nn.Module:
    """Add ConvLoRA to a *deploy-form* SPAN the way DSCLoRA does (in place; returns ``model``).

    A train-form SPAN has no ``eval_conv`` to adapt: call ``model.fuse()`` first.
    """
    targets = DSCF_LORA_TARGETS if targets is None else targets
    missing = [n for n in targets if not _has_submodule(model, n)]
    if missing:
        raise ValueError(f"model lacks {missing[:3]}...; DSCLoRA adapts a deploy-form SPAN (fuse() first)")
    return inject_conv_lora(model, targets)


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def merge_conv_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`ConvLoRA` in ``model`` with its merged plain conv, in place."""
    names = [n for n, m in model.named_modules() if isinstance(m, ConvLoRA)]
    for name in names:
        _set_submodule(model, name, model.get_submodule(name).merge())
    return model


def mark_only_lora_trainable(model: nn.Module) -> nn.Module:
    """Freeze everything except ``lora_A`` / ``lora_B`` (DSCF trains with ``bias='none'``)."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.rsplit(".", 1)[-1] in ("lora_A", "lora_B"))
    return model
