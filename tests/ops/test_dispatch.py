from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from restore.ops import KernelUnavailableError, conv_pixelshuffle, dispatch, lk_dwconv
from restore.ops.conv_pixelshuffle import upsample_tail
from restore.ops.lk_dwconv import run_depthwise
from tests.ops.conftest import HAS_TRITON, close

F32 = torch.float32


def test_env_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, want in (("", "auto"), ("AUTO", "auto"), ("reference", "reference"), (" triton ", "triton")):
        monkeypatch.setenv(dispatch.ENV, value)
        assert dispatch.requested() == want
    monkeypatch.setenv(dispatch.ENV, "cuda")
    with pytest.raises(ValueError, match="RESTORE_KERNELS"):
        dispatch.requested()


def test_auto_on_cpu_is_reference_and_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dispatch.ENV, raising=False)
    x, w, b = torch.randn(1, 8, 9, 11), torch.randn(8, 1, 9, 9), torch.randn(8)
    assert dispatch.backend_for("lk_dwconv", (x, w, b)) == "reference"
    assert torch.equal(lk_dwconv(x, w, b), nn.functional.conv2d(x, w, b, 1, 4, 1, 8))
    wt, bt = torch.randn(12, 8, 3, 3), torch.randn(12)
    ref = nn.functional.pixel_shuffle(nn.functional.conv2d(x, wt, bt, 1, 1), 2)
    assert torch.equal(conv_pixelshuffle(x, wt, bt, 2), ref)


def test_forced_triton_on_cpu_without_interpreter_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatch.ENV, "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 1, 3, 3)
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET"):
        lk_dwconv(x, w)
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET"):
        conv_pixelshuffle(x, torch.randn(16, 4, 3, 3), None, 2)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.randn(1, 4, 8, 8), torch.randn(4, 1, 4, 4)), "odd"),
        ((torch.randn(1, 4, 8, 8), torch.randn(4, 1, 33, 33)), "3..31"),
        ((torch.randn(1, 4, 8, 8), torch.randn(4, 2, 3, 3)), "weight"),
        ((torch.randn(1, 4, 8, 8, dtype=torch.float64), torch.randn(4, 1, 3, 3, dtype=torch.float64)), "dtype"),
    ],
)
def test_forced_triton_unsupported_fails_loudly(interpret: None, args: tuple, match: str) -> None:
    with pytest.raises(KernelUnavailableError, match=match):
        lk_dwconv(*args)


def test_forced_reference_never_imports_triton() -> None:
    code = textwrap.dedent("""
        import os, sys
        os.environ["RESTORE_KERNELS"] = "reference"
        import torch, restore, restore.ops, restore.archs.cfsr as c, restore.archs.espcn as e
        assert "triton" not in sys.modules, "import restore pulled in triton"
        m = c.CFSR(scale=2, embed_dim=8, depths=(1,)).eval()
        with torch.no_grad():
            m(torch.rand(1, 3, 9, 9)); e.ESPCN(scale=2)(torch.rand(1, 1, 5, 5))
        os.environ.pop("RESTORE_KERNELS")
        with torch.no_grad():
            m(torch.rand(1, 3, 9, 9))
        assert "triton" not in sys.modules, "a CPU forward pulled in triton"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_module_helpers_keep_module_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hooked or non-plain modules always run as modules (so distillation hooks and LoRA keep working)."""
    monkeypatch.setenv(dispatch.ENV, "triton")  # no interpreter: a kernel attempt would raise
    conv = nn.Conv2d(4, 4, 5, padding=2, groups=4)
    seen = []
    conv.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.randn(1, 4, 6, 7)
    assert torch.equal(run_depthwise(conv, x), conv(x)) and len(seen) == 2
    up = nn.Sequential(nn.Conv2d(4, 12, 3, padding=1), nn.PixelShuffle(2))
    up.register_forward_pre_hook(lambda m, i: None)
    assert torch.equal(upsample_tail(up, x, 2), up(x))
    strided = nn.Conv2d(4, 4, 5, stride=2, padding=2, groups=4)
    assert torch.equal(run_depthwise(strided, x), strided(x))


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_archs_route_through_kernels(interpret: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced Triton: a tiny CFSR (deploy and train form) and an ESPCN use the kernels and match the reference."""
    from restore.archs.cfsr import CFSR
    from restore.archs.espcn import ESPCN

    calls: dict[str, int] = {"lk": 0, "ps": 0}
    lk_mod = sys.modules["restore.ops.lk_dwconv"]
    ps_mod = sys.modules["restore.ops.conv_pixelshuffle"]
    lk_apply, ps_apply = lk_mod.LKDWConvFunction.apply, ps_mod.ConvPixelShuffleFunction.apply

    def count(key, fn):
        def wrapped(*a):
            calls[key] += 1
            return fn(*a)
        return wrapped

    monkeypatch.setattr(lk_mod.LKDWConvFunction, "apply", count("lk", lk_apply))
    monkeypatch.setattr(ps_mod.ConvPixelShuffleFunction, "apply", count("ps", ps_apply))
    for model, x in (
        (CFSR(scale=2, embed_dim=8, depths=(1,), dw_size=9), torch.rand(1, 3, 10, 9)),
        (CFSR(scale=3, embed_dim=8, depths=(1,), dw_size=5, form="train"), torch.rand(1, 3, 6, 7)),
        (ESPCN(scale=2, features=(8, 8)), torch.rand(1, 1, 9, 10)),
    ):
        model.eval()
        with torch.no_grad():
            y = model(x)
            monkeypatch.setenv(dispatch.ENV, "reference")
            y_ref = model(x)
            monkeypatch.setenv(dispatch.ENV, "triton")
        close(y, y_ref, F32, type(model).__name__)
    assert calls == {"lk": 3, "ps": 3}  # deploy 1 + train 2 (large + small branch); 3 tails
