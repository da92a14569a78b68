"""HDR static metadata of a video stream: mastering display colour volume and content light level (HDR10).

FFmpeg hands these to us as frame side data (``AV_FRAME_DATA_MASTERING_DISPLAY_METADATA`` and
``AV_FRAME_DATA_CONTENT_LIGHT_LEVEL``): the decoders attach them to the frames they come with (HEVC / H.264 SEI
messages, AV1 metadata OBUs) and, since FFmpeg 7, also copy the container's stream-level values (MP4 ``mdcv`` /
``clli`` boxes, Matroska colour elements) onto every frame, so reading the first decoded frame finds them
wherever they were stored. PyAV exposes the side data as raw bytes (the C structs below), not as fields, and
cannot attach side data to a frame it encodes; the one writer that takes them as options is libx265
(``x265-params`` ``master-display`` / ``max-cll``, written as SEI messages with every keyframe), which is
what :class:`restore.io.video.VideoWriter` uses.

Pure data: :func:`hdr_from_side_data` parses the two structs, :meth:`HdrMetadata.x265_params` formats them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

# AVMasteringDisplayMetadata: AVRational display_primaries[3][2] (R, G, B; x, y), white_point[2], min_luminance,
# max_luminance (each AVRational = int num, int den), int has_primaries, int has_luminance
_MDCV = struct.Struct("<20i2i")
# AVContentLightMetadata: unsigned MaxCLL, unsigned MaxFALL
_CLL = struct.Struct("<2I")
CHROMA_UNIT = 50000  # x265 / HEVC SEI: chromaticity in units of 0.00002
LUMINANCE_UNIT = 10000  # x265 / HEVC SEI: luminance in units of 0.0001 cd/m2

Chromaticity = tuple[Fraction, Fraction]


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086 mastering display: CIE 1931 xy of the primaries and white point, luminance in cd/m2."""

    red: Chromaticity
    green: Chromaticity
    blue: Chromaticity
    white_point: Chromaticity
    min_luminance: Fraction
    max_luminance: Fraction

    def x265(self) -> str:
        """x265's ``master-display`` value: ``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)`` in SEI units."""
        def xy(c: Chromaticity) -> str:
            return f"({round(c[0] * CHROMA_UNIT)},{round(c[1] * CHROMA_UNIT)})"

        return (f"G{xy(self.green)}B{xy(self.blue)}R{xy(self.red)}WP{xy(self.white_point)}"
                f"L({round(self.max_luminance * LUMINANCE_UNIT)},{round(self.min_luminance * LUMINANCE_UNIT)})")


@dataclass(frozen=True)
class ContentLight:
    """CTA-861.3 content light level: MaxCLL and MaxFALL in cd/m2."""

    max_cll: int
    max_fall: int


@dataclass(frozen=True)
class HdrMetadata:
    """What a stream declares of the two; either may be None."""

    mastering: MasteringDisplay | None = None
    light: ContentLight | None = None

    def __bool__(self) -> bool:
        return self.mastering is not None or self.light is not None

    def x265_params(self) -> list[str]:
        """``key=value`` items for libx265's ``x265-params`` that make it write the same SEI messages."""
        out = []
        if self.mastering is not None:
            out.append(f"master-display={self.mastering.x265()}")
        if self.light is not None:
            out.append(f"max-cll={self.light.max_cll},{self.light.max_fall}")
        return out

    def describe(self) -> str:
        """One short phrase, e.g. ``mastering display 0.005-1000 cd/m2, MaxCLL 1000 / MaxFALL 400``."""
        parts = []
        if self.mastering is not None:
            m = self.mastering
            parts.append(f"mastering display {float(m.min_luminance):g}-{float(m.max_luminance):g} cd/m2")
        if self.light is not None:
            parts.append(f"MaxCLL {self.light.max_cll} / MaxFALL {self.light.max_fall}")
        return ", ".join(parts)


def _ratio(num: int, den: int) -> Fraction:
    return Fraction(num, den) if den else Fraction(0)


def parse_mastering_display(raw: bytes) -> MasteringDisplay | None:
    """The C struct's bytes -> :class:`MasteringDisplay`; None when short or when it lacks primaries or
    luminance (x265 needs both)."""
    if len(raw) < _MDCV.size:
        return None
    v = _MDCV.unpack_from(raw)
    if not (v[20] and v[21]):
        return None
    r = [_ratio(v[2 * i], v[2 * i + 1]) for i in range(10)]
    return MasteringDisplay(red=(r[0], r[1]), green=(r[2], r[3]), blue=(r[4], r[5]), white_point=(r[6], r[7]),
                            min_luminance=r[8], max_luminance=r[9])


def parse_content_light(raw: bytes) -> ContentLight | None:
    """The C struct's bytes -> :class:`ContentLight`; None when short."""
    if len(raw) < _CLL.size:
        return None
    max_cll, max_fall = _CLL.unpack_from(raw)
    return ContentLight(max_cll=max_cll, max_fall=max_fall)


def hdr_from_side_data(mastering: bytes | None, light: bytes | None) -> HdrMetadata | None:
    """:class:`HdrMetadata` from the raw side data (either may be None); None when neither parses."""
    hdr = HdrMetadata(mastering=parse_mastering_display(mastering) if mastering else None,
                      light=parse_content_light(light) if light else None)
    return hdr if hdr else None
