"""Pure picture helpers of the web demo (no Gradio, no model): the size from an upload's header, the before/after
previews the page shows, the demo's noise and example image."""

from __future__ import annotations

from io import BytesIO

import numpy as np

from restore import io


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header without decoding the pixels; None when Pillow cannot tell."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # a size between Pillow's two bomb limits: the pixel check refuses it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=io.READ_FORMATS) as im:  # only the decoder's plugins
                return int(im.size[0]), int(im.size[1])
    except Exception:  # the decoder proper reports what is wrong with the file
        return None


def enlarge_nearest(img: np.ndarray, scale: int) -> np.ndarray:
    """Each pixel repeated ``scale`` x ``scale`` times (the 'before' side of the comparison)."""
    if scale == 1:
        return img
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def preview(img: np.ndarray, max_pixels: int) -> np.ndarray:
    """8-bit copy for the browser, downscaled (area) when over ``max_pixels``."""
    import cv2

    out = img if img.dtype == np.uint8 else io.to_uint(io.to_float(img), np.uint8)
    h, w = out.shape[:2]
    if h * w > max_pixels:
        f = (max_pixels / (h * w)) ** 0.5
        out = cv2.resize(out, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    return out


def before_preview(img: np.ndarray, out_shape: tuple[int, ...], max_pixels: int) -> np.ndarray:
    """The 'before' side: the input at the output's size (nearest-neighbour, its pixels stay visible), 8-bit,
    at the same size as :func:`preview` of the output (resized straight to that size when it is downscaled,
    so a full-size enlarged copy is never built)."""
    import cv2

    small = preview(img, img.shape[0] * img.shape[1])  # 8-bit, not resized
    oh, ow = out_shape[:2]
    if oh * ow <= max_pixels:
        return enlarge_nearest(small, oh // img.shape[0])
    f = (max_pixels / (oh * ow)) ** 0.5
    return cv2.resize(small, (max(1, int(ow * f)), max(1, int(oh * f))), interpolation=cv2.INTER_NEAREST)


def add_gaussian_noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian noise of ``sigma`` (0-255 scale) on the colour channels, same dtype back (a demo aid:
    lets people try a denoiser on a clean photo)."""
    rng = np.random.default_rng(seed)
    x = io.to_float(img)
    colour = x[..., :-1] if x.ndim == 3 and x.shape[2] in (2, 4) else x
    colour += rng.normal(0.0, sigma / 255.0, colour.shape).astype(np.float32)
    if np.issubdtype(img.dtype, np.integer):
        return io.to_uint(x, img.dtype.type)
    return np.clip(x, 0.0, 1.0)


def make_example() -> np.ndarray:
    """A small photo to try the demo without uploading: scikit-image's bundled 'chelsea' (public domain),
    halved so that x2 brings it back to its size; a synthetic pattern if scikit-image cannot provide it."""
    import cv2

    try:
        from skimage import data as skdata

        img = skdata.chelsea()
        return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    except Exception:  # pragma: no cover - scikit-image is a core dependency
        yy, xx = np.mgrid[0:150, 0:225].astype(np.float32)
        r = 0.5 + 0.5 * np.sin(np.hypot(xx - 112, yy - 75) / 6.0)
        return (np.stack([r, xx / 225, yy / 150], -1) * 255).astype(np.uint8)
