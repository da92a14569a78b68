"""Random bytes into the checkpoint reader and the image decoder: the only exceptions that may leave them are the
project's own (ModelLoadError, ImageReadError)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restore.errors import ImageReadError, ModelLoadError
from restore.io.image import decode_image
from restore.weights import load_model, read_state_dict

PREFIXES = [b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
            b"II*\x00", b"MM\x00*", b"BM", b"RIFF\x00\x00\x00\x00WEBP", b"version https://git-lfs"]
blobs = st.builds(lambda p, b: p + b, st.sampled_from(PREFIXES), st.binary(max_size=2048))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(blobs)
def test_checkpoint_reader_raises_only_model_load_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("error")
        p = Path(d) / "w.pth"
        p.write_bytes(data)
        for fn in (read_state_dict, load_model):
            try:
                fn(p)
            except ModelLoadError as e:
                assert "\n" not in str(e) and "w.pth" in str(e)


@FUZZ
@given(blobs)
def test_image_decoder_raises_only_image_read_error(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches the user as a Python warning either
        try:
            decode_image(data, name="fuzz.png")
        except ImageReadError as e:
            assert str(e).startswith("fuzz.png: ")
