"""The one table of architectures: families (detection from state dicts), network classes by their BasicSR
``type`` name (training, checkpoint records) and the benchmark presets (``restore bench``).

Reading the tables imports nothing heavy (no torch): the CLI builds its help from them. Family and class
modules are imported when first used. Order of :data:`FAMILIES` matters only for speed; each ``detect`` must
reject other families' dicts, and a test pins that every family's synthetic state dict is recognised by exactly
one entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from restore.archs.base import Detection

FAMILIES: dict[str, str] = {
    "imdn": "restore.archs.imdn",
    "cfsr": "restore.archs.cfsr",
    "span": "restore.archs.span",
    "dncnn": "restore.archs.dncnn",
    "espcn": "restore.archs.espcn",
}
"""Family name -> module with ``detect(state_dict)`` and its classes."""

ARCHS: dict[str, str] = {
    "SPAN": "span",
    "SPANF": "span",
    "ESPAN": "span",
    "IMDN": "imdn",
    "IMDN_AS": "imdn",
    "IMDN_RTC": "imdn",
    "IMDN_RTE": "imdn",
    "CFSR": "cfsr",
    "ESPCN": "espcn",
    "DnCNN": "dncnn",
}
"""BasicSR ``network_g.type`` -> family: the class of that name in the family's module."""


@dataclass(frozen=True)
class Preset:
    """A network built with random weights for speed measurements (``restore bench --models NAME``)."""

    arch: str
    description: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    scale_key: str = "scale"  # the constructor argument that takes the scale


PRESETS: dict[str, Preset] = {
    "imdn": Preset("IMDN", "IMDN (nf 64, 6 IMDBs)"),
    "imdn-rtc": Preset("IMDN_RTC", "IMDN_RTC (nf 12, 5 blocks)"),
    "cfsr": Preset("CFSR", "CFSR (embed 48, depths 6+6, 9x9 mixer)"),
    "span": Preset("SPAN", "SPAN ch48 (deploy form)", {"feature_channels": 48, "form": "deploy"}, "upscale"),
    "span-ch28": Preset("SPAN", "SPAN ch28 (NTIRE 2024 team38)", {"feature_channels": 28, "form": "deploy"},
                        "upscale"),
    "dscf": Preset("SPAN", "DSCF / SPAN-tiny ch26 (NTIRE 2025 winner)", {"feature_channels": 26, "form": "deploy"},
                   "upscale"),
    "espcn": Preset("ESPCN", "ESPCN (Y channel, 64/32)"),
}


def family_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(FAMILIES[name])
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


def arch_class(name: str) -> type[nn.Module]:
    """The network class for a BasicSR ``type`` name."""
    try:
        family = ARCHS[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None
    return getattr(family_module(family), name)


def build_preset(name: str, scale: int) -> nn.Module:
    """A :data:`PRESETS` network at ``scale``, eval mode, weights from ``torch.manual_seed(0)``."""
    import torch

    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: a checkpoint file or one of {', '.join(PRESETS)}") from None
    torch.manual_seed(0)
    return arch_class(preset.arch)(**{**preset.kwargs, preset.scale_key: scale}).eval()


def detect_all(state_dict: Mapping[str, torch.Tensor]) -> list[Detection]:
    """Every family that recognises ``state_dict`` (normally zero or one)."""
    found = []
    for name in FAMILIES:
        det = family_module(name).detect(state_dict)
        if det is not None:
            found.append(det)
    return found
