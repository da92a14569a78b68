"""Checkpoint files: atomic writes, RNG capture/restore, finding the latest training state (torch only).

Layout under ``<root>/experiments/<name>/`` (BasicSR's): ``models/net_g_<iter>.pth`` (``params``,
``params_ema`` when EMA is on, and ``restore_arch``, the record :func:`restore.train.networks.build_from_record`
rebuilds the module from), ``models/net_g_latest.pth`` / ``net_g_best.pth``, and
``training_states/<iter>.state`` (iteration, epoch and position in the epoch, optimiser, scheduler, AMP
scaler, RNG states, best metrics, and the name of its model file).

Every file is written to a temporary name in the same folder, flushed, fsynced and renamed over the final
name, so a kill leaves either the old file or the new one. The model file is written before the state that
points to it, so the newest ``.state`` always has its weights: a run killed at any moment resumes from the
last completed checkpoint and loses at most one checkpoint interval.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restore.io import files

_STATE_RE = re.compile(r"^(\d+)\.state$")


def atomic_save(obj: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`restore.io.files.publishing`: temp file in the same folder,
    fsync, rename, folder fsync); ``overwrite=False``: FileExistsError when ``path`` exists, left alone. Written
    through a file object, so the archive's inner folder is torch's fixed ``archive/`` rather than the temp file's
    random name: the same tensors give the same bytes (a re-shipped model keeps its sha256)."""
    with files.publishing(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def load(path: str | Path) -> Any:
    """Load a checkpoint written by :func:`atomic_save` (tensors, plain containers; ``weights_only``)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def capture_rng() -> dict[str, Any]:
    """Global RNG states of torch (CPU and CUDA), numpy and Python's ``random``, as plain objects."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_states(states_dir: str | Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every ``<iter>.state``, newest first."""
    d = Path(states_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STATE_RE.match(p.name))]
    return sorted(found, reverse=True)


def latest_state(exp_dir: str | Path) -> Path | None:
    """The newest training state under ``exp_dir`` whose model file exists, or ``None``."""
    exp = Path(exp_dir)
    for _, path in list_states(exp / "training_states"):
        try:
            state = load(path)
        except Exception:  # noqa: BLE001 - an unreadable state is skipped, the previous one is used
            continue
        if (exp / "models" / str(state.get("model_file", ""))).is_file():
            return path
    return None
