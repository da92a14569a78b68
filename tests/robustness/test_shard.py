"""``--shard K/N`` without Ray (SLURM arrays, Kubernetes indexed jobs, torchrun): N runs split a batch disjointly
and together write exactly what one run writes; collisions are refused on the whole plan; RANK/WORLD_SIZE and
SLURM array variables are the default; bad values are one line, exit 2. Also the usage errors of --ray/--workers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from restore.io.inputs import shard_of
from tests.robustness.conftest import assert_clean_failure, digest, write_png

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                 "SLURM_ARRAY_TASK_STEP")


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)


def _tree(root: Path, n: int = 9) -> list[Path]:
    return [write_png(root / ("sub" if i % 3 == 0 else "") / f"img{i}.png", seed=i) for i in range(n)]


def test_shards_split_the_batch_and_cover_it(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    files = _tree(tmp_path / "in")
    r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "whole")
    assert r.rc == 0, r.err
    n = 3
    for k in range(n):
        r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / f"shard{k}",
                    "--shard", f"{k}/{n}")
        mine = [f for f in files if shard_of(f.relative_to(tmp_path / "in"), n) == k]
        assert r.rc == 0, r.err
        assert f"restore: note: shard {k}/{n} (from --shard): {len(mine)} of {len(files)} input(s)" in r.err
        assert f"{len(mine)} image(s) written" in r.out
    shards = [digest(tmp_path / f"shard{k}") for k in range(n)]
    assert sum(len(s) for s in shards) == len(files)  # disjoint
    merged = {name: h for s in shards for name, h in s.items()}
    assert merged == digest(tmp_path / "whole")  # covering, byte for byte the single run's outputs


def test_shards_into_one_folder_then_a_plain_rerun_skips_everything(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    files = _tree(tmp_path / "in", 6)
    for k in range(2):
        assert run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "out",
                       "--shard", f"{k}/2").rc == 0
    r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "out")
    assert r.rc == 0 and "0 image(s) written" in r.out and f"{len(files)} skipped" in r.out


def test_collisions_are_refused_before_sharding(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png(src / "one" / "a.png")
    write_png(src / "two" / "a.png", seed=3)
    assert shard_of(Path("a.png"), 2) in (0, 1)
    for k in range(2):  # both inputs have the relative path a.png: one shard holds both, the other none
        r = run_cli("upscale", f"{src}/one/*.png", f"{src}/two/*.png", "--weights", espcn_pth, "-o", tmp_path / "o",
                    "--shard", f"{k}/2")
        assert_clean_failure(r, "a_x2.png", rc=2)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("env, shard, where", [
    ({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2), "RANK/WORLD_SIZE"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"}, (0, 2),
     "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"),
])
def test_launcher_variables_are_the_default(run_cli, espcn_pth: Path, tmp_path: Path, monkeypatch,
                                            env: dict[str, str], shard: tuple[int, int], where: str) -> None:
    files = _tree(tmp_path / "in", 6)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "out")
    k, n = shard
    mine = [f for f in files if shard_of(f.relative_to(tmp_path / "in"), n) == k]
    assert r.rc == 0 and f"shard {k}/{n} (from {where}): {len(mine)} of 6" in r.err, r.err
    assert len(digest(tmp_path / "out")) == len(mine)
    r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "all", "--shard", "0/1")
    assert r.rc == 0 and len(digest(tmp_path / "all")) == 6  # --shard wins over the environment


@pytest.mark.parametrize("argv, env, name", [
    (["--shard", "2/2"], {}, "--shard"),
    (["--shard", "1/0"], {}, "--shard"),
    ([], {"RANK": "3", "WORLD_SIZE": "2"}, "RANK=3"),
    ([], {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "2"}, "SLURM_ARRAY_TASK_ID=7"),
    (["--workers", "2"], {}, "--workers is for --ray"),
    (["--ray", "--workers", "0"], {}, "--workers"),
    (["--ray"], {}, "--ray needs -o DIR"),
])
def test_bad_shard_and_cluster_options_are_one_line(run_cli, espcn_pth: Path, tmp_path: Path, monkeypatch,
                                                    argv: list[str], env: dict[str, str], name: str) -> None:
    src = write_png(tmp_path / "a.png")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = [] if "--ray" in argv and "--workers" not in argv else ["-o", tmp_path / "out"]
    r = run_cli("upscale", src, "--weights", espcn_pth, *out, *argv)
    assert r.rc == 2 and "Traceback" not in r.err
    assert name in r.err and len([ln for ln in r.err.splitlines() if "error" in ln]) == 1, r.err
    assert not (tmp_path / "out").exists()


def test_ray_does_not_swallow_an_input(run_cli, espcn_pth: Path, tmp_path: Path) -> None:
    src = write_png(tmp_path / "a.png")
    r = run_cli("upscale", "--ray", src, "--weights", espcn_pth, "-o", tmp_path / "out")
    assert r.rc == 2 and "put --ray after the inputs, or write --ray=ADDRESS" in r.err and "Traceback" not in r.err


def test_ray_without_the_extra_names_it(run_cli, espcn_pth: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    src = write_png(tmp_path / "a.png")
    r = run_cli("upscale", src, "--weights", espcn_pth, "-o", tmp_path / "out", "--ray")
    assert_clean_failure(r, "pip install 'restore[cluster]'", rc=2)
    assert not (tmp_path / "out").exists()
