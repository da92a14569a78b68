from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restore.archs import espcn
from restore.archs.espcn import ESPCN
from tests.conftest import shared_path

# ------------------------------------------------------------------------------------------ structure


@pytest.mark.parametrize(("scale", "params"), [(2, 21_284), (3, 22_729), (4, 24_752)])
def test_layout_and_meta(scale: int, params: int) -> None:
    m = ESPCN(scale=scale)
    assert set(m.state_dict()) == {f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    assert tuple(m.conv1.weight.shape) == (64, 1, 5, 5)
    assert tuple(m.conv3.weight.shape) == (scale**2, 32, 3, 3)
    meta = m.meta
    assert meta.params == params
    assert (meta.family, meta.variant, meta.task, meta.scale) == ("espcn", f"x{scale}", "sr", scale)
    assert (meta.in_channels, meta.out_channels, meta.color_space, meta.input_range) == (1, 1, "y_full", 1.0)
    assert meta.receptive_field == 4 and meta.form == "deploy"


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_shape_odd_sizes(scale: int) -> None:
    m = ESPCN(scale=scale).eval()
    x = torch.rand(2, 1, 13, 7)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 1, 13 * scale, 7 * scale)
    assert y.abs().max() < 1  # tanh output


def _depth_to_space_nhwc(x: np.ndarray, s: int) -> np.ndarray:
    """TF ``depth_to_space`` (NHWC, DCR) written out: out[y*s+dy, x*s+dx, c] = in[y, x, (dy*s+dx)*C + c]."""
    n, h, w, cs = x.shape
    c = cs // (s * s)
    out = np.zeros((n, h * s, w * s, c), dtype=x.dtype)
    for dy in range(s):
        for dx in range(s):
            out[:, dy::s, dx::s, :] = x[:, :, :, (dy * s + dx) * c:(dy * s + dx + 1) * c]
    return out


@pytest.mark.parametrize("scale", [2, 3])
def test_matches_tf_graph_semantics(scale: int) -> None:
    """Our NCHW forward equals the TF graph's ops (HWIO SAME convs, ReLU, DepthToSpace NHWC, tanh)."""
    m = ESPCN(scale=scale).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    x = torch.rand(1, 1, 9, 11)

    def conv_same_hwio(t: torch.Tensor, w_hwio: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        k = w_hwio.shape[0]
        return F.conv2d(F.pad(t, [k // 2] * 4), w_hwio.permute(3, 2, 0, 1), b)

    hwio = {i: getattr(m, f"conv{i}").weight.permute(2, 3, 1, 0) for i in (1, 2, 3)}
    with torch.no_grad():
        t = torch.relu(conv_same_hwio(x, hwio[1], m.conv1.bias))
        t = torch.relu(conv_same_hwio(t, hwio[2], m.conv2.bias))
        t = conv_same_hwio(t, hwio[3], m.conv3.bias)
        ref = np.tanh(_depth_to_space_nhwc(t.permute(0, 2, 3, 1).numpy(), scale))
        ours = m(x).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)


# ------------------------------------------------------------------------------------------ detection


@pytest.mark.parametrize(("scale", "channels"), [(2, 1), (3, 1), (4, 1), (3, 3)])
def test_detect_roundtrip(scale: int, channels: int) -> None:
    src = ESPCN(scale=scale, channels=channels).eval()
    det = espcn.detect(src.state_dict())
    assert det is not None and det.family == "espcn"
    m = det.build()
    m.load_state_dict(det.state_dict, strict=True)
    assert m.scale == scale and m.meta.variant == src.meta.variant
    x = torch.rand(1, channels, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(m(x), src(x))


def _not_espcn() -> list[dict[str, torch.Tensor]]:
    good = ESPCN(scale=2).state_dict()
    missing = dict(good)
    del missing["conv3.bias"]
    extra = dict(good)
    extra["conv4.weight"] = torch.zeros(1, 1, 3, 3)
    bad_scale = dict(good)
    bad_scale["conv3.weight"], bad_scale["conv3.bias"] = torch.zeros(5, 32, 3, 3), torch.zeros(5)
    k3_first = dict(good)
    k3_first["conv1.weight"] = torch.zeros(64, 1, 3, 3)
    chain = dict(good)
    chain["conv2.weight"] = torch.zeros(32, 48, 3, 3)
    return [{}, missing, extra, bad_scale, k3_first, chain,
            {"model.0.weight": torch.zeros(64, 1, 3, 3), "model.0.bias": torch.zeros(64)}]


@pytest.mark.parametrize("sd", _not_espcn())
def test_detect_rejects_other_dicts(sd: dict[str, torch.Tensor]) -> None:
    assert espcn.detect(sd) is None


# --------------------------------------------------------------------------- GraphDef reader (no files)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _const_node(name: str, arr: np.ndarray) -> bytes:
    shape = b"".join(_ld(2, _varint(1 << 3) + _varint(d)) for d in arr.shape)
    tensor = _varint(1 << 3) + _varint(1) + _ld(2, shape) + _ld(4, arr.astype("<f4").tobytes())
    attr_value = _ld(1, b"value") + _ld(2, _ld(8, tensor))
    dtype_attr = _ld(1, b"dtype") + _ld(2, _varint(6 << 3) + _varint(1))
    return _ld(1, name.encode()) + _ld(2, b"Const") + _ld(5, dtype_attr) + _ld(5, attr_value)


def _espcn_graph(src: ESPCN) -> bytes:
    """A TF-ESPCN-style GraphDef holding ``src``'s weights (HWIO consts f1..f3 / b1..b3), plus a float_val splat
    const and a non-float const that the reader must cope with."""
    nodes = [_ld(1, _ld(1, b"IteratorGetNext") + _ld(2, b"Placeholder"))]
    for i in (1, 2, 3):
        conv = getattr(src, f"conv{i}")
        nodes.append(_ld(1, _const_node(f"f{i}", conv.weight.detach().permute(2, 3, 1, 0).numpy())))
        nodes.append(_ld(1, _const_node(f"b{i}", conv.bias.detach().numpy())))
    shape4 = _ld(2, _ld(2, _varint(1 << 3) + _varint(4)))
    splat = _varint(1 << 3) + _varint(1) + shape4 + _ld(5, struct.pack("<f", 0.5))  # DT_FLOAT, float_val
    ints = _varint(1 << 3) + _varint(3) + shape4 + _ld(4, np.arange(4, dtype="<i4").tobytes())  # DT_INT32
    for name, tensor in ((b"half", splat), (b"ints", ints)):
        attr = _ld(5, _ld(1, b"value") + _ld(2, _ld(8, tensor)))
        nodes.append(_ld(1, _ld(1, name) + _ld(2, b"Const") + attr))
    return b"".join(nodes)


def test_graphdef_reader_on_synthetic_graph() -> None:
    src = ESPCN(scale=3)
    consts = espcn.read_graphdef_consts(_espcn_graph(src))
    assert consts["half"].tolist() == [0.5] * 4 and "ints" not in consts
    assert consts["f1"].shape == (5, 5, 1, 64)
    sd = {}
    for tf_name, key in espcn._TF_NAMES.items():
        a = consts[tf_name]
        sd[key] = torch.from_numpy(a.transpose(3, 2, 0, 1).copy() if a.ndim == 4 else a)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0)


def test_load_pb_falls_back_to_graphdef_reader(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """OpenCV failing on a .pb: load_pb reads it with the pure-Python reader, bit-exact weights (no ../shared)."""
    src = ESPCN(scale=2)
    path = tmp_path / "ESPCN_x2.pb"
    path.write_bytes(_espcn_graph(src))
    tried: list[object] = []

    def broken(p: object) -> dict[str, torch.Tensor]:
        tried.append(p)
        raise RuntimeError("OpenCV cannot read this graph")

    monkeypatch.setattr(espcn, "_load_pb_cv2", broken)
    sd = espcn.load_pb(path)
    assert tried == [path]  # OpenCV first, then the fallback
    assert list(sd) == list(espcn._TF_NAMES.values())
    for k, v in src.state_dict().items():
        assert sd[k].dtype == torch.float32 and sd[k].is_contiguous()
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0)
    m = ESPCN(scale=2)
    m.load_state_dict(sd, strict=True)
    x = torch.rand(1, 1, 7, 9)
    with torch.no_grad():
        assert torch.equal(m(x), src(x))


# -------------------------------------------------------------------------------- real .pb weights


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_real_pb_loads_strictly_and_is_sane(scale: int) -> None:
    pytest.importorskip("cv2")
    path = shared_path("weights", "espcn", f"ESPCN_x{scale}.pb")
    sd = espcn.load_pb(path)
    # OpenCV's reader (cv2.dnn) and the pure-Python GraphDef reader must agree exactly
    for k, v in espcn._load_pb_graphdef(path).items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0)
    det = espcn.detect(sd)
    assert det is not None and det.extra["scale"] == scale
    m = det.build()
    m.load_state_dict(det.state_dict, strict=True)
    m.eval()
    # a smooth image comes out close to its bicubic upscale
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 36), indexing="ij")
    img = (0.5 + 0.3 * torch.sin(2 * math.pi * 0.8 * xx) * torch.cos(2 * math.pi * 0.6 * yy))[None, None]
    with torch.no_grad():
        out = m(img)
    bic = F.interpolate(img, scale_factor=scale, mode="bicubic", align_corners=False)
    d = (out - bic)[..., 4 * scale:-4 * scale, 4 * scale:-4 * scale].abs()
    assert d.max() < 0.03 and d.mean() < 0.005
