"""EXIF and ICC: reading, orientation, and what can be written back into which format (Pillow, numpy).

EXIF payloads are APP1 bodies (``b"Exif\\0\\0"`` + a TIFF structure). On read the orientation tag is applied
to the pixels and reset to 1 in the kept payload (:func:`read_exif`, :func:`apply_orientation`); on write the
pixel-size tags are updated in place, everything else byte-identical (:func:`edit_exif`), and an ICC profile
is only embedded when its colour space matches the written pixels (:func:`metadata_for`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from types import ModuleType

import cv2
import numpy as np
from PIL import Image

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError,
                 TypeError, RuntimeError, cv2.error)
"""What Pillow / OpenCV raise on a corrupt file (turned into ``ImageReadError`` by the reader)."""
ORIENTATION_TEXT = {2: "mirrored horizontally", 3: "rotated 180 degrees", 4: "mirrored vertically",
                    5: "transposed", 6: "rotated 90 degrees clockwise", 7: "transversed",
                    8: "rotated 90 degrees counter-clockwise"}


def read_exif(im: Image.Image, notes: list[str]) -> tuple[bytes | None, int]:
    """(EXIF payload with orientation reset to 1, orientation to apply)."""
    try:
        orientation = int(im.getexif().get(ORIENTATION, 1))
    except DECODE_ERRORS:
        notes.append("unreadable EXIF ignored")
        return None, 1
    if orientation not in ORIENTATION_TEXT:
        orientation = 1
    raw = im.info.get("exif")
    if not isinstance(raw, bytes | bytearray) or not raw:
        return None, orientation
    exif = normalise_exif(bytes(raw))
    if exif is None:
        notes.append("malformed EXIF block dropped")
        return None, orientation
    if exif_orientation(exif) not in (None, 1):
        fixed = edit_exif(exif, {ORIENTATION: 1})
        if fixed is None or exif_orientation(fixed) not in (None, 1):
            fixed = reset_orientation(exif)
        if fixed is None:
            notes.append("EXIF dropped (its orientation tag could not be reset)")
        exif = fixed
    return exif, orientation


def normalise_exif(raw: bytes) -> bytes | None:
    body = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if body[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    return b"Exif\x00\x00" + body


def exif_orientation(exif: bytes) -> int | None:
    try:
        ex = Image.Exif()
        ex.load(exif)
        v = ex.get(ORIENTATION)
        return None if v is None else int(v)
    except DECODE_ERRORS:
        return None


def reset_orientation(exif: bytes) -> bytes | None:
    try:
        ex = Image.Exif()
        ex.load(exif)
        ex[ORIENTATION] = 1
        out = normalise_exif(ex.tobytes())
    except DECODE_ERRORS:
        return None
    return out if out is not None and exif_orientation(out) in (None, 1) else None


def edit_exif(exif: bytes, values: Mapping[int, int]) -> bytes | None:
    """Overwrite SHORT/LONG values of existing tags in IFD0 and the Exif sub-IFD, in place (everything else
    byte-identical). Tags that are absent, of another type, or whose value does not fit are left alone.
    Returns None when the structure cannot be parsed."""
    buf = bytearray(exif)
    base = 6 if buf.startswith(b"Exif\x00\x00") else 0
    order = {b"II": "<", b"MM": ">"}.get(bytes(buf[base:base + 2]))
    if order is None:
        return None
    try:
        ifd0 = struct.unpack_from(order + "I", buf, base + 4)[0]
        todo, seen = [ifd0], set()
        while todo:
            off = todo.pop()
            if off in seen or base + off + 2 > len(buf):
                continue
            seen.add(off)
            count = struct.unpack_from(order + "H", buf, base + off)[0]
            for i in range(min(count, 1024)):
                entry = base + off + 2 + 12 * i
                tag, typ, n = struct.unpack_from(order + "HHI", buf, entry)
                if tag == EXIF_IFD and typ in (4, 13) and n == 1:
                    todo.append(struct.unpack_from(order + "I", buf, entry + 8)[0])
                elif tag in values and n == 1 and typ in (3, 4):
                    v = int(values[tag])
                    if typ == 3 and 0 <= v <= 0xFFFF:
                        struct.pack_into(order + "H", buf, entry + 8, v)
                    elif typ == 4 and 0 <= v <= 0xFFFFFFFF:
                        struct.pack_into(order + "I", buf, entry + 8, v)
    except struct.error:
        return None
    return bytes(buf)


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into display orientation (EXIF tag 0x0112, values 1-8)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def icc_space(icc: bytes) -> str | None:
    if len(icc) < 128 or icc[36:40] != b"acsp":
        return None
    return icc[16:20].decode("latin-1").strip()


def icc_reason(fmt: str, arr: np.ndarray, icc: bytes) -> str:
    if fmt == "BMP":
        return "BMP cannot carry one"
    space = icc_space(icc)
    if space is None:
        return "not a valid ICC profile"
    return f"a {space} profile does not fit {'gray' if arr.ndim == 2 or arr.shape[2] == 2 else 'colour'} pixels"


def exif_reason(fmt: str, arr: np.ndarray, exif: bytes) -> str:
    if fmt == "BMP":
        return "BMP cannot carry it"
    if normalise_exif(exif) is None:
        return "malformed EXIF block"
    if fmt == "TIFF":
        return "16-bit colour TIFF is written by tifffile, which writes no EXIF"
    return "over 64 KiB: does not fit a JPEG APP1 segment"


def tifffile_module() -> ModuleType | None:
    try:
        import tifffile
    except ImportError:
        return None
    return tifffile


def metadata_for(fmt: str, arr: np.ndarray, icc: bytes | None, exif: bytes | None
                 ) -> tuple[bytes | None, bytes | None]:
    """(ICC profile, EXIF payload with the new pixel size) of a source to embed in ``fmt``, or None where they
    cannot go."""
    if fmt == "BMP":
        return None, None
    gray = arr.ndim == 2 or arr.shape[2] == 2
    if icc and icc_space(icc) != ("GRAY" if gray else "RGB"):
        icc = None
    exif = normalise_exif(exif) if exif else None
    if exif is not None:
        h, w = arr.shape[:2]
        exif = edit_exif(exif, {0x0100: w, 0x0101: h, 0xA002: w, 0xA003: h})
    if exif is not None and fmt == "JPEG" and len(exif) > 65533:
        exif = None
    if fmt == "TIFF" and arr.dtype == np.uint16 and arr.ndim == 3:
        exif = None  # tifffile writes the ICC profile only; without tifffile OpenCV writes neither
        icc = icc if tifffile_module() is not None else None
    return icc or None, exif


