"""Fixtures for the web demo tests: a weights folder with a tiny ESPCN made at run time (no download, no
training) whose output is the input enlarged with nearest-neighbour (so results can be checked exactly)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

KNOTS = 32


def near_identity_espcn(scale: int = 2) -> torch.nn.Module:
    """ESPCN (ReLU, ReLU, sub-pixel conv, tanh) set so that every output sub-pixel is the input pixel's Y:
    conv1/conv2 build a piecewise-linear atanh from ReLU hinges, the final tanh undoes it (error < 2e-3)."""
    from restore.archs.espcn import ESPCN

    m = ESPCN(scale=scale)
    knots = np.arange(KNOTS + 1) / KNOTS
    target = np.arctanh(np.minimum(knots, 0.995))
    slopes = np.diff(target) * KNOTS
    hinge = np.diff(slopes, prepend=0.0)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for k in range(KNOTS):
            m.conv1.weight[k, 0, 2, 2] = 1.0
            m.conv1.bias[k] = -knots[k]
            m.conv2.weight[0, k, 1, 1] = float(hinge[k])
        m.conv3.weight[:, 0, 1, 1] = 1.0
    return m.eval()


def tiny_dncnn() -> torch.nn.Module:
    """A 3-layer colour DnCNN with zero weights: it predicts no noise, so it returns its input."""
    from restore.archs.dncnn import DnCNN

    m = DnCNN(in_channels=3, num_layers=3, num_features=8, batch_norm=False)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m.eval()


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espcn_x2.pth, espcn_x3.pth (+ a sidecar with a name and PSNR), a DnCNN for sigma 25 and a junk file."""
    d = tmp_path_factory.mktemp("weights")
    torch.save(near_identity_espcn(2).state_dict(), d / "espcn_x2.pth")
    torch.save(near_identity_espcn(3).state_dict(), d / "espcn_x3.pth")
    (d / "espcn_x3.json").write_text('{"name": "ESPCN x3 (test)", "psnr": {"Set5": 30.5}}')
    torch.save(tiny_dncnn().state_dict(), d / "dncnn_tiny.pth")
    (d / "dncnn_tiny.json").write_text('{"sigma": "25"}')
    (d / "notes.pth").write_bytes(b"not a checkpoint")
    return d


def gradient_image(w: int, h: int, *, dtype: type[np.generic] = np.uint8, channels: int = 3) -> np.ndarray:
    """A smooth colour test image (values spread over the dtype's range)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = [xx / max(1, w - 1), yy / max(1, h - 1), 0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0), 0.8 + 0 * xx]
    img = np.stack(planes[:channels], -1)
    peak = np.iinfo(dtype).max
    return np.round(img * peak).astype(dtype)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_shipped_models(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's catalogue logic is tested on the controlled ``weights_dir``: hide the package's shipped
    models (they have the same names as some test files), except in tests marked ``shipped``."""
    if request.node.get_closest_marker("shipped") is None:
        monkeypatch.setattr("restore.weights.shipped_models", lambda: [])


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header announces ``w`` x ``h`` RGB pixels but whose data is a few bytes (a decompression-bomb
    header: only a header check can refuse it without allocating the picture)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def bad_checkpoints(folder: Path, marker: Path) -> list[str]:
    """Write into ``folder`` every kind of bad checkpoint the red-team report names (text with many first bytes,
    zip/gzip/HTML/JSON/git-LFS pointer/PNG renamed .pth, an unsafe pickle that would create ``marker``, NaN / inf
    weights, a directory named .pth, empty and truncated files, junk .pb / .safetensors); their names back."""
    import gzip
    import io as pyio
    import os
    import pickle
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    texts = {"hello.pth": "hello world\n", "k.pth": "K", "j.pth": "J", "paren.pth": ")", "one.pth": "1",
             "brace.pth": "}", "none.pth": "N", "proto.pth": "\x80", "bang.pth": "!!!", "unicode.pth": "ü ẞ 猫",
             "html.pth": "<!DOCTYPE html><html><body>404 Not Found</body></html>",
             "json.pth": '{"error": "not found"}',
             "lfs.pth": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 123456\n"}
    for name, text in texts.items():
        (folder / name).write_text(text)
    buf = pyio.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("weights.txt", "not torch")
    (folder / "zip.pth").write_bytes(buf.getvalue())
    (folder / "gzip.pth").write_bytes(gzip.compress(b"some text"))
    (folder / "png.pth").write_bytes(png_header(4, 4))
    (folder / "empty.pth").write_bytes(b"")

    class Unsafe:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(marker),)

    (folder / "unsafe.pth").write_bytes(pickle.dumps(Unsafe()))
    good = near_identity_espcn(2).state_dict()
    buf = pyio.BytesIO()
    torch.save(good, buf)
    (folder / "truncated.pth").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    nan = {k: v.clone() for k, v in good.items()}
    nan["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, folder / "nan.pth")
    inf = {k: v.clone() for k, v in good.items()}
    inf["conv3.bias"][0] = float("inf")
    torch.save(inf, folder / "inf.pth")
    (folder / "folder.pth").mkdir(exist_ok=True)
    (folder / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    (folder / "junk.pb").write_bytes(b"\x0a\x03abc")
    return sorted(p.name for p in folder.iterdir())
