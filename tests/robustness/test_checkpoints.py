"""Checkpoints that are not what they claim: every first byte followed by text, other file types renamed .pth,
non-finite tensors, an unsafe pickle, a directory. Each verb that reads weights answers with one line naming the
file (exit 2), writes nothing and never unpickles code."""

from __future__ import annotations

import gzip
import io as pyio
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
import torch

from restore.archs.espcn import ESPCN
from restore.errors import ModelLoadError
from restore.weights import load_model, read_state_dict
from tests.robustness.conftest import assert_clean_failure, digest, no_partial_files, write_png

TEXT = b"This is not a checkpoint. It is a README that someone saved as weights.\n" * 4


def _corpus(folder: Path, marker: Path) -> dict[str, Path]:
    """name -> file of every bad checkpoint kind (256 first bytes + the named kinds)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for b in range(256):
        p = folder / f"byte{b:03d}.pth"
        p.write_bytes(bytes([b]) + TEXT)
        files[p.stem] = p
    buf = pyio.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    png = pyio.BytesIO()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(png, "PNG")
    kinds = {
        "zip": buf.getvalue(), "gzip": gzip.compress(TEXT), "html": b"<!DOCTYPE html><html><body>404</body></html>",
        "json": json.dumps({"params": {"a": [1, 2]}}).encode(), "empty": b"",
        "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 123\n",
        "png": png.getvalue(), "truncated": b"PK\x03\x04" + b"\x00" * 10,
    }
    for name, data in kinds.items():
        (folder / f"{name}.pth").write_bytes(data)
        files[name] = folder / f"{name}.pth"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str, ...]]:
            return (os.system, (f"touch {marker}",))

    torch.save({"params": {"w": torch.zeros(1)}, "x": Evil()}, folder / "evil.pth")
    files["evil"] = folder / "evil.pth"
    for bad, value in (("nan", float("nan")), ("inf", float("inf"))):
        sd = ESPCN(scale=2, features=(8, 8)).state_dict()
        sd["conv2.weight"] = sd["conv2.weight"].clone()
        sd["conv2.weight"].view(-1)[3] = value
        torch.save(sd, folder / f"{bad}.pth")
        files[bad] = folder / f"{bad}.pth"
    (folder / "adir.pth").mkdir(exist_ok=True)
    files["adir"] = folder / "adir.pth"
    (folder / "garbage.pb").write_bytes(TEXT)
    files["pb"] = folder / "garbage.pb"
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("ckpt")
    marker = root / "PWNED"
    return _corpus(root / "bad", marker), marker


def test_every_bad_checkpoint_is_a_model_load_error_naming_the_file(corpus) -> None:
    files, marker = corpus
    for name, f in files.items():
        with pytest.raises(ModelLoadError) as e:
            load_model(f)
        msg = str(e.value)
        assert "\n" not in msg and f.name in msg, (name, msg)
    assert not marker.exists()  # the unsafe pickle never ran


def test_non_finite_weights_are_refused_with_the_tensor_name(corpus) -> None:
    files, _ = corpus
    for bad in ("nan", "inf"):
        with pytest.raises(ModelLoadError, match=r"tensor 'conv2\.weight' has 1 NaN/infinite value"):
            load_model(files[bad])


@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.bool, torch.complex64])
def test_weights_that_are_not_real_floats_are_refused(espcn_pth: Path, tmp_path: Path, dtype: torch.dtype) -> None:
    sd = read_state_dict(espcn_pth)
    bad = tmp_path / "cast.pth"
    torch.save({k: v.to(dtype) for k, v in sd.items()}, bad)
    first = next(iter(sd))
    with pytest.raises(ModelLoadError, match=rf"cast\.pth: tensor '{re.escape(first)}' is .*not floating point"):
        load_model(bad)


def test_other_files_are_named_and_torch_advice_is_not_shown(tmp_path: Path) -> None:
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 4)
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(range(256)) * 4)
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes((i * 97 + 13) % 256 for i in range(3000)))
    for f, words in ((mp4, "video or audio file"), (graph, "ONNX graph"), (noise, "")):
        with pytest.raises(ModelLoadError, match=re.escape(f.name)) as e:
            read_state_dict(f)
        assert words in str(e.value) and "weights_only" not in str(e.value) and "\n" not in str(e.value)
    if Path("/dev/null").exists():
        with pytest.raises(ModelLoadError, match="not a regular file"):
            read_state_dict("/dev/null")


def test_integer_buffers_are_allowed() -> None:
    from restore.weights import check_finite

    check_finite({"bn.weight": torch.ones(2), "bn.num_batches_tracked": torch.tensor(7),
                  "attn.relative_position_index": torch.arange(4)}, source="x")
    with pytest.raises(ModelLoadError, match="int64"):
        check_finite({"bn.weight": torch.ones(2, dtype=torch.int64)}, source="x")


def test_directory_and_kinds_are_described(corpus) -> None:
    files, _ = corpus
    expect = {"adir": "is a directory", "lfs": "Git LFS pointer", "png": "PNG image", "html": "HTML",
              "json": "JSON", "gzip": "gzip", "empty": "empty", "byte084": "text file", "evil": "refused for safety"}
    for name, words in expect.items():
        with pytest.raises(ModelLoadError, match=words):
            read_state_dict(files[name])


@pytest.mark.parametrize("verb", ["upscale", "denoise", "info", "export", "video"])
def test_cli_verbs_answer_one_line_exit_2(corpus, run_cli, tmp_path: Path, verb: str) -> None:
    files, marker = corpus
    src = write_png(tmp_path / "in" / "a.png")
    before = digest(tmp_path / "in")
    out = tmp_path / "out"
    names = list(files) if verb == "upscale" else ["byte000", "byte042", "byte128", "byte255", "zip", "evil",
                                                   "nan", "adir", "lfs", "pb"]
    for name in names:
        f = files[name]
        argv = {"upscale": ["upscale", src, "--weights", f, "-o", out],
                "denoise": ["denoise", src, "--weights", f, "-o", out],
                "info": ["info", f],
                "export": ["export", "--weights", f, "-o", out / "deploy.pth"],
                "video": ["video", tmp_path / "missing.mp4", "--weights", f, "-o", out / "v.mp4"]}[verb]
        r = run_cli(*argv)
        assert_clean_failure(r, f.name, rc=2)
    assert not out.exists() or not any(out.iterdir())
    assert digest(tmp_path / "in") == before and no_partial_files(tmp_path)
    assert not marker.exists()


def test_a_real_process_prints_no_traceback_and_no_warning(corpus, tmp_path: Path) -> None:
    import subprocess
    import sys

    files, _ = corpus
    src = write_png(tmp_path / "a.png")
    for name in ("byte120", "evil", "nan"):
        r = subprocess.run([sys.executable, "-m", "restore", "upscale", str(src), "--weights", str(files[name]),
                            "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("restore: error: ") and files[name].name in lines[0], lines
