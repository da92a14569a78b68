from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restore.archs.espcn import ESPCN
from restore.archs.span import SPAN
from restore.engine.cpu_paths import calibration_inputs, deploy_copy, optimize_for_inference
from tests.conftest import needs_bf16_cpu

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnx not installed (optional extra)")


def _span_train() -> SPAN:
    torch.manual_seed(0)
    return SPAN(feature_channels=8, upscale=2, form="train").eval()


def _images(n: int = 3, side: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, side, dtype=np.float32)
    return [np.clip(base[None, :, None] * 0.5 + base[:, None, None] * 0.5 + rng.normal(0, 20, (side, side, 3)), 0, 255)
            .astype(np.uint8) for _ in range(n)]


def test_deploy_copy_fuses_without_touching_the_source() -> None:
    net = _span_train()
    fused = deploy_copy(net)
    assert net.form == "train" and fused.form == "deploy"
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert (fused(x) - net(x)).abs().max() < 1e-3  # fuse() equality is tested in tests/archs at 1e-5 scale


@needs_ort
@pytest.mark.parametrize("make", [lambda: ESPCN(scale=3, features=(8, 4)), _span_train])
def test_onnxruntime_fp32_matches_torch(make) -> None:
    net = make().eval()
    fast = optimize_for_inference(net, precision="fp32")
    assert fast.backend == "onnxruntime" and fast.meta == deploy_copy(net).meta
    for shape in ((1, 13, 17), (2, 8, 5)):  # dynamic batch / height / width
        x = torch.rand(shape[0], net.meta.in_channels, *shape[1:])
        with torch.no_grad():
            ref = deploy_copy(net)(x)
        y = fast(x)
        assert y.shape == ref.shape and y.dtype == torch.float32
        assert (y - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())


@needs_bf16_cpu
def test_torch_backends_fp32_and_bf16() -> None:
    net = ESPCN(scale=2, features=(8, 4)).eval()
    x = torch.rand(1, 1, 11, 7)
    with torch.no_grad():
        ref = net(x)
    fp = optimize_for_inference(net, precision="fp32", backend="torch")
    assert torch.allclose(fp(x), ref, atol=1e-5)
    bf = optimize_for_inference(net, precision="bf16")
    assert bf.backend == "torch" and bf(x).dtype == torch.float32
    assert (bf(x) - ref).abs().max() < 0.05


@needs_ort
def test_int8_runs_and_stays_close() -> None:
    net = ESPCN(scale=2, features=(8, 4)).eval()
    q = optimize_for_inference(net, precision="int8", calibration=_images(), keep_edges_float=False)
    x = calibration_inputs(net.meta, _images(1, 24), downscale=False)[0]
    with torch.no_grad():
        ref = net(x)
    assert (q(x) - ref).abs().max() < 0.1


def test_argument_errors() -> None:
    net = ESPCN(scale=2)
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(net, precision="int4")
    with pytest.raises(ValueError, match="backend"):
        optimize_for_inference(net, backend="tvm")
    with pytest.raises(ValueError, match="int8"):
        optimize_for_inference(net, precision="int8", backend="torch")
    if HAS_ORT:
        with pytest.raises(ValueError, match="calibration"):
            optimize_for_inference(net, precision="int8")


def test_calibration_inputs_follow_model_convention() -> None:
    """Exact model-space crops: SR inputs shrunk by the scale (area = mean of s x s blocks), centre crop, BT.601
    luma for a one-channel model; a denoiser's crop plus N(0, 25/255) from default_rng(0), image after image."""
    imgs = _images(2, 50)
    ins = calibration_inputs(ESPCN(scale=2).meta, imgs, side=16)
    assert len(ins) == 2
    for x, img in zip(ins, imgs, strict=True):
        half = (img.astype(np.float32) / 255).reshape(25, 2, 25, 2, 3).mean(axis=(1, 3))
        crop = half[4:20, 4:20]  # (25 - 16) // 2 = 4
        luma = crop[..., 0] * 0.299 + crop[..., 1] * 0.587 + crop[..., 2] * 0.114
        assert x.shape == (1, 1, 16, 16) and x.dtype == torch.float32
        np.testing.assert_allclose(x[0, 0].numpy(), luma, rtol=0, atol=1e-6)
    from restore.archs.dncnn import DnCNN

    noisy = calibration_inputs(DnCNN(in_channels=3, num_layers=3, num_features=4).meta, imgs, side=16)
    rng = np.random.default_rng(0)
    for x, img in zip(noisy, imgs, strict=True):
        crop = img[17:33, 17:33].astype(np.float32) / 255  # no shrinking for a denoiser: (50 - 16) // 2 = 17
        want = crop + rng.normal(0.0, 25.0 / 255.0, crop.shape).astype(np.float32)
        np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), want)


@needs_ort
def test_engine_runs_optimized_model() -> None:
    from restore.engine.restorer import Restorer

    net = ESPCN(scale=2, features=(8, 4)).eval()
    fast = optimize_for_inference(net)
    img = _images(1, 21)[0]
    a = Restorer(net, device="cpu", tile=None).run(img)
    b = Restorer(copy.deepcopy(fast), device="cpu", tile=None).run(img)
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_native_bf16_reads_the_cpu_flags(tmp_path) -> None:
    from restore.engine.cpu_paths import cpu_info, native_bf16

    for flags, expected in (("fpu sse avx512f amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", True),
                            ("fpu sse avx2 avx512f", False)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n"
                                          f"processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n")
        assert native_bf16(tmp_path / "cpuinfo") is expected
        assert cpu_info(tmp_path / "cpuinfo") == ("Test CPU", frozenset(flags.split()))  # the first processor
    assert native_bf16(tmp_path / "missing") is False
    assert cpu_info(tmp_path / "missing")[1] == frozenset() and cpu_info(tmp_path / "missing")[0]


def test_simd_summary_names_what_benchmarks_depend_on(tmp_path) -> None:
    from restore.engine.cpu_paths import simd_summary

    for flags, expected in (
        ("fpu sse avx2 fma", "Test CPU; avx2 fma; VNNI/AMX-INT8: no; native bf16: no"),
        ("fpu avx2 fma avx512f avx512_vnni", "Test CPU; avx2 avx512_vnni avx512f fma; VNNI/AMX-INT8: yes; "
                                             "native bf16: no"),
        ("fpu avx2 amx_bf16 amx_int8 amx_tile", "Test CPU; amx_bf16 amx_int8 amx_tile avx2; VNNI/AMX-INT8: yes; "
                                                "native bf16: yes"),
        ("fpu sse2", "Test CPU; no AVX2; VNNI/AMX-INT8: no; native bf16: no"),
    ):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
        assert simd_summary(tmp_path / "cpuinfo") == expected, flags


def test_bf16_convolutions_reads_the_cpu_flags(tmp_path) -> None:
    from restore.engine.cpu_paths import bf16_convolutions

    for flags, expected in (("fpu sse avx avx2 fma", False), ("fpu avx2 avx512f avx512bw avx512vl avx512dq", True),
                            ("fpu avx2 avx512f avx512bw", False), ("fpu avx2 avx_ne_convert", True),
                            ("fp asimd bf16", True)):  # not x86: no flags to judge by
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert bf16_convolutions(tmp_path / "cpuinfo") is expected, flags


@needs_ort
def test_ort_workers_sleep_when_openmp_is_passive(monkeypatch) -> None:
    from restore.engine.cpu_paths import export_onnx, ort_session

    model = export_onnx(ESPCN(scale=2, features=(4, 4)).eval())
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    opts = ort_session(model, threads=1).get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    opts = ort_session(model, threads=1).get_session_options()
    with pytest.raises(RuntimeError, match="allow_spinning"):  # not set: ONNX Runtime's default (spinning)
        opts.get_session_config_entry("session.intra_op.allow_spinning")


class _Acts(nn.Module):
    """Every activation spelling the fusion pass knows, plus a conv whose output has two uses (not fused)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(9))
        self.lrelu, self.gelu = nn.LeakyReLU(0.2), nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.convs
        x = F.relu(c[0](x))
        x = torch.tanh(c[1](x))
        x = c[2](x).sigmoid()
        x = F.silu(c[3](x), inplace=False)
        x = self.lrelu(c[4](x))
        x = F.leaky_relu(c[5](x), 0.05)
        x = self.gelu(c[6](x))
        x = F.hardswish(c[7](x))
        y = c[8](x)
        return y + torch.sigmoid(y)


def _n_fused(net: nn.Module) -> int:
    return sum(type(m).__name__ == "ConvAct" for m in net.modules())


@pytest.mark.parametrize("shape", [(1, 4, 7, 9), (2, 4, 16, 5)])
def test_conv_activation_fusion_equals_unfused(shape) -> None:
    from restore.engine.cpu_paths import fuse_conv_activations

    torch.manual_seed(0)
    net = _Acts().eval()
    fused = fuse_conv_activations(net)
    assert _n_fused(fused) == 8  # the last conv feeds two ops: left alone
    x = torch.randn(shape)
    with torch.inference_mode():
        assert (fused(x) - net(x)).abs().max() < 1e-5
        for m in fused.modules():  # the activation as the network called it (run off the CPU) = the post-op
            if type(m).__name__ == "ConvAct":
                assert (m.reference(m.conv(x)) - m(x)).abs().max() < 1e-5


NETWORKS = [lambda: ESPCN(scale=3, features=(8, 4)), lambda: deploy_copy(_span_train()), lambda: deploy_copy(_dncnn()),
            lambda: _imdn_rtc(), lambda: _imdn(), lambda: deploy_copy(_cfsr())]


@pytest.mark.parametrize("make", NETWORKS)
def test_conv_activation_fusion_on_the_networks(make) -> None:
    from restore.engine.cpu_paths import fuse_conv_activations

    net = make().eval()
    fused = fuse_conv_activations(net)
    assert _n_fused(fused) >= 2 and fused.meta == net.meta
    x = torch.rand(1, net.meta.in_channels, 11, 13)
    with torch.inference_mode():
        assert (fused(x) - net(x)).abs().max() < 1e-5


@needs_bf16_cpu
@pytest.mark.parametrize("make", NETWORKS)
def test_conv_activation_fusion_on_the_networks_in_bf16(make) -> None:
    from restore.engine.cpu_paths import fuse_conv_activations

    net = make().eval()
    x = torch.rand(1, net.meta.in_channels, 11, 13)
    with torch.inference_mode():
        xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        nb = copy.deepcopy(net).to(torch.bfloat16).to(memory_format=torch.channels_last)
        ref, got = nb(xb).float(), fuse_conv_activations(nb)(xb).float()
        assert (got - ref).abs().max() <= 0.02 * ref.abs().max()  # bf16 rounding only (the post-op rounds once)


def test_conv_activation_fusion_leaves_untraceable_networks_alone() -> None:
    from restore.engine.cpu_paths import fuse_conv_activations

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.conv(x)) if x.shape[-1] > 4 else x  # data-dependent: fx cannot trace it

    net = Branchy()
    assert fuse_conv_activations(net) is net
    plain = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))  # traceable, nothing to fuse
    assert fuse_conv_activations(plain) is plain


def _dncnn() -> nn.Module:
    from restore.archs.dncnn import DnCNN

    torch.manual_seed(0)
    return DnCNN(in_channels=1, num_layers=5)


def _imdn_rtc() -> nn.Module:
    from restore.archs.imdn import IMDN_RTC

    torch.manual_seed(0)
    return IMDN_RTC(scale=2)


def _imdn() -> nn.Module:
    from restore.archs.imdn import IMDN

    torch.manual_seed(0)
    return IMDN(scale=2, nf=16, num_modules=2)


def _cfsr() -> nn.Module:
    from restore.archs.cfsr import CFSR

    torch.manual_seed(0)
    return CFSR(scale=2, embed_dim=16, depths=(1, 1))


@needs_ort
def test_int8_budget_is_the_psnr_cost_at_the_reference_error() -> None:
    from restore.archs.dncnn import DnCNN
    from restore.engine.cpu_paths import INT8_SAFETY, int8_budget

    for scale, psnr in ((2, 37.5), (4, 31.5)):
        q = int8_budget(ESPCN(scale=scale).meta)
        f = 10 ** (-psnr / 10)
        # the allowed noise, before the safety factor, costs exactly 0.05 dB against a float32 error f
        assert 10 * np.log10(1 + q / INT8_SAFETY / f) == pytest.approx(0.05, rel=1e-9)
    q = int8_budget(DnCNN(num_layers=3, num_features=8).meta)
    assert 10 * np.log10(1 + q / INT8_SAFETY / 10 ** -3.3) == pytest.approx(0.1, rel=1e-9)


@needs_ort
def test_plan_int8_meets_its_budget_and_grows_with_it() -> None:
    from restore.engine.cpu_paths import _conv_names, export_onnx, plan_int8

    torch.manual_seed(0)
    net = ESPCN(scale=2, features=(8, 4)).eval()
    graph = export_onnx(net)
    convs = _conv_names(graph)
    inputs = calibration_inputs(net.meta, _images(2, 32), side=16)
    none, g0 = plan_int8(graph, inputs, budget=0.0)
    assert none.quantised == [] and none.kept_float == convs and g0 == graph and none.mse == 0.0
    every, _ = plan_int8(graph, inputs, budget=float("inf"), forced_float=[convs[0]])
    assert every.quantised == convs[1:] and every.kept_float == [convs[0]]
    errors = sorted(none.errors.values())
    assert len(errors) == len(convs) and all(e > 0 for e in errors)
    some, _ = plan_int8(graph, inputs, budget=errors[0] * 1.01)  # room for the least sensitive convolution alone
    assert some.mse <= some.budget and len(some.quantised) >= 1
    assert some.quantised[0] == min(none.errors, key=none.errors.__getitem__) or len(some.quantised) > 1
    assert "of 3 convolutions in int8" in some.describe()


@needs_ort
def test_optimize_int8_reports_its_plan() -> None:
    net = ESPCN(scale=2, features=(8, 4)).eval()
    q = optimize_for_inference(net, precision="int8", calibration=_images(), int8_max_mse=0.0)
    assert q.int8_plan is not None and q.int8_plan.quantised == []
    x = calibration_inputs(net.meta, _images(1, 24), downscale=False)[0]
    with torch.no_grad():
        assert (q(x) - net(x)).abs().max() < 1e-4  # nothing quantised: the float32 graph
