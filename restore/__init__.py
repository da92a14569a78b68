"""restore: lightweight image super-resolution and denoising.

Importing this package is cheap: torch, OpenCV and every optional extra are imported only when
one of the public names below is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from restore._version import __version__

__all__ = ["Restorer", "load_model", "stream", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from restore.engine.restorer import Restorer
    from restore.engine.video import stream
    from restore.weights import load_model


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from restore.weights import load_model

        return load_model
    if name == "Restorer":
        from restore.engine.restorer import Restorer

        return Restorer
    if name == "stream":
        from restore.engine.video import stream

        return stream
    raise AttributeError(f"module 'restore' has no attribute {name!r}")
