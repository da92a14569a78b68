"""The project's error types, one place for everyone (imports nothing of ``restore``).

Every error a user can act on is a :class:`RestoreError` (a ``ValueError``) whose message is one line that
starts with the file it is about and says why. The command line prints it and exits 2 (models, usage) or
counts it as a failed input (images, videos); the web demo shows it. Anything else that escapes is a bug.
"""

from __future__ import annotations


class RestoreError(ValueError):
    """Base of the errors below: a one-line, user-facing message."""


class ModelLoadError(RestoreError):
    """A checkpoint that cannot be turned into a model; the message says what was expected."""


class ImageReadError(RestoreError):
    """An input that is missing, corrupt, too large or not an image; the message names the file and why."""


class ImageTooLargeError(ImageReadError):
    """The header announces more pixels than the bomb limit (``restore.io.image.MAX_IMAGE_PIXELS``), or the file
    is over ``MAX_FILE_BYTES``; pass ``allow_large=True`` to read it anyway."""


class VideoError(RestoreError):
    """A video that cannot be opened, decoded or written; the message starts with the file name."""


class DatasetError(RestoreError):
    """A data folder that does not match any supported layout."""
