from __future__ import annotations

import importlib

import pytest
import torch

from restore.ops.conv_pixelshuffle import conv_pixelshuffle, conv_pixelshuffle_reference, nearest_up
from tests.ops.conftest import close

cps = importlib.import_module("restore.ops.conv_pixelshuffle")
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16

# (N, C_in, H, W, scale, C_img, dtype, channels_last, activation, residual, skip)
# residual: None | "full" (HR tensor, e.g. a bicubic-upsampled input) | "mean" (per-channel constant)
CASES = [
    (1, 32, 13, 19, 2, 1, F32, False, "tanh", None, False),  # ESPCN x2 tail
    (2, 26, 7, 11, 4, 3, F32, True, "none", "full", True),  # SPAN-tiny tail + bicubic and nearest skips
    (1, 48, 9, 5, 4, 3, F16, False, "none", "mean", False),  # CFSR tail (+ RGB mean)
    (1, 1, 11, 6, 3, 1, F32, False, "relu", None, True),
    (1, 20, 6, 9, 4, 3, BF16, True, "none", "full", True),
]


def _inputs(case: tuple, device: str = "cpu"):
    n, cin, h, w, s, c, dtype, cl, _act, res, skip = case
    x = torch.randn(n, cin, h, w, device=device).to(dtype)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    wt = (torch.randn(c * s * s, cin, 3, 3, device=device) / (3 * cin**0.5)).to(dtype)
    b = torch.randn(c * s * s, device=device).to(dtype)
    r = None
    if res == "full":
        r = torch.randn(n, c, h * s, w * s, device=device).to(dtype)
    elif res == "mean":
        r = torch.tensor([0.45, 0.44, 0.40], device=device).view(1, 3, 1, 1).to(dtype)
    k = torch.randn(n, c, h, w, device=device).to(dtype) if skip else None
    return x, wt, b, r, k


def check(case: tuple, device: str = "cpu", backward: bool = True) -> None:
    s, dtype, cl, act = case[4], case[6], case[7], case[8]
    tensors = _inputs(case, device)
    leaves = [t.detach().clone().requires_grad_(backward) if t is not None else None for t in tensors]
    ref = [t.detach().double().requires_grad_(backward) if t is not None else None for t in tensors]
    y = conv_pixelshuffle(leaves[0], leaves[1], leaves[2], s, leaves[3], leaves[4], act)
    y_ref = conv_pixelshuffle_reference(ref[0], ref[1], ref[2], s, ref[3], ref[4], act)
    assert y.shape == y_ref.shape and y.dtype == dtype
    if cl:
        assert y.is_contiguous(memory_format=torch.channels_last)
    close(y, y_ref, dtype, "forward")
    if backward:
        g = torch.randn_like(y_ref)
        y.backward(g.to(dtype))
        y_ref.backward(g)
        for name, t, r in zip(("x", "weight", "bias", "residual", "skip"), leaves, ref, strict=True):
            if t is not None:
                close(t.grad, r.grad, dtype, f"grad {name}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"cin{c[1]}-x{c[4]}-{str(c[6])[6:]}-{c[8]}-{c[9]}-skip{c[10]}")
def test_triton_matches_reference_cpu_interpreter(interpret: None, case: tuple) -> None:
    check(case)


def test_gpu_block_config_in_interpreter(interpret: None) -> None:
    x, wt, b, r, k = _inputs((1, 26, 9, 13, 4, 3, F32, False, "none", "full", True))
    y = cps._launch(x, wt, b, 4, r, k, "none", config=(64, 16, 32))
    close(y, conv_pixelshuffle_reference(x.double(), wt.double(), b.double(), 4, r.double(), k.double()), F32)


def test_nearest_up_is_repeat_interleave() -> None:
    x = torch.arange(6.0).view(1, 1, 2, 3)
    assert torch.equal(nearest_up(x, 2), torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [F32, F16, BF16])
def test_triton_matches_reference_cuda(cuda: None, dtype: torch.dtype) -> None:
    for case in CASES:
        c = list(case)
        c[2], c[3], c[6] = 67, 45, dtype
        check(tuple(c), device="cuda")
