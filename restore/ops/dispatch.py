"""Choosing between the Triton kernels and their PyTorch references.

``RESTORE_KERNELS`` (read at every call, so tests and users can flip it at run time):

* unset, ``""`` or ``"auto"``: Triton when it can run (Triton importable, CUDA tensors, a supported
  dtype and shape, not inside ``torch.compile`` / TorchScript / tracing), else the reference;
* ``"reference"``: always the reference;
* ``"triton"``: always Triton; when it cannot run a :class:`KernelUnavailableError` says why (never a silent
  fallback). CPU tensors can run under the Triton interpreter (``TRITON_INTERPRET=1``), which is how the
  tests exercise the kernels on machines without a GPU; without that variable CPU tensors fail loudly.

Nothing here imports Triton at ``import restore``: :func:`triton_available` imports it on first use (only
when a CUDA tensor or a forced ``triton`` asks).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

import torch

ENV = "RESTORE_KERNELS"
CHOICES = ("auto", "reference", "triton")
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelUnavailableError(RuntimeError):
    """``RESTORE_KERNELS=triton`` was asked for, but the Triton kernel cannot run on these inputs."""


def requested() -> str:
    """The backend asked for through ``RESTORE_KERNELS`` ('auto', 'reference' or 'triton')."""
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r}: expected one of {', '.join(CHOICES)}")
    return value


def interpreting() -> bool:
    """True when the Triton interpreter is switched on (``TRITON_INTERPRET=1``): kernels may run on CPU."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.cache
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as e:  # ImportError, or a broken install raising anything else
        return f"{type(e).__name__}: {e}"
    return None


def triton_available() -> bool:
    """Whether ``import triton`` works (imported once, on the first call)."""
    return _triton_import_error() is None


def _tracing() -> bool:
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def triton_problem(tensors: Iterable[torch.Tensor | None], shape_problem: str | None = None) -> str | None:
    """Why the Triton kernel cannot run on these tensors (None when it can).

    ``shape_problem`` is the kernel's own verdict on shapes/arguments (None when supported)."""
    ts = [t for t in tensors if t is not None]
    if shape_problem is not None:
        return shape_problem
    devices = {t.device for t in ts}
    if len(devices) > 1:
        return f"tensors are on different devices ({', '.join(sorted(map(str, devices)))})"
    device = next(iter(devices)) if devices else torch.device("cpu")
    if device.type == "cpu":
        if not interpreting():
            return "CPU tensors need the Triton interpreter (TRITON_INTERPRET=1); the kernels are for CUDA"
    elif device.type != "cuda":
        return f"Triton kernels run on CUDA tensors, not {device.type}"
    bad = sorted({str(t.dtype) for t in ts if t.dtype not in SUPPORTED_DTYPES})
    if bad:
        return f"unsupported dtype {', '.join(bad)} (float32, float16 or bfloat16)"
    if len({t.dtype for t in ts}) > 1:
        return f"mixed dtypes {sorted({str(t.dtype) for t in ts})}"
    if _tracing():
        return "inside torch.compile / TorchScript / tracing (the reference is traced instead)"
    err = _triton_import_error()
    if err is not None:
        return f"Triton is not importable ({err})"
    return None


def use_triton(op: str, tensors: Iterable[torch.Tensor | None], shape_problem: str | None = None) -> bool:
    """Decide for one call of ``op``; raises :class:`KernelUnavailableError` when Triton is forced but cannot
    run. Auto mode is cheap on CPU tensors: it returns False before importing anything."""
    choice = requested()
    if choice == "reference":
        return False
    ts = [t for t in tensors if t is not None]
    if choice == "auto":
        if shape_problem is not None or not ts or any(t.device.type != "cuda" for t in ts):
            return False
        return triton_problem(ts) is None
    problem = triton_problem(ts, shape_problem)
    if problem is not None:
        raise KernelUnavailableError(f"{ENV}=triton: {op} cannot run with Triton: {problem}")
    return True


def backend_for(op: str, tensors: Iterable[torch.Tensor | None], shape_problem: str | None = None) -> str:
    """'triton' or 'reference' for these inputs (same rules as :func:`use_triton`)."""
    return "triton" if use_triton(op, tensors, shape_problem) else "reference"
