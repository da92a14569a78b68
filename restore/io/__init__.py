"""Files in and out, by concern: :mod:`restore.io.image` (read / write images with their metadata),
:mod:`restore.io.metadata` (EXIF / ICC), :mod:`restore.io.files` (the one atomic publish for every file the
project writes; listing inputs) and :mod:`restore.io.video` (containers through PyAV). Pixel conversions live in
:mod:`restore.pixels`, error types in :mod:`restore.errors`.

The names below are re-exported so that ``from restore import io; io.read_image(...)`` keeps working as it did
when this was one module; new code imports from the concern's module.
"""

from __future__ import annotations

from restore.errors import ImageReadError, ImageTooLargeError, VideoError
from restore.io.files import IMAGE_SUFFIXES, ensure_folder, ensure_writable_folder, list_images, same_file
from restore.io.image import (
    DEFAULT_QUALITY,
    MAX_FILE_BYTES,
    MAX_IMAGE_PIXELS,
    READ_FORMATS,
    WRITE_FORMATS,
    ImageInfo,
    conversion_notes,
    decode_image,
    encode_image,
    read_image,
    read_image_info,
    read_rgb,
    write_image,
)
from restore.io.video import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    DEFAULT_VIDEO_CODEC,
    VIDEO_SUFFIXES,
    YUV420_FORMATS,
    CopiedPacket,
    DecodedFrame,
    ReadStats,
    VideoInfo,
    VideoWriter,
    YuvFrame,
    is_live_source,
    probe_video,
    publish_video,
    read_video,
    video_temp_path,
    yuv420_supported,
    yuv_from_luma,
    yuv_luma_for_model,
)
from restore.pixels import (
    resize_bicubic,
    resize_bilinear,
    rgb_to_ycrcb_full,
    to_float,
    to_rgb,
    to_uint,
    ycrcb_full_to_rgb,
)

__all__ = [
    "DEFAULT_CRF", "DEFAULT_PRESET", "DEFAULT_QUALITY", "DEFAULT_VIDEO_CODEC", "IMAGE_SUFFIXES", "MAX_FILE_BYTES",
    "MAX_IMAGE_PIXELS", "READ_FORMATS", "VIDEO_SUFFIXES", "YUV420_FORMATS", "WRITE_FORMATS", "CopiedPacket",
    "DecodedFrame", "ImageInfo", "ImageReadError", "ImageTooLargeError", "ReadStats", "VideoError", "VideoInfo",
    "ensure_folder",
    "ensure_writable_folder",
    "VideoWriter", "YuvFrame", "conversion_notes", "decode_image", "encode_image", "is_live_source",
    "list_images", "probe_video", "publish_video", "read_image", "read_image_info", "read_rgb", "read_video",
    "resize_bicubic", "resize_bilinear", "rgb_to_ycrcb_full", "same_file", "to_float", "to_rgb", "to_uint",
    "video_temp_path", "write_image", "ycrcb_full_to_rgb", "yuv420_supported", "yuv_from_luma",
    "yuv_luma_for_model",
]
