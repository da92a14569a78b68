"""The engine's CPU fast paths (issue 7): precision auto/fp32 pick the fastest float32 path (ONNX Runtime, fused
channels_last PyTorch or eager) and equal the plain PyTorch model within float32 rounding, whole image and tiled
(tiles of different sizes: dynamic H/W); bf16 runs the fused network in channels_last; int8 calibrates on the
first input or on given images; forced paths that cannot run raise a ValueError. Tiny seeded models, CPU."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from restore.archs.base import ModelMeta
from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN_RTC
from restore.archs.span import SPAN
from restore.engine import restorer as restorer_mod
from restore.engine.restorer import Restorer, RunStats
from tests.conftest import needs_bf16_cpu

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnx not installed (optional extra)")


def _espcn() -> nn.Module:
    torch.manual_seed(6)
    return ESPCN(scale=2, features=(8, 8)).eval()


def _span() -> nn.Module:
    torch.manual_seed(3)
    return SPAN(feature_channels=8, upscale=2, form="train").eval()


def _rtc() -> nn.Module:
    torch.manual_seed(1)
    return IMDN_RTC(scale=2, nf=12, num_modules=2).eval()


def _dncnn() -> nn.Module:
    torch.manual_seed(7)
    return DnCNN(num_layers=4, num_features=8, batch_norm=False).eval()


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _reference(model: nn.Module, img: np.ndarray) -> np.ndarray:
    """The plain PyTorch model, whole image (eager: the behaviour before the fast paths)."""
    return Restorer(model, device="cpu", precision="fp32", backend="eager", tile=None).run(img)


@needs_ort
@pytest.mark.parametrize("make", [_espcn, _span, _rtc, _dncnn])
@pytest.mark.parametrize("backend", ["onnxruntime", "torch", "auto"])
@pytest.mark.parametrize("tile", [None, 40])
def test_fp32_paths_equal_the_pytorch_model(make, backend: str, tile: int | None) -> None:  # noqa: ANN001
    model = make()
    img = _image((71, 93, 3))  # 71x93: not a multiple of anything; tile 40 gives tiles of several sizes
    ref = _reference(model, img)
    stats = RunStats()
    r = Restorer(model, device="cpu", precision="fp32", backend=backend, tile=tile)  # type: ignore[arg-type]
    out = r.run(img, stats=stats)
    assert stats.backend == r.backend
    if backend != "auto":
        assert r.backend == backend
    elif tile is None:
        assert r.backend in ("onnxruntime", "torch", "eager")
    else:  # "pending" while every window is under TUNE_MIN_PIXELS (nothing timed or built: eager)
        assert r.backend in ("pending", "onnxruntime", "torch", "eager")
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)
    if tile is not None:
        assert len(set(stats.tiles)) >= 1 and stats.windows > 1
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's model is untouched


@needs_ort
def test_auto_times_the_paths_once_and_caches_the_choice(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from restore.engine import cpu_paths as cpu

    calls: list[tuple[int, ...]] = []
    real = cpu.fastest_fp32

    def spy(model: nn.Module, probe: torch.Tensor, **kw):  # noqa: ANN003, ANN202
        calls.append(tuple(probe.shape))
        return real(model, probe, **kw)

    monkeypatch.setattr(cpu, "fastest_fp32", spy)
    r = Restorer(_espcn(), device="cpu", tile=None)
    assert r.backend == "pending"
    r.run(_image((12, 10, 3)))  # smaller than TUNE_MIN_PIXELS: eager, nothing built
    assert calls == [] and r.backend == "eager" and r._fast is None  # reports what ran (84a2287), still untuned
    with caplog.at_level(logging.INFO, logger=restorer_mod.__name__):
        r.run(_image((70, 300, 3)))
        r.run(_image((90, 80, 3), seed=1))
    assert calls == [(1, 1, 70, restorer_mod.TUNE_SIDE)] and r.backend in ("onnxruntime", "torch", "eager")
    assert "CPU fp32 path" in caplog.text


def test_bad_fast_path_is_rejected_not_used() -> None:
    """A candidate whose output differs from the model's (a trace that froze a size-dependent branch) loses."""
    from restore.engine import cpu_paths as cpu

    class SizeDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _dncnn()

        @property
        def meta(self):  # noqa: ANN201
            return self.inner.meta

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            return y + 1.0 if x.shape[-1] > 64 else y  # the ONNX export (64x64 example) freezes the else branch

    runner, times = cpu.fastest_fp32(SizeDependent().eval(), torch.rand(1, 1, 32, 96))
    assert runner.backend != "onnxruntime" and "onnxruntime" not in times


@needs_ort
def test_int8_calibrates_on_the_first_input(caplog: pytest.LogCaptureFixture) -> None:
    model = _espcn()
    img = (_image((60, 70, 3)) * 255).astype(np.uint8)
    ref = _reference(model, img)
    stats = RunStats()
    r = Restorer(model, device="cpu", precision="int8", tile=None)
    assert r.backend == "pending"
    with caplog.at_level(logging.INFO, logger=restorer_mod.__name__):
        out = r.run(img, stats=stats)
    assert "crop(s) of the first input" in caplog.text
    assert r.backend == "onnxruntime" and stats.precision == "int8" and stats.backend == "onnxruntime"
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert 0 < diff.max() <= 40 and diff.mean() < 4  # really quantised, still close
    r.run(img[:40, :50])  # cached session, other size (dynamic H/W)


class _NearestConv(nn.Module):
    """x2 nearest-neighbour upscaler as one 1x1 conv (weights 0/1) + pixel shuffle. Quantised with activations
    calibrated on [0, 1] it is exact on uint8 images (scale 1/255, zero point 0, weights 1 = 127 * 1/127); with
    activations calibrated on [0, top/255] it is exactly ``min(nearest, top)`` (the range saturates)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 1)
        self.shuffle = nn.PixelShuffle(2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            for c in range(3):
                self.conv.weight[4 * c:4 * c + 4, c] = 1.0  # shuffle: output (c, dy, dx) <- channel 4c + 2dy + dx

    @property
    def meta(self) -> ModelMeta:
        return ModelMeta(family="test", variant="nearest-conv", task="sr", scale=2, in_channels=3, out_channels=3,
                         receptive_field=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


@needs_ort
@pytest.mark.parametrize("top", [255, 127])
def test_int8_calibration_images(tmp_path, top: int) -> None:  # noqa: ANN001
    """The given calibration images, not the input, set the activation range: exact outputs either way."""
    from restore import io

    rng = np.random.default_rng(top)
    for k in range(2):
        calib = rng.integers(0, top + 1, (40, 44, 3), dtype=np.uint8)
        calib[20, 20], calib[20, 21] = 0, top  # both ends of the range inside the 40 px centre crop
        io.write_image(tmp_path / f"c{k}.png", calib)
    img = rng.integers(0, 256, (50, 61, 3), dtype=np.uint8)
    img[0, 0], img[0, 1] = 0, 255  # the input spans the full range whatever the calibration saw
    r = Restorer(_NearestConv().eval(), device="cpu", precision="int8", calibration=tmp_path, tile=24)
    out = r.run(img)
    assert r.backend == "onnxruntime" and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.minimum(img.repeat(2, axis=0).repeat(2, axis=1), top))


@needs_bf16_cpu
def test_bf16_runs_fused_channels_last_with_fp32_retry() -> None:
    model = _span()
    img = _image((30, 27, 3))
    r = Restorer(model, device="cpu", precision="bf16", tile=None)
    assert r.backend == "torch" and r.low_model is not None
    assert next(r.low_model.parameters()).dtype == torch.bfloat16 and r.low_model.form == "deploy"
    out, ref = r.run(img), _reference(model, img)
    assert np.abs(out - ref).max() < 6e-2 * max(1.0, np.abs(ref).max())  # random SPAN: outputs far beyond [0, 1]
    eager = Restorer(model, device="cpu", precision="bf16", backend="eager")
    assert eager.low_model is not None and eager.low_model.form == "train"  # the previous NCHW copy


def _has_conv_act(net: nn.Module) -> bool:
    from restore.engine.cpu_paths import ConvAct

    return any(isinstance(m, ConvAct) for m in net.modules())


@needs_bf16_cpu
@pytest.mark.parametrize("winner", ["fused", "unfused"])
def test_bf16_keeps_the_faster_of_fused_and_unfused(winner: str, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from restore.engine import cpu_paths as cpu

    model = _span()
    r = Restorer(model, device="cpu", precision="bf16", tile=None)
    assert _has_conv_act(r.low_model) and r._low_unfused is not None and not _has_conv_act(r._low_unfused)
    fused, unfused = r.low_model, r._low_unfused
    small = _image((30, 27, 3))  # 810 LR px: below TUNE_MIN_PIXELS, runs the fused copy, times nothing
    first = r.run(small)
    assert r.low_model is fused and r._low_unfused is unfused
    timed: list[nn.Module] = []

    def fake_time(fn: nn.Module, x: torch.Tensor, reps: int) -> float:
        timed.append(fn)
        assert x.dtype == torch.bfloat16 and max(x.shape[-2:]) <= restorer_mod.TUNE_SIDE
        return 1.0 if (fn is fused) == (winner == "fused") else 2.0

    monkeypatch.setattr(cpu, "best_time", fake_time)
    caplog.set_level(logging.INFO, logger=restorer_mod.log.name)
    img = _image((70, 66, 3))
    out, ref = r.run(img), _reference(model, img)
    assert timed == [fused, unfused] and r._low_unfused is None
    assert r.low_model is (fused if winner == "fused" else unfused)
    assert "CPU bf16 path for span/" in caplog.text and f": {winner} (" in caplog.text
    assert np.abs(out - ref).max() < 6e-2 * max(1.0, np.abs(ref).max())
    r.run(img)
    assert len(timed) == 2  # decided once
    np.testing.assert_allclose(r.run(small), first, atol=3e-2 * max(1.0, float(np.abs(first).max())))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"precision": "int4"}, "precision must be one of"),
    ({"backend": "tvm"}, "backend must be one of"),
    ({"precision": "int8", "backend": "torch"}, "int8.*ONNX Runtime only"),
    ({"precision": "bf16", "backend": "onnxruntime"}, "ONNX Runtime has no bf16"),
    ({"precision": "fp16", "backend": "torch"}, "fp16.*eager only"),
    ({"precision": "fp32", "calibration": "x"}, "calibration images are for precision='int8'"),
])
def test_impossible_requests_are_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Restorer(_espcn(), device="cpu", **kwargs)


def test_no_onnxruntime_means_a_clear_error_for_forced_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restorer_mod, "_have_onnxruntime", lambda: False)
    with pytest.raises(ValueError, match="needs ONNX Runtime"):
        Restorer(_espcn(), device="cpu", precision="int8")
    with pytest.raises(ValueError, match="needs ONNX Runtime"):
        Restorer(_espcn(), device="cpu", backend="onnxruntime")


def test_forced_onnxruntime_that_cannot_export_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAS_ORT:
        pytest.skip("onnxruntime/onnx not installed (optional extra)")
    from restore.engine import cpu_paths as cpu

    def broken(net: nn.Module) -> bytes:
        raise RuntimeError("Exporting the operator 'foo' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(cpu, "export_onnx", broken)
    r = Restorer(_espcn(), device="cpu", backend="onnxruntime")
    with pytest.raises(ValueError, match="backend='onnxruntime' cannot run.*operator 'foo'"):
        r.run(_image((70, 70, 3)))
    auto = Restorer(_espcn(), device="cpu")  # auto: the failing candidate is skipped (logged), others compete
    auto.run(_image((70, 70, 3)))
    assert auto.backend in ("torch", "eager")


def test_int8_is_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="int8.*CPU only"):
        restorer_mod.check_backend("auto", "int8", torch.device("cuda"))
    with pytest.raises(ValueError, match="CPU path"):
        restorer_mod.check_backend("onnxruntime", "fp32", torch.device("cuda"))


def test_fast_chroma_merge_is_byte_identical_to_the_numpy_path() -> None:
    from restore import io

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    ycc = io.rgb_to_ycrcb_full(rgb)
    y = rng.random((18, 26, 1), dtype=np.float32) * 1.2 - 0.1  # out of range on both sides
    y[0, :4, 0] = [0.5 / 255, 1.5 / 255, 2.5 / 255, -0.0]  # exact halves: round half to even
    out = np.empty((18, 26, 3), np.uint8)
    restorer_mod._merge_chroma(ycc, y, out, 2, uint8_path=True)
    up = io.resize_bilinear(ycc, 2)
    up[..., 0] = y[..., 0]
    assert np.array_equal(out, io.ycrcb_full_to_rgb(up, np.uint8))


@pytest.mark.parametrize("argv", [
    ["upscale", "a.png", "--precision", "int8", "--calib", "dir"],
    ["denoise", "a.png", "--precision", "bf16"],
    ["video", "a.mp4", "-o", "b.mp4", "--precision", "int8"],
    ["eval", "--weights", "w.pth", "--data", "d", "--precision", "int8", "--calib", "dir"],
])
def test_cli_precision_flags(argv: list[str], tmp_path: Path) -> None:
    from restore.cli import build_parser

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "c.png").write_bytes(b"")  # --calib is checked: a folder that holds images
    calib = str(tmp_path / "dir")
    argv = [calib if a == "dir" else a for a in argv]
    args = build_parser().parse_args(argv)
    assert args.precision == argv[argv.index("--precision") + 1]
    assert args.calib == (calib if "--calib" in argv else None)
    assert build_parser().parse_args(argv[:argv.index("--precision")]).precision == (
        "fp32" if argv[0] == "eval" else "auto")
