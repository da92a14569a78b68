from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from restore.archs import dncnn
from restore.archs.base import strip_prefix
from restore.archs.dncnn import DnCNN
from restore.archs.weighted_conv import WeightedConv2d
from tests.conftest import shared_path


def _randomise_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)


def _randomise_bias(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | WeightedConv2d) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)


def _small(**kw: object) -> DnCNN:
    return DnCNN(num_layers=5, num_features=16, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ structure


def test_saoyan_and_kair_key_layouts() -> None:
    train = DnCNN(num_layers=17)
    deploy = DnCNN(num_layers=17, batch_norm=False)
    tk, dk = set(train.state_dict()), set(deploy.state_dict())
    assert "dncnn.0.weight" in tk and "dncnn.0.bias" not in tk and "dncnn.47.weight" in tk
    assert {"dncnn.3.weight", "dncnn.3.bias", "dncnn.3.running_mean", "dncnn.3.running_var"} <= tk
    assert {f"model.{i}.{p}" for i in range(0, 33, 2) for p in ("weight", "bias")} == dk
    assert train.meta.params == 556_032 and deploy.meta.params == 555_137
    assert DnCNN(num_layers=20).meta.params == 667_008


def test_meta() -> None:
    m = DnCNN(in_channels=3, num_layers=20, batch_norm=False, sigma=25)
    meta = m.meta
    assert (meta.family, meta.task, meta.scale, meta.form) == ("dncnn", "denoise", 1, "deploy")
    assert meta.variant == "dncnn20-rgb-s25" and meta.color_space == "rgb"
    assert meta.receptive_field == 20 and meta.input_range == 1.0
    assert DnCNN().meta.variant == "dncnn17-gray" and DnCNN().meta.form == "train"
    assert DnCNN(batch_norm=False, weighted=True).meta.form == "train"


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_shape_odd_sizes_and_residual(channels: int) -> None:
    m = _small(in_channels=channels).eval()
    x = torch.rand(2, channels, 13, 7)
    with torch.no_grad():
        y = m(x)
        noise = m.dncnn(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x - noise)  # returns the image, not the noise


def test_receptive_field_is_num_layers() -> None:
    m = _small(batch_norm=False).eval()
    _randomise_bias(m)
    x = torch.rand(1, 1, 31, 31)
    x2 = x.clone()
    x2[0, 0, 15, 15] += 1.0
    with torch.no_grad():
        d = (m(x2) - m(x)).abs()[0, 0]
    rows, cols = torch.nonzero(d > 0, as_tuple=True)
    assert rows.min() >= 15 - 5 and rows.max() <= 15 + 5 and cols.min() >= 10 and cols.max() <= 20


# ----------------------------------------------------------------------------------------------- fuse


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"in_channels": 3},
        {"weighted": True, "den": [0.6]},
        {"weighted": True, "den": [1.2], "trainable_den": True},
        {"weighted": True, "batch_norm": False},
    ],
)
def test_fuse_equals_unfused(kw: dict) -> None:
    m = _small(**kw)
    _randomise_bn(m)
    _randomise_bias(m)
    m.eval()
    f = m.fuse()
    assert f.meta.form == "deploy" and not f.batch_norm and not f.weighted
    assert set(f.state_dict()) == {f"model.{i}.{p}" for i in range(0, 9, 2) for p in ("weight", "bias")}
    c = m.in_channels
    for size in [(17, 9), (5, 23)]:
        x = torch.rand(2, c, *size)
        with torch.no_grad():
            torch.testing.assert_close(f(x), m(x), atol=1e-5, rtol=0)


def test_fuse_full_depth() -> None:
    m = DnCNN(num_layers=17)
    _randomise_bn(m)
    m.eval()
    x = torch.rand(1, 1, 19, 21)
    with torch.no_grad():
        torch.testing.assert_close(m.fuse()(x), m(x), atol=1e-5, rtol=0)


def _identity_dncnn(var: float) -> DnCNN:
    """DnCNN (1 feature, 3 layers) whose convs are exact identities (centre tap 1) and whose one BatchNorm has
    weight 1, bias 0, running mean 0 and running variance ``var``: for x >= 0 it computes
    ``x - x / sqrt(var + eps)``."""
    m = DnCNN(num_layers=3, num_features=1)
    with torch.no_grad():
        for conv, bn in m.conv_bn_pairs():
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            if bn is not None:
                bn.weight.fill_(1.0)
                bn.bias.zero_()
                bn.running_mean.zero_()
                bn.running_var.fill_(var)
    return m.eval()


def test_fuse_keeps_batchnorm_eps_with_tiny_variance() -> None:
    """running_var 1e-4 against eps 1e-5: the fold must use sqrt(var + eps) (100 vs 95.35 without eps)."""
    m = _identity_dncnn(1e-4)
    bn = m.conv_bn_pairs()[1][1]
    assert bn is not None and bn.eps == 1e-5
    gain = 1.0 / np.sqrt(np.float32(1e-4) + np.float32(1e-5), dtype=np.float32)
    f = m.fuse()
    w = f.model[2].weight
    assert w[0, 0, 1, 1].item() == pytest.approx(float(gain), rel=1e-6) and f.model[2].bias.item() == 0.0
    x = torch.rand(1, 1, 6, 7)
    want = x - x * float(gain)
    with torch.no_grad():
        torch.testing.assert_close(m(x), want, rtol=1e-6, atol=1e-6)  # torch's eval BatchNorm: the authority
        torch.testing.assert_close(f(x), want, rtol=1e-6, atol=1e-6)


def test_fuse_equals_unfused_with_tiny_running_variances() -> None:
    """A random network whose BatchNorms saw nearly constant features (running_var 5e-5 .. 2e-4)."""
    m = _small()
    _randomise_bn(m)
    _randomise_bias(m)
    with torch.no_grad():
        for bn in (b for _, b in m.conv_bn_pairs() if b is not None):
            bn.running_var.uniform_(5e-5, 2e-4)
    m.eval()
    x = torch.rand(1, 1, 9, 10)
    with torch.no_grad():
        ref = m(x)
        got = m.fuse()(x)
    assert (got - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


# ------------------------------------------------------------------------------------------ detection


@pytest.mark.parametrize(
    ("kw", "prefix"),
    [
        ({"num_layers": 17}, "dncnn."),
        ({"num_layers": 20}, "dncnn."),
        ({"num_layers": 17, "batch_norm": False}, "model."),
        ({"num_layers": 17, "batch_norm": False, "in_channels": 3}, "model."),
        ({"num_layers": 7, "num_features": 32, "in_channels": 3}, "dncnn."),
        ({"num_layers": 6, "weighted": True, "den": [0.8]}, "dncnn."),
        ({"num_layers": 6, "weighted": True, "trainable_den": True, "den": [1.1]}, "dncnn."),
        ({"num_layers": 6, "weighted": True, "batch_norm": False}, "model."),
    ],
)
def test_detect_synthetic_roundtrip(kw: dict, prefix: str) -> None:
    src = DnCNN(**kw)
    _randomise_bn(src)
    _randomise_bias(src)
    src.eval()
    sd = src.state_dict()
    assert next(iter(sd)).startswith(prefix)
    det = dncnn.detect(sd)
    assert det is not None and det.family == "dncnn"
    m = det.build()
    m.load_state_dict(det.state_dict, strict=True)
    m.eval()
    assert m.meta.variant == src.meta.variant and m.meta.form == src.meta.form
    x = torch.rand(1, src.in_channels, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(m(x), src(x))


def test_detect_without_num_batches_tracked() -> None:
    src = DnCNN(num_layers=8)
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    det = dncnn.detect(sd)
    assert det is not None
    assert all(k.endswith("num_batches_tracked") for k in set(det.state_dict) - set(sd))
    det.build().load_state_dict(det.state_dict, strict=True)


def test_detect_weighted_keeps_per_layer_density() -> None:
    src = DnCNN(num_layers=5, num_features=8, weighted=True, den=[0.7])
    sd = src.state_dict()
    sd["dncnn.5.alfa"] = torch.tensor([1.4, 1.0, 1.4])
    sd["dncnn.5.Phi"] = torch.outer(sd["dncnn.5.alfa"], sd["dncnn.5.alfa"])
    det = dncnn.detect(sd)
    assert det is not None and "weighted" in det.description
    m = det.build()
    m.load_state_dict(det.state_dict, strict=True)
    torch.testing.assert_close(m.dncnn[5].Phi, sd["dncnn.5.Phi"])


def _not_dncnn() -> list[dict[str, torch.Tensor]]:
    good = DnCNN(num_layers=5, num_features=8, batch_norm=False).state_dict()
    saoyan = DnCNN(num_layers=5, num_features=8).state_dict()
    missing_bias = dict(good)
    del missing_bias["model.2.bias"]
    odd_index = {k.replace("model.2.", "model.1."): v for k, v in good.items()}
    wrong_out = dict(good)
    wrong_out["model.8.weight"] = torch.zeros(3, 8, 3, 3)
    extra = dict(saoyan)
    extra["dncnn.0.bias"] = torch.zeros(8)
    mixed = dict(good)
    mixed["dncnn.0.weight"] = torch.zeros(8, 1, 3, 3)
    return [
        {},
        missing_bias,
        odd_index,
        wrong_out,
        extra,
        mixed,
        {"model.0.weight": torch.zeros(12, 3, 3, 3), "model.0.bias": torch.zeros(12),
         "model.1.sub.0.c1.weight": torch.zeros(12, 12, 3, 3), "model.2.weight": torch.zeros(12, 12, 3, 3)},
        {"conv1.weight": torch.zeros(64, 1, 5, 5), "conv1.bias": torch.zeros(64)},
        {"model.0.weight": torch.zeros(8, 2, 3, 3), "model.0.bias": torch.zeros(8),
         "model.2.weight": torch.zeros(8, 8, 3, 3), "model.2.bias": torch.zeros(8),
         "model.4.weight": torch.zeros(2, 8, 3, 3), "model.4.bias": torch.zeros(2)},
    ]


@pytest.mark.parametrize("sd", _not_dncnn())
def test_detect_rejects_other_dicts(sd: dict[str, torch.Tensor]) -> None:
    assert dncnn.detect(sd) is None


# ------------------------------------------------------------------------------- real checkpoints


def _load(*parts: str) -> dict[str, torch.Tensor]:
    p = shared_path("weights", "dncnn", *parts)
    return strip_prefix(torch.load(p, map_location="cpu", weights_only=True), "module.")


@pytest.mark.parametrize(
    ("parts", "layers", "form"),
    [
        (("kair", "dncnn_25.pth"), 17, "deploy"),
        (("saoyan", "DnCNN-S-15.pth"), 17, "train"),
        (("saoyan", "DnCNN-S-25.pth"), 17, "train"),
        (("saoyan", "DnCNN-S-50.pth"), 17, "train"),
        (("saoyan", "DnCNN-B.pth"), 20, "train"),
    ],
)
def test_real_checkpoints_strict(parts: tuple[str, str], layers: int, form: str) -> None:
    sd = _load(*parts)
    det = dncnn.detect(sd)
    assert det is not None
    m = det.build()
    m.load_state_dict(det.state_dict, strict=True)
    assert m.num_layers == layers and m.meta.form == form and m.meta.color_space == "gray"
    if form == "train":
        m.eval()
        x = torch.rand(1, 1, 21, 19)
        with torch.no_grad():
            torch.testing.assert_close(m.fuse()(x), m(x), atol=1e-5, rtol=0)


def _kair_psnr(model: nn.Module, path: object, sigma: float) -> float:
    """KAIR ``main_test_dncnn.py`` protocol: seed 0 per image, unclipped noise, output rounded to uint8."""
    cv2 = pytest.importorskip("cv2")
    clean = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    noisy = clean.astype(np.float32)[..., None] / 255.0
    np.random.seed(0)
    noisy += np.random.normal(0, sigma / 255.0, noisy.shape)
    x = torch.from_numpy(noisy[..., 0])[None, None].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = model(x)[0, 0].clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    mse = np.mean((out.astype(np.float64) - clean.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _kair_dncnn25() -> nn.Module:
    det = dncnn.detect(_load("kair", "dncnn_25.pth"))
    assert det is not None
    m = det.build()
    m.load_state_dict(det.state_dict, strict=True)
    return m.eval().to(memory_format=torch.channels_last)


def test_set12_01_sigma25_kair_psnr() -> None:
    """Fast end-to-end check on one 256x256 image; the official KAIR network gives 30.2076 dB here."""
    path = shared_path("data", "denoise", "Set12", "01.png")
    assert _kair_psnr(_kair_dncnn25(), path, 25) == pytest.approx(30.2076, abs=2e-3)


@pytest.mark.slow
def test_set12_sigma25_kair_psnr() -> None:
    """Whole Set12 (~15-30 s on 2 cores). The official KAIR code gives 30.4316 dB here (paper: 30.44)."""
    files = sorted(shared_path("data", "denoise", "Set12").glob("*.png"))
    m = _kair_dncnn25()
    psnrs = [_kair_psnr(m, f, 25) for f in files]
    assert len(psnrs) == 12
    assert float(np.mean(psnrs)) == pytest.approx(30.44, abs=0.02)


def test_weighted_variant_starts_from_the_plain_initialisation() -> None:
    """Same seed -> the weighted DnCNN's kernels equal the plain DnCNN's (only the density differs), so a
    weighted-vs-plain comparison under one budget isolates the density."""
    torch.manual_seed(0)
    weighted = DnCNN(num_layers=5, num_features=8, weighted=True)
    torch.manual_seed(0)
    plain = DnCNN(num_layers=5, num_features=8)

    def kernels(net: torch.nn.Module) -> list[torch.Tensor]:
        return [p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() == 4]

    assert all(torch.equal(a, b) for a, b in zip(kernels(weighted), kernels(plain), strict=True))
