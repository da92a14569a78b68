"""Kernel tests: the Triton kernels against their PyTorch references.

CPU tests run the kernels in the Triton interpreter. ``TRITON_INTERPRET=1`` and ``RESTORE_KERNELS=triton``
are set per test with ``monkeypatch`` (restored afterwards), and ``restore.ops`` builds its interpreted
kernels explicitly (``restore.ops._triton.launcher``), so no other test, and no other Triton code in this
process, sees the variable. GPU tests (``-m gpu``) run the compiled kernels on CUDA tensors.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()

TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture
def interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the Triton path on CPU tensors through the interpreter."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("RESTORE_KERNELS", "triton")


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    if not (HAS_TRITON and HAS_CUDA):
        pytest.skip("needs triton and a CUDA device")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("RESTORE_KERNELS", "triton")


def close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """max |out - ref| within the dtype tolerance, relative to max(1, max |ref|)."""
    err = (out.float() - ref.float()).abs().max().item()
    scale = max(1.0, ref.float().abs().max().item())
    assert err <= TOL[dtype] * scale, f"{what}: max error {err:.3g} > {TOL[dtype]} x {scale:.3g} ({dtype})"
