"""Batches: globs, names the file system refuses, outputs two inputs would share, a device that is not there,
exit codes (0 all done, 1 some inputs failed, 2 usage / model, 130 interrupted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.conftest import assert_clean_failure, digest, no_partial_files, write_png


def test_absolute_and_relative_globs(run_cli, espcn_pth: Path, tmp_path: Path, monkeypatch) -> None:
    write_png(tmp_path / "in" / "a.png")
    write_png(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    r = run_cli("upscale", f"{tmp_path}/in/*.png", "--weights", espcn_pth, "-o", tmp_path / "abs")
    assert r.rc == 0 and sorted(p.name for p in (tmp_path / "abs").iterdir()) == ["a_x2.png", "b_x2.png"], r.err
    monkeypatch.chdir(tmp_path)
    r = run_cli("upscale", "in/*.png", "--weights", espcn_pth, "-o", "rel")
    assert r.rc == 0 and sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["a_x2.png", "b_x2.png"], r.err
    r = run_cli("upscale", "in/**/*.png", "--weights", espcn_pth, "-o", "rec")
    assert r.rc == 0 and len(list((tmp_path / "rec").iterdir())) == 2
    r = run_cli("upscale", f"{tmp_path}/nothing/*.png", "--weights", espcn_pth, "-o", "x")
    assert_clean_failure(r, "nothing/*.png", rc=2)


def test_too_long_output_name_fails_that_file_only(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    long = write_png(src / ("x" * 250 + ".png"))  # 254 bytes: the name fits, "<stem>_x2.png" (257) does not
    write_png(src / "a.png")
    write_png(src / "b.png", seed=2)
    before = digest(src)
    r = run_cli("upscale", src, "--weights", espcn_pth, "-o", tmp_path / "out")
    assert_clean_failure(r, long.name[:40], rc=1)
    assert "too long" in r.error_lines[0].lower()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x2.png", "b_x2.png"]
    assert "2 image(s) written" in r.out and "1 failed" in r.out
    assert digest(src) == before and no_partial_files(tmp_path)


@pytest.mark.parametrize("overwrite", [False, True])
def test_same_stem_collision_is_refused_before_any_work(run_cli, espcn_pth: Path, tmp_path: Path,
                                                        overwrite: bool) -> None:
    src = tmp_path / "in"
    write_png(src / "a.png")
    from PIL import Image

    Image.open(src / "a.png").save(src / "a.jpg")
    before = digest(src)
    r = run_cli("upscale", src / "a.png", src / "a.jpg", "--weights", espcn_pth, "-o", tmp_path / "out",
                *(["--overwrite"] if overwrite else []))
    assert_clean_failure(r, "a.png and", rc=2)
    assert "a.jpg" in r.error_lines[0] and "a_x2.png" in r.error_lines[0]
    assert not (tmp_path / "out").exists() and digest(src) == before


def test_same_stem_collision_with_suffix_and_recursive(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png(src / "one" / "a.png")
    write_png(src / "two" / "a.png", seed=3)
    # -r mirrors the subfolders: no collision
    r = run_cli("upscale", src, "-r", "--weights", espcn_pth, "-o", tmp_path / "out", "--suffix", "_up")
    assert r.rc == 0, r.err
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "one/a_up.png", "two/a_up.png"]
    # two globs into one folder: the same name twice
    r = run_cli("upscale", f"{src}/one/*.png", f"{src}/two/*.png", "--weights", espcn_pth, "-o", tmp_path / "flat",
                "--suffix", "_up")
    assert_clean_failure(r, "a_up.png", rc=2)


def test_only_file_skipped_says_so(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = write_png(tmp_path / "a.png")
    assert run_cli("upscale", src, "--weights", espcn_pth, "-o", tmp_path / "o.png").rc == 0
    r = run_cli("upscale", src, "--weights", espcn_pth, "-o", tmp_path / "o.png")
    assert r.rc == 0 and "0 image(s) written" in r.out and "1 skipped (output exists" in r.out
    assert "pending" not in r.out


def test_summary_names_the_path_that_ran(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    r = run_cli("upscale", write_png(tmp_path / "a.png"), "--weights", espcn_pth, "-o", tmp_path / "o.png")
    assert r.rc == 0 and "pending" not in r.out and "fp32 eager" in r.out


def test_device_cuda_without_cuda(run_cli, espcn_pth: Path, dncnn_pth: Path, tmp_path: Path, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    src = write_png(tmp_path / "a.png")
    for verb, weights in (("upscale", espcn_pth), ("denoise", dncnn_pth)):
        r = run_cli(verb, src, "--weights", weights, "--device", "cuda", "-o", tmp_path / "out")
        assert_clean_failure(r, "cuda", rc=2)
        assert "no CUDA device" in r.error_lines[0]
    assert not (tmp_path / "out").exists()


def test_unreadable_image_exits_1_and_the_rest_is_processed(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png(src / "a.png")
    (src / "b.png").write_bytes(b"not a png")
    r = run_cli("upscale", src, "--weights", espcn_pth, "-o", tmp_path / "out")
    assert_clean_failure(r, "b.png", rc=1)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_x2.png"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_file_in_place_of_the_output_folder(run_cli, espcn_pth: Path, tmp_path: Path, overwrite: bool) -> None:
    """A file where the output folder should be: a failure naming that file (exit 1), not "skipped: exists"."""
    src = write_png(tmp_path / "a.png")
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder")
    r = run_cli("upscale", src, "--weights", espcn_pth, "-o", blocker / "sub" / "a_up.png",
                *(["--overwrite"] if overwrite else []))
    assert_clean_failure(r, "a.png", rc=1)
    assert f"{blocker} is a file, not a folder" in r.error_lines[0] and "exists" not in r.error_lines[0]
    assert blocker.read_text() == "a file, not a folder" and "1 failed" in r.out


def test_rerun_on_a_folder_skips_and_writes_nothing_new(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_png(src / "a.png")
    write_png(src / "b.png", seed=1)
    assert run_cli("upscale", src, "--weights", espcn_pth).rc == 0
    first = digest(src)
    r = run_cli("upscale", src, "--weights", espcn_pth)
    assert r.rc == 0 and "2 skipped" in r.out and "not read as inputs" in r.err, r.err
    assert "would overwrite an input" not in r.err and digest(src) == first  # no a_x2_x2.png
    for _ in range(2):
        assert run_cli("upscale", src, "-r", "-o", src / "out", "--weights", espcn_pth).rc == 0
    assert not (src / "out" / "out").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_at_the_output_name_is_a_failure_not_a_skip(run_cli, espcn_pth: Path, tmp_path: Path,
                                                            overwrite: bool) -> None:
    src = write_png(tmp_path / "a.png")
    (tmp_path / "a_x2.png").mkdir()
    r = run_cli("upscale", src, "--weights", espcn_pth, *(["--overwrite"] if overwrite else []))
    assert_clean_failure(r, "a.png", rc=1)
    assert "is a folder" in r.error_lines[0] and "exists" not in r.error_lines[0]
    assert (tmp_path / "a_x2.png").is_dir()
