from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
import time
import warnings
from io import BytesIO

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from restore import io
from tests import io_corpus

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _rand(shape, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def _listing(folder):
    return sorted(p.name for p in folder.rglob("*"))


def _exif_of(path):
    with Image.open(path) as im:
        im.load()
        return im.getexif()


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("shape,dtype", [((7, 9), np.uint8), ((7, 9, 3), np.uint8), ((5, 6, 4), np.uint8),
                                         ((7, 9, 3), np.uint16), ((7, 9), np.uint16)])
def test_roundtrip_keeps_depth_and_channels(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    img = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    p = io.write_image(tmp_path / "a.png", img)
    back = io.read_image(p)
    assert back.dtype == dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)
    assert not list(tmp_path.glob("*.part")), "temporary file left behind"


LOSSLESS = [(".png", s, d) for s in [(6, 5), (6, 5, 2), (6, 5, 3), (6, 5, 4)] for d in (np.uint8, np.uint16)]
LOSSLESS += [(".tif", s, d) for s in [(6, 5), (6, 5, 2), (6, 5, 3), (6, 5, 4)] for d in (np.uint8, np.uint16)
             if not (len(s) == 3 and s[2] == 2 and d == np.uint16)]
LOSSLESS += [(".bmp", (6, 5), np.uint8), (".bmp", (6, 5, 3), np.uint8),
             (".webp", (6, 5, 3), np.uint8), (".webp", (6, 5, 4), np.uint8)]


@pytest.mark.parametrize("suffix,shape,dtype", LOSSLESS)
@pytest.mark.parametrize("size", [(6, 5), (1, 1)], ids=["6x5", "1x1"])
def test_lossless_roundtrips_alpha_16bit_gray(tmp_path, suffix, shape, dtype, size):
    """Alpha, 16-bit and gray survive every lossless format (WebP at quality 100 is lossless), also at 1x1."""
    img = _rand(size + shape[2:], dtype)
    p = io.write_image(tmp_path / f"a{suffix}", img, quality=100)
    back, info = io.read_image_info(p)
    assert back.dtype == dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)
    assert info.has_alpha == (img.ndim == 3 and img.shape[2] in (2, 4))
    assert info.bit_depth == np.dtype(dtype).itemsize * 8 and info.notes == ()


def test_16bit_written_by_other_tools_is_read_exactly(tmp_path):
    """Pillow would truncate 16-bit colour PNG/TIFF to 8 bits: those go through OpenCV."""
    rgb16 = _rand((5, 7, 3), np.uint16, seed=1)
    rgba16 = _rand((5, 7, 4), np.uint16, seed=2)
    for name, arr in (("rgb.png", rgb16), ("rgba.png", rgba16), ("rgb.tif", rgb16), ("rgba.tif", rgba16)):
        code = cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
        assert cv2.imwrite(str(tmp_path / name), cv2.cvtColor(arr, code))
        np.testing.assert_array_equal(io.read_image(tmp_path / name), arr)
    gray16 = _rand((5, 7), np.uint16, seed=3)
    Image.fromarray(gray16).save(tmp_path / "g.png")
    back = io.read_image(tmp_path / "g.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, gray16)


def test_gray_stays_gray(tmp_path):
    g = np.kron(_rand((4, 4)), np.ones((8, 8), np.uint8))
    for suffix in (".png", ".jpg", ".tif", ".bmp"):
        back = io.read_image(io.write_image(tmp_path / f"g{suffix}", g))
        assert back.shape == g.shape and back.dtype == np.uint8
    la = _rand((5, 6, 2))
    Image.fromarray(la, "LA").save(tmp_path / "la_pillow.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "la_pillow.png"), la)
    # WebP has no gray mode: documented as written RGB
    assert io.read_image(io.write_image(tmp_path / "g.webp", g)).shape == g.shape + (3,)


def test_colour_key_transparency_becomes_alpha(tmp_path):
    rgb = _rand((4, 5, 3))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "t.png", transparency=(1, 2, 3))
    back, info = io.read_image_info(tmp_path / "t.png")
    assert back.shape == (4, 5, 4) and back[0, 0, 3] == 0 and (back[..., 3] > 0).sum() == 19
    assert any("transparency" in n for n in info.notes)


def test_float_write_uses_source_depth(tmp_path):
    x = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    info16 = io.read_image_info(io.write_image(tmp_path / "s16.png", _rand((5, 6), np.uint16)))[1]
    assert io.read_image(io.write_image(tmp_path / "f16.png", x, info=info16)).dtype == np.uint16
    back = io.read_image(io.write_image(tmp_path / "f8.png", x))
    assert back.dtype == np.uint8 and back[0, 0] == 0 and back[-1, -1] == 255
    y = x.copy()
    y[0, 0] = np.nan
    assert io.read_image(io.write_image(tmp_path / "nan.png", y))[0, 0] == 0


# -------------------------------------------------------------------------------------------------- metadata


def _camera_jpeg(path, orientation=6):
    arr = np.zeros((24, 40, 3), np.uint8)
    arr[:, 20:] = 255
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "TestCam"
    ex[0x0110] = "Model-X"
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = "2024:01:02 03:04:05"
    sub[0xA002] = 40
    sub[0xA003] = 24
    Image.fromarray(arr).save(path, quality=95, exif=ex, icc_profile=SRGB_ICC)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_exif_and_icc_roundtrip(tmp_path, suffix):
    src = tmp_path / "cam.jpg"
    _camera_jpeg(src)
    img, info = io.read_image_info(src)
    assert img.shape == (40, 24, 3) and info.orientation == 6 and info.icc_profile == SRGB_ICC
    ex = Image.Exif()
    ex.load(info.exif)
    assert ex[0x0112] == 1 and ex[0x010F] == "TestCam", "orientation reset, everything else kept"
    up = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)  # a stand-in for an x2 upscale
    out = io.write_image(tmp_path / f"out{suffix}", up, info=info)
    back, info2 = io.read_image_info(out)
    assert back.shape == up.shape, "written upright: must not be rotated a second time"
    assert info2.orientation == 1 and info2.icc_profile == SRGB_ICC
    exif = _exif_of(out)
    assert exif[0x010F] == "TestCam" and exif[0x0110] == "Model-X" and exif.get(0x0112, 1) == 1
    sub = exif.get_ifd(0x8769)
    assert sub[0x9003] == "2024:01:02 03:04:05"
    assert (sub[0xA002], sub[0xA003]) == (48, 80), "EXIF pixel dimensions follow the written size"


@pytest.mark.parametrize("shape,dtype", [((5, 6, 3), np.uint16), ((5, 6, 4), np.uint16), ((5, 6, 4), np.uint8)])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_icc_roundtrip_16bit_and_alpha(tmp_path, shape, dtype, suffix):
    info = io.read_image_info(io.write_image(tmp_path / "s.png", _rand((2, 2, 3))))[1]
    info = dataclasses.replace(info, icc_profile=SRGB_ICC)
    img = _rand(shape, dtype)
    back, info2 = io.read_image_info(io.write_image(tmp_path / f"a{suffix}", img, info=info))
    np.testing.assert_array_equal(back, img)
    assert info2.icc_profile == SRGB_ICC


def test_icc_of_wrong_colour_space_is_not_embedded(tmp_path):
    info = io.ImageInfo(source="x", format="PNG", mode="RGB", width=2, height=2, channels=3, bit_depth=8,
                        has_alpha=False, icc_profile=SRGB_ICC)
    gray = _rand((4, 4))
    assert io.read_image_info(io.write_image(tmp_path / "g.png", gray, info=info))[1].icc_profile is None
    notes = io.conversion_notes(tmp_path / "g.png", gray, info=info)
    assert any("RGB profile does not fit gray" in n for n in notes)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, orientation):
    arr = _rand((3, 5, 3), seed=orientation)
    ex = Image.Exif()
    ex[0x0112] = orientation
    Image.fromarray(arr).save(tmp_path / "o.png", exif=ex)
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    back, info = io.read_image_info(tmp_path / "o.png")
    np.testing.assert_array_equal(back, expected)
    assert info.orientation == orientation and (info.width, info.height) == expected.shape[1::-1]
    assert _exif_orientation(info.exif) == 1


def _exif_orientation(exif):
    ex = Image.Exif()
    ex.load(exif)
    return ex.get(0x0112)


def test_16bit_png_orientation_applied(tmp_path):
    """The OpenCV path (16-bit colour) gets the orientation from Pillow's metadata too."""
    arr = _rand((3, 5, 3), np.uint16)
    ex = Image.Exif()
    ex[0x0112] = 8
    info = io.ImageInfo(source="x", format="PNG", mode="RGB", width=5, height=3, channels=3, bit_depth=16,
                        has_alpha=False, exif=ex.tobytes())
    # write_image keeps a caller's orientation as given: the file says "rotate 90 CCW on display"
    p = io.write_image(tmp_path / "o16.png", arr, info=info)
    back = io.read_image(p)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, np.rot90(arr, 1))


# ------------------------------------------------------------------------------------------ bad-input corpus


@pytest.mark.parametrize("case", io_corpus.corpus(), ids=lambda c: c.name)
def test_bad_input_corpus(tmp_path, case):
    """Each corpus file gives its documented result; reading never changes the input and a read-then-write
    pipeline leaves no output (partial or not) for a failed input."""
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    src = src_dir / case.filename
    src.write_bytes(case.data)
    digest = hashlib.sha256(case.data).hexdigest()
    t0 = time.perf_counter()
    try:
        img, info = io.read_image_info(src)
        err = None
    except Exception as e:  # checked below
        err = e
    elapsed = time.perf_counter() - t0
    if case.error is not None:
        assert isinstance(err, case.error), f"expected {case.error.__name__}, got {err!r}"
        msg = str(err)
        assert msg.startswith(f"{src}: "), msg
        assert re.search(case.match, msg), msg
        assert elapsed < 2.0, f"took {elapsed:.2f}s"  # the 60000x60000 header fails without decoding
    else:
        assert err is None, err
        assert img.shape == case.shape and img.dtype == case.dtype
        assert info.n_frames == case.n_frames
        if case.note:
            assert any(case.note in n for n in info.notes), info.notes
        io.write_image(out_dir / "out.png", img, info=info)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest, "input bytes changed"
    assert _listing(src_dir) == [case.filename]
    assert _listing(out_dir) == ([] if case.error else ["out.png"])


def test_corpus_pixel_results(tmp_path):
    cases = {c.name: p for c, p in io_corpus.write_corpus(tmp_path)}
    gif = io.read_image(cases["animated gif"])
    assert (gif == (255, 0, 0)).all(), "first frame"
    rot = io.read_image(cases["exif-rotated jpeg"]).astype(int)  # 24x40 left black/right white, turned 90 CW
    assert rot[:20].mean() < 10 and rot[20:].mean() > 245
    cmyk_src = io_corpus.noise((12, 10, 3)).astype(int)
    assert np.abs(io.read_image(cases["cmyk jpeg"]).astype(int) - cmyk_src).mean() < 12
    pal = io.read_image(cases["palette png with transparency"])
    with Image.open(cases["palette png with transparency"]) as im:
        np.testing.assert_array_equal(pal, np.asarray(im.convert("RGBA")))
    assert io.read_image(cases["1x1 gray jpeg"])[0, 0] == 77


def _frames(n, mode="RGB"):
    return [Image.new(mode, (6, 4), (40 * i, 255 - 40 * i, 9)) for i in range(n)]


@pytest.mark.parametrize("fmt,suffix,what", [("GIF", ".gif", "animated GIF"), ("PNG", ".png", "animated PNG"),
                                             ("WEBP", ".webp", "animated WebP"), ("TIFF", ".tif", "multi-page TIFF"),
                                             ("MPO", ".jpg", "multi-picture JPEG (MPO)")])
def test_multi_frame_files_give_their_first_frame(tmp_path, fmt, suffix, what):
    frames = _frames(3)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(tmp_path / f"m{suffix}", fmt, save_all=True, append_images=frames[1:], **kw)
    img, info = io.read_image_info(tmp_path / f"m{suffix}")
    assert img.shape == (4, 6, 3) and info.n_frames == 3
    assert f"{what} with 3 frames: only the first is used" in info.notes
    assert np.abs(img.astype(int) - (0, 255, 9)).max() <= (8 if fmt == "MPO" else 0)


def test_truncated_16bit_png(tmp_path):
    ok, buf = cv2.imencode(".png", _rand((30, 40, 3), np.uint16))
    data = buf.tobytes()
    (tmp_path / "t16.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(io.ImageReadError, match="corrupt or truncated PNG"):
        io.read_image(tmp_path / "t16.png")
    (tmp_path / "noiend.png").write_bytes(data[:-12])  # all pixels there, IEND missing: OpenCV refuses it
    with pytest.raises(io.ImageReadError, match="corrupt or truncated 16-bit PNG"):
        io.read_image(tmp_path / "noiend.png")


def test_16bit_colour_tiff_without_tifffile(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tifffile", None)
    img = _rand((4, 5, 4), np.uint16)
    info = io.ImageInfo(source="x", format="TIFF", mode="RGBA", width=5, height=4, channels=4, bit_depth=16,
                        has_alpha=True, icc_profile=SRGB_ICC)
    assert any("ICC profile not written" in n for n in io.conversion_notes(tmp_path / "a.tif", img, info=info))
    back = io.read_image(io.write_image(tmp_path / "a.tif", img, info=info))
    np.testing.assert_array_equal(back, img)


def test_exif_not_written_reasons(tmp_path):
    src = tmp_path / "cam.jpg"
    _camera_jpeg(src)
    img, info = io.read_image_info(src)
    assert any("BMP cannot carry it" in n for n in io.conversion_notes(tmp_path / "a.bmp", img, info=info))
    big = dataclasses.replace(info, exif=info.exif + b"\x00" * 70000)
    notes = io.conversion_notes(tmp_path / "a.jpg", img, info=big)
    assert any("does not fit a JPEG APP1 segment" in n for n in notes)
    io.write_image(tmp_path / "a.jpg", img, info=big)  # written without the EXIF rather than failing
    assert 0x010F not in _exif_of(tmp_path / "a.jpg")
    assert io.conversion_notes(tmp_path / "a.png", img, info=big) == ()


def test_missing_directory_and_unsupported_inputs(tmp_path):
    with pytest.raises(io.ImageReadError, match="no such file"):
        io.read_image(tmp_path / "missing.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(io.ImageReadError, match="is a directory"):
        io.read_image(tmp_path / "dir.png")
    Image.fromarray(np.zeros((3, 3), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(io.ImageReadError, match=r"unsupported pixel format 'F'"):
        io.read_image(tmp_path / "f.tif")
    (tmp_path / "x.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(io.ImageReadError, match="not a readable image"):
        io.read_image(tmp_path / "x.eps")  # Pillow's EPS plugin (Ghostscript) is never tried


def test_corrupt_and_missing_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(io.ImageReadError, match="not a readable image"):
        io.read_image(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(io.ImageReadError, match="not a readable image"):
        io.read_image(empty)
    with pytest.raises(io.ImageReadError, match="no such file"):
        io.read_image(tmp_path / "missing.png")


def test_pixel_limit_and_override(tmp_path, monkeypatch):
    p = io.write_image(tmp_path / "a.png", _rand((20, 20, 3)))
    monkeypatch.setattr(io.image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(io.ImageTooLargeError, match=r"20x20 \(400 pixels\), over the limit of 100 pixels"):
        io.read_image(p)
    assert io.read_image(p, allow_large=True).shape == (20, 20, 3)
    # a stricter Pillow limit is lifted for allow_large and restored afterwards
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(io.ImageTooLargeError, match=r"20x20 \(400 pixels\)"):
        io.read_image(p)
    assert io.read_image(p, allow_large=True).shape == (20, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == 50
    monkeypatch.setattr(io.image, "MAX_FILE_BYTES", 10)
    with pytest.raises(io.ImageTooLargeError, match="file is .* bytes, over the limit of 10"):
        io.read_image(p)
    assert io.read_image(p, allow_large=True).shape == (20, 20, 3)


@pytest.mark.parametrize("data", [io_corpus.huge_png_header(), io_corpus.huge_jpeg_header(),
                                  io_corpus.huge_png_header(10000, 10000)], ids=["png60k", "jpeg60k", "png10k"])
def test_too_large_is_refused_from_the_header_alone(tmp_path, monkeypatch, data):
    """Neither library gets to decode (or allocate) anything: both decoders are booby-trapped."""
    from PIL import ImageFile

    def trap(*a, **k):
        raise AssertionError("decoder called")

    monkeypatch.setattr(ImageFile.ImageFile, "load", trap)
    monkeypatch.setattr(cv2, "imdecode", trap)
    (tmp_path / "bomb.img").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning (10000x10000) is not let out either
        with pytest.raises(io.ImageTooLargeError, match=r"\d+x\d+ \([\d,]+ pixels\), over the limit"):
            io.read_image(tmp_path / "bomb.img")


def test_decode_image_from_bytes():
    data = io.encode_image(_rand((3, 4, 4)), ".webp", quality=100)
    img, info = io.decode_image(data, name="upload")
    assert img.shape == (3, 4, 4) and info.format == "WEBP" and info.source == "upload"
    with pytest.raises(io.ImageReadError, match=r"^upload: not a readable image"):
        io.decode_image(data[:20], name="upload")


# ---------------------------------------------------------------------------------------------------- writing


def test_write_conversions_are_documented(tmp_path):
    rgba16 = _rand((4, 5, 4), np.uint16)
    notes = io.conversion_notes(tmp_path / "a.jpg", rgba16)
    assert any("16-bit image written as 8-bit" in n for n in notes)
    assert any("alpha composited over white" in n for n in notes)
    back = io.read_image(io.write_image(tmp_path / "a.jpg", rgba16))
    assert back.shape == (4, 5, 3) and back.dtype == np.uint8
    transparent = np.zeros((8, 8, 4), np.uint8)
    assert io.read_image(io.write_image(tmp_path / "w.bmp", transparent)).min() == 255
    assert io.conversion_notes(tmp_path / "a.png", rgba16) == ()
    la16 = _rand((4, 5, 2), np.uint16)
    back = io.read_image(io.write_image(tmp_path / "la.tif", la16))
    np.testing.assert_array_equal(back, la16[..., [0, 0, 0, 1]])


def test_encode_errors_create_nothing(tmp_path):
    with pytest.raises(ValueError, match="suffix '.xyz'"):
        io.write_image(tmp_path / "sub" / "a.xyz", _rand((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        io.write_image(tmp_path / "sub" / "a.png", np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="dtype int32"):
        io.write_image(tmp_path / "sub" / "a.png", np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="quality"):
        io.write_image(tmp_path / "sub" / "a.jpg", _rand((2, 2)), quality=0)
    assert _listing(tmp_path) == []


def test_atomic_write_failure_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    dst = tmp_path / "out.png"
    io.write_image(dst, _rand((3, 3)))
    before = dst.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        io.write_image(dst, _rand((5, 5), seed=9))
    assert dst.read_bytes() == before and _listing(tmp_path) == ["out.png"]
    monkeypatch.undo()
    io.write_image(dst, _rand((5, 5), seed=9))
    assert io.read_image(dst).shape == (5, 5) and _listing(tmp_path) == ["out.png"]


def test_no_clobber_and_permissions(tmp_path):
    dst = io.write_image(tmp_path / "o.png", _rand((3, 3)))
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~umask
    before = dst.read_bytes()
    with pytest.raises(FileExistsError):
        io.write_image(dst, _rand((4, 4)), overwrite=False)
    assert dst.read_bytes() == before and _listing(tmp_path) == ["o.png"]
    io.write_image(tmp_path / "new.png", _rand((4, 4)), overwrite=False)
    assert _listing(tmp_path) == ["new.png", "o.png"]


def test_same_file(tmp_path):
    a = io.write_image(tmp_path / "a.png", _rand((2, 2)))
    (tmp_path / "d").mkdir()
    assert io.same_file(a, tmp_path / "d" / ".." / "a.png")
    (tmp_path / "link.png").symlink_to(a)
    os.link(a, tmp_path / "hard.png")
    assert io.same_file(a, tmp_path / "link.png") and io.same_file(tmp_path / "hard.png", a)
    assert not io.same_file(a, tmp_path / "b.png")
    assert io.same_file(tmp_path / "x.png", tmp_path / "d" / ".." / "x.png")  # neither exists: compare paths


def test_list_images_skips_hidden_and_other_files(tmp_path):
    for name in ("b.PNG", "a.jpg", ".a.png.x1.part", "._c.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d.png").mkdir()
    assert [p.name for p in io.list_images(tmp_path)] == ["a.jpg", "b.PNG"]


# ------------------------------------------------------------------------------------------ pixel conversions


def test_float_uint_conversions():
    x = np.array([0.0, 0.5, 1.0, 1.7, -0.2], np.float32)
    np.testing.assert_array_equal(io.to_uint(x), [0, 128, 255, 255, 0])
    assert io.to_float(np.array([255], np.uint8))[0] == 1.0
    assert io.to_float(np.array([65535], np.uint16))[0] == 1.0


def test_to_rgb_layouts():
    assert io.to_rgb(np.zeros((2, 3), np.uint8)).shape == (2, 3, 3)
    assert io.to_rgb(np.zeros((2, 3, 2), np.uint8)).shape == (2, 3, 3)
    assert io.to_rgb(np.zeros((2, 3, 4), np.uint8)).shape == (2, 3, 3)


def test_ycrcb_full_roundtrip():
    rng = np.random.default_rng(1)
    x = rng.random((5, 7, 3), dtype=np.float32)
    # OpenCV uses 4-digit BT.601 coefficients: the float round trip is exact only to ~3e-4
    np.testing.assert_allclose(io.ycrcb_full_to_rgb(io.rgb_to_ycrcb_full(x)), x, atol=5e-4)
    gray = np.full((2, 2, 3), 0.25, np.float32)
    ycc = io.rgb_to_ycrcb_full(gray)
    np.testing.assert_allclose(ycc[..., 0], 0.25, atol=1e-6)  # full range: Y of gray is the gray level
    np.testing.assert_allclose(ycc[..., 1:], 0.5, atol=1e-6)


def test_corpus_helpers_make_what_they_claim():
    """The corpus builders checked against independent decoders: the PNG helper's pixels, the bomb headers'
    claimed sizes (parsed field by field, CRCs valid) and Pillow's reading of the patched JPEG header."""
    import struct
    import zlib

    arr = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    data = io_corpus.pil_bytes(Image.fromarray(arr), "PNG")
    img, info = io.decode_image(data, name="corpus")
    assert data[:8] == io_corpus.PNG_SIG and info.format == "PNG"
    np.testing.assert_array_equal(img, arr)
    png = io_corpus.huge_png_header(60000, 1234)
    assert png[:8] == io_corpus.PNG_SIG
    pos, chunks = 8, []
    while pos < len(png):
        (n,) = struct.unpack_from(">I", png, pos)
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        assert struct.unpack_from(">I", png, pos + 8 + n)[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        pos += 12 + n
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (60000, 1234, 8, 2, 0, 0, 0)  # 8-bit RGB
    assert zlib.decompress(chunks[1][1]) == bytes(64) and chunks[2][1] == b""
    with Image.open(BytesIO(io_corpus.huge_jpeg_header(3000, 2000))) as im:  # header only: nothing decoded
        assert im.format == "JPEG" and im.size == (3000, 2000)
