"""Chunked spatial-affinity loss: equal to the unchunked definition, value and gradient."""

from __future__ import annotations

import pytest
import torch

from restore.train.losses import SpatialAffinityLoss, affinity_l1, affinity_l1_reference


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_chunked_equals_reference(chunk: int):
    g = torch.Generator().manual_seed(chunk)
    s = torch.randn(2, 6, 5, 9, generator=g, requires_grad=True)
    t = torch.randn(2, 11, 5, 9, generator=g)  # teacher may have another channel count
    val = affinity_l1(s, t, chunk=chunk)
    (gs,) = torch.autograd.grad(val, s)
    ref = affinity_l1_reference(s, t)
    (gr,) = torch.autograd.grad(ref, s)
    assert val.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(gs, gr, rtol=1e-4, atol=1e-7)


def test_gradcheck_float64():
    s = torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 2, 3, 4, dtype=torch.float64)

    def f(x):
        return affinity_l1(x, t, chunk=5).double()

    assert torch.autograd.gradcheck(lambda x: f(x), (s,), eps=1e-6, atol=1e-4)


def test_identical_features_give_zero_and_scale_invariance():
    x = torch.randn(1, 4, 6, 6)
    assert affinity_l1(x, x.clone(), chunk=8).item() == pytest.approx(0.0, abs=1e-6)
    # per-pixel normalisation: scaling a pixel's vector does not change the affinity
    assert affinity_l1(x * 3.0, x, chunk=8).item() == pytest.approx(0.0, abs=1e-6)


def test_module_weights_and_averages_layers():
    a, b = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    c, d = torch.randn(1, 3, 4, 4), torch.randn(1, 2, 4, 4)
    loss = SpatialAffinityLoss(student_layers=["x", "y"], teacher_layers=["p", "q"], loss_weight=2.0, chunk_size=3)
    expect = 2.0 * (affinity_l1_reference(a, b) + affinity_l1_reference(c, d)) / 2
    assert loss([a, c], [b, d]).item() == pytest.approx(expect.item(), rel=1e-5)
    with pytest.raises(ValueError, match="spatial size"):
        affinity_l1(a, c)


def test_memory_stays_bounded():
    """64x64 features (HW = 4096): the chunked loss never holds an HW x HW matrix (64 MiB)."""

    s = torch.randn(1, 8, 64, 64, requires_grad=True)
    t = torch.randn(1, 8, 64, 64)
    with torch.profiler.profile(profile_memory=True) as prof:
        affinity_l1(s, t, chunk=256).backward()
    biggest = max((e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0), default=0)
    assert biggest < 4096 * 4096 * 4 // 2, biggest  # largest single allocation well under one full matrix
