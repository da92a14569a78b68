from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restore.archs.weighted_conv import WeightedConv2d, den_from_state, density_mask, density_vector


def test_density_is_mirrored_outer_product_with_unit_centre() -> None:
    den = torch.tensor([0.25, 0.15, 0.55])
    alfa = density_vector(den)
    assert alfa.tolist() == pytest.approx([0.25, 0.15, 0.55, 1.0, 0.55, 0.15, 0.25])
    phi = density_mask(den)
    assert phi.shape == (7, 7)
    assert phi[3, 3] == 1.0
    torch.testing.assert_close(phi, phi.T)
    torch.testing.assert_close(phi, phi.flip(0).flip(1))
    assert phi[0, 3] == pytest.approx(0.25) and phi[0, 0] == pytest.approx(0.25 * 0.25)


@pytest.mark.parametrize("trainable", [False, True])
def test_official_state_dict_layout(trainable: bool) -> None:
    conv = WeightedConv2d(in_channels=4, out_channels=6, kernel_size=3, den=[0.7], trainable=trainable,
                          bias=True)
    keys = set(conv.state_dict())
    if trainable:
        assert keys == {"weight", "bias", "den"}
        assert isinstance(conv.den, nn.Parameter)
    else:
        assert keys == {"weight", "bias", "alfa", "Phi"}
        assert {n for n, _ in conv.named_parameters()} == {"weight", "bias"}
    assert den_from_state(conv.state_dict(), "") == (pytest.approx((0.7,)), trainable)


def test_forward_is_conv_with_masked_kernel() -> None:
    conv = WeightedConv2d(in_channels=3, out_channels=5, kernel_size=5, den=[0.2, 0.8], bias=True)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, 13, 17)
    alfa = torch.tensor([0.2, 0.8, 1.0, 0.8, 0.2])
    ref = F.conv2d(x, conv.weight * torch.outer(alfa, alfa), conv.bias, padding=2)
    torch.testing.assert_close(conv(x), ref)
    assert conv(x).shape == (2, 5, 13, 17)


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        ({"kernel_size": 3, "den": [0.7]}, (11, 9)),
        ({"kernel_size": 3, "den": [1.3], "trainable": True}, (7, 13)),
        ({"kernel_size": 5, "den": [0.05, 1.0], "stride": 2}, (15, 9)),
        ({"kernel_size": 7, "den": [0.25, 0.15, 0.55], "dilation": 2, "groups": 2}, (21, 19)),
        ({"kernel_size": 1, "den": []}, (5, 3)),
    ],
)
def test_fuse_equals_unfused(kwargs: dict, size: tuple[int, int]) -> None:
    conv = WeightedConv2d(in_channels=4, out_channels=6, bias=True, **kwargs)
    with torch.no_grad():
        conv.bias.normal_()
    fused = conv.fuse()
    assert type(fused) is nn.Conv2d
    x = torch.randn(2, 4, *size)
    torch.testing.assert_close(fused(x), conv(x), atol=1e-5, rtol=0)


def test_trainable_density_gets_gradient() -> None:
    conv = WeightedConv2d(in_channels=2, out_channels=2, kernel_size=3, den=[0.9], trainable=True)
    conv(torch.randn(1, 2, 6, 6)).square().sum().backward()
    assert conv.den.grad is not None and conv.den.grad.abs().sum() > 0


def test_loaded_phi_is_what_forward_uses() -> None:
    a = WeightedConv2d(in_channels=2, out_channels=3, kernel_size=3, den=[0.5])
    b = WeightedConv2d(in_channels=2, out_channels=3, kernel_size=3, den=[1.5])
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(b(x), a(x))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        WeightedConv2d(in_channels=2, out_channels=2, kernel_size=4)
    with pytest.raises(ValueError):
        WeightedConv2d(in_channels=2, out_channels=2, kernel_size=5, den=[0.5])
    assert den_from_state({"weight": torch.zeros(2, 2, 3, 3)}, "") is None
