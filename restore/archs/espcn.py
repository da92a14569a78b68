"""ESPCN: efficient sub-pixel convolutional network for single-image super-resolution (Y channel).

Paper: W. Shi, J. Caballero, F. Huszár, J. Totz, A. P. Aitken, R. Bishop, D. Rueckert, Z. Wang, "Real-Time
Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network",
CVPR 2016. Weights: fannymonori/TF-ESPCN (Apache-2.0), ``export/ESPCN_x{2,3,4}.pb`` — the frozen TensorFlow
graphs that OpenCV's ``dnn_superres`` module uses for ``setModel("espcn", s)``. Independent
re-implementation; the graph was read for reference only.

Network (TF-ESPCN ``ESPCN_model``): conv5x5 1→64 + ReLU, conv3x3 64→32 + ReLU, conv3x3 32→s², DepthToSpace(s),
tanh. All convs have a bias, stride 1, TF ``SAME`` padding (symmetric ``k // 2`` for odd ``k``). The graph
applies tanh after DepthToSpace; tanh is element-wise, so the order does not matter. For one channel TF
``DepthToSpace`` (NHWC) and ``nn.PixelShuffle`` (NCHW) use the same sub-pixel ordering
(channel ``s * dy + dx``).

Input/output: the luma channel in [0, 1], OpenCV's full-range Y (``cv2.cvtColor(bgr, COLOR_BGR2YCrCb)[..., 0]
/ 255``, i.e. ``0.299 R + 0.587 G + 0.114 B`` without the BT.601 16..235 offset) — ``color_space="y_full"``.
``dnn_superres`` upscales Cr/Cb separately with ``cv2.resize`` (default bilinear) and merges.

Weight mapping (TF const → our key; TF kernels are HWIO, transposed to OIHW with ``w.transpose(3, 2, 0, 1)``):

====== ===============  ======================  ======================
TF     OpenCV layer     shape (TF)              ours
====== ===============  ======================  ======================
``f1`` ``conv1``        (5, 5, 1, 64)           ``conv1.weight``
``b1`` ``add``          (64,)                   ``conv1.bias``
``f2`` ``conv2``        (3, 3, 64, 32)          ``conv2.weight``
``b2`` ``add_1``        (32,)                   ``conv2.bias``
``f3`` ``conv3``        (3, 3, 32, s²)          ``conv3.weight``
``b3`` ``add_2``        (s²,)                   ``conv3.bias``
====== ===============  ======================  ======================

:func:`load_pb` reads a ``.pb`` through ``cv2.dnn.readNetFromTensorflow`` + ``net.getParam`` (OpenCV returns
the kernels already as OIHW). If OpenCV cannot read it, it falls back to a small pure-Python GraphDef reader
(:func:`read_graphdef_consts`, no protobuf dependency) and transposes the HWIO consts itself.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restore.archs.base import Detection, ModelMeta, count_params
from restore.ops.conv_pixelshuffle import shuffle_tail

FAMILY = "espcn"
_KEYS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias")
_TF_NAMES = {"f1": "conv1.weight", "b1": "conv1.bias", "f2": "conv2.weight", "b2": "conv2.bias",
             "f3": "conv3.weight", "b3": "conv3.bias"}


class ESPCN(nn.Module):
    """ESPCN as in TF-ESPCN: two ReLU convs, a sub-pixel conv, pixel shuffle and tanh."""

    def __init__(self, *, scale: int, channels: int = 1, features: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        f1, f2 = (int(f) for f in features)
        self.scale = scale
        self.channels = channels
        self.features = (f1, f2)
        self.conv1 = nn.Conv2d(channels, f1, 5, padding=2)
        self.conv2 = nn.Conv2d(f1, f2, 3, padding=1)
        self.conv3 = nn.Conv2d(f2, channels * scale * scale, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return shuffle_tail(self.conv3, self.shuffle, x, self.scale, activation="tanh")  # fused on CUDA (restore.ops)

    @property
    def meta(self) -> ModelMeta:
        variant = f"x{self.scale}"
        if self.features != (64, 32):
            variant += f"-f{self.features[0]}.{self.features[1]}"
        if self.channels != 1:
            variant += f"-c{self.channels}"
        return ModelMeta(
            family=FAMILY,
            variant=variant,
            task="sr",
            scale=self.scale,
            in_channels=self.channels,
            out_channels=self.channels,
            input_range=1.0,
            color_space="y_full" if self.channels == 1 else "rgb",
            size_multiple=1,
            half_safe=True,
            receptive_field=4,  # 5x5 + 3x3 + 3x3 convs: radius 2 + 1 + 1 LR pixels
            form="deploy",
            params=count_params(self),
        )


def detect(state_dict: Mapping[str, torch.Tensor]) -> Detection | None:
    """Recognise our ESPCN state dict (``conv1``..``conv3``, e.g. from :func:`load_pb`)."""
    if set(state_dict) != set(_KEYS):
        return None
    w1, w2, w3 = (state_dict[f"conv{i}.weight"] for i in (1, 2, 3))
    b1, b2, b3 = (state_dict[f"conv{i}.bias"] for i in (1, 2, 3))
    if any(w.ndim != 4 for w in (w1, w2, w3)) or any(b.ndim != 1 for b in (b1, b2, b3)):
        return None
    if tuple(w1.shape[2:]) != (5, 5) or tuple(w2.shape[2:]) != (3, 3) or tuple(w3.shape[2:]) != (3, 3):
        return None
    channels, f1, f2 = int(w1.shape[1]), int(w1.shape[0]), int(w2.shape[0])
    if int(w2.shape[1]) != f1 or int(w3.shape[1]) != f2 or channels not in (1, 3):
        return None
    out = int(w3.shape[0])
    scale = round((out / channels) ** 0.5)
    if scale < 1 or channels * scale * scale != out:
        return None
    if (b1.numel(), b2.numel(), b3.numel()) != (f1, f2, out):
        return None

    def build() -> ESPCN:
        return ESPCN(scale=scale, channels=channels, features=(f1, f2))

    return Detection(
        family=FAMILY,
        build=build,
        state_dict=dict(state_dict),
        description=f"ESPCN x{scale} ({'Y' if channels == 1 else 'RGB'}, features {f1}/{f2}, TF-ESPCN)",
        extra={"scale": scale},
    )


# --------------------------------------------------------------------- OpenCV dnn_superres colour handling
# What ``cv2.dnn_superres.DnnSuperResImpl.upsample`` does with a uint8 BGR image for "espcn" (checked
# against opencv-contrib-python-headless 4.14: with OpenCV's own Y these two functions reproduce its output
# bit for bit): ``cvtColor(BGR2YCrCb)`` on the uint8 image, then ``convertTo(CV_32F, 1/255)`` (a multiply by
# the float32 reciprocal, not a division); the net runs on Y; Cr and Cb are upscaled with ``cv2.resize``'s
# default INTER_LINEAR (not bicubic); [Y, Cr, Cb] are merged, ``convertTo(CV_8U, 255)`` (round half to even,
# saturate) and converted back with ``COLOR_YCrCb2BGR`` on uint8.


# ------------------------------------------------------------------------------------------ .pb reading


def load_pb(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a TF-ESPCN / OpenCV ``dnn_superres`` ESPCN ``.pb`` into our state dict (float32, OIHW)."""
    try:
        return _load_pb_cv2(Path(path))
    except Exception:  # any OpenCV import/parse failure: use the pure-Python reader
        return _load_pb_graphdef(Path(path))


def _load_pb_cv2(path: Path) -> dict[str, torch.Tensor]:
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    level = logging.getLogLevel() if logging is not None else None
    if logging is not None:  # the importer logs an error for DepthToSpace (weights still load)
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        net = cv2.dnn.readNetFromTensorflow(str(path))
        weights: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        for name in net.getLayerNames():
            try:
                p = np.asarray(net.getParam(name, 0), dtype=np.float32)
            except cv2.error:
                continue  # layers without blobs (ReLU, DepthToSpace, outputs)
            if p.ndim == 4:
                weights.append(p)
            elif p.size and p.ndim <= 2 and min(p.shape, default=1) == 1:
                biases.append(p.reshape(-1))
    finally:
        if logging is not None and level is not None:
            logging.setLogLevel(level)
    if len(weights) != 3 or len(biases) != 3:
        raise ValueError(f"{path}: expected 3 convs and 3 biases, got {len(weights)} and {len(biases)}")
    sd: dict[str, torch.Tensor] = {}
    for i, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"{path}: bias {i} has {b.shape[0]} values for {w.shape[0]} filters")
        sd[f"conv{i}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        sd[f"conv{i}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
    return sd


def _load_pb_graphdef(path: Path) -> dict[str, torch.Tensor]:
    consts = read_graphdef_consts(path.read_bytes())
    missing = [n for n in _TF_NAMES if n not in consts]
    if missing:
        raise ValueError(f"{path}: TF consts {missing} not found (is this a TF-ESPCN graph?)")
    sd: dict[str, torch.Tensor] = {}
    for tf_name, key in _TF_NAMES.items():
        a = consts[tf_name]
        if key.endswith("weight"):
            a = a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        sd[key] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return sd


# Minimal protobuf wire-format reader for a TF GraphDef: only what is needed to pull float32 Const nodes.
# GraphDef.node = 1; NodeDef: name = 1, op = 2, attr = 5 (map entry: key = 1, value = 2 AttrValue);
# AttrValue.tensor = 8; TensorProto: dtype = 1, tensor_shape = 2, tensor_content = 4, float_val = 5;
# TensorShapeProto.dim = 2; Dim.size = 1.


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _varint(buf, pos)
            out.append((num, wt, v))
        elif wt == 1:
            out.append((num, wt, buf[pos:pos + 8]))
            pos += 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            out.append((num, wt, buf[pos:pos + n]))
            pos += n
        elif wt == 5:
            out.append((num, wt, buf[pos:pos + 4]))
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
    return out


def _tensor_proto(buf: bytes) -> np.ndarray | None:
    dtype, dims, content, floats = 0, [], b"", []
    for num, wt, v in _fields(buf):
        if num == 1 and wt == 0:
            dtype = int(v)
        elif num == 2 and wt == 2:
            for dnum, dwt, dv in _fields(bytes(v)):
                if dnum == 2 and dwt == 2:
                    size = next((int(x) for n, w, x in _fields(bytes(dv)) if n == 1 and w == 0), 0)
                    dims.append(size)
        elif num == 4 and wt == 2:
            content = bytes(v)
        elif num == 5 and wt == 2:
            floats.extend(struct.unpack(f"<{len(v) // 4}f", v))
        elif num == 5 and wt == 5:
            floats.append(struct.unpack("<f", v)[0])
    if dtype != 1:  # DT_FLOAT only
        return None
    n = int(np.prod(dims)) if dims else 1
    if content:
        a = np.frombuffer(content, dtype="<f4").astype(np.float32)
    elif len(floats) == 1 and n > 1:
        a = np.full(n, floats[0], dtype=np.float32)  # TF stores a splat as one value
    else:
        a = np.asarray(floats, dtype=np.float32)
    return a.reshape(dims) if dims else a.reshape(())


def read_graphdef_consts(data: bytes) -> dict[str, np.ndarray]:
    """Float32 ``Const`` nodes of a serialized TF ``GraphDef``: ``{node name: array}`` (TF layout)."""
    consts: dict[str, np.ndarray] = {}
    for num, wt, node in _fields(data):
        if num != 1 or wt != 2:
            continue
        name, op, tensor = "", "", None
        for fnum, fwt, v in _fields(bytes(node)):
            if fnum == 1 and fwt == 2:
                name = bytes(v).decode()
            elif fnum == 2 and fwt == 2:
                op = bytes(v).decode()
            elif fnum == 5 and fwt == 2:
                entry = dict((n, x) for n, w, x in _fields(bytes(v)) if w == 2)
                if entry.get(1) == b"value" and 2 in entry:
                    attr = _fields(bytes(entry[2]))
                    tensor = next((bytes(x) for n, w, x in attr if n == 8 and w == 2), None)
        if op == "Const" and tensor is not None:
            arr = _tensor_proto(tensor)
            if arr is not None:
                consts[name] = arr
    return consts
