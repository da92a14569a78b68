"""Weighted convolution ("weightedConvolution2.0"): a conv whose kernel is scaled by a spatial density.

Paper: S. Cammarasana and G. Patanè, "Optimal Weighted Convolution for Classification and Denoising",
arXiv:2505.24558, 2025; and "Optimal Density Functions for Weighted Convolution in Learning Models",
arXiv:2505.24527, 2025. Official code: https://github.com/cammarasana123/weightedConvolution2.0
(``wConv.py`` / ``wConv_Trainable.py``, GPL-3.0; read for reference only, this is an independent
re-implementation).

What the operator does (as in the official ``wConv2d``): a density vector ``den`` of length
``(k - 1) / 2`` (outermost value first) is mirrored around a fixed centre value 1 into
``alfa = [den, 1, reversed(den)]`` (length ``k``); the 2-D density is the separable outer product
``Phi = alfa ⊗ alfa`` (``k × k``, centre 1); the layer convolves with ``weight * Phi`` (broadcast over the
output and input channels). So each tap is weighted by a function of its distance from the kernel centre.

Two variants, both from the official repository:

* fixed (``trainable=False``, official ``wConv.py``): ``den`` is a hyper-parameter; ``alfa`` and ``Phi`` are
  persistent buffers (state-dict keys ``weight``, ``bias``, ``alfa``, ``Phi``). The forward uses the
  ``Phi`` buffer, so a loaded ``Phi`` wins over the constructor's ``den``.
* trainable (``trainable=True``, official ``wConv_Trainable.py``): ``den`` is an ``nn.Parameter`` per layer
  and ``Phi`` is rebuilt from it in every forward (keys ``weight``, ``bias``, ``den``). The official file
  hard-codes the initial ``den`` to ``[0.27, 0.17, 0.54]`` (only valid for ``k = 7``); here the
  constructor's ``den`` is the initial value, so any odd ``k`` works.

Deviations from the official class (interface only, numerics identical): keyword-only constructor;
``padding`` defaults to "same" (``dilation * (k - 1) // 2``) instead of the official fixed ``1``;
only square odd kernels (the official code also rejects anisotropic kernels, via a shape check).

:meth:`WeightedConv2d.fuse` bakes ``Phi`` into the kernel and returns a plain :class:`torch.nn.Conv2d`
that computes the same function (the deploy form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# README of the official repository: example value for a 3x3 kernel (suggested range [0.5, 1.5]).
DEFAULT_DEN_3X3: tuple[float, ...] = (0.7,)


def density_vector(den: torch.Tensor) -> torch.Tensor:
    """``[den, 1, reversed(den)]``: the 1-D density, symmetric around a centre of 1."""
    centre = torch.ones(1, dtype=den.dtype, device=den.device)
    return torch.cat([den, centre, torch.flip(den, dims=[0])])


def density_mask(den: torch.Tensor) -> torch.Tensor:
    """Separable 2-D density ``alfa ⊗ alfa`` for a square kernel of size ``2 * len(den) + 1``."""
    alfa = density_vector(den)
    return torch.outer(alfa, alfa)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return (t[0], t[1])


class WeightedConv2d(nn.Module):
    """2-D convolution with kernel ``weight * Phi`` (see the module docstring)."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        den: Sequence[float] | None = None,
        trainable: bool = False,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | None = None,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if den is None:
            den = DEFAULT_DEN_3X3 if kernel_size == 3 else (1.0,) * (kernel_size // 2)
        den_t = torch.tensor([float(d) for d in den], dtype=torch.float32)
        if den_t.numel() != kernel_size // 2:
            raise ValueError(f"den needs {kernel_size // 2} values for a {kernel_size}x{kernel_size} kernel")
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        self.padding = _pair(padding) if padding is not None else tuple(
            d * (kernel_size - 1) // 2 for d in self.dilation
        )
        self.groups = groups
        self.trainable = trainable

        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        if trainable:
            self.den = nn.Parameter(den_t)
        else:
            self.register_buffer("alfa", density_vector(den_t))
            self.register_buffer("Phi", density_mask(den_t))

    def mask(self) -> torch.Tensor:
        """The ``k × k`` density currently applied to the kernel."""
        return density_mask(self.den) if self.trainable else self.Phi

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """Plain ``nn.Conv2d`` with ``weight * Phi`` baked in (same function, deploy form)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                         padding=self.padding, dilation=self.dilation, groups=self.groups,
                         bias=self.bias is not None)
        conv = conv.to(device=self.weight.device, dtype=self.weight.dtype)
        conv.weight.copy_(self.effective_weight())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        den = self.den if self.trainable else self.alfa[: self.kernel_size[0] // 2]
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"den={[round(float(d), 4) for d in den]}, trainable={self.trainable}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


def den_from_state(state: Mapping[str, torch.Tensor], prefix: str) -> tuple[tuple[float, ...], bool] | None:
    """Read ``(den, trainable)`` of a :class:`WeightedConv2d` stored under ``prefix`` (e.g. ``"dncnn.0."``).

    Returns ``None`` when the keys are not a weighted conv's. For the fixed variant ``den`` comes from the
    ``alfa`` buffer (its first ``k // 2`` entries); the loaded ``Phi`` buffer is what the forward uses.
    """
    w = state.get(prefix + "weight")
    if w is None or w.ndim != 4 or w.shape[-1] != w.shape[-2] or w.shape[-1] % 2 == 0:
        return None
    k = int(w.shape[-1])
    den = state.get(prefix + "den")
    alfa, phi = state.get(prefix + "alfa"), state.get(prefix + "Phi")
    if den is not None and alfa is None and phi is None:
        if den.shape != (k // 2,):
            return None
        return tuple(float(d) for d in den), True
    if den is None and alfa is not None and phi is not None:
        if alfa.shape != (k,) or phi.shape != (k, k):
            return None
        return tuple(float(d) for d in alfa[: k // 2]), False
    return None
