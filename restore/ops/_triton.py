"""Turning plain kernel functions into Triton launchables, per device (imported only when Triton runs).

The kernels are written as undecorated functions so that one process can hold both flavours: compiled
``JITFunction`` for CUDA tensors and ``InterpretedFunction`` (the Triton interpreter, numpy on the host) for
CPU tensors under ``TRITON_INTERPRET=1``. ``triton.jit`` itself picks the flavour once, at decoration, from
the environment; doing it here keeps ``TRITON_INTERPRET`` from affecting any other Triton code.

The kernels call only Triton *builtins* (``tl.full``, ``tl.reduce`` with the standard sum combiner, ...), never
``triton.language`` functions that are themselves ``@triton.jit`` (``tl.zeros``, ``tl.sum``, ``tl.cdiv``): those
were decorated once, at ``import triton``, in whichever flavour the environment said then, so an interpreted
kernel could not call them in a process that imported Triton without ``TRITON_INTERPRET=1`` (and vice versa).
Helpers the kernels share are plain functions too, wrapped in :class:`DeviceFunction`, which serves both flavours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

_CACHE: dict[tuple[Callable[..., Any], bool], Any] = {}


def launcher(fn: Callable[..., Any], device: torch.device) -> Any:
    """The kernel ``fn`` as a launchable for tensors on ``device`` (``launcher(fn, dev)[grid](...)``)."""
    interpret = device.type == "cpu"
    key = (fn, interpret)
    k = _CACHE.get(key)
    if k is None:
        k = InterpretedFunction(fn) if interpret else JITFunction(fn)
        _CACHE[key] = k
    return k


class DeviceFunction(JITFunction):
    """A helper that kernels call (a plain function, like them), usable from both flavours: the compiler sees a
    ``JITFunction`` and inlines the call; the interpreter calls it as Python, through an ``InterpretedFunction``
    of the same source (``JITFunction.__call__`` itself refuses to run outside a compiled kernel)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__(fn)
        self._interpreted = InterpretedFunction(fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._interpreted(*args, **kwargs)


def next_pow2(n: int) -> int:
    return int(triton.next_power_of_2(max(1, int(n))))
