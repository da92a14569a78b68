"""Argument types and argument groups shared by the verbs (standard library only: building the parser never
imports torch). Each validator raises ``argparse.ArgumentTypeError`` with a one-line message."""

from __future__ import annotations

import argparse

from restore.engine.policy import DEVICE_HELP, PRECISIONS, parse_device, parse_tile

AUTO_PRECISION = ("fp16 on CUDA for half-safe models, on the CPU the fastest fp32 path (ONNX Runtime, PyTorch "
                  "channels_last or eager, timed on the first input)")


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}")
    return n


def noise_level(value: str) -> float:
    """A Gaussian noise level on the 0-255 scale: a finite number from 0 to 255."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a noise level from 0 to 255, not {value!r}") from None
    if not (0 <= v <= 255):  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a noise level from 0 to 255, not {value!r}")
    return v


def port(value: str) -> int:
    n = positive(value)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, not {n}")
    return n


def tile(value: str) -> int | str | None:
    """``--tile``: a size in LR px (at least :data:`~restore.engine.policy.MIN_TILE`), 'auto', 'acs' or 0."""
    try:
        return parse_tile(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--{e}") from None


def frame_range(value: str) -> tuple[int, int | None]:
    a, sep, b = value.partition(":")
    try:
        start = int(a) if a.strip() else 0
        stop = int(b) if b.strip() else None
    except ValueError:
        start, stop = -1, None
    if not sep or start < 0 or (stop is not None and stop <= start):
        raise argparse.ArgumentTypeError(f"--frames takes A:B (0-based, B exclusive, A < B; 'A:' or ':B' allowed), "
                                         f"not {value!r}")
    return start, stop


def crf(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 63:
        raise argparse.ArgumentTypeError(f"--crf takes 0..63 (x264: 0 lossless, 18 default, 51 worst), not {value!r}")
    return n


def size(text: str) -> tuple[int, int]:
    """'256x256' or '256' -> (height, width) of the LR input."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes HxW in LR pixels (e.g. 256x256), not {text!r}") from None
    if len(parts) > 2 or h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"--size takes HxW in LR pixels (e.g. 256x256), not {text!r}")
    return h, w


def add_model_args(p: argparse.ArgumentParser, *, required: bool = True, device: str | None = None) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--model", help="a shipped model by name (see 'restore models')")
    g.add_argument("--weights", help="checkpoint (.pth of any supported family, or ESPCN .pb)")
    default = device or ("auto" if not required else "cpu")
    p.add_argument("--device", default=default, type=device_arg, metavar="DEVICE",
                   help=f"where to run: {DEVICE_HELP} (default {default})")


def device_arg(value: str) -> str:
    try:
        return parse_device(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--{e}") from None


def add_precision_args(p: argparse.ArgumentParser, *, default: str = "auto", auto: str = AUTO_PRECISION) -> None:
    p.add_argument("--precision", default=default, choices=PRECISIONS,
                   help=f"auto: {auto}; bf16: faster on CPUs with AVX512_BF16/AMX, ~0.01-0.07 dB lower, "
                        f"unavailable on AVX2-only CPUs; int8: CPU, ONNX Runtime, 0.1-1.9 dB lower (default {default})")
    p.add_argument("--calib", metavar="DIR", default=None, type=calibration_source,
                   help="--precision int8: calibrate on these typical input images (used at their size; default: "
                        "crops of the first image / frames being processed)")


def add_tta_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: run the 8 flips / rotations and average them (8x slower; "
                        "+0.1-0.25 dB on the shipped models, docs/results.md)")


def calibration_source(value: str) -> str:
    """``--calib``: a folder holding images, or one image file (checked before any work)."""
    from pathlib import Path

    from restore.io.files import list_images

    p = Path(value)
    if p.is_dir():
        try:
            if list_images(p):
                return value
        except OSError as e:
            raise argparse.ArgumentTypeError(f"{value}: cannot list this folder ({e.strerror or e})") from None
        raise argparse.ArgumentTypeError(f"{value}: no images in this folder")
    if p.is_file():
        return value
    raise argparse.ArgumentTypeError(f"{value}: no such folder or image")


def resolved_precision(precision: str, device: str, meta: object) -> str:
    """The precision ``Restorer(precision=...)`` will run ("auto" resolved)."""
    if precision == "int8":
        return precision
    from restore.engine.restorer import DTYPE_NAMES, resolve_device, resolve_precision

    return DTYPE_NAMES[resolve_precision(precision, resolve_device(device), meta)]  # type: ignore[arg-type]
