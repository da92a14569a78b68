"""Every image read/write and pixel-format conversion lives here.

Arrays are HxW (gray), HxWx2 (gray + alpha) or HxWxC (C = 3/4, RGB(A) order), dtype uint8 / uint16 (kept as
read) or float32 in [0, 1] for the conversion helpers.

Reading (:func:`read_image`, :func:`read_image_info`, :func:`decode_image`)
    Formats: PNG, JPEG (incl. MPO), WebP, TIFF, BMP, and GIF (read only). Pillow identifies the file, parses the
    header and metadata and decodes 8-bit data; OpenCV decodes 16-bit colour PNG/TIFF (Pillow truncates those
    to 8 bits). 16-bit data stays uint16, gray stays 2-D (gray + alpha is HxWx2), palette images become RGB or
    RGBA (RGBA when the palette has transparency), colour-key transparency (PNG tRNS) becomes an alpha
    channel, 1-bit becomes 8-bit gray, CMYK becomes RGB (Pillow's formula; the CMYK ICC profile is dropped),
    and the EXIF orientation is applied to the pixels (the returned EXIF then says orientation 1).
    Multi-frame files (animated GIF/PNG/WebP, multi-page TIFF, MPO) give their FIRST frame; ``ImageInfo``
    records ``n_frames`` and a note. Floating-point and signed/32-bit integer samples are refused.

    Size guard: the header is parsed first and a picture of more than :data:`MAX_IMAGE_PIXELS` pixels (or a
    file over :data:`MAX_FILE_BYTES` bytes) raises :class:`ImageTooLargeError` before anything is decoded or
    allocated, unless ``allow_large=True``.

    Every failure is an :class:`ImageReadError` whose message starts with the file name and says why.
    Reading never modifies the input.

Writing (:func:`write_image`, :func:`encode_image`)
    The format follows the suffix (no suffix: PNG). The whole file is encoded in memory, written to a hidden
    temporary file in the destination folder, fsync'ed and renamed over the final name (``os.replace``); on
    any error the temporary file is removed, so a failed write leaves no partial file and any previous file
    intact. The ICC profile and EXIF of an :class:`ImageInfo` are embedded where the format allows:

    ======  ===========================  ================================  =========================
    suffix  pixels                       ICC / EXIF                        conversions
    ======  ===========================  ================================  =========================
    .png    gray/GA/RGB/RGBA, 8/16 bit   iCCP / eXIf chunks                none
    .jpg    gray/RGB, 8 bit              APP2 / APP1 (EXIF <= 64 KiB)      16->8 bit; alpha
                                                                           composited over white
    .webp   RGB/RGBA, 8 bit              ICCP / EXIF chunks                16->8 bit; gray->RGB;
                                                                           quality 100 = lossless
    .tif    gray/GA/RGB/RGBA, 8/16 bit   tags (16-bit colour: ICC only,    16-bit GA -> RGBA;
                                         via tifffile)                     deflate, but uncompressed
                                                                           when EXIF is written
    .bmp    gray/RGB, 8 bit              none                              16->8 bit; alpha
                                                                           composited over white
    ======  ===========================  ================================  =========================

    An ICC profile is only embedded when its colour space matches the written pixels (GRAY for gray, RGB for
    colour); EXIF PixelXDimension/PixelYDimension are updated to the written size (XMP is not carried).
    :func:`conversion_notes` lists what a write would change, so a caller can tell the user.

Bad-input corpus (tests/io_corpus.py) and the documented result of each case:

=====================================  ========================================================================
input                                  result
=====================================  ========================================================================
missing path                           ImageReadError "no such file"
a directory                            ImageReadError "is a directory"
0-byte file                            ImageReadError "not a readable image (empty file, 0 bytes)"
text file named .png                   ImageReadError "not a readable image (... looks like a text file)"
random bytes named .jpg                ImageReadError "not a readable image (not a PNG, JPEG, ...)"
PNG / JPEG cut in half                 ImageReadError "not a readable image (corrupt or truncated ...)"
PNG cut inside its header              ImageReadError "not a readable image (corrupt or truncated PNG ...)"
PNG with a bad CRC                     ImageReadError "not a readable image (corrupt or truncated ...)"
header claiming 60000x60000 (PNG/JPEG) ImageTooLargeError "60000x60000 ... over the limit", raised from the
                                       header alone (nothing is decoded or allocated)
1x1 image                              read normally
CMYK JPEG                              HxWx3 uint8 RGB, note "CMYK converted to RGB"
palette PNG (with / without tRNS)      HxWx4 / HxWx3 uint8, note "palette image converted to RGB(A)"
animated GIF                           first frame (palette -> RGB), n_frames = N, note "animated GIF with N
                                       frames: only the first is used"
EXIF-rotated JPEG (orientation 6)      pixels rotated 90 degrees clockwise, orientation 6 in ImageInfo,
                                       returned EXIF says orientation 1
=====================================  ========================================================================
"""

from __future__ import annotations

import os
import re
import stat
import struct
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Suffixes :func:`list_images` picks up and :func:`write_image` can write."""

READ_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
"""Pillow plugins tried on read (content decides, not the suffix; JPEG includes multi-picture MPO files); no
other plugin is ever tried, so e.g. EPS (which would run Ghostscript) is refused."""

WRITE_FORMATS: Mapping[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                                    ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}

MAX_IMAGE_PIXELS = 89_478_485
"""Largest width*height read without ``allow_large=True`` (Pillow's default bomb limit: ~0.25 GiB as RGB)."""

MAX_FILE_BYTES = 1 << 30
"""Largest file read without ``allow_large=True``."""

DEFAULT_QUALITY = 95
"""JPEG/WebP quality; JPEG at >= 90 is written without chroma subsampling, WebP at 100 is lossless."""

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_MAGIC = ((_PNG_SIG, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError,
                  TypeError, RuntimeError, cv2.error)
_ORIENTATION_TEXT = {2: "mirrored horizontally", 3: "rotated 180 degrees", 4: "mirrored vertically",
                     5: "transposed", 6: "rotated 90 degrees clockwise", 7: "transversed",
                     8: "rotated 90 degrees counter-clockwise"}


class ImageReadError(ValueError):
    """An input that is missing, corrupt, too large or not an image; the message names the file and why."""


class ImageTooLargeError(ImageReadError):
    """The header announces more than :data:`MAX_IMAGE_PIXELS` pixels (or the file is over
    :data:`MAX_FILE_BYTES`); pass ``allow_large=True`` to read it anyway."""


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image_info` learnt about a file, and the metadata :func:`write_image` can write back.

    ``width``/``height``/``channels``/``bit_depth``/``has_alpha`` describe the returned array (after the EXIF
    orientation and the palette/CMYK conversions); ``mode`` is Pillow's mode of the source. ``exif`` is an APP1
    payload (``b"Exif\\0\\0"`` + TIFF structure) whose orientation tag was reset to 1; ``orientation`` is the
    value that was applied. ``notes`` says, in words, every conversion that was made.
    """

    source: str
    format: str
    mode: str
    width: int
    height: int
    channels: int
    bit_depth: int
    has_alpha: bool
    icc_profile: bytes | None = field(default=None, repr=False)
    exif: bytes | None = field(default=None, repr=False)
    orientation: int = 1
    n_frames: int = 1
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------------------- reading


def read_image(path: str | Path, *, allow_large: bool = False) -> np.ndarray:
    """Read an image as gray / gray+alpha / RGB(A), keeping its bit depth (uint8 or uint16)."""
    return read_image_info(path, allow_large=allow_large)[0]


def read_image_info(path: str | Path, *, allow_large: bool = False) -> tuple[np.ndarray, ImageInfo]:
    """Read an image and what is known about it (format, depth, ICC/EXIF to write back, notes)."""
    p = Path(path)
    return decode_image(_read_file(p, allow_large), name=str(p), allow_large=allow_large)


def read_rgb(path: str | Path, *, allow_large: bool = False) -> np.ndarray:
    """Read as 3-channel RGB (gray replicated, alpha dropped): the convention of SR benchmarks."""
    return to_rgb(read_image(path, allow_large=allow_large))


def decode_image(data: bytes, *, name: str = "<bytes>", allow_large: bool = False) -> tuple[np.ndarray, ImageInfo]:
    """:func:`read_image_info` for bytes already in memory; ``name`` is used in error messages."""
    if not data:
        raise ImageReadError(f"{name}: not a readable image (empty file, 0 bytes)")
    with _pillow_limits(allow_large):
        try:
            im = Image.open(BytesIO(data), formats=READ_FORMATS)
        except Image.DecompressionBombError as e:
            size = _unchecked_size(data)
            raise _too_large(name, f"{size[0]}x{size[1]} ({size[0] * size[1]:,} pixels)" if size else e) from None
        except UnidentifiedImageError:
            raise ImageReadError(f"{name}: not a readable image ({_describe_unidentified(data)})") from None
        except _DECODE_ERRORS as e:
            raise ImageReadError(f"{name}: not a readable image (corrupt or truncated "
                                 f"{_sniff(data) or 'image'} header: {e})") from None
        with im:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ImageReadError(f"{name}: not a readable image (invalid size {w}x{h})")
            if not allow_large and w * h > MAX_IMAGE_PIXELS:
                raise _too_large(name, f"{w}x{h} ({w * h:,} pixels)")
            try:
                return _decode(im, data, name)
            except ImageReadError:
                raise
            except Image.DecompressionBombError as e:
                raise _too_large(name, e) from None
            except MemoryError:
                raise ImageReadError(f"{name}: not enough memory to decode a {w}x{h} image") from None
            except _DECODE_ERRORS as e:
                raise ImageReadError(f"{name}: not a readable image (corrupt or truncated {im.format} data: "
                                     f"{e})") from None


def _too_large(name: str, what: str | Exception) -> ImageTooLargeError:
    if isinstance(what, Exception):  # Pillow's own check fired first: take the pixel count from its message
        m = re.search(r"\((\d+) pixels\)", str(what))
        what = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
    return ImageTooLargeError(
        f"{name}: image is {what}, over the limit of {MAX_IMAGE_PIXELS:,} pixels (a possible decompression "
        "bomb); if you trust the file, allow it with --allow-large (allow_large=True)")


def _unchecked_size(data: bytes) -> tuple[int, int] | None:
    """Header-only size of a file Pillow refused as a bomb (for the message; nothing is decoded)."""
    with _PIL_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(BytesIO(data), formats=READ_FORMATS) as im:
                return im.size
        except Exception:  # only used to word an error message
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _read_file(p: Path, allow_large: bool) -> bytes:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except OSError as e:
        raise ImageReadError(f"{p}: cannot access the file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(f"{p}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(f"{p}: not a regular file")
    if st.st_size == 0:
        raise ImageReadError(f"{p}: not a readable image (empty file, 0 bytes)")
    if st.st_size > MAX_FILE_BYTES and not allow_large:
        raise ImageTooLargeError(f"{p}: file is {st.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,}; "
                                 "if you trust the file, allow it with --allow-large (allow_large=True)")
    try:
        return p.read_bytes()
    except OSError as e:
        raise ImageReadError(f"{p}: cannot read the file ({e.strerror or e})") from None


_PIL_LOCK = threading.Lock()


@contextmanager
def _pillow_limits(allow_large: bool) -> Iterator[None]:
    """Our size check replaces Pillow's bomb warning; Pillow's own error (at twice its limit) is lifted only
    when it is stricter than ours (``allow_large`` or a raised :data:`MAX_IMAGE_PIXELS`), under a lock."""
    ours = None if allow_large else MAX_IMAGE_PIXELS
    theirs = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if theirs is None or (ours is not None and ours <= 2 * theirs):
            yield
            return
        with _PIL_LOCK:
            Image.MAX_IMAGE_PIXELS = ours
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = theirs


def _sniff(data: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_unidentified(data: bytes) -> str:
    fmt = _sniff(data)
    if fmt:
        return f"corrupt or truncated {fmt} data: it starts like {fmt} but cannot be parsed"
    head = data[:512]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "not an image: it looks like a text file"
    return "not a PNG, JPEG, WebP, TIFF, BMP or GIF file"


def _decode(im: Image.Image, data: bytes, name: str) -> tuple[np.ndarray, ImageInfo]:
    notes: list[str] = []
    fmt, mode = im.format or "?", im.mode
    n_frames = _n_frames(im)
    if n_frames > 1:
        what = {"GIF": "animated GIF", "PNG": "animated PNG", "WEBP": "animated WebP", "TIFF": "multi-page TIFF",
                "MPO": "multi-picture JPEG (MPO)"}.get(fmt, f"multi-frame {fmt}")
        notes.append(f"{what} with {n_frames} frames: only the first is used")
    im.load()
    icc = im.info.get("icc_profile") or None
    exif, orientation = _read_exif(im, notes)

    if _is_truncated_16bit(im, data):
        arr = _decode_16bit_cv2(data, im, name)
    else:
        arr, dropped_icc = _pillow_to_array(im, name, notes)
        if dropped_icc:
            icc = None
    if orientation != 1:
        arr = _apply_orientation(arr, orientation)
        notes.append(f"EXIF orientation {orientation} applied ({_ORIENTATION_TEXT[orientation]})")
    arr = np.ascontiguousarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    info = ImageInfo(source=name, format=fmt, mode=mode, width=arr.shape[1], height=arr.shape[0],
                     channels=channels, bit_depth=arr.dtype.itemsize * 8, has_alpha=channels in (2, 4),
                     icc_profile=bytes(icc) if icc else None, exif=exif, orientation=orientation,
                     n_frames=n_frames, notes=tuple(notes))
    return arr, info


def _n_frames(im: Image.Image) -> int:
    try:
        n = int(getattr(im, "n_frames", 1))
        im.seek(0)
        return max(1, n)
    except _DECODE_ERRORS:  # a broken later frame: the first one may still be fine
        im.seek(0)
        return 1


def _read_exif(im: Image.Image, notes: list[str]) -> tuple[bytes | None, int]:
    """(EXIF payload with orientation reset to 1, orientation to apply)."""
    try:
        orientation = int(im.getexif().get(_ORIENTATION, 1))
    except _DECODE_ERRORS:
        notes.append("unreadable EXIF ignored")
        return None, 1
    if orientation not in _ORIENTATION_TEXT:
        orientation = 1
    raw = im.info.get("exif")
    if not isinstance(raw, bytes | bytearray) or not raw:
        return None, orientation
    exif = _normalise_exif(bytes(raw))
    if exif is None:
        notes.append("malformed EXIF block dropped")
        return None, orientation
    if _exif_orientation(exif) not in (None, 1):
        fixed = _edit_exif(exif, {_ORIENTATION: 1})
        if fixed is None or _exif_orientation(fixed) not in (None, 1):
            fixed = _pillow_reset_orientation(exif)
        if fixed is None:
            notes.append("EXIF dropped (its orientation tag could not be reset)")
        exif = fixed
    return exif, orientation


def _normalise_exif(raw: bytes) -> bytes | None:
    body = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if body[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    return b"Exif\x00\x00" + body


def _exif_orientation(exif: bytes) -> int | None:
    try:
        ex = Image.Exif()
        ex.load(exif)
        v = ex.get(_ORIENTATION)
        return None if v is None else int(v)
    except _DECODE_ERRORS:
        return None


def _pillow_reset_orientation(exif: bytes) -> bytes | None:
    try:
        ex = Image.Exif()
        ex.load(exif)
        ex[_ORIENTATION] = 1
        out = _normalise_exif(ex.tobytes())
    except _DECODE_ERRORS:
        return None
    return out if out is not None and _exif_orientation(out) in (None, 1) else None


def _edit_exif(exif: bytes, values: Mapping[int, int]) -> bytes | None:
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
                if tag == _EXIF_IFD and typ in (4, 13) and n == 1:
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


def _is_truncated_16bit(im: Image.Image, data: bytes) -> bool:
    """True for 16-bit colour / gray+alpha data that Pillow reduces to 8 bits (OpenCV decodes it instead)."""
    if im.format == "PNG":
        return len(data) > 25 and data[24] == 16 and data[25] in (2, 4, 6)
    if im.format == "TIFF" and im.mode in ("RGB", "RGBA"):
        bits = im.tag_v2.get(258, (8,))  # type: ignore[attr-defined]
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) == 16
    return False


def _decode_16bit_cv2(data: bytes, im: Image.Image, name: str) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    w, h = im.size
    if arr is None or arr.dtype != np.uint16 or arr.shape[:2] != (h, w):
        raise ImageReadError(f"{name}: not a readable image (corrupt or truncated 16-bit {im.format} data)")
    gray_alpha = im.format == "PNG" and data[25] == 4
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.shape[2] == 4:
        return arr[..., [0, 3]] if gray_alpha else cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    raise ImageReadError(f"{name}: unsupported 16-bit layout with {arr.shape[2]} channels")


def _pillow_to_array(im: Image.Image, name: str, notes: list[str]) -> tuple[np.ndarray, bool]:
    """Pillow image -> uint8/uint16 array; also says whether the ICC profile no longer applies."""
    mode = im.mode
    transparency = im.info.get("transparency") is not None
    if mode == "1":
        im = im.convert("L")
        notes.append("1-bit image expanded to 8-bit gray (0/255)")
    elif mode in ("P", "PA"):
        alpha = mode == "PA" or transparency
        im = im.convert("RGBA" if alpha else "RGB")
        notes.append(f"palette image converted to {im.mode}")
    elif mode in ("L", "RGB") and transparency:
        im = im.convert("LA" if mode == "L" else "RGBA")
        notes.append(f"colour-key transparency converted to an alpha channel ({im.mode})")
    elif mode == "CMYK":
        im = im.convert("RGB")
        notes.append("CMYK converted to RGB (uncalibrated); its CMYK ICC profile is not kept")
        return np.array(im), True
    elif mode in ("RGBa", "La", "RGBX", "YCbCr"):
        im = im.convert({"RGBa": "RGBA", "La": "LA"}.get(mode, "RGB"))
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return np.array(im), False
    if im.mode.startswith("I;16"):
        return np.array(im).astype(np.uint16), False
    raise ImageReadError(f"{name}: unsupported pixel format {mode!r} (only 8/16-bit unsigned gray, gray+alpha, "
                         "RGB, RGBA, palette and CMYK images are supported)")


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------------- writing


def write_image(path: str | Path, img: np.ndarray, *, info: ImageInfo | None = None,
                quality: int = DEFAULT_QUALITY, overwrite: bool = True) -> Path:
    """Write ``img`` (gray/GA/RGB(A); uint8, uint16 or float in [0, 1]) atomically; returns the path.

    The format follows the suffix (see the module docstring). ``info`` (from :func:`read_image_info`) supplies
    the ICC profile and EXIF to embed, and makes float input be written as 16-bit when the source was 16-bit.
    With ``overwrite=False`` an existing destination raises FileExistsError (checked atomically where the file
    system has hard links). Encoding problems raise ValueError before any file is created.
    """
    p = Path(path)
    data = encode_image(img, p.suffix or ".png", info=info, quality=quality)
    _atomic_write(p, data, overwrite=overwrite)
    return p


def encode_image(img: np.ndarray, suffix: str = ".png", *, info: ImageInfo | None = None,
                 quality: int = DEFAULT_QUALITY) -> bytes:
    """The bytes :func:`write_image` would write for a file with this suffix."""
    fmt = _format_for(suffix)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    arr = _prepare(img, info)
    arr, _ = _convert_for(fmt, arr)
    icc, exif = _metadata_for(fmt, arr, info)
    if fmt == "PNG":
        return _encode_png(arr, icc, exif)
    if fmt == "TIFF" and arr.dtype == np.uint16 and arr.ndim == 3:
        return _encode_tiff16(arr, icc)
    pil = Image.fromarray(arr)
    kw: dict[str, object] = {}
    if icc:
        kw["icc_profile"] = icc
    if exif:
        kw["exif"] = exif
    if fmt == "JPEG":
        kw.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        kw.update(quality=int(quality), lossless=quality >= 100, exact=True)
    elif fmt == "TIFF" and not exif:  # libtiff (used for compression) cannot write the Exif sub-IFD
        kw.update(compression="tiff_adobe_deflate")
    buf = BytesIO()
    pil.save(buf, fmt, **kw)
    return buf.getvalue()


def conversion_notes(path: str | Path, img: np.ndarray, *, info: ImageInfo | None = None) -> tuple[str, ...]:
    """What writing ``img`` (with ``info``'s metadata) to ``path`` would change or leave out, in words."""
    fmt = _format_for(Path(path).suffix or ".png")
    arr, notes = _convert_for(fmt, _prepare(img, info))
    if info is not None:
        icc, exif = _metadata_for(fmt, arr, info)
        if info.icc_profile and not icc:
            notes.append(f"ICC profile not written ({_icc_reason(fmt, arr, info.icc_profile)})")
        if info.exif and not exif:
            notes.append(f"EXIF not written ({_exif_reason(fmt, arr, info.exif)})")
    return tuple(notes)


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name the same file (links and case-insensitive file systems included): the check
    a caller makes so that an output never overwrites its input."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pa, pb = Path(a).resolve(), Path(b).resolve()
        return os.path.normcase(pa) == os.path.normcase(pb)


def _format_for(suffix: str) -> str:
    fmt = WRITE_FORMATS.get(suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write images with suffix {suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
    return fmt


def _prepare(img: np.ndarray, info: ImageInfo | None) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)) or 0 in arr.shape[:2]:
        raise ValueError(f"cannot write an array of shape {arr.shape}: expected HxW, HxWx2, HxWx3 or HxWx4")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        peak = np.uint16 if info is not None and info.bit_depth == 16 else np.uint8
        arr = to_uint(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), peak)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write dtype {arr.dtype}: expected uint8, uint16 or float in [0, 1]")
    return np.ascontiguousarray(arr)


def _to8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _flatten_alpha(arr: np.ndarray) -> np.ndarray:
    """Composite gray+alpha / RGBA over white (uint8 in, uint8 out)."""
    a = arr[..., -1:].astype(np.float32) / 255.0
    out = arr[..., :-1].astype(np.float32) * a + 255.0 * (1.0 - a)
    out = np.round(out).astype(np.uint8)
    return out[..., 0] if out.shape[2] == 1 else out


def _convert_for(fmt: str, arr: np.ndarray) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if fmt in ("JPEG", "WEBP", "BMP") and arr.dtype == np.uint16:
        arr = _to8(arr)
        notes.append(f"16-bit image written as 8-bit ({fmt} has no 16-bit mode)")
    if fmt in ("JPEG", "BMP") and channels in (2, 4):
        arr = _flatten_alpha(arr)
        notes.append(f"alpha composited over white ({fmt} has no alpha channel)")
    if fmt == "WEBP" and channels in (1, 2):
        arr = np.repeat(arr[..., None], 3, axis=2) if channels == 1 else arr[..., [0, 0, 0, 1]]
        notes.append("gray written as RGB (WebP has no gray mode)")
    if fmt == "TIFF" and channels == 2 and arr.dtype == np.uint16:
        arr = arr[..., [0, 0, 0, 1]]
        notes.append("16-bit gray+alpha written as RGBA (not readable back as gray+alpha otherwise)")
    return np.ascontiguousarray(arr), notes


def _icc_space(icc: bytes) -> str | None:
    if len(icc) < 128 or icc[36:40] != b"acsp":
        return None
    return icc[16:20].decode("latin-1").strip()


def _icc_reason(fmt: str, arr: np.ndarray, icc: bytes) -> str:
    if fmt == "BMP":
        return "BMP cannot carry one"
    space = _icc_space(icc)
    if space is None:
        return "not a valid ICC profile"
    return f"a {space} profile does not fit {'gray' if arr.ndim == 2 or arr.shape[2] == 2 else 'colour'} pixels"


def _exif_reason(fmt: str, arr: np.ndarray, exif: bytes) -> str:
    if fmt == "BMP":
        return "BMP cannot carry it"
    if _normalise_exif(exif) is None:
        return "malformed EXIF block"
    if fmt == "TIFF":
        return "16-bit colour TIFF is written by tifffile, which writes no EXIF"
    return "over 64 KiB: does not fit a JPEG APP1 segment"


def _tifffile() -> ModuleType | None:
    try:
        import tifffile
    except ImportError:
        return None
    return tifffile


def _metadata_for(fmt: str, arr: np.ndarray, info: ImageInfo | None) -> tuple[bytes | None, bytes | None]:
    """(ICC profile, EXIF payload with the new pixel size) to embed, or None where they cannot go."""
    if info is None or fmt == "BMP":
        return None, None
    icc = info.icc_profile
    gray = arr.ndim == 2 or arr.shape[2] == 2
    if icc and _icc_space(icc) != ("GRAY" if gray else "RGB"):
        icc = None
    exif = _normalise_exif(info.exif) if info.exif else None
    if exif is not None:
        h, w = arr.shape[:2]
        exif = _edit_exif(exif, {0x0100: w, 0x0101: h, 0xA002: w, 0xA003: h})
    if exif is not None and fmt == "JPEG" and len(exif) > 65533:
        exif = None
    if fmt == "TIFF" and arr.dtype == np.uint16 and arr.ndim == 3:
        exif = None  # tifffile writes the ICC profile only; without tifffile OpenCV writes neither
        icc = icc if _tifffile() is not None else None
    return icc or None, exif


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _encode_png(arr: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    if arr.ndim == 3 and arr.shape[2] == 2:
        png = _encode_png_gray_alpha(arr)
    else:
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", arr)
        if not ok:
            raise ValueError(f"OpenCV could not encode a PNG of shape {arr.shape} and dtype {arr.dtype}")
        png = buf.tobytes()
    if not icc and not exif:
        return png
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc, 9))
    if exif:
        extra += _png_chunk(b"eXIf", exif[6:])
    out, pos = [_PNG_SIG], len(_PNG_SIG)
    while pos + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, pos)
        end = pos + 12 + length
        if not (kind in (b"iCCP", b"sRGB") and icc) and not (kind == b"eXIf" and exif):
            out.append(png[pos:end])
        if kind == b"IHDR":
            out.append(extra)
        pos = end
    return b"".join(out)


def _encode_png_gray_alpha(arr: np.ndarray) -> bytes:
    """Minimal PNG encoder for gray+alpha (colour type 4), 8 or 16 bit, 'Sub' filter on every row."""
    h, w, _ = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    raw = np.ascontiguousarray(arr.astype(">u2") if depth == 16 else arr).view(np.uint8).reshape(h, -1)
    bpp = 2 * depth // 8
    filtered = raw.copy()
    filtered[:, bpp:] -= raw[:, :-bpp]
    rows = np.concatenate([np.ones((h, 1), np.uint8), filtered], axis=1)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 4, 0, 0, 0)
    return (_PNG_SIG + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _png_chunk(b"IEND", b""))


def _encode_tiff16(arr: np.ndarray, icc: bytes | None) -> bytes:
    """16-bit RGB/RGBA TIFF (Pillow cannot write these): tifffile with the ICC profile, else OpenCV."""
    tifffile = _tifffile()
    if tifffile is None:
        code = cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
        ok, buf = cv2.imencode(".tiff", cv2.cvtColor(arr, code))
        if not ok:
            raise ValueError(f"OpenCV could not encode a TIFF of shape {arr.shape}")
        return buf.tobytes()
    out = BytesIO()
    tifffile.imwrite(out, arr, photometric="rgb", extrasamples=("unassalpha",) if arr.shape[2] == 4 else None,
                     compression="zlib", iccprofile=icc)
    return out.getvalue()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic_write(p: Path, data: bytes, *, overwrite: bool) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)  # fails atomically if p exists
            except FileExistsError:
                raise FileExistsError(17, "output exists", str(p)) from None
            except OSError:  # no hard links on this file system
                if os.path.lexists(p):
                    raise FileExistsError(17, "output exists", str(p)) from None
                os.replace(tmp, p)
        _fsync_dir(p.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ pixel conversions


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Gray -> RGB (replicated), gray+alpha -> RGB, RGBA -> RGB (alpha dropped)."""
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] in (1, 2):
        return np.repeat(img[..., :1], 3, axis=2)
    return img[..., :3]


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8/uint16/float -> float32 in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return img.astype(np.float32)


def to_uint(img: np.ndarray, dtype: type[np.integer] = np.uint8) -> np.ndarray:
    """float in [0,1] -> uint8/uint16, clipped and rounded (half to even, as torch/BasicSR do)."""
    peak = float(np.iinfo(dtype).max)
    return np.round(np.clip(img, 0.0, 1.0) * peak).astype(dtype)


def rgb_to_ycrcb_full(img: np.ndarray) -> np.ndarray:
    """OpenCV's full-range YCrCb as float32 in [0, 1] (what dnn_superres feeds ESPCN).

    uint8 input is converted in uint8 and then multiplied by ``float32(1/255)``, exactly as OpenCV's
    ``dnn_superres`` does (dividing by 255 gives different floats); float input in [0, 1] is converted in float.
    """
    if img.dtype == np.uint8:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YCrCb).astype(np.float32) * np.float32(
            1.0 / 255.0)
    return cv2.cvtColor(np.ascontiguousarray(to_float(img)), cv2.COLOR_RGB2YCrCb)


def ycrcb_full_to_rgb(img: np.ndarray, dtype: type[np.generic] = np.float32) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycrcb_full`. For a uint8 target the YCrCb planes are rounded to uint8 first and
    converted in uint8 (dnn_superres); otherwise converted in float and returned as ``dtype``."""
    if dtype == np.uint8:
        ycc8 = np.clip(np.rint(img * np.float32(255.0)), 0, 255).astype(np.uint8)
        return cv2.cvtColor(ycc8, cv2.COLOR_YCrCb2RGB)
    rgb = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_YCrCb2RGB)
    return rgb if dtype == np.float32 else to_uint(rgb, dtype)


def resize_bicubic(img: np.ndarray, scale: int) -> np.ndarray:
    """OpenCV bicubic upscaling (alpha planes of models without alpha)."""
    h, w = img.shape[:2]
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def resize_bilinear(img: np.ndarray, scale: int) -> np.ndarray:
    """OpenCV bilinear upscaling: the chroma path of dnn_superres for Y-channel models."""
    h, w = img.shape[:2]
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted; hidden files (``.name``, e.g. macOS ``._x.png``
    resource forks and our own ``.part`` temporaries) are skipped."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())



# ------------------------------------------------------------------------------------------------------- VIDEO
#
# Video decode / encode / remux with PyAV (FFmpeg inside the wheel; the ``video`` extra). ``av`` is imported by
# these functions only, never when ``restore`` or this module is imported.
#
# Reading (:func:`probe_video`, :func:`read_video`): the first video stream is decoded to HxWx3 uint8 RGB with
# FFmpeg's swscale, using the matrix and range the stream declares (BT.601 when it declares none), or, with
# ``pixels="yuv420p"``, kept as its 8-bit 4:2:0 planes (:class:`YuvFrame`, no colour conversion); every
# audio, subtitle and data stream is demuxed and handed on as packets, untouched, to be copied into the output.
# Frames keep their own timestamps (variable frame rate survives); a frame whose size differs from the first
# one (a mid-stream resolution change) is scaled to the first frame's size. Frame side data that describes
# the picture (the display matrix, i.e. rotation/flip metadata) is reported in :class:`VideoInfo`.
#
# Writing (:class:`VideoWriter`): one encoded video stream (default libx264, CRF 18, preset ``veryfast``;
# libvpx-vp9 for ``.webm``) with the source's time base and timestamps, frame-rate, sample aspect ratio,
# colour range / matrix / primaries / transfer tags and display matrix, plus a stream-copy of every audio,
# subtitle and data stream of the source (the packets' bytes are written as read). The output pixel format
# is yuv420p (yuv444p when the source is 4:4:4 and the codec allows it; the codec's own format when it has
# no yuv420p, e.g. ``png``). :meth:`VideoWriter.write` also takes a :class:`YuvFrame`, whose planes go to the
# encoder as they are (no RGB round trip). 4:2:0 / 4:2:2 need even dimensions: an odd output width or height
# is cropped by one pixel (the last column / row), which :attr:`VideoWriter.cropped` reports. The file is
# written under a hidden temporary name in the destination folder (:func:`video_temp_path`) and renamed to its
# final name by :func:`publish_video` only when complete, so a failed or killed run never leaves a partial file
# at the final name.
#
# Y-plane path (Y-channel models such as ESPCN, whose colour space is OpenCV's full-range YCrCb: only Y goes
# through the network): :func:`yuv_luma_for_model` maps a frame's Y plane to the model's full-range Y in
# [0, 1] (limited range: ``(Y - 16) / 219``, clipped; full range: ``Y / 255``) and :func:`yuv_from_luma`
# maps the restored Y back to the frame's range (clipped to [0, 1] first, then ``16 + 219 y`` or ``255 y``,
# rounded) and upscales U and V bilinearly (OpenCV, as the RGB path does with Cr/Cb), into one contiguous
# yuv420p buffer that the encoder takes without a copy. The colour range and tags stay the source's. The
# network sees the stream's own luma (its matrix, e.g. BT.709), where the RGB path recomputes a BT.601 luma
# from RGB: for BT.601 sources the two agree up to rounding; for others the luma weights differ slightly.
#
# Every failure to open, decode or write is a :class:`VideoError` whose message starts with the file name.

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
"""Containers :class:`VideoWriter` writes (the suffix picks the container)."""

DEFAULT_VIDEO_CODEC = "libx264"
DEFAULT_CRF = 18
DEFAULT_PRESET = "veryfast"
_CODEC_FOR_SUFFIX = {".webm": "libvpx-vp9"}
_CRF_CODECS = ("libx264", "libx265", "libvpx", "libvpx-vp9", "libsvtav1", "libaom-av1")
_PRESET_CODECS = ("libx264", "libx265")
_COPY_TYPES = ("audio", "subtitle", "data")
_SKIP_TAGS = ("major_brand", "minor_version", "compatible_brands", "encoder", "handler_name", "duration",
              "vendor_id")  # written by the muxer / encoder itself (compared case-insensitively)
# AVColorSpace (what streams declare) -> swscale matrix name used for the RGB <-> YUV conversions
_SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
YUV420_FORMATS = ("yuv420p", "yuvj420p")
"""Source pixel formats :func:`read_video` can hand on as planes (``pixels="yuv420p"``) without conversion."""
_MAX_DECODE_ERRORS = 50


class VideoError(ValueError):
    """A video that cannot be opened, decoded or written (or PyAV missing); the message names the file and why."""


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file, as :func:`probe_video` found it (after decoding its first frame).

    ``time_base`` is the unit of the timestamps :func:`read_video` returns; ``frame_rate`` the average rate
    (None when the container does not know it); ``n_frames`` the frame count of the header (0: unknown, see
    :meth:`estimated_frames`); ``duration`` seconds (None: unknown). Colour fields are FFmpeg's enum values
    (``color_range`` 1 = limited/MPEG, 2 = full/JPEG, 0 = unspecified). ``display_matrix`` is the 3x3
    rotation/flip matrix (9 int32, FFmpeg's layout) or None; ``rotation`` its counter-clockwise angle.
    ``streams`` describes the other streams (those a :class:`VideoWriter` copies).
    """

    source: str
    width: int
    height: int
    codec: str
    pix_fmt: str
    time_base: Fraction
    frame_rate: Fraction | None
    n_frames: int
    duration: float | None
    start_time: float
    color_range: int = 0
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2
    sample_aspect_ratio: Fraction | None = None
    display_matrix: tuple[int, ...] | None = None
    rotation: int = 0
    streams: tuple[str, ...] = ()
    live: bool = False

    @property
    def fps(self) -> float:
        return float(self.frame_rate) if self.frame_rate else 0.0

    def estimated_frames(self) -> int:
        """Frame count from the header, else duration x frame rate; 0 when neither is known."""
        if self.n_frames:
            return self.n_frames
        if self.duration and self.frame_rate:
            return max(1, round(self.duration * self.fps))
        return 0


class YuvFrame:
    """An 8-bit 4:2:0 picture as its three planes in one contiguous yuv420p buffer (``data``: (3H/2)xW uint8,
    Y then U then V, as FFmpeg lays out yuv420p with no padding); ``y`` HxW, ``u`` / ``v`` (H/2)x(W/2) are
    views of it. ``full_range``: JPEG range (0-255); else limited / MPEG range (Y 16-235, U/V 16-240).
    Width and height must be even."""

    __slots__ = ("data", "full_range", "height", "width")

    def __init__(self, width: int, height: int, *, full_range: bool, data: np.ndarray | None = None) -> None:
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise ValueError(f"yuv420p needs even sizes of at least 2, got {width}x{height}")
        self.width, self.height, self.full_range = width, height, full_range
        if data is None:
            data = np.empty((height * 3 // 2, width), np.uint8)
        elif data.shape != (height * 3 // 2, width) or data.dtype != np.uint8 or not data.flags.c_contiguous:
            raise ValueError(f"yuv420p buffer must be a C-contiguous uint8 {(height * 3 // 2, width)} array")
        self.data = data

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width), as an image's ``shape[:2]``."""
        return self.height, self.width

    @property
    def y(self) -> np.ndarray:
        return self.data[:self.height]

    def _chroma(self, k: int) -> np.ndarray:
        n = self.width * self.height
        q = n // 4
        return self.data.reshape(-1)[n + k * q:n + (k + 1) * q].reshape(self.height // 2, self.width // 2)

    @property
    def u(self) -> np.ndarray:
        return self._chroma(0)

    @property
    def v(self) -> np.ndarray:
        return self._chroma(1)


def yuv420_supported(pix_fmt: str, width: int, height: int) -> bool:
    """Whether frames of this format and size can take the Y-plane path (8-bit planar 4:2:0, even sizes)."""
    return pix_fmt in YUV420_FORMATS and width % 2 == 0 and height % 2 == 0 and width >= 2 and height >= 2


def _luma_lut(full_range: bool) -> np.ndarray:
    v = np.arange(256, dtype=np.float32)
    if full_range:  # as rgb_to_ycrcb_full: uint8 times float32(1/255)
        return v * np.float32(1.0 / 255.0)
    return np.clip((v - np.float32(16.0)) / np.float32(219.0), 0.0, 1.0).astype(np.float32)


_LUMA_LUT = {True: _luma_lut(True), False: _luma_lut(False)}


def yuv_luma_for_model(frame: YuvFrame) -> np.ndarray:
    """The Y plane as a Y-channel model's input: HxW float32 full-range Y in [0, 1] (limited range is
    expanded from 16-235 and clipped, like the RGB path's clipped RGB)."""
    return cv2.LUT(frame.y, _LUMA_LUT[frame.full_range])


def yuv_from_luma(y: np.ndarray, frame: YuvFrame, scale: int) -> YuvFrame:
    """The upscaled picture: restored full-range Y (``scale`` x the frame's size, float in [0, 1], HxW or
    HxWx1) mapped back to ``frame``'s range, and ``frame``'s U / V upscaled bilinearly (OpenCV, half-pixel
    centres, uint8 rounding) — one contiguous yuv420p buffer, same range as ``frame``."""
    h, w = frame.height * scale, frame.width * scale
    y = y.reshape(y.shape[:2])
    if y.shape != (h, w):
        raise ValueError(f"restored Y is {y.shape[1]}x{y.shape[0]}, expected {w}x{h}")
    out = YuvFrame(w, h, full_range=frame.full_range)
    yc = np.clip(y, 0.0, 1.0, dtype=np.float32)
    # x255 (full) or x219 + 16 (limited), round half to even, saturate: one OpenCV pass into the buffer
    if frame.full_range:
        cv2.convertScaleAbs(yc, dst=out.y, alpha=255.0)
    else:
        cv2.convertScaleAbs(yc, dst=out.y, alpha=219.0, beta=16.0)
    for src, dst in ((frame.u, out.u), (frame.v, out.v)):
        cv2.resize(src, (w // 2, h // 2), dst=dst, interpolation=cv2.INTER_LINEAR)
    return out


def _frame_to_yuv(frame: object, width: int, height: int, full_range: bool) -> YuvFrame:
    """A decoded av.VideoFrame as a :class:`YuvFrame` of ``width`` x ``height`` in the given range (frames of
    another size or format, e.g. after a mid-stream change, are converted by swscale first)."""
    fmt = frame.format.name  # type: ignore[attr-defined]
    src_full = frame.color_range == 2 or fmt == "yuvj420p"  # type: ignore[attr-defined]
    if fmt not in YUV420_FORMATS or (frame.width, frame.height) != (width, height) or src_full != full_range:  # type: ignore[attr-defined]
        frame = frame.reformat(width=width, height=height, format="yuv420p",  # type: ignore[attr-defined]
                               src_color_range=2 if src_full else 1, dst_color_range=2 if full_range else 1)
    out = YuvFrame(width, height, full_range=full_range)
    for plane, dst in zip(frame.planes, (out.y, out.u, out.v), strict=True):  # type: ignore[attr-defined]
        rows, cols = dst.shape
        src = np.frombuffer(plane, np.uint8)
        dst[...] = np.lib.stride_tricks.as_strided(src, (rows, cols), (abs(plane.line_size), 1))
    return out


@dataclass
class DecodedFrame:
    """One decoded video frame: ``image`` HxWx3 uint8 RGB, or a :class:`YuvFrame` when :func:`read_video` was
    asked for planes; ``pts`` / ``duration`` in the stream's time base (already shifted when a clip was asked
    for); ``index`` counts decoded frames from 0."""

    index: int
    image: np.ndarray | YuvFrame
    pts: int
    duration: int | None = None


@dataclass
class CopiedPacket:
    """A packet of a stream that is copied, not decoded: ``stream`` is its index in the source file."""

    stream: int
    packet: object


@dataclass
class ReadStats:
    """What :func:`read_video` skipped: packets the decoder refused, and why the stream ended early."""

    decode_errors: int = 0
    truncated: str = ""


def _av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise VideoError("video support needs PyAV: pip install 'restore[video]' (or pip install av)") from None
    return av


def is_live_source(source: str | Path) -> bool:
    """Capture devices (``/dev/video*``) and network URLs (``rtsp://``, ``udp://``, ...)."""
    s = str(source)
    return s.startswith("/dev/") or ("://" in s and not s.startswith("file://"))


def _ffmpeg_reason(err: BaseException) -> str:
    msg = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return str(msg).strip().splitlines()[0].rstrip(":")


@contextmanager
def _open_input(source: str | Path) -> Iterator[object]:
    av = _av()
    s = str(source)
    live = is_live_source(s)
    if not live:
        p = Path(s)
        if not p.exists():
            raise VideoError(f"{s}: no such file")
        if p.is_dir():
            raise VideoError(f"{s}: is a directory")
        if p.stat().st_size == 0:
            raise VideoError(f"{s}: not a readable video (empty file, 0 bytes)")
    kwargs: dict[str, object] = {"format": "v4l2"} if s.startswith("/dev/video") else {}
    try:
        container = av.open(s, "r", metadata_errors="ignore", **kwargs)
    except av.error.FFmpegError as e:
        raise VideoError(f"{s}: not a readable video ({_ffmpeg_reason(e)})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoError(f"{s}: cannot open ({_ffmpeg_reason(e)})") from None
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: object, source: str) -> object:
    streams = container.streams.video  # type: ignore[attr-defined]
    if not streams:
        kinds = ", ".join(sorted({st.type for st in container.streams})) or "no streams"  # type: ignore[attr-defined]
        raise VideoError(f"{source}: no video stream ({kinds})")
    vs = streams[0]
    if vs.codec_context is None:
        raise VideoError(f"{source}: no decoder for the video codec of stream #{vs.index}")
    vs.thread_type = "AUTO"
    return vs


def _describe_stream(st: object) -> str:
    cc = st.codec_context  # type: ignore[attr-defined]
    name = cc.name if cc is not None else (st.codec_tag or "?")  # type: ignore[attr-defined]
    text = f"#{st.index} {st.type} {name}"  # type: ignore[attr-defined]
    if st.type == "audio" and cc is not None:  # type: ignore[attr-defined]
        text += f" {cc.sample_rate} Hz {getattr(cc.layout, 'name', '')}".rstrip()
    lang = st.metadata.get("language")  # type: ignore[attr-defined]
    return text + (f" [{lang}]" if lang and lang != "und" else "")


def _display_matrix(frame: object) -> tuple[int, ...] | None:
    av = _av()
    try:
        sd = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)  # type: ignore[attr-defined]
    except (AttributeError, KeyError, ValueError):
        return None
    if sd is None:
        return None
    raw = bytes(sd)
    return struct.unpack("<9i", raw[:36]) if len(raw) >= 36 else None


def probe_video(source: str | Path) -> VideoInfo:
    """Open ``source``, decode its first video frame and describe the stream (see :class:`VideoInfo`)."""
    s = str(source)
    with _open_input(s) as c:
        vs = _video_stream(c, s)
        stats = ReadStats()
        first = next(_decode_video(c, vs, s, stats, []), None)
        if first is None:
            why = f" ({stats.truncated})" if stats.truncated else ""
            raise VideoError(f"{s}: not a readable video (no decodable video frame{why})")
        frame = first
        tb = vs.time_base or Fraction(1, 90000)
        rate = vs.average_rate or vs.guessed_rate or None
        dur = float(vs.duration * tb) if vs.duration else (c.duration / 1e6 if c.duration else None)
        start = float(vs.start_time * tb) if vs.start_time is not None else 0.0
        matrix = _display_matrix(frame)
        return VideoInfo(
            source=s, width=frame.width, height=frame.height, codec=vs.codec_context.name,
            pix_fmt=frame.format.name, time_base=Fraction(tb), frame_rate=Fraction(rate) if rate else None,
            n_frames=int(vs.frames or 0), duration=dur, start_time=start,
            color_range=int(frame.color_range), colorspace=int(frame.colorspace),
            color_primaries=int(frame.color_primaries), color_trc=int(frame.color_trc),
            sample_aspect_ratio=vs.sample_aspect_ratio, display_matrix=matrix,
            rotation=int(frame.rotation) if matrix is not None else 0,
            streams=tuple(_describe_stream(st) for st in c.streams if st.index != vs.index),
            live=is_live_source(s))


def _decode_video(container: object, vs: object, source: str, stats: ReadStats, copy: list[object]) -> Iterator[object]:
    """Demux ``vs`` and the ``copy`` streams: decoded frames of ``vs`` (av.VideoFrame) and ``CopiedPacket``s,
    in file order. Packets the decoder rejects are skipped and counted; a demuxer error ends the stream
    (recorded in ``stats.truncated``)."""
    av = _av()
    copy_index = {st.index for st in copy}  # type: ignore[attr-defined]
    demux = container.demux([vs, *copy])  # type: ignore[attr-defined]
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except av.error.FFmpegError as e:
            stats.truncated = f"stopped at a damaged part of the file: {_ffmpeg_reason(e)}"
            break
        idx = packet.stream.index
        if idx in copy_index:
            if packet.size:  # skip the empty flush packets demux() adds at the end
                yield CopiedPacket(idx, packet)
            continue
        try:
            frames = vs.decode(packet)  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            stats.decode_errors += 1
            if stats.decode_errors > _MAX_DECODE_ERRORS:
                raise VideoError(f"{source}: not a readable video (more than {_MAX_DECODE_ERRORS} "
                                 f"undecodable packets: {_ffmpeg_reason(e)})") from None
            continue
        yield from frames
    try:
        yield from vs.decode(None)  # type: ignore[attr-defined]
    except av.error.EOFError:  # already flushed by the empty packet demux() ends with
        pass
    except av.error.FFmpegError:
        stats.decode_errors += 1


def _packet_time(packet: object) -> Fraction | None:
    t = packet.pts if packet.pts is not None else packet.dts  # type: ignore[attr-defined]
    return None if t is None or packet.time_base is None else t * packet.time_base  # type: ignore[attr-defined]


def _shift_packet(packet: object, shift: Fraction) -> None:
    if not shift:
        return
    d = round(shift / packet.time_base)  # type: ignore[attr-defined]
    if packet.pts is not None:  # type: ignore[attr-defined]
        packet.pts -= d  # type: ignore[attr-defined]
    if packet.dts is not None:  # type: ignore[attr-defined]
        packet.dts -= d  # type: ignore[attr-defined]


def read_video(source: str | Path, *, start: int = 0, stop: int | None = None, copy_streams: bool = True,
               rebase: bool = False, stats: ReadStats | None = None,
               pixels: str = "rgb24") -> Iterator[DecodedFrame | CopiedPacket]:
    """Decode frames ``start`` .. ``stop - 1`` (0-based, all by default) of the first video stream of
    ``source`` as :class:`DecodedFrame` (uint8 RGB, frame size of the first frame), interleaved in file order
    with :class:`CopiedPacket`s of every audio / subtitle / data stream (``copy_streams``).

    ``pixels="yuv420p"``: frames come as :class:`YuvFrame` planes, untouched when the stream is 8-bit 4:2:0
    (:data:`YUV420_FORMATS`) with even sizes (check with :func:`yuv420_supported`), in the colour range of
    the first frame (frames in another format, size or range are converted to it by swscale).

    Clips (``start > 0`` or ``stop``): frames before ``start`` are decoded and dropped (frame-exact); copied
    packets are kept when they start inside [time of frame ``start``, end of frame ``stop - 1``) (whole
    packets: audio is cut at packet granularity); with ``start > 0`` every timestamp is shifted so the clip
    starts where the source started. ``rebase``: shift every timestamp so the first frame returned is at 0
    (live sources, whose timestamps are wall-clock times).
    """
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"frame range {start}:{stop} is empty or negative")
    if pixels not in ("rgb24", "yuv420p"):
        raise ValueError(f"pixels must be 'rgb24' or 'yuv420p', got {pixels!r}")
    s = str(source)
    stats = stats if stats is not None else ReadStats()
    clip = start > 0 or stop is not None or rebase
    with _open_input(s) as c:
        vs = _video_stream(c, s)
        tb = Fraction(vs.time_base or Fraction(1, 90000))
        copy = [st for st in c.streams if st.index != vs.index and st.type in _COPY_TYPES] if copy_streams else []
        rate = vs.average_rate or vs.guessed_rate
        default_dur = max(1, round(1 / (rate * tb))) if rate else 1
        size: tuple[int, int] | None = None
        full_range = False
        index = -1
        t_first: Fraction | None = None  # time of frame 0
        t_start: Fraction | None = None  # time of frame `start` (None until decoded)
        t_end: Fraction | None = None  # end of frame `stop - 1` (None until decoded)
        t_before = Fraction(-(10**9))  # time of the latest frame before `start`
        shift = Fraction(0)
        # clips: copied packets wait here until the decoded video has caught up with them (the decoder delays
        # frames behind their packets), then go out if they start inside the clip
        pending: list[tuple[Fraction, CopiedPacket]] = []
        copy_left = {st.index for st in copy}  # copied streams not yet past t_end
        last_pts: int | None = None

        def inside(t: Fraction) -> bool:
            return (start == 0 and not rebase) or (t_start is not None and t >= t_start)

        for item in _decode_video(c, vs, s, stats, copy):
            if isinstance(item, CopiedPacket):
                t = _packet_time(item.packet)
                if not clip:
                    yield item
                elif t is None:
                    continue
                elif t_end is None:
                    if t_start is None:
                        pending = [(qt, q) for qt, q in pending if qt >= t_before]
                    pending.append((t, item))
                elif t >= t_end:
                    copy_left.discard(item.stream)
                    if not copy_left:
                        break
                elif inside(t):
                    _shift_packet(item.packet, shift)
                    yield item
                continue
            index += 1
            if t_end is not None:  # video done; only the copied streams are still read
                continue
            pts = item.pts if item.pts is not None else (last_pts + default_dur if last_pts is not None else 0)
            last_pts = pts
            t = pts * tb
            if t_first is None:
                t_first = t
            if index < start:
                t_before = t
                continue
            if index == start:
                t_start = t
                shift = t if rebase else t - t_first
            if size is None:
                size = (item.width, item.height)
                full_range = item.color_range == 2 or item.format.name == "yuvj420p"
                if pixels == "yuv420p" and (item.width % 2 or item.height % 2):
                    raise VideoError(f"{s}: yuv420p planes need even sizes, the video is {item.width}x{item.height}")
            w, h = size
            image: np.ndarray | YuvFrame
            if pixels == "yuv420p":
                image = _frame_to_yuv(item, w, h, full_range)
            else:
                image = item.to_ndarray(format="rgb24", width=w, height=h)
            dur = int(item.duration) if item.duration else None
            yield DecodedFrame(index=index - start, image=image, pts=pts - round(shift / tb), duration=dur)
            if not clip:
                continue
            frame_end = t + (dur or default_dur) * tb
            last = stop is not None and index == stop - 1
            keep: list[tuple[Fraction, CopiedPacket]] = []
            for qt, q in pending:
                if qt < frame_end:
                    if inside(qt):
                        _shift_packet(q.packet, shift)
                        yield q
                elif last:
                    copy_left.discard(q.stream)
                else:
                    keep.append((qt, q))
            pending = keep
            if last:
                t_end = frame_end
                if not copy_left:
                    break
        for qt, q in pending:  # the video ended first (clip 'A:' or a stop past the end)
            if inside(qt):
                _shift_packet(q.packet, shift)
                yield q


def video_temp_path(final: str | Path) -> Path:
    """A hidden, unique name next to ``final`` with the same suffix (the suffix picks the container)."""
    import secrets

    p = Path(final)
    return p.with_name(f".{p.stem}.{secrets.token_hex(4)}.part{p.suffix}")


def publish_video(tmp: str | Path, final: str | Path, *, overwrite: bool) -> None:
    """Make the finished temporary file ``tmp`` the file ``final`` (fsync'ed, atomic rename; without
    ``overwrite`` an existing ``final`` raises FileExistsError and is left alone)."""
    tmp, final = Path(tmp), Path(final)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if overwrite:
        os.replace(tmp, final)
    else:
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise FileExistsError(17, "output exists", str(final)) from None
        except OSError:
            if os.path.lexists(final):
                raise FileExistsError(17, "output exists", str(final)) from None
            os.replace(tmp, final)
        tmp.unlink(missing_ok=True)
    _fsync_dir(final.parent)


def _tags(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if k.lower() not in _SKIP_TAGS}


def _chroma_subsampling(pix_fmt: str) -> tuple[int, int]:
    """Horizontal and vertical chroma subsampling of a planar YUV format (1, 1 for RGB / 4:4:4)."""
    for key, sub in (("420", (2, 2)), ("nv12", (2, 2)), ("nv21", (2, 2)), ("422", (2, 1)), ("nv16", (2, 1)),
                     ("411", (4, 1)), ("410", (4, 4)), ("440", (1, 2))):
        if key in pix_fmt:
            return sub
    return 1, 1


def _choose_pix_fmt(codec: object, source_pix_fmt: str) -> str:
    formats = [f.name for f in (codec.video_formats or [])]  # type: ignore[attr-defined]
    if not formats:
        return "yuv420p"
    if "444" in source_pix_fmt and "yuv444p" in formats:
        return "yuv444p"
    if "yuv420p" in formats:
        return "yuv420p"
    return next((f for f in formats if f in ("rgb24", "yuv444p", "bgr0", "gbrp")), formats[0])


class VideoWriter:
    """Encode RGB frames into ``path`` and copy the source's other streams (see the module notes above).

    ``width`` x ``height`` is the size of the frames to be written (cropped to even sizes for 4:2:0/4:2:2);
    ``info`` the source's :class:`VideoInfo` (time base, rate, colour, display matrix); ``copy_from`` the
    source file whose audio / subtitle / data streams are copied (None: video only); ``label`` the name used
    in error messages (default ``path``; e.g. the final name when ``path`` is a temporary file); ``threads``
    the encoder's thread count (None: FFmpeg's choice, for x264 1.5x the cores plus lookahead threads).
    """

    def __init__(self, path: str | Path, *, info: VideoInfo, width: int, height: int, codec: str | None = None,
                 crf: int | None = DEFAULT_CRF, preset: str | None = DEFAULT_PRESET,
                 copy_from: str | Path | None = None, label: str | Path | None = None,
                 threads: int | None = None) -> None:
        av = _av()
        self.path = Path(path)
        self._threads = threads
        self.label = str(label if label is not None else path)
        path = self.label
        self.notes: list[str] = []
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise VideoError(f"{path}: unsupported output container {suffix or '(no suffix)'!r}; use one of "
                             f"{', '.join(VIDEO_SUFFIXES)}")
        name = codec or _CODEC_FOR_SUFFIX.get(suffix, DEFAULT_VIDEO_CODEC)
        try:
            codec_obj = av.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            raise VideoError(f"{path}: unknown or unavailable video encoder {name!r}") from None
        if codec_obj.type != "video":
            raise VideoError(f"{path}: {name!r} is not a video encoder")
        self.pix_fmt = _choose_pix_fmt(codec_obj, info.pix_fmt)
        sx, sy = _chroma_subsampling(self.pix_fmt)
        self.width, self.height = width - width % sx, height - height % sy
        self.cropped = (self.width, self.height) != (width, height)
        if self.cropped:
            self.notes.append(f"{self.pix_fmt} needs sizes divisible by {sx}x{sy}: output cropped from "
                              f"{width}x{height} to {self.width}x{self.height}")
        options: dict[str, str] = {}
        if crf is not None and name in _CRF_CODECS:
            options["crf"] = str(crf)
            if name.startswith("libvpx"):
                options["b"] = "0"  # constant quality
        elif crf is not None and codec:
            self.notes.append(f"--crf is ignored by the {name} encoder")
        if preset and name in _PRESET_CODECS:
            options["preset"] = preset
        self.time_base = info.time_base
        self._range = info.color_range if info.color_range in (1, 2) else 0
        self._matrix = _SWS_MATRIX.get(info.colorspace, "ITU601")
        self._info = info
        self._map: dict[int, object] = {}
        self._frames = 0
        self.container = self._open(av, self.path, self.label)
        try:
            self._add_video(av, name, options, codec_obj, suffix)
            if copy_from is not None:
                self._add_copies(copy_from, suffix)
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def _open(av: ModuleType, path: Path, label: str) -> object:
        try:
            return av.open(str(path), "w")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{label}: cannot create ({_ffmpeg_reason(e)})") from None

    def _add_video(self, av: ModuleType, name: str, options: dict[str, str], codec_obj: object, suffix: str) -> None:
        info = self._info
        rate = info.frame_rate or Fraction(25)
        try:
            vs = self.container.add_stream(name, rate=rate, options=options)  # type: ignore[attr-defined]
        except ValueError as e:
            raise VideoError(f"{self.label}: cannot write {name} into a {suffix} file ({_ffmpeg_reason(e)})") from None
        vs.width, vs.height, vs.pix_fmt = self.width, self.height, self.pix_fmt
        vs.time_base = info.time_base
        cc = vs.codec_context
        cc.time_base = info.time_base
        cc.framerate = rate
        cc.thread_type = "AUTO"
        if self._threads:
            cc.thread_count = int(self._threads)
        for attr in ("color_range", "colorspace", "color_primaries", "color_trc"):
            setattr(cc, attr, getattr(info, attr))
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        if info.display_matrix is not None:
            vs.set_display_matrix(list(info.display_matrix))
        self.stream = vs

    def _add_copies(self, source: str | Path, suffix: str) -> None:
        with _open_input(source) as c:
            vidx = c.streams.video[0].index if c.streams.video else -1  # type: ignore[attr-defined]
            self.container.metadata.update(_tags(c.metadata))  # type: ignore[attr-defined]
            for st in c.streams:  # type: ignore[attr-defined]
                if st.index == vidx:
                    self.stream.metadata.update(_tags(st.metadata))
                if st.index == vidx or st.type not in _COPY_TYPES:
                    if st.index != vidx:
                        self.notes.append(f"stream {_describe_stream(st)} not copied (type {st.type})")
                    continue
                try:
                    out = self.container.add_stream_from_template(st)  # type: ignore[attr-defined]
                except (ValueError, NotImplementedError) as e:
                    raise VideoError(
                        f"{self.label}: stream {_describe_stream(st)} of {source} cannot be copied into a {suffix} "
                        f"file without re-encoding ({_ffmpeg_reason(e)}); use the source's container "
                        f"({Path(str(source)).suffix or 'same format'})") from None
                out.metadata.update(_tags(st.metadata))
                out.disposition = st.disposition
                self._map[st.index] = out

    def write(self, image: np.ndarray | YuvFrame, pts: int | None = None, duration: int | None = None) -> None:
        """Encode one HxWx3 uint8 RGB frame (at least ``width`` x ``height``; extra rows/columns are cropped)
        with timestamp ``pts`` in the source time base (None: frame count). A :class:`YuvFrame` of exactly
        ``width`` x ``height`` goes to the encoder as it is when the output is yuv420p (zero copy; its range is
        taken to be the source's), else it is converted by swscale."""
        av = _av()
        if isinstance(image, YuvFrame):
            if image.shape != (self.height, self.width):
                raise VideoError(f"{self.label}: a {image.width}x{image.height} yuv420p frame for a "
                                 f"{self.width}x{self.height} video")
            frame = av.VideoFrame.from_numpy_buffer(image.data, format="yuv420p")
            if self.pix_fmt != "yuv420p":
                frame.color_range = 2 if image.full_range else 1
                frame = frame.reformat(format=self.pix_fmt, dst_color_range=self._range or 1)
        else:
            img = image[:self.height, :self.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if self.pix_fmt != "rgb24":
                frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self._matrix, dst_color_range=self._range)
        info = self._info
        frame.color_range, frame.colorspace = info.color_range, info.colorspace
        frame.color_primaries, frame.color_trc = info.color_primaries, info.color_trc
        frame.pts = pts if pts is not None else self._frames
        frame.time_base = self.time_base
        if duration:
            frame.duration = duration
        self._frames += 1
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.label}: encoding failed ({_ffmpeg_reason(e)})") from None

    def copy(self, item: CopiedPacket) -> None:
        """Write a packet of a copied stream as it is (timestamps rebased by the muxer only)."""
        out = self._map.get(item.stream)
        if out is None:
            return
        av = _av()
        packet = item.packet
        packet.stream = out  # type: ignore[attr-defined]
        try:
            self.container.mux(packet)  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.label}: writing stream #{item.stream} failed ({_ffmpeg_reason(e)})") from None

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        av = _av()
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)  # type: ignore[attr-defined]
            self.container.close()  # type: ignore[attr-defined]
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.label}: finishing the file failed ({_ffmpeg_reason(e)})") from None

    def abort(self) -> None:
        """Close without flushing and delete the file (after an error or an interrupt)."""
        try:
            self.container.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the file is deleted anyway
            pass
        self.path.unlink(missing_ok=True)
