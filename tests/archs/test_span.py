from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from restore.archs.base import strip_prefix
from restore.archs.reparam import Conv3XC
from restore.archs.span import CONV3XC_NAMES, ESPAN, RECEPTIVE_FIELD, SPAN, SPANF, detect
from tests.conftest import shared_path

torch.set_num_threads(1)


def _randomise(model: nn.Module, std: float = 0.02) -> nn.Module:
    """Random weights small enough that SPAN's ``* 255`` keeps outputs O(1) (so 1e-5 is meaningful)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


# ----------------------------------------------------------------------------- Conv3XC


@pytest.mark.parametrize(("stride", "bias", "gain"), [(1, True, 2), (2, True, 2), (1, False, 3)])
def test_conv3xc_fuse_matches_branches(stride: int, bias: bool, gain: int) -> None:
    block = Conv3XC(in_channels=5, out_channels=7, gain=gain, stride=stride, bias=bias).train()
    _randomise(block, 0.3)
    x = torch.randn(2, 5, 13, 10)
    with torch.no_grad():
        ref = block(x)  # three-branch train path
        fused = block.fuse()
        out = fused(x)
        block.eval()
        ev = block(x)  # train form in eval mode: kernel collapsed on the fly
    assert fused.deploy and not block.deploy
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-5
    assert (ev - ref).abs().max().item() <= 1e-5


def test_conv3xc_border_matches_single_padded_conv() -> None:
    """Zero padding before the 1x1 is what makes the collapse exact at the image border."""
    block = _randomise(Conv3XC(in_channels=3, out_channels=4).train(), 0.5)
    x = torch.randn(1, 3, 3, 4)  # every pixel is a border pixel
    w, b = block.fused_kernel()
    with torch.no_grad():
        assert torch.allclose(block(x), nn.functional.conv2d(x, w, b, padding=1), atol=1e-5)


def test_conv3xc_state_dict_keys() -> None:
    train = Conv3XC(in_channels=3, out_channels=8)
    assert sorted(train.state_dict()) == sorted(
        ["sk.weight", "sk.bias"] + [f"conv.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    )
    assert train.conv[0].weight.shape == (6, 3, 1, 1)
    assert train.conv[1].weight.shape == (16, 6, 3, 3)
    assert train.conv[2].weight.shape == (8, 16, 1, 1)
    assert sorted(train.fuse().state_dict()) == ["eval_conv.bias", "eval_conv.weight"]


# ----------------------------------------------------------------------------- SPAN


@pytest.mark.parametrize(("scale", "form"), [(2, "train"), (3, "deploy"), (4, "deploy")])
def test_span_forward_shapes(scale: int, form: str) -> None:
    model = SPAN(feature_channels=8, upscale=scale, form=form).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 7, 11))
    assert y.shape == (1, 3, 7 * scale, 11 * scale)
    meta = model.meta
    assert (meta.family, meta.scale, meta.form, meta.task) == ("span", scale, form, "sr")
    assert meta.input_range == 1.0 and meta.color_space == "rgb" and meta.size_multiple == 1
    assert meta.receptive_field == RECEPTIVE_FIELD == 21
    assert meta.params == sum(p.numel() for p in model.parameters())


def test_span_deploy_param_counts() -> None:
    # Same numbers as the checkpoints' tensor counts (README section 1).
    assert SPAN(feature_channels=26, form="deploy").meta.params == 130_828
    assert SPAN(feature_channels=28, form="deploy").meta.params == 150_688
    assert SPAN(feature_channels=28, cat_channels=20, form="deploy").meta.params == 146_328


def test_span_fuse_equal() -> None:
    model = _randomise(SPAN(feature_channels=12, upscale=3, cat_channels=10)).train()
    x = torch.rand(1, 3, 9, 14)
    with torch.no_grad():
        ref = model(x)
        fused = model.fuse()
        out = fused(x)
        model.eval()
        ev = model(x)
    assert model.form == "train" and fused.form == "deploy" and fused.meta.form == "deploy"
    assert all(fused.get_submodule(n).deploy for n in CONV3XC_NAMES)
    assert ref.abs().max().item() > 0.05
    assert (out - ref).abs().max().item() <= 1e-5
    assert (ev - out).abs().max().item() <= 1e-5
    assert sorted(fused.state_dict()) == sorted(SPAN(feature_channels=12, form="deploy").state_dict())


def test_span_fuse_default_init_relative() -> None:
    """With default init the *255 makes outputs ~30; fused equals unfused to float32 rounding."""
    model = SPAN(feature_channels=8, upscale=2).train()
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        ref = model(x)
        out = model.fuse()(x)
    assert (out - ref).abs().max().item() <= 1e-6 * max(1.0, ref.abs().max().item()) * 10


def test_span_out1_is_silu_activated() -> None:
    """conv_cat sees silu(c1(b5)) from block 6 (official in-place SiLU), not the raw c1 output."""
    model = _randomise(SPAN(feature_channels=6, upscale=2, form="deploy")).eval()
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, take_input: bool) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen[name] = (inputs[0] if take_input else output).clone()

        return hook

    model.conv_cat.register_forward_hook(keep("cat", True))
    model.block_6.c1_r.register_forward_hook(keep("c1", False))
    with torch.no_grad():
        model(torch.rand(1, 3, 5, 6))
    assert torch.equal(seen["cat"][:, 18:24], nn.functional.silu(seen["c1"]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: SPAN(feature_channels=4, upscale=2, form="deploy"),
        lambda: SPANF(feature_channels=4, upscale=2),
        lambda: ESPAN(feature_channels=4, mid_channels=5, upscale=2),
    ],
)
def test_receptive_field_exact(make: Callable[[], nn.Module]) -> None:
    model = _randomise(make(), 0.1).eval()
    scale, r = model.meta.scale, model.meta.receptive_field
    n = 2 * r + 7
    x = torch.rand(1, 3, n, n, requires_grad=True)
    c = n // 2
    model(x)[0, :, c * scale, c * scale].sum().backward()
    nz = x.grad.abs().sum(dim=(0, 1)).nonzero()
    assert nz[:, 0].min().item() == c - r and nz[:, 0].max().item() == c + r
    assert nz[:, 1].min().item() == c - r and nz[:, 1].max().item() == c + r


@pytest.mark.parametrize("scale", [2, 4])
def test_spanf_espan_forward_shapes(scale: int) -> None:
    x = torch.rand(1, 3, 7, 10)
    for model in (SPANF(feature_channels=6, upscale=scale), ESPAN(feature_channels=6, upscale=scale)):
        with torch.no_grad():
            assert model.eval()(x).shape == (1, 3, 7 * scale, 10 * scale)
        assert model.meta.form == "deploy" and model.meta.scale == scale
    assert SPANF().meta.params == 148_288 and SPANF().meta.receptive_field == 16
    assert ESPAN().meta.params == 192_272 and ESPAN().meta.receptive_field == 23


# ----------------------------------------------------------------------------- detect


@pytest.mark.parametrize(
    ("width", "cat", "scale", "form"),
    [(26, None, 4, "deploy"), (28, 20, 4, "deploy"), (48, None, 2, "train"), (30, None, 3, "train")],
)
def test_detect_synthetic(width: int, cat: int | None, scale: int, form: str) -> None:
    src = SPAN(feature_channels=width, upscale=scale, cat_channels=cat, form=form)
    det = detect(src.state_dict())
    assert det is not None and det.family == "span"
    model = det.build()
    model.load_state_dict(det.state_dict, strict=True)
    assert (model.feature_channels, model.cat_channels) == (width, cat or width)
    assert (model.meta.scale, model.meta.form) == (scale, form)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SPANF(feature_channels=32, upscale=4),
        lambda: SPANF(feature_channels=12, upscale=3),
        lambda: ESPAN(feature_channels=32, mid_channels=32, upscale=4),
        lambda: ESPAN(feature_channels=10, mid_channels=7, upscale=2, first_kernel=5),
    ],
)
def test_detect_spanf_espan_synthetic(make: Callable[[], nn.Module]) -> None:
    src = make()
    det = detect(src.state_dict())
    assert det is not None and det.family == "span"
    model = det.build()
    assert type(model) is type(src) and model.meta == src.meta
    model.load_state_dict(det.state_dict, strict=True)
    broken = {k: v for k, v in src.state_dict().items() if not k.startswith("block_5.")}
    assert detect(broken) is None


def test_detect_official_train_form_with_eval_conv_copies() -> None:
    """Official train-form checkpoints also hold ``*.eval_conv.*``; detect drops them."""
    src = _randomise(SPAN(feature_channels=8, upscale=4)).eval()
    sd = dict(src.state_dict())
    for name in CONV3XC_NAMES:
        w, b = src.get_submodule(name).fused_kernel()
        sd[f"{name}.eval_conv.weight"] = torch.randn_like(w)  # stale copy: must be ignored
        sd[f"{name}.eval_conv.bias"] = torch.randn_like(b)
    det = detect(sd)
    assert det is not None and not any(".eval_conv." in k for k in det.state_dict)
    model = det.build().eval()
    model.load_state_dict(det.state_dict, strict=True)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_detect_rejects_other_families() -> None:
    good = SPAN(feature_channels=8, form="deploy").state_dict()
    assert detect({}) is None
    # RLFN-like plain convs with the same module names
    assert detect({"conv_1.weight": torch.zeros(8, 3, 3, 3), "upsampler.0.weight": torch.zeros(48, 8, 3, 3)}) is None
    # SPAN-F (team24) has no conv_1; ESPAN (team36) has tea_conv_cat and a 9x9 conv_1
    assert detect({k: v for k, v in good.items() if not k.startswith("conv_1.")}) is None
    espan = {k: v for k, v in good.items() if not k.startswith(("conv_cat", "upsampler"))}
    espan["conv_1.eval_conv.weight"] = torch.zeros(8, 3, 9, 9)
    espan["tea_conv_cat.weight"] = torch.zeros(8, 32, 1, 1)
    assert detect(espan) is None
    # truncated, extra keys, wrong shapes, LoRA leftovers, non-RGB, non-square scale
    assert detect({k: v for k, v in good.items() if not k.startswith("block_6.")}) is None
    assert detect({**good, "block_7.c1_r.eval_conv.weight": torch.zeros(8, 8, 3, 3)}) is None
    assert detect({**good, "conv_cat.weight": torch.zeros(8, 24, 1, 1)}) is None
    assert detect({**good, "conv_2.eval_conv.lora_A": torch.zeros(6, 24)}) is None
    assert detect({**good, "conv_1.eval_conv.weight": torch.zeros(8, 1, 3, 3)}) is None
    assert detect({**good, "upsampler.0.weight": torch.zeros(15, 8, 3, 3), "upsampler.0.bias": torch.zeros(15)}) is None


# ----------------------------------------------------------------------------- real checkpoints

REAL = [
    (("dscf", "team23_DSCF.pth"), None, 26, 26),
    (("ntire_esr", "2024", "team38_span_ch28_slim.pth"), None, 28, 28),
    (("ntire_esr", "2024", "team39_spantiny_ch26_slim.pth"), None, 26, 26),
    (("ntire_esr", "2025", "team46_span.pth"), "params_ema", 28, 20),
    (("ntire_esr", "2025", "team24_spanf.pth"), None, 32, None),
    (("ntire_esr", "2025", "team36_espan.pth"), None, 32, None),
]


@pytest.mark.parametrize(("parts", "key", "width", "cat"), REAL)
def test_real_checkpoint_strict_load(parts: tuple[str, ...], key: str | None, width: int, cat: int | None) -> None:
    raw = torch.load(shared_path("weights", *parts), map_location="cpu", weights_only=True)
    sd = strip_prefix(raw[key] if key else raw, "module.")
    det = detect(sd)
    assert det is not None
    model = det.build().eval()
    model.load_state_dict(det.state_dict, strict=True)
    assert model.feature_channels == width and getattr(model, "cat_channels", None) == cat
    assert (model.meta.scale, model.meta.form) == (4, "deploy")
    # A flat colour stays (roughly) that colour: input range [0, 1], no output de-normalisation.
    x = torch.full((1, 3, 12, 12), 0.5)
    x[:, 0] = 0.3
    with torch.no_grad():
        y = model(x)
    centre = y[0, :, 16:32, 16:32].mean(dim=(1, 2))
    assert torch.allclose(centre, torch.tensor([0.3, 0.5, 0.5]), atol=0.03)
