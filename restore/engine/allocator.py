"""Keep freed memory in the process for CPU inference (glibc): no page-fault churn on large tensors.

glibc's ``malloc`` serves large blocks (above its mmap threshold, at most 32 MiB on 64-bit) with a fresh
``mmap`` and gives them back with ``munmap`` when freed. A network's feature maps at video or photo size are
such blocks (64 channels of a 640x360 frame in float32: 59 MB), so every layer of every call touches brand-new
pages: one page fault per 4 KiB, each zeroing its page. Measured on a 2-core AMD EPYC (AVX-512), 2 threads:
``torch.relu`` of a 1x64x360x640 float32 tensor 21.7 ms -> 4.8 ms, ESPCN x4 eager on 180x320 37.7 -> 21.1 ms
(``scripts/bench_vs_official.py`` gives the figures per network). ONNX Runtime keeps its own arena and is not
affected; training steps (smaller blocks, reused) were not measurably changed.

:func:`keep_freed_memory` turns ``mmap`` off for ``malloc`` (``M_MMAP_MAX = 0``: large blocks come from the heap,
and glibc still falls back to ``mmap`` when the heap cannot grow) and raises the trim threshold, so freed blocks
are reused by the next call instead of being returned to the system. The cost: the process keeps its peak heap
(what the largest call needed) until it exits. Process-wide and idempotent; the engine calls it when a
:class:`~restore.engine.restorer.Restorer` is built for the CPU. ``RESTORE_MALLOC=default`` leaves ``malloc`` as
it is; other C libraries (musl, macOS, Windows) are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

ENV = "RESTORE_MALLOC"
M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # bytes of free memory at the top of the heap before glibc returns any of it

_lock = threading.Lock()
_state: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's ``malloc`` to keep freed memory (see the module docstring); True when it is in effect.
    Called once per process (later calls return the first answer)."""
    global _state
    with _lock:
        if _state is None:
            _state = _apply()
        return _state


def _apply() -> bool:
    if os.environ.get(ENV, "").strip().lower() in ("default", "0", "off", "no"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: other C libraries' malloc is left alone
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_MAX, 0))
