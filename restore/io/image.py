"""Image files: reading (with the size guard and metadata) and writing (atomic, with ICC/EXIF).

One concern, kept whole (hence over 500 lines): the image codecs' edge cases, read and write side by side.

Arrays are HxW (gray), HxWx2 (gray + alpha) or HxWxC (C = 3/4, RGB(A) order), dtype uint8 / uint16 (kept as
read); the conversions between them live in :mod:`restore.pixels`, EXIF/ICC handling in
:mod:`restore.io.metadata`, the atomic publish in :mod:`restore.io.files`.

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

import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from restore.errors import ImageReadError, ImageTooLargeError
from restore.io import metadata as md
from restore.io.files import IMAGE_SUFFIXES, publish_bytes
from restore.pixels import to_rgb, to_uint

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

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_MAGIC = ((_PNG_SIG, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))



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
        except md.DECODE_ERRORS as e:
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
            except md.DECODE_ERRORS as e:
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
    # Pillow's bomb warning (our check replaces it) and its "Corrupt EXIF data"-style UserWarnings: a damaged part
    # is either refused or noted, never printed as a Python warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
    exif, orientation = md.read_exif(im, notes)

    if _is_truncated_16bit(im, data):
        arr = _decode_16bit_cv2(data, im, name)
    else:
        arr, dropped_icc = _pillow_to_array(im, name, notes)
        if dropped_icc:
            icc = None
    if orientation != 1:
        arr = md.apply_orientation(arr, orientation)
        notes.append(f"EXIF orientation {orientation} applied ({md.ORIENTATION_TEXT[orientation]})")
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
    except md.DECODE_ERRORS:  # a broken later frame: the first one may still be fine
        im.seek(0)
        return 1


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
    publish_bytes(p, data, overwrite=overwrite)
    return p


def encode_image(img: np.ndarray, suffix: str = ".png", *, info: ImageInfo | None = None,
                 quality: int = DEFAULT_QUALITY) -> bytes:
    """The bytes :func:`write_image` would write for a file with this suffix."""
    fmt = _format_for(suffix)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    arr = _prepare(img, info)
    arr, _ = _convert_for(fmt, arr)
    icc, exif = _metadata(fmt, arr, info)
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
        icc, exif = _metadata(fmt, arr, info)
        if info.icc_profile and not icc:
            notes.append(f"ICC profile not written ({md.icc_reason(fmt, arr, info.icc_profile)})")
        if info.exif and not exif:
            notes.append(f"EXIF not written ({md.exif_reason(fmt, arr, info.exif)})")
    return tuple(notes)


def _metadata(fmt: str, arr: np.ndarray, info: ImageInfo | None) -> tuple[bytes | None, bytes | None]:
    return md.metadata_for(fmt, arr, info.icc_profile, info.exif) if info is not None else (None, None)


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
    tifffile = md.tifffile_module()
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


