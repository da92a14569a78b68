from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from restore.archs.base import count_params
from restore.archs.cfsr import (
    CFSR,
    MLP,
    LargeKernelConv,
    LayerNorm2d,
    detect,
    receptive_field,
)
from tests.conftest import shared_path

OFFICIAL_PARAMS = {2: 291_324, 3: 297_819, 4: 306_912}


@torch.no_grad()
def randomise(model: nn.Module) -> nn.Module:
    """Random weights everywhere (incl. layer scales and BN running statistics), scaled so that
    activations stay O(1) through the 12 blocks and float32 rounding stays well below 1e-5."""
    for name, p in model.named_parameters():
        if "layer_scale" in name:
            p.uniform_(0.1, 0.3)
        elif name.endswith("norm.weight") or name.endswith("bn.weight"):
            p.uniform_(0.5, 1.5)
        else:
            p.normal_(0.0, 0.05)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


# ------------------------------------------------------------------------------------------- shapes, meta


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("form", ["deploy", "train"])
def test_forward_shapes_odd_sizes(scale: int, form: str) -> None:
    model = CFSR(scale=scale, form=form).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        y = model(torch.rand(1, 3, 19, 23))
    assert y.shape == (1, 3, 19 * scale, 23 * scale)
    assert torch.isfinite(y).all()


def test_gray_and_small_config_shapes() -> None:
    model = CFSR(scale=3, in_chans=1, embed_dim=16, depths=(2, 1, 1), dw_size=7, mlp_ratio=3).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 1, 11, 8))
    assert y.shape == (2, 1, 33, 24)
    assert model.meta.color_space == "gray"
    assert model.meta.receptive_field == receptive_field(depths=(2, 1, 1), dw_size=7) == 1 + 4 * 4 + 2


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_meta_and_param_counts(scale: int) -> None:
    model = CFSR(scale=scale)
    meta = model.meta
    assert (meta.family, meta.variant, meta.task, meta.scale) == ("cfsr", f"x{scale}", "sr", scale)
    assert (meta.in_channels, meta.out_channels, meta.input_range, meta.color_space) == (3, 3, 1.0, "rgb")
    assert meta.size_multiple == 1 and meta.half_safe
    assert meta.receptive_field == 63
    assert meta.form == "deploy"
    assert meta.params == count_params(model) == OFFICIAL_PARAMS[scale]
    assert "mean" not in model.state_dict()
    assert CFSR(scale=scale, form="train").meta.form == "train"
    assert CFSR(scale=scale, mlp_form="train").meta.form == "train"


# ------------------------------------------------------------------------------------------------ fusion


def test_large_kernel_block_fuse() -> None:
    x = torch.randn(1, 12, 19, 23)
    for small in (3, 5, None):
        block = randomise(LargeKernelConv(channels=12, kernel_size=9, small_kernel=small, form="train"))
        with torch.no_grad():
            ref = block(x)
            assert block.fuse() is block
            out = block(x)
        assert block.form == "deploy" and block.lkb_origin is None and block.small_conv is None
        assert set(block.state_dict()) == {"lkb_reparam.weight", "lkb_reparam.bias"}
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_edge_mlp_fuse() -> None:
    block = randomise(MLP(dim=8, mlp_ratio=2, form="train"))
    assert {"mask_sobel_x", "mask_sobel_y", "mask_laplacian"} <= set(block.state_dict())
    assert "mask_sobel_x" not in dict(block.named_parameters())
    x = torch.randn(1, 8, 19, 23)
    with torch.no_grad():
        ref = block(x)
        block.fuse()
        out = block(x)
    assert block.form == "deploy"
    assert set(block.state_dict()) == set(MLP(dim=8, mlp_ratio=2).state_dict())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_edge_masks_as_published() -> None:
    block = MLP(dim=2, mlp_ratio=1, form="train")
    sx = torch.tensor([[0.0, 1, -1], [2, 0, -2], [1, 0, -1]])
    sy = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
    lap = torch.tensor([[1.0, 0, 0], [1, -4, 1], [0, 1, 0]])
    for name, k in (("sobel_x", sx), ("sobel_y", sy), ("laplacian", lap)):
        mask = getattr(block, f"mask_{name}")
        assert mask.shape == (2, 1, 3, 3)
        assert torch.equal(mask[1, 0], k)


@pytest.mark.parametrize(("mixer", "mlp"), [("train", "train"), ("train", "deploy"), ("deploy", "train")])
def test_model_fuse_equals_unfused(mixer: str, mlp: str) -> None:
    model = randomise(CFSR(scale=3, mixer_form=mixer, mlp_form=mlp))  # type: ignore[arg-type]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 19, 23)
    with torch.no_grad():
        ref = model(x)
        fused = model.fuse()
        out = fused(x)
    assert fused is model and model.meta.form == "deploy"
    sd = model.state_dict()
    # the folded branches change the kernels noticeably, so the equality below is not vacuous
    p = "layers.1.blocks.4."
    if mlp == "train":
        assert (sd[p + "mlp.pos.weight"] - before[p + "mlp.pos.weight"]).abs().max() > 0.1
    if mixer == "train":
        k_origin = before[p + "attn.a.2.lkb_origin.conv.weight"]
        assert (sd[p + "attn.a.2.lkb_reparam.weight"] - k_origin).abs().max() > 0.1
    assert ref.abs().max() > 1.0
    assert set(sd) == set(CFSR(scale=3).state_dict())
    assert model.meta.params == OFFICIAL_PARAMS[3]
    assert (ref - out).abs().max().item() < 1e-5
    fresh = CFSR(scale=3).eval()
    fresh.load_state_dict(sd, strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), out)


# ------------------------------------------------------------------------------------- receptive field


def test_receptive_field_is_exact() -> None:
    depths, dw, s = (1, 2), 5, 2
    model = randomise(CFSR(scale=s, embed_dim=8, depths=depths, dw_size=dw, form="train")).double()
    r = model.meta.receptive_field
    assert r == receptive_field(depths=depths, dw_size=dw) == 1 + 3 * 3 + 2
    n, c = 2 * r + 9, r + 4
    x = torch.rand(1, 3, n, n, dtype=torch.float64, requires_grad=True)
    model(x)[0, :, c * s + 1, c * s].sum().backward()
    support = (x.grad.abs().sum((0, 1)) > 0).nonzero()
    assert (support - c).abs().max().item() == r


# ----------------------------------------------------------------------------------------------- fp16


def test_layernorm_half_does_not_overflow() -> None:
    ln = LayerNorm2d(channels=8)
    x = torch.randn(1, 8, 5, 5) * 400
    ref = ln(x)
    out = ln(x.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max().item() < 1e-2


# --------------------------------------------------------------------------------------------- detection


def test_detect_synthetic_deploy_dicts() -> None:
    for scale in (2, 3, 4):
        sd = CFSR(scale=scale).state_dict()
        det = detect(sd)
        assert det is not None and det.family == "cfsr"
        assert det.extra == {"scale": scale, "form": "deploy", "mixer_form": "deploy", "mlp_form": "deploy"}
        model = det.build()
        model.load_state_dict(det.state_dict, strict=True)
        assert model.meta.scale == scale and model.meta.form == "deploy"


def test_detect_train_and_mixed_forms() -> None:
    src = randomise(CFSR(scale=4, form="train"))
    det = detect(src.state_dict())
    assert det is not None and det.extra["form"] == "train"
    model = det.build().eval()
    model.load_state_dict(det.state_dict, strict=True)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))
    for mixer, mlp in (("train", "deploy"), ("deploy", "train")):
        det = detect(CFSR(scale=2, mixer_form=mixer, mlp_form=mlp).state_dict())  # type: ignore[arg-type]
        assert det is not None
        assert (det.extra["mixer_form"], det.extra["mlp_form"], det.extra["form"]) == (mixer, mlp, "train")
        det.build().load_state_dict(det.state_dict, strict=True)


def test_detect_other_shapes_and_omitted_constants() -> None:
    src = CFSR(
        scale=3,
        in_chans=1,
        embed_dim=24,
        depths=(2, 3, 1),
        dw_size=7,
        mlp_ratio=3,
        small_kernel=5,
        form="train",
    )
    sd = {k: v for k, v in src.state_dict().items() if ".mask_" not in k and "num_batches_tracked" not in k}
    det = detect(sd)
    assert det is not None
    model = det.build()
    model.load_state_dict(det.state_dict, strict=True)
    assert (model.scale, model.in_chans, model.embed_dim, model.depths) == (3, 1, 24, (2, 3, 1))
    assert (model.dw_size, model.mlp_ratio, model.small_kernel) == (7, 3, 5)
    assert torch.equal(
        model.state_dict()["layers.1.blocks.2.mlp.mask_laplacian"],
        src.state_dict()["layers.1.blocks.2.mlp.mask_laplacian"],
    )
    no_small = {k: v for k, v in sd.items() if ".small_conv." not in k}
    det = detect(no_small)
    assert det is not None and det.build().small_kernel is None


def test_detect_rejects_foreign_and_broken_dicts() -> None:
    assert detect({}) is None
    swinir_like = {
        "conv_first.weight": torch.zeros(60, 3, 3, 3),
        "layers.0.residual_group.blocks.0.norm1.weight": torch.zeros(60),
        "norm.weight": torch.zeros(60),
        "conv_after_body.weight": torch.zeros(60, 60, 3, 3),
        "upsample.0.weight": torch.zeros(48, 60, 3, 3),
    }
    assert detect(swinir_like) is None
    imdn_like = {"fea_conv.weight": torch.zeros(64, 3, 3, 3), "upsampler.0.weight": torch.zeros(48, 64, 3, 3)}
    assert detect(imdn_like) is None
    sd = CFSR(scale=4).state_dict()
    missing_block = {k: v for k, v in sd.items() if not k.startswith("layers.0.blocks.3.")}
    assert detect(missing_block) is None
    missing_key = dict(sd)
    del missing_key["layers.1.blocks.2.mlp.fc2.bias"]
    assert detect(missing_key) is None
    extra_key = dict(sd, **{"layers.1.blocks.2.extra.weight": torch.zeros(1)})
    assert detect(extra_key) is None
    bad_scale = dict(
        sd, **{"upsample.0.weight": torch.zeros(30, 48, 3, 3), "upsample.0.bias": torch.zeros(30)}
    )
    assert detect(bad_scale) is None
    mixed_blocks = dict(sd)
    w = mixed_blocks.pop("layers.0.blocks.1.attn.a.2.lkb_reparam.weight")
    mixed_blocks.pop("layers.0.blocks.1.attn.a.2.lkb_reparam.bias")
    mixed_blocks["layers.0.blocks.1.attn.a.2.lkb_origin.conv.weight"] = w
    assert detect(mixed_blocks) is None


# ---------------------------------------------------------------------------------- official checkpoints


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_checkpoint_strict_load(scale: int) -> None:
    path = shared_path("weights", "cfsr", f"CFSR_x{scale}.pth")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    sd = raw["params"]
    det = detect(sd)
    assert det is not None and det.extra["form"] == "deploy" and det.extra["scale"] == scale
    model = det.build()
    model.load_state_dict(det.state_dict, strict=True)
    assert model.meta.params == OFFICIAL_PARAMS[scale]
    assert set(model.state_dict()) == set(sd)


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _y(rgb01: np.ndarray) -> np.ndarray:
    """BT.601 Y in [16, 235] (MATLAB rgb2ycbcr coefficients) from RGB floats in [0, 1]."""
    return 16.0 + rgb01 @ np.array([65.481, 128.553, 24.966])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def test_set5_x4_y_psnr() -> None:
    """Matches the official code's Set5 x4 figure (32.3046, Y as uint8 like MATLAB rgb2ycbcr on uint8 images);
    with unrounded float Y the same SR images score 32.3261."""
    root = shared_path("data", "sr", "Set5")
    det = detect(
        torch.load(shared_path("weights", "cfsr", "CFSR_x4.pth"), map_location="cpu", weights_only=True)[
            "params"
        ]
    )
    assert det is not None
    model = det.build().eval()
    model.load_state_dict(det.state_dict, strict=True)
    rounded, unrounded = [], []
    hr_paths = sorted((root / "HR").glob("*.png"))
    assert len(hr_paths) == 5
    for hr_path in hr_paths:
        hr = _rgb(hr_path).astype(np.float64) / 255
        lr = _rgb(root / "LR_bicubic" / "X4" / f"{hr_path.stem}x4.png").astype(np.float32) / 255
        with torch.no_grad():
            sr = model(torch.from_numpy(lr).permute(2, 0, 1)[None])[0]
        sr8 = (sr.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.float64) / 255
        assert sr8.shape == hr.shape
        y_sr, y_hr = _y(sr8)[4:-4, 4:-4], _y(hr)[4:-4, 4:-4]
        unrounded.append(_psnr(y_sr, y_hr))
        rounded.append(_psnr(np.round(y_sr), np.round(y_hr)))
    assert abs(np.mean(rounded) - 32.3046) < 1e-3
    assert abs(np.mean(unrounded) - 32.3261) < 1e-3


def test_official_checkpoint_half_precision() -> None:
    det = detect(
        torch.load(shared_path("weights", "cfsr", "CFSR_x4.pth"), map_location="cpu", weights_only=True)[
            "params"
        ]
    )
    assert det is not None
    model = det.build().eval()
    model.load_state_dict(det.state_dict, strict=True)
    lr = _rgb(shared_path("data", "sr", "Set5", "LR_bicubic", "X4", "birdx4.png")).astype(np.float32) / 255
    x = torch.from_numpy(lr).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = model(x)
        out = copy.deepcopy(model).half()(x.half()).float()
    assert torch.isfinite(out).all()
    mse = (out.clamp(0, 1) - ref.clamp(0, 1)).pow(2).mean().item()
    assert 10 * np.log10(1 / mse) > 45  # fp16 vs fp32 agreement in dB
