"""restore.io.inputs sharding: ``--shard K/N`` (0-based), the launcher variables it defaults from, and the property
that the N shards of a plan are disjoint and cover it (hypothesis over random relative paths and N)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restore.io.inputs import Job, parse_shard, select_shard, shard_from_env, shard_of

SEGMENT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                  max_size=12).filter(lambda s: s not in (".", ".."))
REL = st.lists(SEGMENT, min_size=1, max_size=4).map(lambda parts: Path(*parts))


@settings(max_examples=200, deadline=None)
@given(rels=st.lists(REL, max_size=60, unique_by=lambda p: p.as_posix()), n=st.integers(1, 17))
def test_shards_are_disjoint_and_cover_the_plan(rels: list[Path], n: int) -> None:
    jobs = [Job(Path("in") / r, Path("out") / r, r) for r in rels]
    shards = [select_shard(jobs, k, n) for k in range(n)]
    picked = [j for s in shards for j in s]
    assert sorted(picked, key=str) == sorted(jobs, key=str)  # every job once: disjoint and covering
    for k, s in enumerate(shards):
        assert all(shard_of(j.rel, n) == k for j in s)
        assert s == [j for j in jobs if j in s]  # plan order kept


@settings(max_examples=50, deadline=None)
@given(rel=REL, n=st.integers(1, 1000))
def test_shard_depends_only_on_the_relative_path(rel: Path, n: int) -> None:
    assert 0 <= shard_of(rel, n) < n
    assert shard_of(Path(PurePosixPath(rel.as_posix())), n) == shard_of(rel, n)
    assert select_shard([Job(Path("a") / rel, Path("x"), rel)], shard_of(rel, n), n) != []


def test_shard_is_the_same_in_another_process() -> None:
    """No salted hash: another interpreter (another PYTHONHASHSEED) puts each input in the same shard."""
    rels = [Path("a.png"), Path("sub/b.png"), Path("é/ü.tif")]
    here = [shard_of(r, 7) for r in rels]
    code = ("from pathlib import Path; from restore.io.inputs import shard_of; "
            "print([shard_of(Path(p), 7) for p in ('a.png', 'sub/b.png', 'é/ü.tif')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == str(here)


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("0/4", (0, 4)), ("3/4", (3, 4)), (" 2/3 ", (2, 3))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1/0", "1", "a/b", "1/2/3", "", "/4"])
def test_parse_shard_rejects_with_one_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"0 <= K < N \(0-based") as e:
        parse_shard(text)
    assert "\n" not in str(e.value)


def test_shard_from_env() -> None:
    assert shard_from_env({}) is None
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4, "RANK/WORLD_SIZE")
    assert shard_from_env({"RANK": "1"}) is None  # both or neither
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(slurm) == (3, 4, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
    assert shard_from_env({**slurm, "SLURM_ARRAY_TASK_MIN": "1"})[:2] == (2, 4)  # --array=1-4
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "20", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10",
                           "SLURM_ARRAY_TASK_STEP": "5"})[:2] == (2, 3)  # --array=10-20:5
    both = {**slurm, "RANK": "0", "WORLD_SIZE": "2"}
    assert shard_from_env(both) == (0, 2, "RANK/WORLD_SIZE")  # the launcher of this process first


@pytest.mark.parametrize("env, name", [
    ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK=4"),
    ({"RANK": "x", "WORLD_SIZE": "4"}, "RANK=x"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}, "SLURM_ARRAY_TASK_ID=5"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "2"}, "not a contiguous"),
])
def test_shard_from_env_rejects_what_names_no_shard(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match="--shard K/N") as e:
        shard_from_env(env)
    assert name in str(e.value) and "\n" not in str(e.value)


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_a_rerun_does_not_take_its_own_outputs_as_inputs(tmp_path: Path) -> None:
    from restore.io.inputs import plan

    src = tmp_path / "src"
    _touch(src / "a.png", src / "a_x4.png", src / "b.png")  # a_x4.png: what an earlier run wrote next to a.png
    p = plan([str(src)], out=None, suffix="_x4")
    assert [j.src.name for j in p.jobs] == ["a.png", "b.png"]
    assert [j.dst.name for j in p.jobs] == ["a_x4.png", "b_x4.png"]
    assert any("not read as inputs: this run writes them" in n and "a_x4.png" in n for n in p.notes)
    # named one by one, it is an input (the guard then refuses a.png -> a_x4.png: never an overwritten input)
    named = plan([str(src / "a.png"), str(src / "a_x4.png")], out=None, suffix="_x4")
    assert [j.src.name for j in named.jobs] == ["a.png", "a_x4.png"]


def test_an_output_folder_inside_the_input_folder_is_not_read(tmp_path: Path) -> None:
    from restore.io.inputs import plan

    src = tmp_path / "src"
    _touch(src / "a.png", src / "sub" / "b.png", src / "out" / "a_x2.png", src / "out" / "sub" / "b_x2.png")
    p = plan([str(src)], out=str(src / "out"), suffix="_x2", recursive=True)
    assert sorted(j.rel.as_posix() for j in p.jobs) == ["a.png", "sub/b.png"]
    assert any("in the output folder" in n for n in p.notes)
    elsewhere = plan([str(src)], out=str(tmp_path / "elsewhere"), suffix="_x2", recursive=True)
    assert len(elsewhere.jobs) == 4 and not elsewhere.notes


def test_a_trailing_slash_makes_the_output_a_folder(tmp_path: Path) -> None:
    from restore.io.inputs import plan

    _touch(tmp_path / "a.png", tmp_path / "b.png")
    one = plan([str(tmp_path / "a.png")], out=f"{tmp_path}/out.png/", suffix="_x2")
    assert [j.dst for j in one.jobs] == [tmp_path / "out.png" / "a_x2.png"]
    two = plan([str(tmp_path / "a.png"), str(tmp_path / "b.png")], out=f"{tmp_path}/run.v2/", suffix="_x2")
    assert [j.dst.parent for j in two.jobs] == [tmp_path / "run.v2"] * 2
    assert plan([str(tmp_path / "a.png")], out=f"{tmp_path}/out.png", suffix="_x2").jobs[0].dst == tmp_path / "out.png"
