"""`restore export -o`: never the input, never an existing file without --overwrite, never a folder, and the
suffix says the format (checked before any work: exit 2, one line naming the output)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.robustness.conftest import assert_clean_failure, digest, no_partial_files


@pytest.fixture
def ckpt(espcn_pth: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(espcn_pth, tmp_path / "net_g_1000.pth"))


def test_the_input_is_never_the_output(run_cli, ckpt: Path) -> None:
    before = digest(ckpt.parent)
    for extra in ([], ["--overwrite"]):
        r = run_cli("export", "--weights", ckpt, "-o", ckpt, *extra)
        assert_clean_failure(r, str(ckpt), rc=2)
        assert "input checkpoint" in r.error_lines[0]
    assert digest(ckpt.parent) == before


def test_an_existing_file_needs_overwrite(run_cli, ckpt: Path, tmp_path: Path) -> None:
    other = tmp_path / "a.pth"
    other.write_bytes(b"keep me")
    r = run_cli("export", "--weights", ckpt, "-o", other)
    assert_clean_failure(r, str(other), rc=2)
    assert "exists (use --overwrite)" in r.error_lines[0] and other.read_bytes() == b"keep me"
    r = run_cli("export", "--weights", ckpt, "-o", other, "--overwrite")
    assert r.rc == 0, r.err
    assert other.read_bytes() != b"keep me" and no_partial_files(tmp_path)


@pytest.mark.parametrize("name", ["dir.pth", "newdir/"])
def test_a_folder_is_refused(run_cli, ckpt: Path, tmp_path: Path, name: str) -> None:
    if not name.endswith("/"):
        (tmp_path / name).mkdir()
    r = run_cli("export", "--weights", ckpt, "-o", f"{tmp_path}/{name}")
    assert_clean_failure(r, name.rstrip("/"), rc=2)
    assert "is a folder" in r.error_lines[0] and not (tmp_path / "newdir").exists()


@pytest.mark.parametrize(("name", "flags", "says"), [("m.onnx", [], "needs --onnx"),
                                                     ("m.pth", ["--onnx"], "name it .onnx")])
def test_the_suffix_says_the_format(run_cli, ckpt: Path, tmp_path: Path, name: str, flags: list[str],
                                    says: str) -> None:
    r = run_cli("export", "--weights", ckpt, "-o", tmp_path / name, *flags)
    assert_clean_failure(r, name, rc=2)
    assert says in r.error_lines[0] and not (tmp_path / name).exists()
