"""Optional LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018) through the ``lpips`` package (https://github.com/richzhang/PerceptualSimilarity, BSD-2-Clause).

LPIPS needs two things that this project never downloads:

* the ``lpips`` package itself (it ships its calibrated linear layers, ``lpips/weights/v0.1/<net>.pth``);
* torchvision's ImageNet backbone weights, already in the torch hub cache
  (``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` for ``net='alex'``,
  ``vgg16-397923af.pth`` for ``'vgg'``, ``squeezenet1_1-b8a52dc0.pth`` for ``'squeeze'``).

:func:`lpips_available` checks both without downloading anything and says in one line what is missing; the
model is only constructed (with ``pretrained=True``) once the cached backbone file has been seen, so a
random backbone is never used. Neither torch nor lpips is imported when this module is imported.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["lpips_available", "calculate_lpips", "BACKBONE_FILES"]

#: LPIPS net name -> torchvision ImageNet checkpoint file name in ``<torch hub dir>/checkpoints``
BACKBONE_FILES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def _check_net(net: str) -> None:
    if net not in BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")


def _backbone_path(net: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def lpips_available(net: str = "alex") -> tuple[bool, str]:
    """``(True, description)`` when LPIPS-``net`` can run offline, else ``(False, one-line reason)``."""
    _check_net(net)
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return False, "LPIPS unavailable: the 'lpips' package is not installed"
    linear = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    if not linear.is_file():
        return False, f"LPIPS unavailable: the lpips package has no linear-layer weights at {linear}"
    backbone = _backbone_path(net)
    if not backbone.is_file():
        return False, (f"LPIPS unavailable: torchvision ImageNet weights for '{net}' are not in the torch "
                       f"hub cache ({backbone}); they are never downloaded here")
    try:
        import lpips  # noqa: F401
    except Exception as e:  # broken installs: report, do not crash
        return False, f"LPIPS unavailable: importing lpips failed ({type(e).__name__}: {e})"
    return True, f"LPIPS v0.1, net={net}, backbone {backbone}"


@lru_cache(maxsize=4)
def _model(net: str, device: str) -> Any:
    ok, why = lpips_available(net)
    if not ok:
        raise RuntimeError(why)
    import warnings

    import lpips

    with warnings.catch_warnings():  # torchvision's "pretrained=" deprecation notice, raised inside lpips
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=False, verbose=False)
    return model.eval().requires_grad_(False).to(device)


def _to_tensor(img: np.ndarray, input_order: str, channel_order: str) -> Any:
    """[0, 255] HxW / HxWxC (or CxHxW) image -> float32 1x3xHxW tensor in [-1, 1], RGB."""
    import torch

    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    elif input_order == "CHW":
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected a gray or 3-channel image, got shape {np.asarray(img).shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif channel_order == "bgr":
        a = a[..., ::-1]
    # as lpips.im2tensor: scaled in float64, then float32, HWC memory viewed as NCHW (same strides, so the
    # same convolution path and bit-identical results)
    x = np.ascontiguousarray((a.astype(np.float64) / 127.5 - 1.0).astype(np.float32))
    return torch.from_numpy(x[None].transpose(0, 3, 1, 2))


def calculate_lpips(img: np.ndarray, img2: np.ndarray, net: str = "alex", *, input_order: str = "HWC",
                    channel_order: str = "rgb", device: str = "cpu") -> float:
    """LPIPS distance (lower is more similar) between two [0, 255] images (uint8 or float).

    Images are mapped to [-1, 1] as the lpips package expects; gray images are repeated to 3 channels.
    Raises ``RuntimeError`` with :func:`lpips_available`'s reason when LPIPS cannot run offline.
    """
    _check_net(net)
    if np.shape(img) != np.shape(img2):
        raise ValueError(f"image shapes differ: {np.shape(img)} vs {np.shape(img2)}")
    import torch

    model = _model(net, device)
    a = _to_tensor(img, input_order, channel_order).to(device)
    b = _to_tensor(img2, input_order, channel_order).to(device)
    with torch.no_grad():
        d = model(a, b)
    return float(d.reshape(-1)[0])
