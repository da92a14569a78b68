"""Distributed training: launchers, the process group, and what the ranks must agree on (torch only).

``restore train -opt FILE --launcher pytorch`` under ``torchrun`` and ``--launcher slurm`` under ``srun`` start one
process per GPU (or per CPU worker), BasicSR's launcher names and semantics:

* ``pytorch``: ``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``;
* ``slurm``: they are derived from ``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID`` and the first host of the
  step's node list (``scontrol show hostnames``, or :func:`expand_nodelist` where ``scontrol`` is missing);
  ``MASTER_PORT`` from the environment or 29500;
* ``none`` (the default): one process, no process group.

The backend is NCCL when the run uses CUDA (``num_gpu`` 1 or auto with a GPU; each process takes the GPU
``LOCAL_RANK``) and gloo on the CPU. Networks with BatchNorm train with ``SyncBatchNorm`` under CUDA; PyTorch's
SyncBatchNorm has no CPU implementation, so a BatchNorm network under gloo is refused (:func:`sync_batchnorm`).

:class:`DistContext` is what the loop asks: rank 0 decides (which state to resume, the seed, the log file) and
broadcasts (:meth:`DistContext.on_main`), ``barrier`` after rank 0 writes, and :meth:`DistContext.check_same`
verifies at each checkpoint that every rank holds the same weights and EMA. Without a launcher every method is a
no-op on one process.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

LAUNCHERS = ("none", "pytorch", "slurm")
DEFAULT_PORT = 29500  # torch.distributed's default, BasicSR's for SLURM
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SLURM_VARS = ("SLURM_PROCID", "SLURM_NTASKS")
NODELIST_VARS = ("SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST")
T = TypeVar("T")


class DistributedError(ValueError):
    """A launch or distributed-training condition the user can fix; one line."""


# ------------------------------------------------------------------------------------------------- SLURM


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compact host list as host names: ``node[01-03,07],gpu1`` -> node01 node02 node03 node07 gpu1
    (zero padding kept; several bracket groups in one name expand as a product)."""
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        hosts.extend(_expand_one(item))
    return hosts


def _split_top_level(text: str) -> list[str]:
    """Split at the commas that are outside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        depth += (ch == "[") - (ch == "]")
        cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p]


def _expand_one(name: str) -> list[str]:
    """One host expression: ``prefix[ranges]rest`` expanded, ``rest`` recursively."""
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", name)
    if m is None:
        if "[" in name or "]" in name:
            raise DistributedError(f"SLURM node list: cannot read {name!r}")
        return [name]
    prefix, ranges, rest = m.groups()
    tails = _expand_one(rest) if rest else [""]
    out = []
    for r in ranges.split(","):
        lo, _, hi = r.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise DistributedError(f"SLURM node list: cannot read the range {r!r} in {name!r}")
        width = len(lo)
        for n in range(int(lo), int(hi or lo) + 1):
            out.extend(f"{prefix}{n:0{width}d}{t}" for t in tails)
    return out


def first_host(nodelist: str, *, scontrol: str | None = None) -> str:
    """The first host of a SLURM node list: ``scontrol show hostnames`` when it is installed, else
    :func:`expand_nodelist`."""
    exe = scontrol if scontrol is not None else shutil.which("scontrol")
    if exe:
        try:
            out = subprocess.run([exe, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30,
                                 check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass  # fall back to our parser
    hosts = expand_nodelist(nodelist)
    if not hosts:
        raise DistributedError(f"SLURM node list {nodelist!r} names no host")
    return hosts[0]


def slurm_env(environ: Mapping[str, str], *, num_gpus: int) -> dict[str, str]:
    """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` for an ``srun`` task (BasicSR's
    ``_init_dist_slurm``). ``LOCAL_RANK``: ``SLURM_LOCALID`` (else ``SLURM_PROCID``) modulo the GPUs this task sees,
    so both all GPUs visible (``--gpus-per-node``) and one per task (``--gpus-per-task=1``) work."""
    missing = [k for k in SLURM_VARS if k not in environ]
    nodelist = next((environ[k] for k in NODELIST_VARS if environ.get(k)), None)
    if missing or nodelist is None:
        what = ", ".join([*missing, *([] if nodelist else ["SLURM_NODELIST"])])
        raise DistributedError(f"--launcher slurm: {what} not set (start it with srun ... restore train -opt FILE "
                               "--launcher slurm)")
    proc_id = _int_var(environ, "SLURM_PROCID")
    local = _int_var(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else proc_id
    if num_gpus:
        local %= num_gpus
    return {"RANK": str(proc_id), "WORLD_SIZE": str(_int_var(environ, "SLURM_NTASKS")), "LOCAL_RANK": str(local),
            "MASTER_ADDR": first_host(nodelist), "MASTER_PORT": environ.get("MASTER_PORT") or str(DEFAULT_PORT)}


def _int_var(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise DistributedError(f"{name}={environ[name]!r} is not an integer") from None


# ---------------------------------------------------------------------------------------------- context


@dataclass
class DistContext:
    """This process's place in the run; one process (``launcher='none'``) when not distributed."""

    launcher: str = "none"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """A process group is up (a launcher was given, even with one process)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Every rank waits here (after rank 0 wrote files the others may read next)."""
        if self.enabled:
            torch.distributed.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (a picklable value)."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 and its result broadcast; when it raises there, every rank raises (rank 0 its own
        exception, the others a :class:`DistributedError` with its message) instead of waiting for rank 0."""
        if not self.enabled:
            return fn()
        result: Any = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others heard of it
                error = e
        msg = None if error is None else (str(error).splitlines() or [type(error).__name__])[0]
        result, msg = self.broadcast((result, msg))
        if error is not None:
            raise error
        if msg is not None:
            raise DistributedError(f"rank 0 stopped: {msg}")
        return result

    def all_ok(self, ok: bool, message: str) -> None:
        """Raise :class:`DistributedError` on every rank when ``ok`` is false on any (``message`` gets the ranks)."""
        if not self.enabled:
            if not ok:
                raise DistributedError(message.format(ranks="0"))
            return
        flags = torch.zeros(self.world_size, dtype=torch.int32, device=self.device)
        flags[self.rank] = int(not ok)
        torch.distributed.all_reduce(flags)
        bad = [str(r) for r, f in enumerate(flags.tolist()) if f]
        if bad:
            raise DistributedError(message.format(ranks=", ".join(bad)))

    def check_same(self, tensors: Mapping[str, torch.Tensor], what: str) -> None:
        """Every rank holds the same ``tensors`` (float64 sum and sum of squares of each, gathered): DDP keeps the
        weights identical and the EMA follows them; a difference is a bug, reported on every rank."""
        if not self.enabled or self.world_size == 1 or not tensors:
            return
        names = list(tensors)
        fp = torch.stack([torch.stack([t.detach().double().sum(), t.detach().double().square().sum()])
                          for t in tensors.values()]).to(self.device)
        gathered = [torch.empty_like(fp) for _ in range(self.world_size)]
        torch.distributed.all_gather(gathered, fp)
        for r, other in enumerate(gathered[1:], start=1):
            diff = (other != gathered[0]).any(dim=1).nonzero()
            if len(diff):
                raise DistributedError(f"rank {r}'s {what} {names[int(diff[0])]} differs from rank 0's "
                                       "(the ranks diverged)")

    def close(self) -> None:
        """Leave the process group (each rank, at the end of the run or on an error)."""
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init(launcher: str, *, num_gpu: int, environ: MutableMapping[str, str] | None = None,
         timeout_s: float = 1800.0) -> DistContext:
    """Join the process group ``launcher`` describes (``none``: no group). ``num_gpu`` (0 or 1, per process) picks
    gloo on the CPU or NCCL on the GPU ``LOCAL_RANK``. For ``slurm`` the torchrun variables are derived from SLURM's
    and written to ``environ`` (``os.environ``), as BasicSR does."""
    if launcher not in LAUNCHERS:
        raise DistributedError(f"--launcher: {launcher!r} is not one of {', '.join(LAUNCHERS)}")
    if launcher == "none":
        return DistContext()
    env = os.environ if environ is None else environ
    n_cuda = torch.cuda.device_count() if num_gpu else 0
    if launcher == "slurm":
        env.update(slurm_env(env, num_gpus=n_cuda))
    missing = [k for k in TORCHRUN_VARS if not env.get(k)]
    if missing:
        raise DistributedError(f"--launcher pytorch: {', '.join(missing)} not set (start it with torchrun "
                               "--nproc-per-node N -m restore train -opt FILE --launcher pytorch)")
    rank, world = _int_var(env, "RANK"), _int_var(env, "WORLD_SIZE")
    local = _int_var(env, "LOCAL_RANK") if env.get("LOCAL_RANK") else 0
    device = torch.device("cpu")
    if num_gpu:
        if local >= n_cuda:
            raise DistributedError(f"LOCAL_RANK {local} but this node has {n_cuda} CUDA device(s): start one process "
                                   "per GPU (--nproc-per-node / --ntasks-per-node)")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    backend = "nccl" if num_gpu else "gloo"
    torch.distributed.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(launcher=launcher, rank=rank, world_size=world, local_rank=local, backend=backend,
                       device=device)


# -------------------------------------------------------------------------------------------- BatchNorm


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def sync_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` with its BatchNorm layers as ``SyncBatchNorm`` (statistics over the global batch) on CUDA; on the CPU
    a BatchNorm network is refused: PyTorch's SyncBatchNorm runs on CUDA only, and per-rank statistics would
    train another network than one process does."""
    if not has_batchnorm(net):
        return net
    if device.type != "cuda":
        raise DistributedError(f"{type(net).__name__} has BatchNorm layers, which need SyncBatchNorm under several "
                               "processes, and PyTorch's SyncBatchNorm runs on CUDA only: train it on GPUs, in one "
                               "process (--launcher none), or without BatchNorm")
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def plain_batchnorm(net: nn.Module) -> nn.Module:
    """``net`` with every ``SyncBatchNorm`` turned back into a ``BatchNorm2d`` holding the same parameters and
    statistics (in place; what the EMA copy and exported weights use: no process group needed to run them)."""
    if isinstance(net, nn.SyncBatchNorm):
        bn = nn.BatchNorm2d(net.num_features, net.eps, net.momentum, net.affine, net.track_running_stats)
        ref = next(iter([*net.parameters(), *net.buffers()]), None)
        if ref is not None:
            bn = bn.to(ref.device)
        bn.load_state_dict(net.state_dict())
        bn.train(net.training)
        return bn
    for name, child in net.named_children():
        new = plain_batchnorm(child)
        if new is not child:
            setattr(net, name, new)
    return net
