"""Shared types for every architecture: model metadata and detection results.

Forward convention (all families): ``model(x)`` takes a float NCHW tensor in
``[0, meta.input_range]`` in ``meta.color_space`` and returns the *restored image*
(never a noise map) in the same range, ``meta.scale`` times larger. The engine reads
only :class:`ModelMeta`; it never guesses from the class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

Task = Literal["sr", "denoise"]
ColorSpace = Literal["rgb", "gray", "y_bt601", "y_full"]
Form = Literal["train", "deploy"]


@dataclass(frozen=True)
class ModelMeta:
    """What the engine needs to run a network without guessing.

    ``receptive_field`` is the radius (in input pixels) that influences one output
    pixel; ``None`` means the network uses global statistics (e.g. IMDN's contrast
    channel attention), so tiled output can only approximate whole-image output.
    """

    family: str
    variant: str
    task: Task
    scale: int
    in_channels: int
    out_channels: int
    input_range: float = 1.0
    color_space: ColorSpace = "rgb"
    size_multiple: int = 1
    half_safe: bool = True
    receptive_field: int | None = None
    form: Form = "deploy"
    params: int = 0

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Detection:
    """Result of recognising a state dict: how to build the model and the dict to load strictly."""

    family: str
    build: Callable[[], nn.Module]
    state_dict: Mapping[str, torch.Tensor]
    description: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tensor_shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int | None = None) -> tuple[int, ...] | None:
    """Shape of ``sd[key]`` (a tensor with ``ndim`` dimensions when given), else None: what detectors read."""
    t = sd.get(key)
    if not isinstance(t, torch.Tensor) or (ndim is not None and t.ndim != ndim):
        return None
    return tuple(t.shape)


def matches_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> bool:
    """True when ``sd`` has exactly ``model``'s keys with ``model``'s shapes (a detector's final check)."""
    ref = model.state_dict()
    return set(ref) == set(sd) and all(tuple(sd[k].shape) == tuple(v.shape) for k, v in ref.items())


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key when *all* keys carry it; else return a copy."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)
