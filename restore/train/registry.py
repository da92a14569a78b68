"""Register our architectures, datasets, models and losses into BasicSR's registries.

After :func:`register_all`, BasicSR's own builders find them by name: ``basicsr.archs.build_network``
(``ARCH_REGISTRY``: ``SPAN``, ``IMDN``, ``CFSR``, ``ESPCN``, ``DnCNN``, ...), ``basicsr.data.build_dataset``
(``DATASET_REGISTRY``: ``SRImageDataset``, ``DenoiseDataset``), ``basicsr.models.build_model``
(``MODEL_REGISTRY``: ``RestoreSRModel``, ``DenoiseModel``, ``DistillModel``) and
``basicsr.losses.build_loss`` (``LOSS_REGISTRY``: ``SpatialAffinityLoss``; ``L1Loss``, ``MSELoss`` and
``CharbonnierLoss`` are BasicSR's). Registration is idempotent; a name BasicSR already uses for something
else is an error.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

_DONE = False


def _register(registry: Any, name: str, obj: Any) -> None:
    if name in registry:
        if registry.get(name) is not obj:
            raise RuntimeError(f"BasicSR's {registry._name} registry already has a different {name!r}")
        return
    registry._do_register(name, obj)


def register_all() -> None:
    """Import BasicSR (once) and register everything of ours."""
    global _DONE
    if _DONE:
        return
    os.environ.setdefault("BASICSR_JIT", "False")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import basicsr.archs  # noqa: F401  (fills BasicSR's registries)
        import basicsr.data  # noqa: F401
        import basicsr.losses  # noqa: F401
        import basicsr.models  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

    from restore.registry import ARCHS, arch_class
    from restore.train import data, losses, models

    for name in ARCHS:
        _register(ARCH_REGISTRY, name, arch_class(name))
    _register(DATASET_REGISTRY, "SRImageDataset", data.SRImageDataset)
    _register(DATASET_REGISTRY, "DenoiseDataset", data.DenoiseDataset)
    _register(LOSS_REGISTRY, "SpatialAffinityLoss", losses.SpatialAffinityLoss)
    for cls in (models.RestoreSRModel, models.DenoiseModel, models.DistillModel):
        _register(MODEL_REGISTRY, cls.__name__, cls)
    _DONE = True
