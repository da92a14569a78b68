"""The engine's choices as plain tables (no torch): which precisions and backends exist, and the tile rules.
The command line, the web demo and :class:`restore.engine.restorer.Restorer` all read them from here."""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
"""``auto`` resolves per device and model (see :mod:`restore.engine.restorer`); int8 is CPU + ONNX Runtime."""

BACKENDS = ("auto", "onnxruntime", "torch", "eager")

MIN_TILE = 16
"""Smallest tile side (LR px) the engine runs: below it the context around each tile costs many times the tile
itself, and a picture takes minutes instead of seconds."""

TILE_WORDS = ("auto", "acs", "none", "0")


def parse_tile(value: str | int | None) -> int | str | None:
    """A tile setting as :class:`restore.Restorer` takes it: ``"auto"``, ``"acs"``, None (``"none"`` / ``"0"``:
    whole image) or a side of at least :data:`MIN_TILE` LR px; anything else is a one-line ValueError."""
    if value is None or value in ("none", "0", 0):
        return None
    if value in ("auto", "acs"):
        return str(value)
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"tile size must be 'auto', 'acs', 'none' (0) or a number of pixels, not {value!r}") from None
    if n < MIN_TILE:
        raise ValueError(f"tile size must be at least {MIN_TILE} pixels ('none' or 0: no tiling), not {n}")
    return n

GPU_BATCH = 4
"""Video frames per network call on CUDA by default (1 elsewhere; ``restore.engine.video.default_batch``)."""

COLOR_PATHS = ("auto", "yuv", "rgb")
"""``restore video --color-path``: Y-only models on 4:2:0 sources run on the Y plane ('yuv') or through RGB."""

FITS = ("contain", "cover", "stretch")
"""``--fit`` with both ``--width`` and ``--height`` (restore.engine.resample.target_size)."""

RESAMPLERS = {"bicubic": "bicubic", "lanczos": "lanczos3"}
"""``--resample``: user name -> MATLAB imresize kernel (restore.engine.resample.resample)."""

DEVICE_HELP = "'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'"


def parse_device(value: str) -> str:
    """``--device``: the spelling only (whether the device exists is checked when a model is put on it)."""
    v = value.strip().lower()
    if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise ValueError(f"device must be {DEVICE_HELP}, not {value!r}")
