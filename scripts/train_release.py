"""Train the weights shipped in ``restore/weights/`` on a CPU budget, resumably.

Each stage is one ``restore train -opt options/train/<file>.yml --resume --set ...`` run: the option file
is the recipe, the ``--set`` overrides below are the budget this machine could give it (fewer iterations,
smaller patches or batches, a cosine schedule fitted to the shorter run, warm starts from an earlier stage).
The overrides are recorded in the shipped manifest by ``scripts/ship_weights.py``, so every shipped file
can be reproduced with exactly the command that made it.

Stages run in queues; run one queue per core so they share a 2-core machine fairly::

    OMP_NUM_THREADS=1 python scripts/train_release.py --queue sr &
    OMP_NUM_THREADS=1 python scripts/train_release.py --queue fast &

A queue can be killed at any moment and re-run: every stage resumes from its latest training state, and a
stage that already reached its last iteration is skipped. ``--list`` prints the plan.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from prepare_extra_data import OUT as EXTRA_PHOTOS
from prepare_extra_data import WALLPAPERS_OUT, prepare_wallpapers
from prepare_extra_data import prepare as prepare_extra_photos

ROOT = Path(__file__).resolve().parents[1]


def cosine(iters: int, lr: float, *, eta_min: float = 1e-6, warmup: int = 0) -> list[str]:
    return [f"train.total_iter={iters}", f"train.warmup_iter={warmup if warmup else -1}",
            f"train.optim_g.lr={lr}",
            f"train.scheduler={{type: CosineAnnealingRestartLR, periods: [{iters}], restart_weights: [1], "
            f"eta_min: {eta_min:g}}}"]


def every(val: int, ckpt: int) -> list[str]:
    return [f"val.val_freq={val}", f"logger.save_checkpoint_freq={ckpt}", "logger.print_freq=50",
            "logger.use_tb_logger=false"]


def warm_start(name: str, *, strict: bool, key: str = "params_ema") -> list[str]:
    return [f"path.pretrain_network_g=experiments/{name}/models/net_g_latest.pth",
            f"path.strict_load_g={str(strict).lower()}", f"path.param_key_g={key}"]


RELEASES = Path("experiments/_release")  # models as shipped at a commit, extracted from git (see warm_start_release)


def warm_start_release(model: str, commit: str) -> list[str]:
    """Warm start from ``restore/weights/{model}.pth`` as committed at ``commit``, for a chain whose earlier
    experiment folders are gone (they are not committed): ``run_stage`` extracts the file from git and checks it
    against that commit's manifest. The shipped file is the deploy form stored in float16, so this is exact
    only up to that rounding, and only for networks with nothing to fuse (ESPCN, DnCNN without BatchNorm)."""
    return [f"path.pretrain_network_g={RELEASES.as_posix()}/{commit}/{model}.pth", "path.strict_load_g=true",
            "path.param_key_g=params"]


def extract_release(path: Path) -> None:
    """Write ``experiments/_release/<commit>/<model>.pth`` from git, sha256-checked against the manifest there.
    ``<model>.<part>.pth`` (e.g. ``cdncnn_opp_s25.luma.pth``) is one part of a shipped composite
    (``restore.archs.dncnn.OpponentDnCNN``): its ``<part>.*`` tensors, prefix stripped, in float32."""
    if path.is_file():
        return
    commit = path.parent.name
    model, _, sub = path.stem.partition(".")

    def show(rel: str) -> bytes:
        return subprocess.run(["git", "show", f"{commit}:restore/weights/{rel}"], cwd=ROOT, check=True,
                              capture_output=True).stdout

    want = {m["name"]: m["sha256"] for m in json.loads(show("manifest.json"))["models"]}.get(model)
    if want is None:
        raise SystemExit(f"{model} was not shipped at {commit} (not in its restore/weights/manifest.json)")
    blob = show(f"{model}.pth")
    if hashlib.sha256(blob).hexdigest() != want:
        raise SystemExit(f"restore/weights/{model}.pth at {commit} does not match that commit's manifest")
    if sub:
        import io

        import torch

        from restore.archs.dncnn import opponent_part

        sd = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        picked = {k: v.float() if v.is_floating_point() else v for k, v in opponent_part(sd, sub).items()}
        if not picked:
            raise SystemExit(f"restore/weights/{model}.pth at {commit} has no '{sub}.*' tensors")
        buf = io.BytesIO()
        torch.save(picked, buf)
        blob = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_bytes(blob)
    part.replace(path)


def fine_tune(opt: str, iters: int, lr: float, start: str, *, suffix: str = "", extra: tuple[str, ...] = (),
              ckpt: int | None = None) -> Stage:
    """A short denoiser stage (``options/train/{opt}.yml``, experiment ``{opt}{suffix}``) warm-started
    (strictly, same shapes) from ``start``'s final weights; checkpoints every ``ckpt`` (default half the stage)."""
    name = opt + suffix
    return Stage(name, DN_DATA + ([f"name={name}"] if suffix else []) + list(extra) + cosine(iters, lr)
                 + every(iters // 2, ckpt or iters // 2) + warm_start(start, strict=True, key="params"),
                 opt=opt if suffix else None, note=f"warm start: {start}")


def sigma_family(prefix: str, start: str, *, blind_iters: int, blind_every: int, tune_iters: int,
                 suffix: str = "", extra: tuple[str, ...] = (), tune_ckpt: int | None = None) -> list[Stage]:
    """The blind model (depth 17, so it can warm-start from ``start``) and the sigma 15 / 50 fine-tunes, all
    from ``start``'s final weights: ``{prefix}_b``, ``{prefix}_s15``, ``{prefix}_s50`` (each + ``suffix``)."""
    blind_name = f"{prefix}_b{suffix}"
    blind = Stage(blind_name, DN_DATA + ([f"name={blind_name}"] if suffix else []) + list(extra)
                  + ["network_g.num_layers=17"] + cosine(blind_iters, 5e-4) + every(blind_every, 100)
                  + warm_start(start, strict=True, key="params"), opt=f"{prefix}_b" if suffix else None,
                  note=f"depth 17 (not DnCNN-B's 20) so it can warm-start from {start}")
    return [blind] + [fine_tune(f"{prefix}_s{sigma}", tune_iters, 3e-4, start, suffix=suffix, extra=extra,
                                ckpt=tune_ckpt) for sigma in (15, 50)]


@dataclass(frozen=True)
class Stage:
    name: str  # experiment name (== option file stem unless ``opt`` names the file)
    sets: list[str] = field(default_factory=list)
    note: str = ""
    opt: str | None = None

    @property
    def option_file(self) -> str:
        return f"options/train/{self.opt or self.name}.yml"

    @property
    def total_iter(self) -> int:
        return int(next(s.split("=", 1)[1] for s in self.sets if s.startswith("train.total_iter=")))


# BasicSR's EMA has no bias correction: after n iterations it still holds decay**n of the initial weights, so
# short stages warm-start from (and ship_weights.py ships) the raw weights, which a cosine schedule ending
# near zero leaves converged; the EMA is used only where decay**n < 1e-3.
SR_DATA = ["datasets.train.batch_size_per_gpu=16"]
X4_BODY = "warm start: span_tiny_x4 body (upsampler re-initialised)"
X4_BODY_3 = ("warm start: span_tiny_x4_3 (9900 iterations), its x4 sub-pixel tail resampled to the new scale "
             "(path.resample_tail_g)")
ITERS_X23 = 5000
NHWC = "train.channels_last=true"  # session 5 on (scripts/bench_train_step.py: SPAN-tiny x4 1.60x, DnCNN bf16 1.58x)
DN_DATA = ["datasets.train.batch_size_per_gpu=32"]
# from session 4: the option files' three HR folders plus scikit-image's colour photographs
SHARED_TRAIN = "../shared/data/train"
SHARED_SR = [f"{SHARED_TRAIN}/T91", f"{SHARED_TRAIN}/BSD200", f"{SHARED_TRAIN}/SunHays80_HR"]


def dataroot_gt(*folders: str) -> list[str]:
    return [f"datasets.train.dataroot_gt=[{', '.join(folders)}]"]


SR_GT_PLUS = dataroot_gt(*SHARED_SR, EXTRA_PHOTOS.as_posix())
SR_DATA_PLUS = SR_DATA + SR_GT_PLUS
# from session 5: also the eight photographs among Debian's plasma-workspace-wallpapers (halved, PNG)
SR_GT_PLUS2 = dataroot_gt(*SHARED_SR, EXTRA_PHOTOS.as_posix(), WALLPAPERS_OUT.as_posix())

# DSCLoRA's layer table without the sub-pixel tail (which reads SPAN's 255-scaled features)
NO_TAIL_LORA = "{" + ", ".join([f"block_{i}.c{j}_r.eval_conv: [2, 4.0]" for i in range(1, 7) for j in (1, 2, 3)]
                               + ["conv_2.eval_conv: [8, 16.0]"]) + "}"


def dsclora(student: str, scale: int, *, gt_size: int, iters: int = 300, variant: str = "",
            sets: tuple[str, ...] = (), data: tuple[str, ...] = tuple(SR_GT_PLUS)) -> Stage:
    """A DSCLoRA stage (options/train/dsclora_span_tiny_x{scale}.yml) on ``student``'s final raw weights."""
    name = f"dsclora_{student}{variant}"
    return Stage(name, SR_DATA + list(data)
                 + [f"name={name}", f"datasets.train.gt_size={gt_size}", "train.ema_decay=0.99"]
                 + cosine(iters, 2e-4, warmup=20) + every(iters // 2, 50)
                 + warm_start(student, strict=True, key="params") + list(sets),
                 opt=f"dsclora_span_tiny_x{scale}", note=f"DSCLoRA stage on {student} {variant}".strip())


SHIPPED_7 = "037c300"  # the last commit of session 7


def espcn_cycle(name: str, scale: int, *, iters: int, lr: float, start: list[str], note: str,
                val: int = 2500) -> Stage:
    """A cosine cycle of ESPCN x``scale`` (batch 64, NHWC) on the SR photographs, warm-started by ``start``."""
    return Stage(name, SR_GT_PLUS2 + [f"name={name}", "datasets.train.batch_size_per_gpu=64", NHWC]
                 + cosine(iters, lr) + every(val, 1000) + start, opt=f"espcn_x{scale}", note=note)


SHIPPED_8 = "ecb1022"  # the last commit of session 8
COLOR_DATA = SR_GT_PLUS2  # every colour training folder (no test set)


def color_cycle(name: str, opt: str, *, iters: int, lr: float, start: list[str], note: str, batch: int = 32,
                val: int = 1000) -> Stage:
    """A cosine cycle of a colour DnCNN (depth 17) in its deploy form (biased convs, no BatchNorm), NHWC, on every
    colour training folder."""
    return Stage(name, COLOR_DATA + [f"name={name}", f"datasets.train.batch_size_per_gpu={batch}",
                                     "network_g.num_layers=17", "network_g.batch_norm=false", NHWC]
                 + cosine(iters, lr, warmup=100) + every(val, 200) + start, opt=opt, note=note)


SET5_HR = "../shared/data/sr/Set5/HR"
SHIPPED_14 = "7a17976"  # the last commit of session 14
BF16 = "train.amp_dtype=bf16"  # where the CPU has native bf16 (restore.engine.cpu_paths.bf16_convolutions)
ROOT3 = 3**0.5


def opp_part(part: str, sigma: float | None, start: str, *, iters: int, lr: float, suffix: str = "",
             sigma_range: tuple[float, float] | None = None, batch: int = 32, after: str | None = None,
             gt_size: int | None = None, sampling: str | None = None, shipped: str = SHIPPED_8,
             extra: tuple[str, ...] = ()) -> Stage:
    """One gray part of an opponent-colour DnCNN (restore.archs.dncnn.OpponentDnCNN), fine-tuned from the shipped
    gray model ``start`` (deploy form, as shipped at commit ``shipped``) on the ``part`` planes ("luma": mean of R, G,
    B at the colour sigma / sqrt3; "chroma": a chrominance plane at the colour sigma) of every colour training
    folder (+ Train400 for the luminance: a gray photo is its own luminance). ``sigma`` is the colour noise level
    (None with ``sigma_range`` for a blind part). ``after`` names an earlier stage of the same part to continue
    from (its latest raw weights) instead of the shipped ``start``. ``gt_size`` overrides the option file's 40x40
    patches (keep ``batch * gt_size**2`` near 32 * 40**2 for the same pixels per step); ``sampling="area"`` draws
    images in proportion to their size instead of each equally often. ``shipped``: the commit ``start`` is taken
    from; ``start`` may name one part of a shipped composite (``cdncnn_opp_s25.luma``) to continue a chain whose
    experiment folders are gone. ``extra``: more option overrides (``train.amp_dtype=bf16``)."""
    plane = (lambda v: v / ROOT3) if part == "luma" else (lambda v: v)
    tag = f"s{sigma:g}" if sigma is not None else "b"
    name = f"opp_{part}_{tag}{suffix}"
    noise = ([f"datasets.train.sigma={plane(sigma):.4f}"] if sigma is not None else
             ["datasets.train.sigma=~", f"datasets.train.sigma_range=[{plane(sigma_range[0]):.4f}, "
              f"{plane(sigma_range[1]):.4f}]"])
    folders = ([f"{SHARED_TRAIN}/Train400"] if part == "luma" else []) + [*SHARED_SR, EXTRA_PHOTOS.as_posix(),
                                                                        WALLPAPERS_OUT.as_posix()]
    val_sigma = plane(sigma if sigma is not None else 25.0)
    sets = (dataroot_gt(*folders) + noise
            + [f"name={name}", "datasets.train.color=rgb", f"datasets.train.opponent={part}",
               f"datasets.train.batch_size_per_gpu={batch}", "network_g.batch_norm=false", NHWC,
               f"datasets.val.dataroot_gt={SET5_HR}", "datasets.val.color=rgb", f"datasets.val.opponent={part}",
               f"datasets.val.sigma={val_sigma:.4f}"]
            + ([f"datasets.train.gt_size={gt_size}"] if gt_size else [])
            + ([f"datasets.train.sampling={sampling}"] if sampling else []) + list(extra)
            + cosine(iters, lr, warmup=50) + every(max(100, iters // 4), 100)
            + (warm_start(after, strict=True, key="params") if after else warm_start_release(start, shipped)))
    opt = "dncnn_b" if sigma is None else "dncnn_s25"
    if sigma is None:
        sets.append("network_g.num_layers=17")
    what = f"colour sigma {sigma:g}" if sigma is not None else f"blind colour sigma in {list(sigma_range)}"
    origin = (f"a new cosine cycle from {after} (latest raw weights)" if after else
              f"fine-tuned from {start} as shipped in {shipped} (deploy form)")
    return Stage(name, sets, opt=opt, note=f"opponent-colour {part} part for {what}: {origin}")


ORDINALS = {5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth"}


def x4_cycle(n: int, *, iters: int, lr: float) -> list[Stage]:
    """Cosine cycle ``n`` (5, 6, ...) of the x4 student on the SR photographs, warm-started from cycle ``n - 1``'s
    raw weights, then its no-affinity DSCLoRA stage."""
    name, prev = f"span_tiny_x4_{n}", f"span_tiny_x4_{n - 1}"
    return [
        Stage(name, SR_DATA + SR_GT_PLUS2 + [f"name={name}", "datasets.train.gt_size=128", NHWC]
              + cosine(iters, lr) + every(500, 100) + warm_start(prev, strict=True, key="params"),
              opt="span_tiny_x4", note=f"{ORDINALS[n]} cosine cycle, warm start: {prev} (raw weights)"),
        dsclora(name, 4, gt_size=128, variant="_noaff", sets=("train.affinity_opt=~", NHWC), data=tuple(SR_GT_PLUS2)),
    ]


QUEUES: dict[str, list[Stage]] = {
    # the default SR models: SPAN-tiny x4 from scratch, its DSCLoRA stage, then x3/x2 warm-started from x4's body
    "sr": [
        Stage("span_tiny_x4", SR_DATA + ["datasets.train.gt_size=128"] + cosine(4000, 1e-3) + every(500, 250)),
        Stage("span_tiny_x4_2", SR_DATA + ["name=span_tiny_x4_2", "datasets.train.gt_size=128"] + cosine(900, 2e-4)
              + every(300, 150) + warm_start("span_tiny_x4", strict=True, key="params"), opt="span_tiny_x4",
              note="second cosine cycle, warm start: span_tiny_x4 (raw weights)"),
        Stage("dsclora_span_tiny_x4", SR_DATA + ["datasets.train.gt_size=128", "train.ema_decay=0.99",
                                                 "path.param_key_g=params"]
              + cosine(200, 2e-4, warmup=20) + every(100, 50)),
        Stage("span_tiny_x3", SR_DATA + ["datasets.train.gt_size=96", "train.ema_decay=0.99"] + cosine(300, 5e-4)
              + every(250, 125) + warm_start("span_tiny_x4", strict=False, key="params"), note=X4_BODY),
        Stage("span_tiny_x2", SR_DATA + ["datasets.train.gt_size=64", "train.ema_decay=0.99"] + cosine(300, 5e-4)
              + every(250, 125) + warm_start("span_tiny_x4", strict=False, key="params"), note=X4_BODY),
    ],
    # ESPCN (real time) and the denoisers
    "fast": [
        Stage("espcn_x4", cosine(12000, 1e-3, eta_min=1e-5) + every(1000, 1000)),
        Stage("espcn_x3", cosine(8000, 1e-3, eta_min=1e-5) + every(1000, 1000)),
        Stage("espcn_x2", cosine(8000, 1e-3, eta_min=1e-5) + every(1000, 1000)),
        Stage("dncnn_s25", DN_DATA + cosine(500, 1e-3) + every(250, 100)),
        Stage("dncnn_s25_weighted", DN_DATA + cosine(500, 1e-3) + every(250, 100),
              note="same budget as dncnn_s25's first cycle, for the weighted-convolution comparison"),
        # a second cosine cycle for the shipped sigma-25 model (the weighted twin is compared with dncnn_s25's
        # first cycle: identical 500-iteration budgets)
        Stage("dncnn_s25_2", DN_DATA + ["name=dncnn_s25_2"] + cosine(400, 5e-4) + every(200, 100)
              + warm_start("dncnn_s25", strict=True, key="params"), opt="dncnn_s25",
              note="second cycle, warm start: dncnn_s25"),
    ],
    # blind and other-sigma denoisers, warm-started from dncnn_s25_2 (run beside the end of "fast")
    "denoise": [
        *sigma_family("dncnn", "dncnn_s25_2", blind_iters=200, blind_every=100, tune_iters=200),
    ],
    # colour DnCNN, from scratch (session 2's cdncnn_b, warm-started from the gray net's inner layers with new
    # first/last convs, stalled at a loss near the noise variance: 22.28 dB on Set5 sigma 25): sigma 25 first,
    # then the blind and other-sigma models fine-tuned from it
    "color": [
        Stage("cdncnn_s25", DN_DATA + cosine(1200, 1e-3) + every(200, 100)),
        *sigma_family("cdncnn", "cdncnn_s25", blind_iters=300, blind_every=150, tune_iters=150),
    ],
    # a second cycle for the colour blind model, the default for colour images with no --sigma (after "color")
    "color2": [
        Stage("cdncnn_b_2", DN_DATA + ["name=cdncnn_b_2", "network_g.num_layers=17"] + cosine(800, 3e-4)
              + every(200, 100) + warm_start("cdncnn_b", strict=True, key="params"), opt="cdncnn_b",
              note="second cycle, warm start: cdncnn_b"),
    ],
    # a third cosine cycle for the default x4 model (session 3)
    "sr3": [
        Stage("span_tiny_x4_3", SR_DATA + ["name=span_tiny_x4_3", "datasets.train.gt_size=128"]
              + cosine(5000, 4e-4) + every(500, 100) + warm_start("span_tiny_x4_2", strict=True, key="params"),
              opt="span_tiny_x4", note="third cosine cycle, warm start: span_tiny_x4_2 (raw weights)"),
    ],
    # session 4: x2 and x3 students warm-started from the 9900-iteration x4 model (span_tiny_x4_3) with its tail
    # resampled (area weights) to the new scale: 37.14 / 33.27 dB on Set5 x2 / x3 before any training, where a
    # re-initialised tail still scored 32.80 / 32.03 after 1000 iterations (SPAN's tail maps 255-scaled features
    # straight to the image, so a random one takes thousands of steps to find the mean); one queue per core
    "sr_x2": [
        Stage("span_tiny_x2_2", SR_DATA_PLUS + ["name=span_tiny_x2_2", "datasets.train.gt_size=64"]
              + cosine(ITERS_X23, 2e-4) + every(500, 100) + warm_start("span_tiny_x4_3", strict=True, key="params")
              + ["path.resample_tail_g=upsampler.0"], opt="span_tiny_x2", note=X4_BODY_3),
    ],
    "sr_x3": [
        Stage("span_tiny_x3_2", SR_DATA_PLUS + ["name=span_tiny_x3_2", "datasets.train.gt_size=96"]
              + cosine(ITERS_X23, 2e-4) + every(500, 100) + warm_start("span_tiny_x4_3", strict=True, key="params")
              + ["path.resample_tail_g=upsampler.0"], opt="span_tiny_x3", note=X4_BODY_3),
    ],
    # a DSCLoRA stage (ConvLoRA + output and spatial-affinity distillation from the official CFSR checkpoint of the
    # same scale, training time only) on each finished student. Session 4 ran the x4 ones on span_tiny_x4_3
    # (Set5 from 31.03): full recipe 30.73, without tail LoRA 30.73, without the spatial-affinity term 31.05 -- the
    # last is shipped as the x4 default (span_tiny_x4_distilled); "distill" (x2/x3, full recipe) was not run
    "distill": [dsclora("span_tiny_x2_2", 2, gt_size=64), dsclora("span_tiny_x3_2", 3, gt_size=96)],
    "distill_x4": [dsclora("span_tiny_x4_3", 4, gt_size=128)],
    # ablations of that stage: without the spatial-affinity term; without LoRA on the sub-pixel tail
    "distill_x4_noaff": [dsclora("span_tiny_x4_3", 4, gt_size=128, variant="_noaff", sets=("train.affinity_opt=~",))],
    # session 5: the full recipe with the spatial-affinity weight cut tenfold (0.5 -> 0.05): Set5 / Set14 30.99 / 27.85
    # (no affinity term 31.05 / 27.89, weight 0.5: 30.73 on Set5), so any weight of it lowered PSNR here
    "distill_x4_aff005": [dsclora("span_tiny_x4_3", 4, gt_size=128, variant="_aff005",
                                  sets=("train.affinity_opt.loss_weight=0.05",))],
    "distill_x4_notail": [dsclora("span_tiny_x4_3", 4, gt_size=128, variant="_notail",
                                  sets=(f"train.lora.targets={NO_TAIL_LORA}",))],
    # session 5: a fourth cosine cycle for x4 (now with the extra photos), then its no-affinity DSCLoRA stage
    "sr4": [
        Stage("span_tiny_x4_4", SR_DATA_PLUS + ["name=span_tiny_x4_4", "datasets.train.gt_size=128", NHWC]
              + cosine(6000, 4e-4) + every(500, 100) + warm_start("span_tiny_x4_3", strict=True, key="params"),
              opt="span_tiny_x4", note="fourth cosine cycle, warm start: span_tiny_x4_3 (raw weights)"),
        dsclora("span_tiny_x4_4", 4, gt_size=128, variant="_noaff", sets=("train.affinity_opt=~", NHWC)),
    ],
    # session 5 (beside "sr4"): a fourth cycle for the gray sigma-25 default in bf16 autocast (2.8x faster on this
    # CPU's AMX; gradients within cos 0.999 of fp32 for DnCNN), a second cycle for ESPCN x4, then the x2 / x3
    # no-affinity DSCLoRA stages
    "fast5": [
        Stage("dncnn_s25_4", DN_DATA + ["name=dncnn_s25_4", "train.amp_dtype=bf16", NHWC] + cosine(6000, 3e-4)
              + every(1000, 200) + warm_start("dncnn_s25_3", strict=True, key="params"), opt="dncnn_s25",
              note="fourth cycle (bf16 autocast), warm start: dncnn_s25_3"),
        # BSD68 28.78 after dncnn_s25_4 (Set12 29.81): a fifth, shorter cycle
        Stage("dncnn_s25_5", DN_DATA + ["name=dncnn_s25_5", "train.amp_dtype=bf16", NHWC] + cosine(3600, 2e-4)
              + every(1200, 200) + warm_start("dncnn_s25_4", strict=True, key="params"), opt="dncnn_s25",
              note="fifth cycle (bf16 autocast), warm start: dncnn_s25_4"),
        Stage("espcn_x4_2", SR_GT_PLUS2 + ["name=espcn_x4_2", NHWC] + cosine(20000, 5e-4, eta_min=1e-6)
              + every(2500, 1000) + warm_start("espcn_x4", strict=True, key="params_ema"), opt="espcn_x4",
              note="second cosine cycle, warm start: espcn_x4 (EMA weights)"),
        dsclora("span_tiny_x2_2", 2, gt_size=64, variant="_noaff", sets=("train.affinity_opt=~", NHWC),
                data=tuple(SR_GT_PLUS2)),
        dsclora("span_tiny_x3_2", 3, gt_size=96, variant="_noaff", sets=("train.affinity_opt=~", NHWC),
                data=tuple(SR_GT_PLUS2)),
    ],
    # session 5 (after "sr4"): the gray blind / sigma-15 / sigma-50 models again, now from dncnn_s25_4 (their first
    # versions started from dncnn_s25_2, 900 iterations in)
    "denoise5": sigma_family("dncnn", "dncnn_s25_4", blind_iters=1600, blind_every=400, tune_iters=800, suffix="_2",
                             extra=("train.amp_dtype=bf16", NHWC), tune_ckpt=100),
    # session 5 (after "denoise5"): dncnn_s25_5 reached BSD68 28.86 (Set12 29.89); a sixth cycle at batch 64
    "denoise6": [
        Stage("dncnn_s25_6", ["datasets.train.batch_size_per_gpu=64", "name=dncnn_s25_6", "train.amp_dtype=bf16", NHWC]
              + cosine(1400, 1.5e-4) + every(700, 100) + warm_start("dncnn_s25_5", strict=True, key="params"),
              opt="dncnn_s25", note="sixth cycle (bf16 autocast, batch 64), warm start: dncnn_s25_5"),
        # BSD68 28.885 (Set12 29.93) after dncnn_s25_6: a seventh cycle, the same at lr 1e-4
        Stage("dncnn_s25_7", ["datasets.train.batch_size_per_gpu=64", "name=dncnn_s25_7", "train.amp_dtype=bf16", NHWC]
              + cosine(1400, 1e-4) + every(700, 100) + warm_start("dncnn_s25_6", strict=True, key="params"),
              opt="dncnn_s25", note="seventh cycle (bf16 autocast, batch 64), warm start: dncnn_s25_6"),
    ],
    # session 6: a fifth cosine cycle for x4 (span_tiny_x4_4 gained 0.14 dB on Set5 from 6000 iterations), now with
    # the Debian photographs too, then its no-affinity DSCLoRA stage
    "sr5": x4_cycle(5, iters=7000, lr=3e-4),
    # session 6 (beside "sr5"): dncnn_s25_7 reached BSD68 28.888, and short restarts now add little (+0.025, +0.003)
    # and re-estimating the BatchNorm statistics precisely changed nothing (28.887): one longer cycle at batch 64 on
    # Train400 plus the colour training photographs in gray (BT.601 luma), none from any test set
    "denoise7": [
        Stage("dncnn_s25_8", ["datasets.train.batch_size_per_gpu=64", "name=dncnn_s25_8", "train.amp_dtype=bf16", NHWC]
              + dataroot_gt(f"{SHARED_TRAIN}/Train400", *SHARED_SR, EXTRA_PHOTOS.as_posix(), WALLPAPERS_OUT.as_posix())
              + cosine(5000, 1.5e-4) + every(1000, 100) + warm_start("dncnn_s25_7", strict=True, key="params"),
              opt="dncnn_s25", note="eighth cycle (bf16 autocast, batch 64, Train400 + the SR training photographs "
              "in gray), warm start: dncnn_s25_7"),
    ],
    # session 6 (after "sr5"): a third cosine cycle for ESPCN x4 (the second gained 0.22 dB on Set5), batch 64
    "fast6": [
        espcn_cycle("espcn_x4_3", 4, iters=20000, lr=4e-4, start=warm_start("espcn_x4_2", strict=True),
                    note="third cosine cycle (batch 64), warm start: espcn_x4_2 (EMA weights, as shipped)"),
    ],
    # session 6 (after "denoise7"): the weighted-vs-plain comparison again at four times the budget (2000 iterations
    # from scratch each, bf16 autocast + NHWC for both), to see whether the 500-iteration gap is only a head start
    "weighted2": [
        Stage(f"{opt}_2k", DN_DATA + [f"name={opt}_2k", "train.amp_dtype=bf16", NHWC] + cosine(2000, 1e-3)
              + every(1000, 100), opt=opt, note="from scratch, 2000 iterations (weighted-convolution comparison)")
        for opt in ("dncnn_s25", "dncnn_s25_weighted")
    ],
    # session 7: espcn_x4_3 gained another 0.09 dB on Set5 (30.26): a fourth, longer cycle at a lower peak rate
    "fast7": [
        espcn_cycle("espcn_x4_4", 4, iters=30000, lr=3e-4, start=warm_start("espcn_x4_3", strict=True),
                    note="fourth cosine cycle (batch 64), warm start: espcn_x4_3 (EMA weights)"),
    ],
    # session 7 (after "fast7"): espcn_x4_4 gained 0.06 dB on Set5 (30.32): a fifth cycle, the same at lr 2e-4
    "fast8": [
        espcn_cycle("espcn_x4_5", 4, iters=30000, lr=2e-4, start=warm_start("espcn_x4_4", strict=True),
                    note="fifth cosine cycle (batch 64), warm start: espcn_x4_4 (EMA weights)"),
    ],
    # session 7 (beside "fast7"): a sixth cosine cycle for x4 (the fifth gained 0.03 dB on Set5) at a lower peak
    # rate, then its no-affinity DSCLoRA stage
    "sr6": x4_cycle(6, iters=6000, lr=2e-4),
    # session 8: the experiment folders of sessions 1-7 did not survive (only the shipped files are committed), so
    # espcn_x4_4 / _5 (Set5 30.32 measured in session 7) are lost; these continue from the files as shipped in
    # 037c300 instead: a fourth x4 cycle (20000 iterations, espcn_x4_4 had 30000), and a second cycle for x3 / x2
    # (which had one 8000-iteration cycle each); 0.22 s per iteration here, two queues on the 2 cores
    "fast9": [
        espcn_cycle("espcn_x4_4r", 4, iters=20000, lr=3e-4, start=warm_start_release("espcn_x4", SHIPPED_7),
                    note=f"fourth cosine cycle (batch 64), warm start: espcn_x4 as shipped in {SHIPPED_7} "
                    "(espcn_x4_3's EMA weights in float16)"),
    ],
    "fast10": [
        espcn_cycle(f"espcn_x{s}_2", s, iters=10000, lr=5e-4, start=warm_start_release(f"espcn_x{s}", SHIPPED_7),
                    note=f"second cosine cycle (batch 64, + the extra photographs), warm start: "
                    f"espcn_x{s} as shipped in {SHIPPED_7} (its EMA weights in float16)")
        for s in (3, 2)
    ],
    # session 8 (after "fast10", which gained 0.27 / 0.34 dB on Set5): a third, shorter cycle for x3 / x2
    "fast11": [
        espcn_cycle(f"espcn_x{s}_3", s, iters=8000, lr=3e-4, start=warm_start(f"espcn_x{s}_2", strict=True),
                    val=2000, note=f"third cosine cycle (batch 64), warm start: espcn_x{s}_2 (EMA weights)")
        for s in (3, 2)
    ],
    # session 9 (issue 20, colour denoising behind CBM3D): the colour models had 1200-2300 iterations. A gray-to-colour
    # warm start (dncnn_s25's first conv reading the luminance (R+G+B)/sqrt(3), its output spread back over R, G, B)
    # stayed at 22.07 dB on Set5 sigma 25 after 100 iterations (the chrominance never got going, with or without
    # small random chrominance weights), where continuing from the shipped cdncnn_blind reached 29.43: so both
    # colour chains continue from cdncnn_blind as shipped in ecb1022, in its deploy form (BatchNorm folded, no BN;
    # exact to continue from a shipped file), one queue per core
    "color5": [color_cycle("cdncnn_s25_2", "cdncnn_s25", iters=6000, lr=3e-4,
                           start=warm_start_release("cdncnn_blind", SHIPPED_8),
                           note=f"sigma 25, warm start: cdncnn_blind as shipped in {SHIPPED_8} (deploy form)")],
    "color5b": [color_cycle("cdncnn_b_3", "cdncnn_b", iters=6000, lr=3e-4,
                            start=warm_start_release("cdncnn_blind", SHIPPED_8),
                            note=f"blind, warm start: cdncnn_blind as shipped in {SHIPPED_8} (deploy form)")],
    # session 9, second plan: the colour default as an OpponentDnCNN (two gray DnCNNs in an orthonormal
    # luminance / chrominance basis). Training-free with the shipped gray models it already scored CBSD68 sigma 25
    # ~30.6 on 4 images (luminance by dncnn_s15 at sigma/sqrt3 = 14.4: MSE 148; chrominance by dncnn_s25: MSE 12
    # and 9), 2 dB above the 3-channel cdncnn_blind: each part is fine-tuned on its own planes of colour photos
    "opp25": [opp_part("luma", 25, "dncnn_s15", iters=1500, lr=1e-4)],
    "opp25c": [opp_part("chroma", 25, "dncnn_s25", iters=1500, lr=1e-4)],
    # then the other noise levels (the luminance at sigma/sqrt3: 8.66 from the blind gray model, which beat dncnn_s15
    # there training-free: CBSD68 sigma 15 on 8 images 32.79 vs 31.40 dB; 28.87 from dncnn_s25) and the blind pair
    # (session 10: the session's remaining CPU-hours fit 600 iterations for sigma 15 only; 50 and blind stay
    # training-free compositions of the shipped gray models until a later session trains them; session 11: the
    # sigma-50 pair 1000 iterations, the blind pair 300, what the session's CPU-hours fit)
    "opp15": [opp_part("luma", 15, "dncnn_blind", iters=600, lr=1e-4)],
    "opp15c": [opp_part("chroma", 15, "dncnn_s15", iters=600, lr=1e-4)],
    "opp_more": [
                 opp_part("luma", 50, "dncnn_s25", iters=1000, lr=1e-4),
                 opp_part("luma", None, "dncnn_blind", iters=300, lr=1e-4, sigma_range=(0, 55))],
    "opp_more_c": [opp_part("chroma", 50, "dncnn_s50", iters=1000, lr=1e-4),
                   opp_part("chroma", None, "dncnn_blind", iters=300, lr=1e-4, sigma_range=(0, 55))],
    # session 12: the luminance parts carry most of the remaining error (Kodak24 sigma 15 / 50 were 0.20 / 0.24 dB
    # behind CBM3D on the first 3 images): a second cosine cycle each, after the blind pair's last 100 iterations
    "opp_cont": [opp_part("luma", None, "dncnn_blind", iters=300, lr=1e-4, sigma_range=(0, 55)),
                 opp_part("luma", 50, "dncnn_s25", iters=800, lr=5e-5, suffix="_2", after="opp_luma_s50")],
    "opp_cont_c": [opp_part("chroma", None, "dncnn_blind", iters=300, lr=1e-4, sigma_range=(0, 55)),
                   opp_part("luma", 15, "dncnn_blind", iters=800, lr=5e-5, suffix="_2", after="opp_luma_s15")],
    # then a second cycle for the sigma-25 luminance (Kodak24 0.05 dB behind CBM3D) and the blind luminance
    "opp_cont2": [opp_part("luma", None, "dncnn_blind", iters=500, lr=5e-5, sigma_range=(0, 55), suffix="_2",
                           after="opp_luma_b")],
    "opp_cont2_c": [opp_part("luma", 25, "dncnn_s15", iters=500, lr=5e-5, suffix="_2", after="opp_luma_s25")],
    # session 13: third cycles for the sigma-50 / sigma-15 luminance. The luminance error is 69-91% of the colour
    # MSE on Kodak24 (per-plane MSE of cdncnn_opp_s50 on its first 3 images), where we trail CBM3D by 0.23 / 0.15 dB
    "opp_luma3": [opp_part("luma", 50, "dncnn_s25", iters=600, lr=5e-5, suffix="_3", after="opp_luma_s50_2")],
    "opp_luma3_c": [opp_part("luma", 15, "dncnn_blind", iters=1000, lr=5e-5, suffix="_3", after="opp_luma_s15_2")],
    # session 14: larger patches. A 40x40 patch is barely wider than the depth-17 receptive field (35x35), so most
    # of its outputs see zero padding; a Kodak24 photo is mostly interior. 96x96 x 6 is the same pixels per step
    "opp_luma4": [opp_part("luma", 50, "dncnn_s25", iters=1200, lr=5e-5, suffix="_4", after="opp_luma_s50_3",
                           gt_size=96, batch=6)],
    # and the same with area-weighted sampling: the 180x180 Train400 crops are 70% of the images but 27% of the
    # pixels; the high-resolution photographs (Sun-Hays, wallpapers: Kodak-like) are 5% of the images, 45% of the pixels
    "opp_luma4_c": [opp_part("luma", 50, "dncnn_s25", iters=1200, lr=5e-5, suffix="_4a", after="opp_luma_s50_3",
                             gt_size=96, batch=6, sampling="area")],
    # session 14, for the next: the same area-sampled 96x96 cycle for the sigma-25 and sigma-15 luminance (on Set5-luma
    # val, area sampling ended 0.0135 dB ahead of per-image sampling at sigma 50, same start and steps)
    "opp_luma5": [opp_part("luma", 25, "dncnn_s15", iters=1200, lr=5e-5, suffix="_3a", after="opp_luma_s25_2",
                           gt_size=96, batch=6, sampling="area")],
    "opp_luma5_c": [opp_part("luma", 15, "dncnn_blind", iters=1200, lr=5e-5, suffix="_4a", after="opp_luma_s15_3",
                             gt_size=96, batch=6, sampling="area")],
    # session 15, a new machine (the experiment folders are gone): second chrominance cycles for sigma 50 and 15,
    # continued from the parts shipped at SHIPPED_14, 96x96 patches drawn by image area, bf16 autocast (this EPYC has
    # AVX512_BF16: scripts/bench_train_step.py DnCNN-17 bf16 NHWC 2.33x fp32 NCHW, 1 thread)
    "opp_chroma6": [opp_part("chroma", 50, "cdncnn_opp_s50.chroma", iters=2400, lr=5e-5, suffix="_2", gt_size=96,
                             batch=6, sampling="area", shipped=SHIPPED_14, extra=(BF16,))],
    "opp_chroma6_c": [opp_part("chroma", 15, "cdncnn_opp_s15.chroma", iters=2400, lr=5e-5, suffix="_2", gt_size=96,
                               batch=6, sampling="area", shipped=SHIPPED_14, extra=(BF16,))],
    # then the sigma-25 parts, the same way: a second cycle of each as shipped (session 12's opp_luma_s25_2 was
    # not shipped, so this luminance cycle continues from opp_luma_s25). Session 15 stopped opp25_3 at iteration ~500
    # (no validation yet) to give its core to evaluating the shipped chrominance cycles; it resumes where experiments/
    # survived, else it starts over
    "opp25_3": [opp_part("luma", 25, "cdncnn_opp_s25.luma", iters=2400, lr=5e-5, suffix="_2b", gt_size=96, batch=6,
                         sampling="area", shipped=SHIPPED_14, extra=(BF16,))],
    "opp25_3c": [opp_part("chroma", 25, "cdncnn_opp_s25.chroma", iters=2400, lr=5e-5, suffix="_2", gt_size=96,
                          batch=6, sampling="area", shipped=SHIPPED_14, extra=(BF16,))],
    # session 4: a third cycle for the gray sigma-25 default (beside sr_x2 / sr_x3)
    "denoise3": [
        Stage("dncnn_s25_3", DN_DATA + ["name=dncnn_s25_3"] + cosine(1200, 3e-4) + every(400, 100)
              + warm_start("dncnn_s25_2", strict=True, key="params"), opt="dncnn_s25",
              note="third cycle, warm start: dncnn_s25_2"),
    ],
}
STAGES = {s.name: s for q in QUEUES.values() for s in q}


def finished(stage: Stage, root: Path) -> bool:
    states = root / "experiments" / stage.name / "training_states" / f"{stage.total_iter}.state"
    return states.exists()


def run_stage(stage: Stage, root: Path) -> int:
    for folder, prepare in ((EXTRA_PHOTOS, prepare_extra_photos), (WALLPAPERS_OUT, prepare_wallpapers)):
        if any(folder.as_posix() in s for s in stage.sets):
            prepare(root=ROOT)
    for s in stage.sets:
        if s.startswith(f"path.pretrain_network_g={RELEASES.as_posix()}/"):
            extract_release(ROOT / s.split("=", 1)[1])
    cmd = [sys.executable, "-m", "restore.cli", "train", "-opt", stage.option_file, "--root", str(root), "--resume"]
    for s in stage.sets:
        cmd += ["--set", s]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queue", choices=sorted(QUEUES), action="append", help="queue(s) to run (default: all)")
    ap.add_argument("--only", nargs="+", choices=sorted(STAGES), help="run just these stages")
    ap.add_argument("--root", type=Path, default=ROOT, help="experiments go to ROOT/experiments (default: project)")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    a = ap.parse_args(argv)
    stages = [STAGES[n] for n in a.only] if a.only else [s for q in (a.queue or sorted(QUEUES)) for s in QUEUES[q]]
    for st in stages:
        if a.list:
            print(f"{st.name:22s} {st.option_file}  {' '.join(st.sets)}")
            continue
        if finished(st, a.root):
            print(f"{st.name}: already at iteration {st.total_iter}; skipped", flush=True)
            continue
        rc = run_stage(st, a.root)
        if rc != 0:
            print(f"{st.name}: training failed (exit {rc}); stopping this queue", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
