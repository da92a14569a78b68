"""The tuning cache: which CPU path won for a model on this machine, and the model's exported ONNX graph, kept on
disk so that a second run starts at once (``restore cache info|clear``).

Where: ``$RESTORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/restore``, else ``~/.cache/restore``; ``paths/`` holds one
JSON record per choice, ``onnx/`` the graphs. A choice is keyed by everything that can change the answer: the
model's weights (sha256 of its state dict), the size bucket of the input it was timed on, the precision, the
CPU's model name and flags, torch's thread count, and the versions of torch, onnxruntime, onnx and restore; a
graph by the weights, the torch / onnx versions and the opset. A key that differs is simply another entry, so
nothing is ever stale. Every file is written atomically (:func:`restore.io.files.publish_bytes`), so concurrent
runs at worst both measure and one record wins; an unreadable record counts as absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restore.io import files

ENV = "RESTORE_CACHE_DIR"
SMALL_PROBE_PIXELS = 128 * 128
"""A first window (tuning probe) smaller than this, with nothing cached, runs :data:`DEFAULT_FP32_PATH`
untimed: timing three paths would cost more than the whole job."""
DEFAULT_FP32_PATH = "onnxruntime"
"""The fp32 path that won most often in ``scripts/bench_vs_official.py`` runs on the AVX2 and AVX-512 machines
(docs/benchmarks.md); ``torch`` (channels_last) when ONNX Runtime is not installed."""


def cache_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "restore"


def model_digest(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes and bytes) and the class: the same weights, the same
    digest, in any process."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    """What of this machine and its libraries a timing depends on."""
    from restore._version import __version__
    from restore.engine.cpu_paths import cpu_info

    name, flags = cpu_info()
    return {"cpu": name, "flags": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
            "threads": torch.get_num_threads(), "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
            "onnx": _version("onnx"), "restore": __version__}


def size_bucket(h: int, w: int) -> int:
    """Inputs within a factor 4 of area share a bucket (0 for 1x1)."""
    return int(math.log2(max(1, h * w))) // 2


def _key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Choice:
    backend: str
    times: dict[str, float]
    probe: tuple[int, int]


class PathCache:
    """The cache for one model (its digest is computed once)."""

    def __init__(self, model: nn.Module, *, root: Path | None = None) -> None:
        self.root = root or cache_dir()
        self.digest = model_digest(model)

    def _choice_file(self, probe: tuple[int, int], precision: str) -> Path:
        parts = {"model": self.digest, "bucket": size_bucket(*probe), "precision": precision, **machine()}
        return self.root / "paths" / f"{_key(parts)}.json"

    def lookup(self, probe: tuple[int, int], precision: str = "fp32") -> Choice | None:
        try:
            rec = json.loads(self._choice_file(probe, precision).read_text())
            return Choice(str(rec["backend"]), dict(rec["times"]), tuple(rec["probe"]))  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, probe: tuple[int, int], choice: str, times: dict[str, float], precision: str = "fp32") -> None:
        rec = {"backend": choice, "times": {k: v for k, v in times.items() if not math.isnan(v)},
               "probe": list(probe), "model": self.digest, "precision": precision, **machine()}
        try:
            files.publish_bytes(self._choice_file(probe, precision), json.dumps(rec, indent=1).encode(),
                                overwrite=True)
        except OSError:  # a read-only or full cache folder costs the next run a timing, nothing else
            pass

    def onnx_graph(self, export: Any) -> bytes:
        """The exported graph of this model: from the cache, else ``export()`` (then stored)."""
        from restore.engine.cpu_paths import OPSET

        parts = {"model": self.digest, "torch": torch.__version__, "onnx": _version("onnx"), "opset": OPSET}
        path = self.root / "onnx" / f"{_key(parts)}.onnx"
        try:
            return path.read_bytes()
        except OSError:
            pass
        graph: bytes = export()
        try:
            files.publish_bytes(path, graph, overwrite=True)
        except OSError:
            pass
        return graph


def info(root: Path | None = None) -> dict[str, Any]:
    """What the cache holds (for ``restore cache info``)."""
    root = root or cache_dir()
    out: dict[str, Any] = {"folder": str(root)}
    for kind in ("paths", "onnx"):
        entries = [p for p in (root / kind).glob("*") if p.is_file() and not p.name.startswith(".")] \
            if (root / kind).is_dir() else []
        out[kind] = {"entries": len(entries), "bytes": sum(p.stat().st_size for p in entries)}
    return out


def clear(root: Path | None = None) -> int:
    """Remove the cache's entries; returns how many files were removed."""
    root = root or cache_dir()
    n = 0
    for kind in ("paths", "onnx"):
        folder = root / kind
        if folder.is_dir():
            n += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
    return n
