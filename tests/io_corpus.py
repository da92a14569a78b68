"""Generator of bad and odd image files for the io tests (written into temporary folders; nothing is committed).

Each :class:`Case` carries the file's bytes and the result :mod:`restore.io` documents for it: either an
exception class and a message pattern, or the shape/dtype of the array and a note that ``ImageInfo`` must hold.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from restore import io

PNG_SIG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    data: bytes
    error: type[Exception] | None = None
    match: str | None = None  # regex the error message must contain (besides the file name)
    shape: tuple[int, ...] | None = None
    dtype: type[np.generic] | None = None
    note: str | None = None  # substring one of ImageInfo.notes must contain
    n_frames: int = 1


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(arr: np.ndarray) -> bytes:
    return pil_bytes(Image.fromarray(arr), "PNG")


def pil_bytes(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def huge_png_header(width: int = 60000, height: int = 60000) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit RGB) followed by a tiny IDAT: a decompression-bomb probe."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def huge_jpeg_header(width: int = 60000, height: int = 60000) -> bytes:
    """A small valid JPEG whose SOF0 marker is patched to claim width x height."""
    data = bytearray(pil_bytes(Image.fromarray(noise((16, 16, 3))), "JPEG", quality=90))
    pos = 2
    while pos < len(data):
        marker, length = data[pos + 1], struct.unpack_from(">H", data, pos + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, pos + 5, height, width)
            return bytes(data)
        pos += 2 + length
    raise AssertionError("no SOF marker")


def bad_crc_png() -> bytes:
    data = bytearray(png_bytes(noise((8, 8, 3))))
    data[29] ^= 0xFF  # last byte of IHDR's CRC
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (10, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 24x40 (HxW) JPEG whose EXIF says ``orientation``; left half black, right half white."""
    arr = np.zeros((24, 40, 3), np.uint8)
    arr[:, 20:] = 255
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "TestCam"
    return pil_bytes(Image.fromarray(arr), "JPEG", quality=95, exif=ex)


def palette_png(transparent: bool) -> bytes:
    im = Image.fromarray(noise((9, 11, 3), seed=3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    if transparent:
        return pil_bytes(im, "PNG", transparency=0)
    return pil_bytes(im, "PNG")


def corpus() -> list[Case]:
    png = png_bytes(noise((48, 64, 3)))
    jpg = pil_bytes(Image.fromarray(noise((48, 64, 3))), "JPEG", quality=90)
    unreadable = r"not a readable image"
    rng = np.random.default_rng(7)
    junk = b"\x00\x13" + rng.integers(0, 256, 998, dtype=np.uint8).tobytes()
    return [
        Case("empty", "empty.png", b"", io.ImageReadError, r"not a readable image \(empty file, 0 bytes\)"),
        Case("truncated png", "truncated.png", png[: len(png) // 2], io.ImageReadError,
             unreadable + r" \(corrupt or truncated PNG"),
        Case("truncated jpeg", "truncated.jpg", jpg[: len(jpg) // 2], io.ImageReadError,
             unreadable + r" \(corrupt or truncated JPEG"),
        Case("png cut in its header", "header_cut.png", png[:40], io.ImageReadError,
             unreadable + r" \(corrupt or truncated PNG"),
        Case("png with a bad CRC", "bad_crc.png", bad_crc_png(), io.ImageReadError,
             unreadable + r" \(corrupt or truncated PNG"),
        Case("text file named .png", "notes.png", b"This is a text file, not an image.\n" * 20,
             io.ImageReadError, unreadable + r" \(not an image: it looks like a text file\)"),
        Case("random bytes named .jpg", "junk.jpg", junk, io.ImageReadError,
             unreadable + r" \(not a PNG, JPEG, WebP, TIFF, BMP or GIF file\)"),
        Case("header claiming 60000x60000 (png)", "bomb.png", huge_png_header(), io.ImageTooLargeError,
             r"60000x60000 \(3,600,000,000 pixels\), over the limit of .*--allow-large"),
        Case("header claiming 60000x60000 (jpeg)", "bomb.jpg", huge_jpeg_header(), io.ImageTooLargeError,
             r"60000x60000 \(3,600,000,000 pixels\), over the limit of .*--allow-large"),
        Case("1x1 png", "one.png", png_bytes(noise((1, 1, 3))), shape=(1, 1, 3), dtype=np.uint8),
        Case("1x1 gray jpeg", "one.jpg", pil_bytes(Image.new("L", (1, 1), 77), "JPEG"), shape=(1, 1),
             dtype=np.uint8),
        Case("cmyk jpeg", "cmyk.jpg", pil_bytes(Image.fromarray(noise((12, 10, 3))).convert("CMYK"), "JPEG"),
             shape=(12, 10, 3), dtype=np.uint8, note="CMYK converted to RGB"),
        Case("palette png", "palette.png", palette_png(False), shape=(9, 11, 3), dtype=np.uint8,
             note="palette image converted to RGB"),
        Case("palette png with transparency", "palette_trns.png", palette_png(True), shape=(9, 11, 4),
             dtype=np.uint8, note="palette image converted to RGBA"),
        Case("animated gif", "anim.gif", animated_gif(), shape=(6, 10, 3), dtype=np.uint8,
             note="animated GIF with 3 frames: only the first is used", n_frames=3),
        Case("exif-rotated jpeg", "rotated.jpg", exif_rotated_jpeg(6), shape=(40, 24, 3), dtype=np.uint8,
             note="EXIF orientation 6 applied (rotated 90 degrees clockwise)"),
    ]


def write_corpus(folder: Path) -> list[tuple[Case, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for case in corpus():
        p = folder / case.filename
        p.write_bytes(case.data)
        out.append((case, p))
    return out
