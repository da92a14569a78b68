"""Restorer precision and device: fp32 / fp16 / bf16 / auto, the per-window NaN/inf check with its float32
re-run, the clear error for a precision this torch build cannot run, and device="auto". CPU, tiny models
(fp16 and bf16 both run on the CPU in current torch builds); GPU checks are marked ``gpu``."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from torch import nn

from restore.archs.cfsr import CFSR
from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN, IMDN_RTC
from restore.engine import restorer as restorer_mod
from restore.engine.restorer import Restorer, RunStats, resolve_device, resolve_precision
from tests.conftest import needs_bf16_cpu


def _image(shape: tuple[int, ...], dtype: type = np.float32, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return a if dtype is np.float32 else (a * np.iinfo(dtype).max).astype(dtype)


def _rtc() -> nn.Module:
    torch.manual_seed(1)
    return IMDN_RTC(scale=2, nf=12, num_modules=2).eval()


class _Delegate(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @property
    def meta(self):  # noqa: ANN201
        return self.inner.meta


class _InfInHalf(_Delegate):
    """float16 input -> an inf in the output of every sample whose mean input exceeds ``threshold``
    (the fp16 overflow this engine must catch); other dtypes pass through."""

    def __init__(self, inner: nn.Module, threshold: float = -1.0) -> None:
        super().__init__(inner)
        self.threshold = threshold
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.dtypes.append(x.dtype)
        y = self.inner(x)
        if x.dtype == torch.float16:
            hot = x.float().mean(dim=(1, 2, 3)) > self.threshold * self.meta.input_range
            y = y.clone()
            y[hot, :, 0, 0] = float("inf")
        return y


class _NoHalfKernel(_Delegate):
    def __init__(self, inner: nn.Module, message: str) -> None:
        super().__init__(inner)
        self.message = message

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise RuntimeError(self.message)
        return self.inner(x)


# ------------------------------------------------------------------------------------ device, choices


def test_device_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("auto") == torch.device("cpu")  # the conftest hides CUDA from non-gpu tests
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")  # only a device object: nothing is initialised
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_importing_the_engine_does_not_initialise_cuda() -> None:
    import subprocess
    import sys

    code = ("import torch, restore.engine.restorer, restore.engine.acs, restore.engine.tiling; "
            "assert not torch.cuda.is_initialized(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_resolve_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    meta = _rtc().meta
    unsafe = dataclasses.replace(meta, half_safe=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, meta) is torch.float32  # "auto" never picks fp16 on the CPU
    assert resolve_precision("auto", cuda, meta) is torch.float16
    assert resolve_precision("auto", cuda, unsafe) is torch.float32
    assert resolve_precision("fp16", cpu, meta) is torch.float16
    assert resolve_precision("bf16", cpu, unsafe) is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp64", cpu, meta)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ValueError, match="bf16.*fp16"):
        resolve_precision("bf16", cuda, meta)


# ---------------------------------------------------------------------------------- fp16 / bf16 on CPU


def _imdn() -> nn.Module:
    torch.manual_seed(4)
    return IMDN(scale=2, nf=16, num_modules=1).eval()  # CCA statistics upcast inside


def _cfsr() -> nn.Module:
    torch.manual_seed(5)
    return CFSR(scale=2, embed_dim=12, depths=(1,), dw_size=7).eval()  # LayerNorm upcast inside


def _espcn() -> nn.Module:
    torch.manual_seed(6)
    return ESPCN(scale=2, features=(8, 8)).eval()  # y_full


def _dncnn() -> nn.Module:
    torch.manual_seed(7)
    return DnCNN(num_layers=4, num_features=8, batch_norm=False).eval()  # gray


@pytest.mark.parametrize("make", [_rtc, _imdn, _cfsr, _espcn, _dncnn])
@pytest.mark.parametrize(("precision", "atol"), [("fp16", 1e-2), pytest.param("bf16", 6e-2, marks=needs_bf16_cpu)])
def test_low_precision_runs_on_cpu(make, precision: str, atol: float) -> None:  # noqa: ANN001
    model = make()
    img = _image((13, 11, 3))
    ref = Restorer(model, device="cpu", precision="fp32", tile=8).run(img)
    stats = RunStats()
    r = Restorer(model, device="cpu", precision=precision, tile=8)
    out = r.run(img, stats=stats)
    assert r.low_model is not None and next(r.low_model.parameters()).dtype == restorer_mod.DTYPES[precision]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's model is not converted
    assert out.dtype == np.float32 and out.shape == ref.shape and np.isfinite(out).all()
    assert stats.precision == precision and stats.fp32_retries == 0 and stats.windows >= 1
    diff = np.abs(out - ref).max()
    assert 0 < diff < atol  # really ran in low precision, and close to float32
    u8 = _image((13, 11, 3), np.uint8)
    d8 = np.abs(r.run(u8).astype(int) - Restorer(model, precision="fp32", tile=8).run(u8).astype(int))
    assert d8.max() <= 255 * atol


def test_forward_tensor_returns_float32() -> None:
    r = Restorer(_rtc(), precision="fp16")
    y = r.forward_tensor(torch.rand(2, 3, 9, 8))
    assert y.dtype == torch.float32 and y.shape == (2, 3, 18, 16)


# ---------------------------------------------------------------------------------- NaN / inf retry


@pytest.mark.parametrize("tile", [None, 6, "acs"])
def test_non_finite_fp16_windows_are_rerun_in_fp32(tile: object, caplog: pytest.LogCaptureFixture) -> None:
    model = _InfInHalf(_rtc())
    img = _image((20, 17, 3), np.uint8)
    ref = Restorer(_rtc(), precision="fp32", tile=tile).run(img)  # type: ignore[arg-type]
    stats = RunStats()
    r = Restorer(model, precision="fp16", tile=tile, acs_min_size=100)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger=restorer_mod.__name__):
        out = r.run(img, stats=stats)
    assert np.array_equal(out, ref)  # every window was re-run in float32: the float32 result exactly
    assert stats.fp32_retries == stats.windows >= 1 and "NaN/inf" in caplog.text
    assert r.low_model is not None and set(r.low_model.dtypes) == {torch.float16}  # the float16 copy ...
    assert set(model.dtypes) == {torch.float32} and len(model.dtypes) == stats.forwards  # ... then float32


def test_only_the_failing_samples_of_a_batch_are_rerun() -> None:
    model = _InfInHalf(_rtc(), threshold=0.5)
    dark, bright = _image((12, 10, 3)) * 0.4, 0.6 + _image((12, 10, 3), seed=1) * 0.4
    ref = Restorer(_rtc(), precision="fp32").run_batch([dark, bright])
    stats = RunStats()
    out = Restorer(model, precision="fp16").run_batch([dark, bright], stats=stats)
    assert stats.forwards == 1 and stats.windows == 2 and stats.fp32_retries == 1
    np.testing.assert_allclose(out[1], ref[1], rtol=0, atol=1e-6)  # re-run in float32
    diff = np.abs(out[0] - ref[0]).max()
    assert np.isfinite(out[0]).all() and 0 < diff < 1e-2  # kept from the float16 run


def test_bf16_is_checked_too() -> None:
    class _NanInBf16(_Delegate):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            return y * float("nan") if x.dtype == torch.bfloat16 else y

    stats = RunStats()
    img = _image((9, 9, 3))
    out = Restorer(_NanInBf16(_rtc()), precision="bf16").run(img, stats=stats)
    assert stats.fp32_retries == 1
    assert np.array_equal(out, Restorer(_rtc(), precision="fp32").run(img))


# ---------------------------------------------------------------------------- unsupported precisions


@pytest.mark.parametrize(("precision", "error", "hint"), [
    ("fp16", "\"slow_conv2d_cpu\" not implemented for 'Half'", "bf16"),
    ("bf16", "\"slow_conv2d_cpu\" not implemented for 'BFloat16'", "fp32"),
    # oneDNN on an AVX2-only x86 CPU
    ("bf16", "mkldnn_convolution: bf16 path needs the cpu support avx_ne_convert or avx512bw, avx512vl and avx512dq",
     "fp32"),
])
def test_missing_kernel_is_a_clear_error(precision: str, error: str, hint: str) -> None:
    model = _NoHalfKernel(_rtc(), error)
    with pytest.raises(ValueError, match=f"precision='{precision}' does not work on cpu.*{hint}"):
        Restorer(model, device="cpu", precision=precision)  # type: ignore[arg-type]
    assert Restorer(model, device="cpu", precision="fp32").precision == "fp32"


def test_other_errors_of_the_probe_propagate() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        Restorer(_NoHalfKernel(_rtc(), "boom"), precision="fp16")


# ----------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_is_fp16_with_retry() -> None:
    r = Restorer(_rtc())
    assert r.device.type == "cuda" and r.precision == "fp16"
    img = _image((40, 33, 3))
    ref = Restorer(_rtc(), device="cpu").run(img)
    np.testing.assert_allclose(r.run(img), ref, rtol=0, atol=1e-2)
    stats = RunStats()
    out = Restorer(_InfInHalf(_rtc()), tile=16).run(img, stats=stats)
    assert stats.fp32_retries == stats.windows > 1
    np.testing.assert_allclose(out, ref, rtol=0, atol=5e-3)  # CUDA float32 convs may use TF32
