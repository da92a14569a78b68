"""Distributed training (``restore train --launcher pytorch|slurm``) on the CPU: 2 gloo ranks on 127.0.0.1.

The runs are real launches: ``python -m torch.distributed.run`` (torchrun) or two ``srun``-like processes with
SLURM's variables, as subprocesses with a free loopback port and timeouts. What they pin:

* 2 ranks x batch 2 train the weights of 1 process x batch 4 (the sampler splits one global batch sequence by
  rank, DDP averages the gradients of mean-reduced losses), with EMA and without;
* a rank SIGKILLed mid-run: ``--resume`` under the same launcher ends with the uninterrupted run's weights;
* the launch environment (SLURM node lists, missing variables) and BatchNorm on the CPU are one-line errors.

One torchrun launch costs ~15-25 s here (two fresh Pythons importing torch and BasicSR), so there are four.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.train.conftest import TINY, make_tiny_data

pytest.importorskip("basicsr")

OPT = TINY / "espcn_x2_ddp.yml"  # batch 2 per rank, 20 iterations, checkpoints every 5, 15 iterations per epoch
EXP = Path("experiments") / "tiny_espcn_x2_ddp"
LAUNCH_TIMEOUT = 240
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
             "TORCHELASTIC_RUN_ID", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NODELIST",
             "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST")
# rank 1 SIGKILLs itself when it reaches iteration KILL_AT (before its step): a test hook outside the package
KILL_WRAPPER = """
import os, signal, sys
from restore.train import models
at, rank = int(os.environ["KILL_AT"]), int(os.environ["RANK"])
step = models.RestoreSRModel.optimize_parameters
def optimize_parameters(self, current_iter):
    if rank == 1 and current_iter == at:
        os.kill(os.getpid(), signal.SIGKILL)
    step(self, current_iter)
models.RestoreSRModel.optimize_parameters = optimize_parameters
from restore.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables, one thread, loopback only, the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", **extra)
    return env


def torchrun(root: Path, *args: str, script: Path | None = None, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc-per-node 2 -m restore train -opt OPT --root root --launcher pytorch *args`` in ``root``."""
    target = [str(script)] if script is not None else ["-m", "restore"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "--monitor-interval", "0.2", *target, "train", "-opt", str(OPT),
           "--root", str(root), "--launcher", "pytorch", *args]
    res = subprocess.run(cmd, cwd=root, env=env or child_env(), capture_output=True, text=True,
                         timeout=LAUNCH_TIMEOUT)
    if check:
        assert res.returncode == 0, res.stderr[-4000:]
    return res


def srun_like(cwd: Path, root: Path, *args: str, ntasks: int = 2) -> list[str]:
    """``ntasks`` processes ``python -m restore train ... --launcher slurm`` in ``cwd`` with the variables srun sets
    (no scontrol here: MASTER_ADDR comes from parsing SLURM_NODELIST); their stdout."""
    port = str(free_port())
    cmd = [sys.executable, "-m", "restore", "train", "-opt", str(OPT), "--root", str(root), "--launcher", "slurm",
           *args]
    procs = [subprocess.Popen(cmd, cwd=cwd, env=child_env(SLURM_PROCID=str(r), SLURM_NTASKS=str(ntasks),
                                                           SLURM_LOCALID=str(r), SLURM_NODELIST="127.0.0.1",
                                                           MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(ntasks)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=LAUNCH_TIMEOUT)
            assert p.returncode == 0, err[-4000:]
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs


def one_process(root: Path, *overrides: str) -> Path:
    """The same file in this process, batch 4 (= 2 ranks x 2), no launcher; its models folder."""
    from restore.train.loop import train

    res = train(OPT, root=root, overrides=["datasets.train.batch_size_per_gpu=4", *overrides])
    assert res.world_size == 1 and res.batch == 4
    return res.experiment / "models"


def weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpt = torch.load(path, weights_only=True)
    return {k: ckpt[k] for k in ("params", "params_ema") if k in ckpt}


def assert_same_weights(a: Path, b: Path, *, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert wa[key].keys() == wb[key].keys()
        for k in wa[key]:
            torch.testing.assert_close(wb[key][k], wa[key][k], atol=atol, rtol=0,
                                       msg=lambda m, n=f"{key}.{k}": f"{n}: {m}")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The uninterrupted 2-rank torchrun run of OPT (EMA on, validation at 20): its root and stdout."""
    root = tmp_path_factory.mktemp("ddp")
    make_tiny_data(root)
    yield root, torchrun(root).stdout


# ------------------------------------------------------------------------------------------- equivalence


def test_two_torchrun_ranks_match_one_process_with_ema(ddp_run, tmp_path, monkeypatch):
    """torchrun 2 ranks x batch 2 (gloo) = 1 process x batch 4 within 1e-5, EMA included; rank 0 alone logs,
    validates and writes; iterations per epoch count global batches."""
    root, out = ddp_run
    exp = root / EXP
    assert out.count("trained tiny_espcn_x2_ddp") == 1 and "2 processes x batch 2" in out
    (log,) = exp.glob("train_*.log")  # one log: rank 0's
    text = log.read_text()
    assert "launcher pytorch, backend gloo, 2 process(es)" in text
    assert "Batch size: 4 (2 processes x 2)" in text and "Require iter number per epoch: 15" in text
    assert text.count("Validation tiny_val") == 1 and "Network: DistributedDataParallel - ESPCN" in text
    for it in (5, 10, 15, 20):
        assert (exp / "training_states" / f"{it}.state").is_file()
    assert not list(exp.rglob("*.part"))
    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    single = one_process(tmp_path)
    for name in ("net_g_10.pth", "net_g_latest.pth"):
        assert_same_weights(single / name, exp / "models" / name, atol=1e-5)
    assert set(weights(exp / "models" / "net_g_latest.pth")) == {"params", "params_ema"}


def test_two_slurm_ranks_match_one_process_without_ema(tmp_path, monkeypatch):
    """--launcher slurm: RANK / WORLD_SIZE / MASTER_ADDR (parsed from SLURM_NODELIST) from SLURM's variables; 2 ranks
    x batch 2 without EMA = 1 process x batch 4 within 1e-5."""
    make_tiny_data(tmp_path)
    no_ema = ["--set", "train.ema_decay=0", "--set", "val.val_freq=1000"]
    outs = srun_like(tmp_path, tmp_path / "slurm", *no_ema)
    assert "2 processes x batch 2" in outs[0] and outs[1] == ""  # rank 0 reports
    monkeypatch.chdir(tmp_path)
    single = one_process(tmp_path / "one", "train.ema_decay=0", "val.val_freq=1000")
    got = tmp_path / "slurm" / EXP / "models" / "net_g_latest.pth"
    assert set(weights(got)) == {"params"}
    assert_same_weights(single / "net_g_latest.pth", got, atol=1e-5)


# ------------------------------------------------------------------------------------------------ resume


def test_killed_rank_resumes_to_the_uninterrupted_weights(ddp_run, tmp_path):
    """Rank 1 SIGKILLs itself at iteration 13 (checkpoint 10 written); torchrun ends the group; --resume under
    torchrun continues from 10 on both ranks and ends with the uninterrupted run's weights, exactly."""
    from restore.train.checkpoint import latest_state

    make_tiny_data(tmp_path)
    wrapper = tmp_path / "kill_rank.py"
    wrapper.write_text(KILL_WRAPPER)
    killed = torchrun(tmp_path, script=wrapper, env=child_env(KILL_AT="13"), check=False)
    assert killed.returncode != 0 and "Signal 9 (SIGKILL)" in killed.stderr, killed.stderr[-3000:]
    exp = tmp_path / EXP
    assert latest_state(exp).name == "10.state" and not (exp / "models" / "net_g_latest.pth").exists()
    out = torchrun(tmp_path, "--resume").stdout
    assert "iterations 10 -> 20 (resumed from" in out
    logs = sorted(exp.glob("train_*.log"), key=lambda p: p.stat().st_mtime)
    assert "epoch 0, iter 10 (batch 10 of the epoch)" in logs[-1].read_text()
    ref = ddp_run[0] / EXP / "models"
    for name in ("net_g_15.pth", "net_g_latest.pth"):
        assert_same_weights(ref / name, exp / "models" / name, atol=0)


def test_two_rank_checkpoint_resumes_in_one_process(ddp_run, tmp_path, monkeypatch):
    """Resume positions count global batches: the 2 x 2 run's state at 10, resumed by one process with batch 4,
    ends within 1e-5 of the 2-rank run (same batches; float summation order differs)."""
    import shutil

    root = ddp_run[0]
    exp = tmp_path / EXP
    shutil.copytree(root / EXP, exp)
    for it in (15, 20):
        (exp / "training_states" / f"{it}.state").unlink()
    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    from restore.train.loop import train

    res = train(OPT, root=tmp_path, resume=True, overrides=["datasets.train.batch_size_per_gpu=4"])
    assert (res.start_iter, res.end_iter, res.world_size) == (10, 20, 1)
    assert_same_weights(root / EXP / "models" / "net_g_latest.pth", exp / "models" / "net_g_latest.pth", atol=1e-5)


# ------------------------------------------------------------------------------------------ sampler, env


@pytest.mark.parametrize(("world", "per_rank", "start"), [(2, 2, 0), (3, 2, 6), (2, 3, 12), (1, 4, 8)])
def test_ranks_split_the_global_batch_sequence(world, per_rank, start):
    """Global batch k = positions k*G .. k*G+G-1 (G = world x per_rank); rank r takes the r-th slice of per_rank:
    the ranks' batches side by side are one process's batches of G, from any start, and the tail is dropped."""
    from restore.train.data import ResumableSampler

    g = world * per_rank
    one = ResumableSampler(7, ratio=5, seed=3, batch_size=g)
    one.set_epoch(2, start=start)
    items = list(one)
    assert len(items) == len(one) == (35 // g - start // g) * g
    expected = [items[i:i + g] for i in range(0, len(items), g)]
    ranks = []
    for r in range(world):
        s = ResumableSampler(7, ratio=5, seed=3, batch_size=per_rank, rank=r, world_size=world)
        s.set_epoch(2, start=start)
        got = list(s)
        assert len(got) == len(s)
        ranks.append([got[i:i + per_rank] for i in range(0, len(got), per_rank)])
    assert [sum(parts, []) for parts in zip(*ranks, strict=True)] == expected
    plain = ResumableSampler(7, ratio=5, seed=3)  # no batch size: every position, as before
    plain.set_epoch(2, start=start)
    assert items == list(plain)[: len(items)]
    with pytest.raises(ValueError, match="multiple of the global batch"):
        s.set_epoch(0, start=g + 1)


def test_slurm_node_lists():
    from restore.train.dist import DistributedError, expand_nodelist

    assert expand_nodelist("node[01-03,07],gpu1") == ["node01", "node02", "node03", "node07", "gpu1"]
    assert expand_nodelist("a[1-2]-ib[0-1]") == ["a1-ib0", "a1-ib1", "a2-ib0", "a2-ib1"]
    assert expand_nodelist("127.0.0.1") == ["127.0.0.1"]
    with pytest.raises(DistributedError, match="cannot read"):
        expand_nodelist("node[a-b]")


def test_slurm_variables_become_torchrun_ones(tmp_path, monkeypatch):
    from restore.train import dist

    monkeypatch.setattr(dist.shutil, "which", lambda _name: None)  # no scontrol: our parser
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_NODELIST": "gpu[03-04]"}
    assert dist.slurm_env(env, num_gpus=4) == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                               "MASTER_ADDR": "gpu03", "MASTER_PORT": "29500"}
    env.update(SLURM_LOCALID="3", MASTER_PORT="12345", SLURM_STEP_NODELIST="gpu[07-08]")
    got = dist.slurm_env(env, num_gpus=0)
    assert (got["LOCAL_RANK"], got["MASTER_PORT"], got["MASTER_ADDR"]) == ("3", "12345", "gpu07")
    assert dist.slurm_env(env, num_gpus=1)["LOCAL_RANK"] == "0"  # --gpus-per-task=1: each task sees its one GPU
    fake = tmp_path / "scontrol"  # with scontrol: its first host name
    fake.write_text("#!/bin/sh\necho head-node\necho other\n")
    fake.chmod(0o755)
    assert dist.first_host("whatever[1-2]", scontrol=str(fake)) == "head-node"
    with pytest.raises(dist.DistributedError, match="SLURM_NTASKS.*srun"):
        dist.slurm_env({"SLURM_PROCID": "0", "SLURM_NODELIST": "n1"}, num_gpus=0)


def error_lines(stderr: str) -> list[str]:
    """The CLI's error lines (BasicSR's log handler may also write to stderr, depending on test order)."""
    return [line for line in stderr.splitlines() if line.startswith("restore: error:")]


def test_launchers_without_their_environment_are_one_line_errors(tmp_path, monkeypatch, capsys):
    from restore.cli import main

    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    for launcher, hint in (("pytorch", "torchrun --nproc-per-node"), ("slurm", "srun")):
        assert main(["train", "-opt", str(OPT), "--root", str(tmp_path), "--launcher", launcher]) == 2
        (err,) = error_lines(capsys.readouterr().err)
        assert hint in err, err


def test_batchnorm_network_on_cpu_ranks_is_refused(tmp_path, monkeypatch, capsys):
    """DnCNN with BatchNorm under gloo (here a one-rank group in this process): one line, and the group is left."""
    from restore.cli import main

    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(free_port()), "GLOO_SOCKET_IFNAME": "lo"}.items():
        monkeypatch.setenv(k, v)
    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "-opt", str(TINY / "dncnn_gray_blind.yml"), "--root", str(tmp_path), "--launcher", "pytorch",
            "--set", "num_gpu=0"]
    assert main(argv) == 2
    (err,) = error_lines(capsys.readouterr().err)
    assert "SyncBatchNorm runs on CUDA only" in err, err
    assert not torch.distributed.is_initialized()


def test_plain_batchnorm_undoes_sync_batchnorm():
    """The EMA copy and saved files hold plain BatchNorm with the SyncBatchNorm's parameters and statistics."""
    from restore.archs.dncnn import DnCNN
    from restore.train.dist import has_batchnorm, plain_batchnorm

    torch.manual_seed(0)
    net = DnCNN(in_channels=1, num_layers=5, num_features=8, batch_norm=True)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 1, 12, 12)
    ref, sd = net.eval()(x), net.state_dict()
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    back = plain_batchnorm(synced)
    assert has_batchnorm(back) and not any(isinstance(m, torch.nn.SyncBatchNorm) for m in back.modules())
    assert back.state_dict().keys() == sd.keys() and all(torch.equal(back.state_dict()[k], sd[k]) for k in sd)
    assert torch.equal(back.eval()(x), ref)


@pytest.mark.gpu
def test_syncbatchnorm_on_two_gpus_matches_one(tmp_path, monkeypatch):
    """CUDA only (NCCL, one GPU per rank): DnCNN with BatchNorm under 2 ranks x batch 2 trains with SyncBatchNorm
    (statistics over the global batch of 4), close to one GPU with batch 4."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    from restore.train.loop import train

    make_tiny_data(tmp_path)
    opt = TINY / "dncnn_gray_blind.yml"
    common = ["--set", "num_gpu=1", "--set", "train.total_iter=6", "--set", "val.val_freq=1000", "--set",
              "logger.save_checkpoint_freq=6", "--set", "train.amp=false"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "restore", "train", "-opt", str(opt), "--root",
           str(tmp_path / "ddp"), "--launcher", "pytorch", "--set", "datasets.train.batch_size_per_gpu=2", *common]
    res = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert res.returncode == 0, res.stderr[-4000:]
    monkeypatch.chdir(tmp_path)
    one = train(opt, root=tmp_path / "one", overrides=[c for c in common if c != "--set"])
    name = "net_g_latest.pth"
    exp = tmp_path / "ddp" / "experiments" / one.experiment.name / "models"
    assert_same_weights(one.experiment / "models" / name, exp / name, atol=1e-4)
