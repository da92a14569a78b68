from __future__ import annotations

import importlib

import pytest
import torch

from restore.ops.lk_dwconv import lk_dwconv, lk_dwconv_reference
from tests.ops.conftest import close

lk = importlib.import_module("restore.ops.lk_dwconv")  # the module (restore.ops.lk_dwconv is also the function)
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16

# (N, C, H, W, k, dtype, channels_last, activation, bias): H, W never multiples of the 8x8 CPU tile
CASES = [
    (2, 1, 13, 19, 3, F32, False, "none", True),
    (1, 26, 11, 10, 9, F32, True, "gelu", True),
    (1, 48, 9, 7, 13, F32, False, "silu", True),
    (1, 26, 9, 11, 9, F16, True, "relu", True),
    (1, 48, 9, 10, 3, BF16, False, "none", False),
    (1, 1, 9, 7, 13, F16, False, "tanh", True),
]


def _inputs(n: int, c: int, h: int, w: int, k: int, dtype: torch.dtype, cl: bool, bias: bool, device: str = "cpu"):
    x = torch.randn(n, c, h, w, device=device).to(dtype)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    wt = (torch.randn(c, 1, k, k, device=device) / k).to(dtype)
    b = torch.randn(c, device=device).to(dtype) if bias else None
    return x, wt, b


def check_fwd_bwd(n, c, h, w, k, dtype, cl, act, bias, device="cpu") -> None:
    x, wt, b = _inputs(n, c, h, w, k, dtype, cl, bias, device)
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, wt, b)]
    ref_leaves = [t.detach().double().requires_grad_() if t is not None else None for t in (x, wt, b)]
    y = lk_dwconv(*leaves, act)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    y_ref = lk_dwconv_reference(*ref_leaves, act)
    close(y, y_ref, dtype, "forward")
    g = torch.randn_like(y_ref)
    y.backward(g.to(dtype))
    y_ref.backward(g)
    for name, t, r in zip(("input", "weight", "bias"), leaves, ref_leaves, strict=True):
        if t is not None:
            assert t.grad is not None and t.grad.dtype == dtype, name
            close(t.grad, r.grad, dtype, f"grad {name}")


def _id(c: tuple) -> str:
    return f"C{c[1]}-k{c[4]}-{str(c[5])[6:]}-{'cl' if c[6] else 'nchw'}-{c[7]}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_triton_matches_reference_cpu_interpreter(interpret: None, case: tuple) -> None:
    check_fwd_bwd(*case)


def test_k31_forward(interpret: None) -> None:
    x, wt, b = _inputs(1, 3, 7, 6, 31, F32, False, True)
    close(lk_dwconv(x, wt, b, "relu"), lk_dwconv_reference(x.double(), wt.double(), b.double(), "relu"), F32)


@pytest.mark.parametrize(("config", "cl"), [((1, 8, 32), False), ((64, 2, 8), True)], ids=["nchw", "cl"])
def test_gpu_tile_configs_in_interpreter(interpret: None, config: tuple[int, int, int], cl: bool) -> None:
    """The CUDA launch configurations (1 channel x 8x32 for NCHW, 64 channels x 2x8 for channels_last)."""
    x, wt, b = _inputs(1, 3, 9, 35, 5, F32, cl, True)
    y = lk._launch_fwd(x, wt, b, "none", F32, config)
    close(y, lk_dwconv_reference(x.double(), wt.double(), b.double()), F32, "forward")
    g = torch.randn_like(y)
    gw = lk._launch_bwd_weight(x, g, 5, config, splits=3)
    xr, wr = x.double().requires_grad_(), wt.double().requires_grad_()
    lk_dwconv_reference(xr, wr, None).backward(g.double())
    close(gw, wr.grad, F32, "weight grad")


def test_non_contiguous_input(interpret: None) -> None:
    x = torch.randn(1, 4, 12, 30)[..., ::3]  # W stride 3
    wt = torch.randn(4, 1, 5, 5)
    close(lk_dwconv(x, wt, None), lk_dwconv_reference(x.double(), wt.double()), F32)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [F32, F16, BF16])
@pytest.mark.parametrize("k", [3, 9, 13, 31])
@pytest.mark.parametrize("cl", [False, True])
def test_triton_matches_reference_cuda(cuda: None, dtype: torch.dtype, k: int, cl: bool) -> None:
    for c in (1, 26, 48):
        check_fwd_bwd(2, c, 67, 45, k, dtype, cl, "gelu", True, device="cuda")
