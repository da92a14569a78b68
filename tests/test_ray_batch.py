"""``restore upscale|denoise --ray``: Ray Data actors produce the plain command line's bytes, journal every input
once, resume, survive a killed worker, and leave no Ray process behind. The cluster tests share one small local Ray
instance (2 CPUs, module scope) and skip when the ``cluster`` extra is not installed; the planning helpers are
tested without Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from restore import io
from restore.engine import ray_batch
from restore.engine.batch import Outcome
from restore.engine.ray_batch import ActorPlan, outcome_of, plan_actors
from restore.io.inputs import Job
from restore.io.journal import JOURNAL_NAME, read_journal
from tests.conftest import restore_exe
from tests.robustness.conftest import espcn_pth, run_cli, write_png  # noqa: F401  (fixtures)

NEEDS_RAY = "Ray Data is not installed (the 'cluster' extra: pip install -e '.[cluster]')"


# ---------------------------------------------------------------------------------------------- without Ray


@pytest.mark.parametrize("nodes, device, workers, inputs, expected", [
    ([(2, 0)], "auto", None, 40, ActorPlan(2, 1.0, 0.0, 2)),  # one actor per CPU
    ([(2, 0)], "auto", 1, 40, ActorPlan(1, 2.0, 0.0, 1)),  # one actor: all the CPUs
    ([(2, 0)], "auto", None, 1, ActorPlan(1, 2.0, 0.0, 1)),  # never more actors than inputs
    ([(8, 0), (8, 0)], "cpu", 3, 40, ActorPlan(3, 4.0, 0.0, 4)),  # a share that fits on the nodes
    ([(8, 0), (4, 0)], "auto", 2, 40, ActorPlan(2, 4.0, 0.0, 3)),
    ([(2, 0)], "auto", 5, 40, ActorPlan(5, 1.0, 0.0, 2)),  # more than fit now: they wait (an autoscaler)
    ([(16, 4), (16, 4)], "auto", None, 40, ActorPlan(8, 1.0, 1.0, 8)),  # one actor per GPU
    ([(16, 4)], "cuda", None, 3, ActorPlan(3, 1.0, 1.0, 4)),
    ([(16, 4)], "cpu", 2, 40, ActorPlan(2, 8.0, 0.0, 2)),  # --device cpu: GPUs are not asked for
])
def test_plan_actors(nodes: list[tuple[float, float]], device: str, workers: int | None, inputs: int,
                     expected: ActorPlan) -> None:
    assert plan_actors(nodes, device=device, workers=workers, inputs=inputs) == expected


@pytest.mark.parametrize("nodes, device, message", [
    ([(16, 4)], "cuda:1", "each worker gets a GPU of its own"),
    ([(16, 0)], "cuda", "the Ray cluster has no GPUs"),
])
def test_plan_actors_refuses_devices_a_cluster_cannot_honour(nodes: list[tuple[float, float]], device: str,
                                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_actors(nodes, device=device, workers=None, inputs=4)


def test_rows_round_trip_and_paths_are_shown_as_given(tmp_path: Path) -> None:
    o = Outcome("written", "m", 0.5, (10, 12), (20, 24), "cpu, fp32 eager")
    assert outcome_of(ray_batch._row(3, o, ["a", "b"])) == (o, ["a", "b"])
    failed = Outcome("failed", "x")
    assert outcome_of(ray_batch._row(0, failed, [])) == (failed, [])
    job = Job(Path("in/a.png"), Path("/abs/in/a.png.d/a_x2.png"), Path("a.png"))
    msg = ray_batch._display("/w/in/a.png -> /abs/in/a.png.d/a_x2.png: /w/in/a.png", job, "/w/in/a.png",
                             "/abs/in/a.png.d/a_x2.png")
    assert msg == "in/a.png -> /abs/in/a.png.d/a_x2.png: in/a.png"


def test_remove_partials_takes_only_the_temporaries_of_those_outputs(tmp_path: Path) -> None:
    names = [".a_x2.k3j4.part.png", ".a_x2.abcd.part.png", "a_x2.png", ".b_x2.zz.part.png", ".a_x2.png"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    assert ray_batch.remove_partials([Job(Path("a.png"), tmp_path / "a_x2.png", Path("a.png"))]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a_x2.png", ".b_x2.zz.part.png", "a_x2.png"]


# ---------------------------------------------------------------------------------------------- helpers


def _inputs(folder: Path) -> list[Path]:
    """Small inputs of every kind the io keeps: 8-bit RGB, 16-bit gray, RGBA, a JPEG (written as PNG)."""
    rng = np.random.default_rng(7)
    files = [write_png(folder / f"rgb{i}.png", seed=i) for i in range(3)]
    io.write_image(folder / "sub" / "gray16.png", rng.integers(0, 65536, (9, 11), dtype=np.uint16))
    io.write_image(folder / "sub" / "rgba.png", rng.integers(0, 256, (10, 8, 4), dtype=np.uint8))
    io.write_image(folder / "photo.jpg", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    return [*files, folder / "sub" / "gray16.png", folder / "sub" / "rgba.png", folder / "photo.jpg"]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != JOURNAL_NAME}


def _journal(folder: Path) -> list[dict[str, Any]]:
    return read_journal(folder / JOURNAL_NAME)


def _ray_pids(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (a Ray temp folder)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


# ---------------------------------------------------------------------------------------------- with Ray


def test_a_local_instance_is_started_and_stopped(espcn_pth: Path, tmp_path: Path) -> None:  # noqa: F811
    """No address, no RAY_ADDRESS: the run starts its own Ray, and no Ray process outlives it (first in this file,
    before the shared instance exists)."""
    pytest.importorskip("ray.data", reason=NEEDS_RAY)
    _inputs(tmp_path / "in")
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths live below it
    hooks = ("RAY_ADDRESS", ray_batch.KILL_ONCE_ENV, ray_batch.POISON_ENV)
    env = {k: v for k, v in os.environ.items() if k not in hooks}
    env.update(RAY_TMPDIR=tmp, OMP_NUM_THREADS="1")
    try:
        r = subprocess.run([restore_exe(), "upscale", "in", "-r", "--weights", str(espcn_pth), "-o", "out", "--ray",
                            "--workers", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "6 image(s) written" in r.stdout and "Ray: 1 worker(s) x 2 CPU" in r.stdout, r.stdout
        assert "Traceback" not in r.stderr
        deadline = time.monotonic() + 30
        while _ray_pids(tmp) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _ray_pids(tmp) == [], "Ray processes outlived the run"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """One local Ray instance for the module (2 CPUs, a small object store); its GCS address."""
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    pytest.importorskip("ray.data", reason=NEEDS_RAY)
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=96 * 1024**2,
                   log_to_driver=False)
    try:
        yield str(ctx.address_info["gcs_address"])
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _no_kill_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ray_batch.KILL_ONCE_ENV, raising=False)
    monkeypatch.delenv(ray_batch.POISON_ENV, raising=False)
    for var in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(var, raising=False)


def test_outputs_are_the_plain_cli_bytes_and_the_journal_has_each_input(
        ray_cluster: str, run_cli, espcn_pth: Path, tmp_path: Path) -> None:  # noqa: F811
    files = _inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    plain = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "plain")
    r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "ray", "--ray",
                "--workers", "2")
    assert (plain.rc, r.rc) == (1, 1), r.err
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "plain") and len(_outputs(tmp_path / "ray")) == 6
    errors = [ln for ln in r.err.splitlines() if ln.startswith("restore: error:")]
    assert len(errors) == 1 and "broken.png" in errors[0] and "Traceback" not in r.err
    assert errors == [ln for ln in plain.err.splitlines() if ln.startswith("restore: error:")]  # same words
    assert "6 image(s) written" in r.out and "1 failed" in r.out and "Ray: 2 worker(s) x 1 CPU" in r.out
    assert sorted(ln for ln in r.out.splitlines() if " -> " in ln) == sorted(
        ln.replace(str(tmp_path / "plain"), str(tmp_path / "ray")) for ln in plain.out.splitlines() if " -> " in ln)
    records = _journal(tmp_path / "ray")
    assert Counter(rec["input"] for rec in records) == Counter(str(f) for f in [*files, tmp_path / "in" / "broken.png"])
    status = {Path(str(rec["input"])).name: rec["status"] for rec in records}
    assert status.pop("broken.png") == "failed" and set(status.values()) == {"written"}
    (broken,) = [rec for rec in records if rec["status"] == "failed"]
    assert "broken.png" in str(broken["error"]) and broken["output"].endswith("broken_x2.png")
    assert all(rec["error"] is None and rec["seconds"] > 0 for rec in records if rec["status"] == "written")


def test_a_killed_worker_is_retried_and_nothing_is_lost_or_written_twice(
        ray_cluster: str, run_cli, espcn_pth: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    files = _inputs(tmp_path / "in")
    assert run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "plain").rc == 0
    flag = tmp_path / "killed"
    monkeypatch.setenv(ray_batch.KILL_ONCE_ENV, str(flag))
    r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", tmp_path / "ray", "--ray",
                "--workers", "2")
    assert flag.exists(), "no worker was killed"
    assert r.rc == 0, r.err
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "plain")
    assert not [p for p in (tmp_path / "ray").rglob("*") if ".part" in p.name]
    records = _journal(tmp_path / "ray")
    assert sorted(rec["input"] for rec in records) == sorted(str(f) for f in files)  # each input exactly once
    assert {rec["status"] for rec in records} == {"written"} and f"{len(files)} image(s) written" in r.out
    assert "restore: note: ray" in r.err and "Traceback" not in r.err  # the death and the retry, as notes


def test_an_image_that_kills_its_worker_every_time_fails_alone(
        ray_cluster: str, run_cli, espcn_pth: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    """Retries are bounded: the image is reported failed after its last try, the rest of the batch is written."""
    for i in range(2):
        write_png(tmp_path / "in" / f"ok{i}.png", seed=i)
    write_png(tmp_path / "in" / "poison.png", seed=9)
    monkeypatch.setenv(ray_batch.POISON_ENV, "poison.png")
    r = run_cli("upscale", tmp_path / "in", "--weights", espcn_pth, "-o", tmp_path / "out", "--ray", "--workers", "1")
    assert r.rc == 1, r.err
    errors = [ln for ln in r.err.splitlines() if ln.startswith("restore: error:")]
    assert len(errors) == 1 and "poison.png" in errors[0] and "after 3 tries" in errors[0], r.err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["ok0_x2.png", "ok1_x2.png"]
    assert {Path(str(rec["input"])).name: rec["status"] for rec in _journal(tmp_path / "out")} == {
        "ok0.png": "written", "ok1.png": "written", "poison.png": "failed"}
    assert "2 image(s) written" in r.out and "1 failed" in r.out and "Traceback" not in r.err


def test_a_rerun_resumes_and_appends_to_the_journal(
        ray_cluster: str, run_cli, espcn_pth: Path, tmp_path: Path) -> None:  # noqa: F811
    files = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", out).rc == 0
    first = _outputs(out)
    (out / "rgb1_x2.png").unlink()
    (out / "sub" / "gray16_x2.png").unlink()
    r = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", out, "--ray", "--workers", "1")
    assert r.rc == 0, r.err
    assert "2 image(s) written" in r.out and f"{len(files) - 2} skipped" in r.out
    assert _outputs(out) == first
    again = run_cli("upscale", tmp_path / "in", "-r", "--weights", espcn_pth, "-o", out, "--ray")
    assert again.rc == 0 and "0 image(s) written" in again.out  # all done: settled by the driver
    runs = [rec["run"] for rec in _journal(out)]
    assert len(runs) == 2 * len(files) and len(set(runs)) == 2
    assert Counter(rec["status"] for rec in _journal(out)) == {"written": 2, "skipped": 2 * len(files) - 2}


@pytest.mark.shipped
def test_denoise_picks_per_image_and_upscale_resizes_like_the_plain_cli(
        ray_cluster: str, run_cli, espcn_pth: Path, tmp_path: Path) -> None:  # noqa: F811
    _inputs(tmp_path / "in")
    for verb, extra in (("denoise", ["--sigma", "25"]), ("upscale", ["--weights", espcn_pth, "--outscale", "1.5"])):
        plain = run_cli(verb, tmp_path / "in", "-r", *extra, "-o", tmp_path / f"{verb}_plain")
        r = run_cli(verb, tmp_path / "in", "-r", *extra, "-o", tmp_path / f"{verb}_ray", "--ray", "--workers", "1")
        assert (plain.rc, r.rc) == (0, 0), r.err
        assert _outputs(tmp_path / f"{verb}_ray") == _outputs(tmp_path / f"{verb}_plain")


def test_a_device_the_workers_lack_is_a_usage_error(
        ray_cluster: str, run_cli, espcn_pth: Path, tmp_path: Path) -> None:  # noqa: F811
    write_png(tmp_path / "a.png")
    r = run_cli("upscale", tmp_path / "a.png", "--weights", espcn_pth, "-o", tmp_path / "out", "--ray", "--device",
                "mps")
    errors = [ln for ln in r.err.splitlines() if ln.startswith("restore: error:")]
    assert r.rc == 2 and len(errors) == 1 and "Ray worker" in errors[0] and "mps" in errors[0].lower(), r.err
    assert not (tmp_path / "out" / "a_x2.png").exists()


def test_attaching_through_ray_address_leaves_the_cluster_running(
        ray_cluster: str, espcn_pth: Path, tmp_path: Path) -> None:  # noqa: F811
    import ray

    _inputs(tmp_path / "in")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "OMP_NUM_THREADS": "1"}
    env.pop(ray_batch.KILL_ONCE_ENV, None)
    env.pop(ray_batch.POISON_ENV, None)
    r = subprocess.run([restore_exe(), "upscale", "in", "-r", "--weights", str(espcn_pth), "-o", "out", "--ray"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "6 image(s) written" in r.stdout and len(_journal(tmp_path / "out")) == 6
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2  # still there for this process
