"""The one table of architecture families: name -> module with ``detect(state_dict)``.

Order matters only for speed; each ``detect`` must reject other families' dicts, and a
test pins that every family's synthetic state dict is recognised by exactly one entry.
Family modules are imported lazily so ``import restore`` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

import torch

from restore.archs.base import Detection

FAMILIES: dict[str, str] = {
    "imdn": "restore.archs.imdn",
    "cfsr": "restore.archs.cfsr",
    "span": "restore.archs.span",
    "dncnn": "restore.archs.dncnn",
    "espcn": "restore.archs.espcn",
}


def family_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(FAMILIES[name])
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


def detect_all(state_dict: Mapping[str, torch.Tensor]) -> list[Detection]:
    """Every family that recognises ``state_dict`` (normally zero or one)."""
    found = []
    for name in FAMILIES:
        det = family_module(name).detect(state_dict)
        if det is not None:
            found.append(det)
    return found
