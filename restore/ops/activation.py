"""Activations the fused kernels can apply in their epilogue: names, codes, PyTorch references, derivatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# code passed to the kernels as a compile-time constant
CODES = {"none": 0, "relu": 1, "gelu": 2, "silu": 3, "tanh": 4}


def check(name: str | None) -> str:
    name = "none" if name is None else name
    if name not in CODES:
        raise ValueError(f"activation must be one of {', '.join(CODES)}; got {name!r}")
    return name


def apply(z: Tensor, name: str) -> Tensor:
    """The reference activation (exact erf GELU, as ``nn.GELU()``)."""
    if name == "none":
        return z
    if name == "relu":
        return F.relu(z)
    if name == "gelu":
        return F.gelu(z)
    if name == "silu":
        return F.silu(z)
    if name == "tanh":
        return torch.tanh(z)
    raise ValueError(name)


def derivative(z: Tensor, name: str) -> Tensor:
    """d act(z) / dz, computed in float32."""
    z = z.float()
    if name == "none":
        return torch.ones_like(z)
    if name == "relu":
        return (z > 0).float()
    if name == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(z * 0.7071067811865476))
        pdf = torch.exp(-0.5 * z * z) * 0.3989422804014327
        return cdf + z * pdf
    if name == "silu":
        s = torch.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    if name == "tanh":
        return 1.0 - torch.tanh(z) ** 2
    raise ValueError(name)
