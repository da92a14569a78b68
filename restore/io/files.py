"""Publishing files safely, and finding inputs (standard library only).

One way to put a file at its final name, for images, videos, metrics and training checkpoints alike: the
content goes to a hidden temporary file *in the destination folder* (so the rename never crosses a file
system), is flushed and fsync'ed, and is then renamed onto the final name (``os.replace``), after which the
folder is fsync'ed so the rename survives a crash. Without ``overwrite`` the temporary file is hard-linked to
the final name, which fails atomically when that name exists; on file systems without hard links the name is
checked first and the rename happens only if it is still free. On any error the temporary file is removed: a
failed or killed write leaves no partial file at the final name and any previous file intact.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Suffixes :func:`list_images` picks up (and that ``restore.io.image.write_image`` can write)."""


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


TEMP_STEM_CHARS = 64  # of the final name's stem in a temporary name: it must fit wherever the final name fits


def temp_path(final: str | Path) -> Path:
    """A hidden, unique name next to ``final`` with the same suffix (a suffix can pick a container format), never
    longer than ``final``'s own name allows (the stem is shortened)."""
    p = Path(final)
    return p.with_name(f".{p.stem[:TEMP_STEM_CHARS]}.{secrets.token_hex(4)}.part{p.suffix}")


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems cannot fsync a directory)."""
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


def publish(tmp: str | Path, final: str | Path, *, overwrite: bool) -> None:
    """Make the finished temporary file ``tmp`` (in ``final``'s folder) the file ``final``: fsync'ed, renamed
    atomically; without ``overwrite`` an existing ``final`` raises FileExistsError and is left alone. ``tmp`` is
    gone afterwards either way."""
    tmp, final = Path(tmp), Path(final)
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)  # fails atomically when final exists
            except FileExistsError:
                raise FileExistsError(17, "output exists", str(final)) from None
            except OSError:  # no hard links on this file system
                if os.path.lexists(final):
                    raise FileExistsError(17, "output exists", str(final)) from None
                os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def names_folder(name: str) -> bool:
    """Whether ``name`` as typed ends with a path separator ("out/", "run.v2/"): it names a folder, whatever its
    suffix (``Path`` drops the trailing separator, so this reads the string)."""
    return name.endswith(("/", os.sep))


def ensure_folder(folder: str | Path) -> Path:
    """``mkdir -p folder``; when a file stands where a folder is needed, NotADirectoryError naming that file
    (``mkdir(exist_ok=True)`` would raise FileExistsError, which callers read as "the output exists")."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # the folder itself, or a folder above it, is a file
        blocker = next((a for a in (folder, *folder.parents) if os.path.lexists(a) and not a.is_dir()), folder)
        raise NotADirectoryError(20, f"{blocker} is a file, not a folder", str(blocker)) from None
    return folder


def ensure_writable_folder(folder: str | Path) -> Path:
    """:func:`ensure_folder`, then create and remove an empty hidden file in it, so that a long job (a video) that
    can only publish its output at the end fails before it starts (read-only mount, /proc, no permission) with the
    OSError that writing there raises."""
    folder = ensure_folder(folder)
    fd, name = tempfile.mkstemp(prefix=".restore-probe.", dir=folder)
    os.close(fd)
    os.unlink(name)
    return folder


@contextmanager
def publishing(final: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """``with publishing(path) as tmp: write(tmp)``: what the block writes to ``tmp`` becomes ``path`` when the
    block ends normally (:func:`publish`); when it raises, ``tmp`` is removed and ``path`` is untouched. The
    folder is created if needed; ``tmp`` has the usual permissions (umask), not ``mkstemp``'s 0600."""
    p = Path(final)
    ensure_folder(p.parent)
    fd, name = tempfile.mkstemp(prefix=f".{p.stem[:TEMP_STEM_CHARS]}.", suffix=f".part{p.suffix}", dir=p.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        yield tmp
        publish(tmp, p, overwrite=overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def publish_bytes(final: str | Path, data: bytes, *, overwrite: bool) -> Path:
    """Write ``data`` to ``final`` through :func:`publishing`; returns the path."""
    with publishing(final, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(final)


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name the same file (links and case-insensitive file systems included): the check
    a caller makes so that an output never overwrites its input."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pa, pb = Path(a).resolve(), Path(b).resolve()
        return os.path.normcase(pa) == os.path.normcase(pb)


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted; hidden files (``.name``, e.g. macOS ``._x.png``
    resource forks and our own ``.part`` temporaries) are skipped."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
