"""The training loop behind ``restore train``: BasicSR's ``train_pipeline``, step for step, with exact resume.

Same sequence as ``basicsr/train.py``: parse options, make the experiment folders (an existing one is
archived, BasicSR's ``mkdir_and_rename``), root logger + env info + options in the log, tensorboard,
``build_dataset`` / ``build_dataloader`` with a prefetcher (``CPUPrefetcher`` / ``CUDAPrefetcher``),
``build_model``, then per iteration ``update_learning_rate`` (warm-up) -> ``feed_data`` ->
``optimize_parameters`` -> ``MessageLogger`` every ``print_freq`` -> validation every ``val_freq`` ->
checkpoint every ``save_checkpoint_freq``; at the end ``net_g_latest.pth`` and a last validation.

What BasicSR's pipeline cannot do, and this loop does:

* resume on CPU (BasicSR maps resume states to ``cuda``) from ``<root>/experiments/<name>`` (BasicSR's
  ``--auto_resume`` looks under the working directory) and *exactly*: the state records the position in
  the epoch, and :class:`restore.train.data.ResumableSampler` restarts there with the same per-sample
  seeds, so a resumed run reproduces the uninterrupted run's batches, RNG draws and weights;
* validation runs *before* the checkpoint of the same iteration, so the saved best metrics include it;
  the best network (first metric of the first validation set) is kept as ``models/net_g_best.pth``;
* every file is written atomically (:mod:`restore.train.checkpoint`), and a final checkpoint is written
  at ``total_iter`` so a longer run can continue from it (``--resume --set train.total_iter=...``);
* distributed data parallel under ``torchrun`` / ``srun`` (``launcher``, :mod:`restore.train.dist`): one global
  batch sequence split by rank (``batch_size_per_gpu`` per rank; iterations and resume positions count global
  batches), rank 0 alone decides what to resume, logs, validates and writes while the others wait, and the ranks
  check at each checkpoint that they hold the same weights and EMA.
"""

from __future__ import annotations

import datetime
import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from restore.train import checkpoint, dist
from restore.train.options import Options, OptionsError, load_options

LOGGER_NAME = "basicsr"
EXP_FOLDERS = ("experiments_root", "models", "training_states", "log", "visualization")  # path.* folders


@dataclass
class TrainResult:
    experiment: Path
    start_iter: int
    end_iter: int
    resumed_from: Path | None
    log_file: Path
    seconds: float
    iters_per_second: float
    best: dict[str, Any]
    rank: int = 0  # this process's rank; rank 0 wrote the files
    world_size: int = 1
    batch: int = 0  # global batch (batch_size_per_gpu x world_size)


def resolve_num_gpu(opts: Options) -> int:
    have = torch.cuda.is_available()
    if opts.num_gpu == "auto":
        return 1 if have else 0
    if opts.num_gpu == 1 and not have:
        raise OptionsError(f"{opts.source}: num_gpu: 1 but no CUDA device is available (use 0 or auto)")
    return int(opts.num_gpu)


def _setup_logger(log_file: Path) -> tuple[logging.Logger, logging.Handler]:
    """BasicSR's root logger, with this run's log file (re-pointed when several runs share a process)."""
    from basicsr.utils import get_root_logger

    logger = get_root_logger(logger_name=LOGGER_NAME, log_level=logging.INFO)
    for h in list(logger.handlers):
        if isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
            h.close()
    handler = logging.FileHandler(log_file, "a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, handler


def train(opt_path: str | Path, *, root: str | Path = ".", resume: bool = False,
          overrides: Sequence[str] = (), launcher: str = "none") -> TrainResult:
    """Run (or resume) the training described by ``opt_path``; outputs in ``root/experiments/<name>``.

    ``launcher`` (``none``, ``pytorch`` under torchrun, ``slurm`` under srun): this process is one rank of a
    DistributedDataParallel run (:mod:`restore.train.dist`); ``batch_size_per_gpu`` is per rank, and rank 0 alone
    logs, validates and writes checkpoints."""
    opts = load_options(opt_path, overrides)
    from restore.train.registry import register_all

    register_all()
    num_gpu = resolve_num_gpu(opts)
    ctx = dist.init(launcher, num_gpu=num_gpu)
    try:
        return _run(opts, Path(opt_path), ctx, num_gpu=num_gpu, root=Path(root).resolve(), resume=resume,
                    overrides=overrides)
    finally:
        ctx.close()


@dataclass
class _Start:
    """What rank 0 decides before training and every rank uses."""

    state_path: Path | None
    log_file: Path
    seed: int


def _prepare(opts: Options, opt_path: Path, bopt: dict[str, Any], *, resume: bool) -> _Start:
    """Rank 0: pick the state to resume, make (or archive, as BasicSR does) the experiment folders, name the log
    file and draw the seed."""
    from basicsr.utils import get_time_str, make_exp_dirs

    exp = Path(bopt["path"]["experiments_root"])
    state_path: Path | None = None
    if resume:
        state_path = checkpoint.latest_state(exp)
    elif opts.path.resume_state:
        state_path = Path(opts.path.resume_state)
        if not state_path.is_file():
            raise OptionsError(f"{opts.source}: path.resume_state: {state_path} does not exist")
    if state_path is None:  # archives an existing folder, as BasicSR does; BasicSR would also makedirs every
        # other path.* value it does not know (e.g. path.resample_tail_g), so it sees only the folders
        folders = {k: v for k, v in bopt["path"].items() if k in EXP_FOLDERS}
        make_exp_dirs({**bopt, "path": folders})
    for key in ("models", "training_states", "visualization"):
        Path(bopt["path"][key]).mkdir(parents=True, exist_ok=True)
    if state_path is None:
        shutil.copy(opt_path, exp / opt_path.name)
    log_file = exp / f"train_{opts.name}_{get_time_str()}.log"
    n = 1
    while log_file.exists():  # two runs within a second (e.g. a quick resume)
        log_file = exp / f"train_{opts.name}_{get_time_str()}_{n}.log"
        n += 1
    seed = opts.manual_seed if opts.manual_seed is not None else random.randint(1, 10000)
    if seed < 0:
        raise OptionsError(f"{opts.source}: manual_seed: must be >= 0, got {seed}")
    return _Start(state_path=state_path, log_file=log_file, seed=seed)


def _quiet_logger() -> logging.Logger:
    """Ranks other than 0: BasicSR's root logger at ERROR, no file (BasicSR's ``get_root_logger`` on rank > 0)."""
    from basicsr.utils import get_root_logger

    logger = get_root_logger(logger_name=LOGGER_NAME)
    logger.setLevel(logging.ERROR)
    return logger


def _run(opts: Options, opt_path: Path, ctx: dist.DistContext, *, num_gpu: int, root: Path, resume: bool,
         overrides: Sequence[str]) -> TrainResult:
    """:func:`train` once this process has its place (``ctx``)."""
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
    from basicsr.models import build_model
    from basicsr.utils import AvgTimer, MessageLogger, get_env_info, init_tb_logger, set_random_seed
    from basicsr.utils.options import dict2str

    from restore.train.data import ResumableSampler

    bopt = opts.to_basicsr(root, num_gpu=num_gpu, dist=ctx.enabled, rank=ctx.rank, world_size=ctx.world_size)
    exp = Path(bopt["path"]["experiments_root"])
    start = ctx.on_main(lambda: _prepare(opts, opt_path, bopt, resume=resume))
    state_path, log_file, seed = start.state_path, start.log_file, start.seed
    ctx.all_ok(state_path is None or state_path.is_file(),
               f"rank(s) {{ranks}} cannot read {state_path}: every rank needs the experiment folder (a shared "
               "filesystem across nodes)")
    handler: logging.Handler | None = None
    if ctx.is_main:
        logger, handler = _setup_logger(log_file)
    else:
        logger = _quiet_logger()
    tb_logger = None
    try:
        logger.info(get_env_info())
        if ctx.enabled:
            logger.info(f"Distributed: launcher {ctx.launcher}, backend {ctx.backend}, {ctx.world_size} process(es)")
        if overrides:
            logger.info(f"Overrides: {' '.join(overrides)}")
        logger.info(dict2str(bopt))
        if resume and state_path is None:
            logger.info(f"--resume: no training state under {exp / 'training_states'}; starting from scratch")
        # the same seed on every rank: samples draw from their own seeds (train.data), so the global RNGs serve the
        # network's initialisation and loader base seeds only, and rank 0's saved RNG state is every rank's
        bopt["manual_seed"] = seed
        logger.info(f"Random seed: {seed}")
        set_random_seed(seed)
        if num_gpu:
            torch.backends.cudnn.benchmark = True
        if opts.logger.use_tb_logger and ctx.is_main:
            tb_logger = init_tb_logger(log_dir=str(exp / "tb_logger"))

        # ---- data: one global batch sequence, rank r takes slice r of every global batch (ResumableSampler)
        dopt = bopt["datasets"]["train"]
        train_set = build_dataset(dopt)
        per_rank = dopt["batch_size_per_gpu"]
        sampler = ResumableSampler(len(train_set), ratio=dopt["dataset_enlarge_ratio"], seed=seed,
                                   shuffle=dopt["use_shuffle"], batch_size=per_rank, rank=ctx.rank,
                                   world_size=ctx.world_size)
        loader = build_dataloader(train_set, dopt, num_gpu=num_gpu, dist=ctx.enabled, sampler=sampler, seed=seed)
        batch = per_rank * ctx.world_size  # global batch: iterations and resume positions count these
        iters_per_epoch = sampler.total // batch
        if iters_per_epoch < 1:
            raise OptionsError(f"{opts.source}: datasets.train: {sampler.total} samples per epoch is less than one "
                               f"batch of {batch} (raise dataset_enlarge_ratio or lower batch_size_per_gpu)")
        total_iter = opts.train.total_iter
        split = f" ({ctx.world_size} processes x {per_rank})" if ctx.world_size > 1 else ""
        logger.info(f"Training statistics:\n\tNumber of train images: {len(train_set)}\n\tDataset enlarge ratio: "
                    f"{dopt['dataset_enlarge_ratio']}\n\tBatch size: {batch}{split}\n\tRequire iter number per "
                    f"epoch: {iters_per_epoch}\n\tTotal epochs: {math.ceil(total_iter / iters_per_epoch)}; "
                    f"iters: {total_iter}.")
        val_sets = []
        if ctx.is_main:
            for phase, vopt in bopt["datasets"].items():
                if phase.startswith("val"):
                    val_sets.append(build_dataset(vopt))
                    logger.info(f"Number of val images in {vopt['name']}: {len(val_sets[-1])}")
        has_val = opts.val is not None and any(p.startswith("val") for p in bopt["datasets"])

        # ---- model (+ resume: every rank loads the file rank 0 chose)
        model = build_model(bopt)
        current_iter, epoch, batch_in_epoch = 0, 0, 0
        pending_rng = None
        if state_path is not None:
            state = checkpoint.load(state_path)
            model.resume_checkpoint(state, state_path)
            current_iter, epoch, batch_in_epoch = state["iter"], state["epoch"], state["batch_in_epoch"]
            pending_rng = state["rng"]
            logger.info(f"Resuming training from {state_path}: epoch {epoch}, iter {current_iter} "
                        f"(batch {batch_in_epoch} of the epoch); networks, EMA, optimizer, scheduler, "
                        f"AMP scaler and RNG states restored.")
        start_iter = current_iter

        msg_logger = MessageLogger(bopt, current_iter, tb_logger)
        if dopt.get("prefetch_mode") == "cuda":
            prefetcher: Any = CUDAPrefetcher(loader, bopt)
        else:
            prefetcher = CPUPrefetcher(loader)
        save_freq = opts.logger.save_checkpoint_freq
        val_freq = opts.val.val_freq if has_val else None
        warmup = opts.train.warmup_iter
        logger.info(f"Start training from epoch: {epoch}, iter: {current_iter}")
        data_timer, iter_timer = AvgTimer(), AvgTimer()
        t_start = time.time()
        last_saved = current_iter if state_path is not None else -1
        last_val = -1

        def validate(it: int) -> None:  # rank 0
            for k, vs in enumerate(val_sets):
                model.validation(vs, it, tb_logger, opts.val.save_img)
                if k == 0 and _improved(model, vs.name, it):
                    path = model.save_network_file("best")
                    logger.info(f"Saved best network (iter {it}) to {path}")

        def save(it: int) -> None:  # rank 0
            # position of the *next* batch
            ep, pos = (epoch + 1, 0) if batch_in_epoch >= iters_per_epoch else (epoch, batch_in_epoch)
            model.save_checkpoint(epoch=ep, current_iter=it, batch_in_epoch=pos)

        def write(it: int, *, do_val: bool, do_save: bool, latest: bool = False) -> None:
            """Validation and checkpoints of iteration ``it``: rank 0 writes while the others wait (``on_main``
            broadcasts its outcome, so an error there stops every rank)."""
            nonlocal last_val, last_saved
            if do_save:
                ctx.check_same(model.replicated_tensors(), "weights")

            def on_main() -> None:
                if do_val:
                    validate(it)
                if do_save:
                    logger.info("Saving models and training states.")
                    save(it)
                if latest:
                    logger.info("Save the latest model.")
                    model.save_network_file("latest")

            ctx.on_main(on_main)
            last_val = it if do_val else last_val
            last_saved = it if do_save else last_saved

        while current_iter < total_iter:
            sampler.set_epoch(epoch, start=batch_in_epoch * batch)
            # A new loader iterator draws its base seed from torch's RNG. The saved state was taken after
            # that draw when it is mid-epoch and before it at an epoch boundary: restore accordingly.
            if pending_rng is not None and batch_in_epoch == 0:
                checkpoint.restore_rng(pending_rng)
                pending_rng = None
            prefetcher.reset()
            if pending_rng is not None:
                checkpoint.restore_rng(pending_rng)
                pending_rng = None
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()
            while train_data is not None and current_iter < total_iter:
                data_timer.record()
                current_iter += 1
                batch_in_epoch += 1
                model.update_learning_rate(current_iter, warmup_iter=warmup)
                model.feed_data(train_data)
                model.optimize_parameters(current_iter)
                iter_timer.record()
                if current_iter == start_iter + 1:
                    msg_logger.reset_start_time()
                if current_iter % opts.logger.print_freq == 0:
                    log_vars = {"epoch": epoch, "iter": current_iter, "lrs": model.get_current_learning_rate(),
                                "time": iter_timer.get_avg_time(), "data_time": data_timer.get_avg_time()}
                    log_vars.update(model.get_current_log())
                    msg_logger(log_vars)
                do_val = bool(val_freq) and current_iter % val_freq == 0
                do_save = current_iter % save_freq == 0
                if do_val or do_save:
                    write(current_iter, do_val=do_val, do_save=do_save)
                data_timer.start()
                iter_timer.start()
                if batch_in_epoch >= iters_per_epoch:
                    break
                train_data = prefetcher.next()
            if batch_in_epoch >= iters_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0

        seconds = time.time() - t_start
        done = current_iter - start_iter
        logger.info(f"End of training. Time consumed: {datetime.timedelta(seconds=int(seconds))} "
                    f"({done} iterations, {done / seconds if seconds > 0 else 0.0:.3f} it/s)")
        write(current_iter, do_val=bool(val_freq) and last_val != current_iter and done > 0,
              do_save=last_saved != current_iter, latest=True)
        return TrainResult(experiment=exp, start_iter=start_iter, end_iter=current_iter, resumed_from=state_path,
                           log_file=log_file, seconds=seconds, iters_per_second=done / seconds if seconds > 0 else 0.0,
                           best=getattr(model, "best_metric_results", {}), rank=ctx.rank,
                           world_size=ctx.world_size, batch=batch)
    finally:
        if tb_logger is not None:
            tb_logger.close()
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()


def _improved(model: Any, dataset: str, it: int) -> bool:
    rec = getattr(model, "best_metric_results", {}).get(dataset)
    if not rec:
        return False
    first = next(iter(rec.values()))
    return first["iter"] == it
