"""restore.io.files: the one atomic publish (``publishing``, ``publish``, ``publish_bytes``).

The order of the durability calls is recorded through a wrapped ``os``: the temporary file is fsync'ed *before*
it is renamed or linked onto the final name, it lives in the destination folder (a rename never crosses a file
system), and the folder is fsync'ed after. A file system without hard links (``os.link`` raising EPERM) must
still never replace an existing file when ``overwrite=False``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from restore.io import files

Event = tuple[str, str]


def _record(monkeypatch: pytest.MonkeyPatch, *, link_error: int | None = None) -> list[Event]:
    """Wrap os.open / os.fsync / os.replace / os.link; each call is logged as (name, path) in order (fsync with
    the path its descriptor was opened on). ``link_error``: make os.link raise OSError(link_error)."""
    events: list[Event] = []
    opened: dict[int, str] = {}
    real_open, real_fsync, real_replace, real_link = os.open, os.fsync, os.replace, os.link

    def fake_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: object) -> int:
        fd = real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]
        opened[fd] = os.fspath(path)
        return fd

    def fake_fsync(fd: int) -> None:
        events.append(("fsync", opened.get(fd, f"fd {fd}")))
        real_fsync(fd)

    def fake_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", os.fspath(src)))
        events.append(("onto", os.fspath(dst)))
        real_replace(src, dst)

    def fake_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("link", os.fspath(src)))
        events.append(("onto", os.fspath(dst)))
        if link_error is not None:
            raise OSError(link_error, os.strerror(link_error))
        real_link(src, dst)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "fsync", fake_fsync)
    monkeypatch.setattr(os, "replace", fake_replace)
    monkeypatch.setattr(os, "link", fake_link)
    return events


def _names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


def _temp_of(events: list[Event]) -> Path:
    """The temporary file: what was renamed or linked onto the final name."""
    return Path(next(p for name, p in events if name in ("replace", "link")))


Write = Callable[[Path, bool], None]


def _with_publishing(dst: Path, overwrite: bool) -> None:
    with files.publishing(dst, overwrite=overwrite) as tmp:
        tmp.write_bytes(b"new")


def _with_publish_bytes(dst: Path, overwrite: bool) -> None:
    files.publish_bytes(dst, b"new", overwrite=overwrite)


WRITERS = [pytest.param(_with_publishing, id="publishing"), pytest.param(_with_publish_bytes, id="publish_bytes")]


@pytest.mark.parametrize("write", WRITERS)
@pytest.mark.parametrize("overwrite", [True, False])
def test_fsync_before_rename_then_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: Write,
                                         overwrite: bool) -> None:
    dst = tmp_path / "out" / "a.png"
    events = _record(monkeypatch)
    write(dst, overwrite)
    monkeypatch.undo()
    tmp = _temp_of(events)
    rename = "replace" if overwrite else "link"
    assert _names(events) == ["fsync", rename, "onto", "fsync"], events
    assert events[0] == ("fsync", str(tmp))  # the temporary file's data, before it gets the final name
    assert events[2] == ("onto", str(dst))
    assert events[3] == ("fsync", str(dst.parent))  # then the rename itself
    assert tmp.parent == dst.parent and tmp.name.startswith(".a.") and tmp.name.endswith(".part.png")
    assert dst.read_bytes() == b"new" and sorted(p.name for p in dst.parent.iterdir()) == ["a.png"]


def test_publish_fsyncs_the_given_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = files.temp_path(tmp_path / "v.mp4")
    assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".v.")
    tmp.write_bytes(b"video")
    events = _record(monkeypatch)
    files.publish(tmp, tmp_path / "v.mp4", overwrite=True)
    monkeypatch.undo()
    assert events == [("fsync", str(tmp)), ("replace", str(tmp)), ("onto", str(tmp_path / "v.mp4")),
                      ("fsync", str(tmp_path))]
    assert not tmp.exists() and (tmp_path / "v.mp4").read_bytes() == b"video"


@pytest.mark.parametrize("write", WRITERS)
def test_temporary_file_is_in_the_destination_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     write: Write) -> None:
    """Not in the system temp folder (a rename from there can cross file systems and is then not atomic)."""
    elsewhere = tmp_path / "system_tmp"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr("tempfile.tempdir", str(elsewhere))
    dst = tmp_path / "dest" / "b.png"
    events = _record(monkeypatch)
    write(dst, True)
    assert _temp_of(events).parent == dst.parent
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("write", WRITERS)
def test_no_hard_links_never_replaces_an_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       write: Write) -> None:
    dst = tmp_path / "c.png"
    dst.write_bytes(b"old")
    events = _record(monkeypatch, link_error=errno.EPERM)  # e.g. FAT / some network file systems
    with pytest.raises(FileExistsError):
        write(dst, False)
    monkeypatch.undo()
    assert "link" in _names(events) and "replace" not in _names(events)
    assert dst.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]


@pytest.mark.parametrize("write", WRITERS)
def test_no_hard_links_still_publishes_a_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  write: Write) -> None:
    dst = tmp_path / "d.png"
    events = _record(monkeypatch, link_error=errno.EPERM)
    write(dst, False)
    monkeypatch.undo()
    assert _names(events) == ["fsync", "link", "onto", "replace", "onto", "fsync"]
    assert dst.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["d.png"]


@pytest.mark.parametrize("write", WRITERS)
def test_existing_file_refused_with_hard_links(tmp_path: Path, write: Write) -> None:
    dst = tmp_path / "e.png"
    dst.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write(dst, False)
    assert dst.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["e.png"]
    write(dst, True)
    assert dst.read_bytes() == b"new"


def test_failed_block_leaves_nothing(tmp_path: Path) -> None:
    dst = tmp_path / "f.png"
    dst.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder"), files.publishing(dst, overwrite=True) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("encoder failed")
    assert dst.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_ensure_folder_names_the_file_in_the_way(tmp_path: Path) -> None:
    from restore.io.files import ensure_folder

    assert ensure_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    for target in (tmp_path / "f", tmp_path / "f" / "g" / "h"):
        with pytest.raises(NotADirectoryError) as e:
            ensure_folder(target)
        assert e.value.filename == str(tmp_path / "f") and "is a file, not a folder" in e.value.strerror
