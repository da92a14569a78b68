from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch

from restore.archs.espcn import ESPCN
from restore.archs.span import SPAN
from restore.ops.cpu import calibration_inputs, deploy_copy, optimize_for_inference

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
    ins = calibration_inputs(ESPCN(scale=2).meta, _images(2, 50), side=16)
    assert len(ins) == 2 and ins[0].shape == (1, 1, 16, 16) and 0 <= ins[0].min() and ins[0].max() <= 1


@needs_ort
def test_engine_runs_optimized_model() -> None:
    from restore.engine.restorer import Restorer

    net = ESPCN(scale=2, features=(8, 4)).eval()
    fast = optimize_for_inference(net)
    img = _images(1, 21)[0]
    a = Restorer(net, device="cpu", tile=None).run(img)
    b = Restorer(copy.deepcopy(fast), device="cpu", tile=None).run(img)
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1
