from __future__ import annotations

import pytest
import torch
from torch import nn

from restore.archs.lora import (
    DSCF_LORA_TARGETS,
    ConvLoRA,
    inject_conv_lora,
    inject_dscf_lora,
    mark_only_lora_trainable,
    merge_conv_lora,
)
from restore.archs.span import SPAN, detect

torch.set_num_threads(1)


def _small_weights(model: nn.Module, std: float = 0.02) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


@pytest.mark.parametrize(("k", "padding", "stride", "bias"), [(3, 1, 1, True), (1, 0, 1, True), (3, 0, 2, False)])
def test_convlora_layout_and_merge(k: int, padding: int, stride: int, bias: bool) -> None:
    base = nn.Conv2d(5, 7, k, stride=stride, padding=padding, bias=bias)
    lora = ConvLoRA.from_conv(base, r=2, alpha=4.0)
    assert lora.lora_A.shape == (2 * k, 5 * k)
    assert lora.lora_B.shape == (7 * k, 2 * k)
    assert not lora.weight.requires_grad and lora.lora_A.requires_grad and lora.lora_B.requires_grad
    expected_keys = ["lora_A", "lora_B", "weight"] + (["bias"] if bias else [])
    assert sorted(lora.state_dict()) == sorted(expected_keys)
    x = torch.randn(2, 5, 11, 8)
    with torch.no_grad():
        assert torch.equal(lora(x), base(x))  # B starts at zero
        lora.lora_B.normal_()
        delta = (lora.lora_B @ lora.lora_A).view(7, 5, k, k) * (4.0 / 2)
        assert torch.allclose(lora.delta_weight(), delta)
        manual = nn.functional.conv2d(x, base.weight + delta, base.bias, stride=stride, padding=padding)
        merged = lora.merge()
        assert type(merged) is nn.Conv2d
        assert (merged(x) - lora(x)).abs().max().item() <= 1e-5
        assert (lora(x) - manual).abs().max().item() <= 1e-5
    assert torch.equal(lora.weight, base.weight)  # merge() leaves the wrapper untouched


def test_convlora_rejects_grouped_and_bad_rank() -> None:
    with pytest.raises(ValueError):
        ConvLoRA.from_conv(nn.Conv2d(4, 4, 3, groups=2), r=2, alpha=2)
    with pytest.raises(ValueError):
        ConvLoRA(in_channels=3, out_channels=3, kernel_size=3, r=0, alpha=1)


def test_only_lora_gets_gradients() -> None:
    lora = ConvLoRA.from_conv(nn.Conv2d(3, 4, 3, padding=1), r=1, alpha=1)
    mark_only_lora_trainable(lora)
    with torch.no_grad():
        lora.lora_B.normal_()
    lora(torch.randn(1, 3, 5, 5)).square().sum().backward()
    assert lora.weight.grad is None and lora.bias.grad is None
    assert lora.lora_A.grad is not None and lora.lora_B.grad is not None


def test_inject_dscf_lora_and_merge_all() -> None:
    model = _small_weights(SPAN(feature_channels=8, upscale=3, form="deploy")).eval()
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        before = model(x)
    inject_dscf_lora(model)
    injected = {n for n, m in model.named_modules() if isinstance(m, ConvLoRA)}
    assert injected == set(DSCF_LORA_TARGETS) and len(injected) == 20
    assert not isinstance(model.conv_1.eval_conv, ConvLoRA) and not isinstance(model.conv_cat, ConvLoRA)
    assert model.get_submodule("upsampler.0").r == 8 and model.block_3.c2_r.eval_conv.r == 2
    assert "conv_2.eval_conv.lora_A" in model.state_dict()
    mark_only_lora_trainable(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    with torch.no_grad():
        assert (model(x) - before).abs().max().item() == 0.0
        for m in model.modules():
            if isinstance(m, ConvLoRA):
                m.lora_B.normal_(0.0, 0.02)
        adapted = model(x)
    assert (adapted - before).abs().max().item() > 1e-3
    merge_conv_lora(model)
    assert not any(isinstance(m, ConvLoRA) for m in model.modules())
    with torch.no_grad():
        assert (model(x) - adapted).abs().max().item() <= 1e-5
    # The merged net is an ordinary deploy-form SPAN again: same keys, detected, strict-loadable.
    det = detect(model.state_dict())
    assert det is not None
    fresh = det.build().eval()
    fresh.load_state_dict(det.state_dict, strict=True)
    with torch.no_grad():
        assert (fresh(x) - adapted).abs().max().item() <= 1e-5


def test_inject_requires_deploy_form() -> None:
    with pytest.raises(ValueError, match="fuse"):
        inject_dscf_lora(SPAN(feature_channels=4))
    model = SPAN(feature_channels=4).fuse()
    inject_dscf_lora(model)
    with pytest.raises(ValueError):
        inject_conv_lora(model, {"conv_2.eval_conv": (2, 2.0)})
    with pytest.raises(TypeError):
        inject_conv_lora(model, {"block_1": (2, 2.0)})
