"""Training models, built on BasicSR's ``SRModel`` / ``BaseModel`` (registered by :mod:`restore.train.registry`).

From BasicSR we use: ``get_optimizer`` / ``setup_optimizers`` (the ``optim_g`` section), ``setup_schedulers``
(``MultiStepRestartLR`` / ``CosineAnnealingRestartLR``), ``update_learning_rate`` (including linear
warm-up), ``model_to_device``, ``feed_data``, ``get_current_log`` / ``reduce_loss_dict``, the best-metric
bookkeeping, and its losses through ``build_loss`` (``L1Loss``, ``MSELoss``, ``CharbonnierLoss``). What
BasicSR's ``SRModel`` cannot do is written here:

* networks come from :mod:`restore.train.networks`, optionally with ConvLoRA (``train.lora``): the
  pretrained net is fused (``Conv3XC`` -> ``eval_conv``), adapters injected, everything but ``lora_A/B``
  frozen;
* under a launcher (``opt['dist']``) the network is wrapped in ``DistributedDataParallel`` on the CPU too
  (``device_ids=None``; BasicSR's ``model_to_device`` asks for a CUDA device), BatchNorm becomes
  ``SyncBatchNorm`` on CUDA and is refused on the CPU (:func:`restore.train.dist.sync_batchnorm`); the EMA copy
  and every saved file hold the bare network with plain BatchNorm;
* EMA also copies buffers (BatchNorm running statistics; BasicSR's ``model_ema`` averages parameters
  only, which leaves an EMA DnCNN with untrained statistics);
* mixed precision when ``train.amp`` is true: ``torch.autocast`` fp16 + ``GradScaler`` on CUDA, or with
  ``train.amp_dtype: bf16`` bf16 autocast (no scaler) on CUDA or the CPU;
* ``train.channels_last``: network and batches in NHWC (faster convolutions on CPUs; checkpoints stay
  contiguous);
* checkpoints are written atomically and the training state holds everything for an exact resume
  (optimiser, scheduler, scaler, EMA, RNG, position in the epoch, best metrics);
* validation runs the network through :class:`restore.engine.restorer.Restorer` and scores with
  :mod:`restore.metrics` exactly as ``restore eval`` does (uint8 output, MATLAB Y).

Models: ``RestoreSRModel`` (pixel loss on the image), ``DenoiseModel`` (residual learning: the loss
compares the predicted noise ``lq - net(lq)`` with the true ``lq - gt``; DnCNN already returns the
image ``x - noise``), ``DistillModel`` (DSCLoRA: frozen teacher ``network_t``; loss =
``pixel_opt(student, GT) + distill_opt(student, teacher) + affinity_opt(student feats, teacher feats)``,
each term weighted by its ``loss_weight``).
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.base_model import BaseModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from restore import pixels
from restore.io import image
from restore.train import checkpoint, dist, networks


def _resample_tail(net: nn.Module, sd: dict[str, Tensor], name: str, path: str) -> None:
    own = net.state_dict()
    wk, bk = f"{name}.weight", f"{name}.bias"
    if wk not in own:
        raise ValueError(f"path.resample_tail_g: the network has no conv named {name!r}")
    if wk not in sd:
        raise ValueError(f"path.resample_tail_g: {path} has no {wk!r}")
    if sd[wk].shape == own[wk].shape:
        return
    meta = net.meta
    w, b = networks.resample_subpixel_conv(sd[wk], sd.get(bk), out_channels=meta.out_channels, to_scale=meta.scale)
    if w.shape != own[wk].shape:
        raise ValueError(f"path.resample_tail_g: {path}'s {wk} {tuple(sd[wk].shape)} cannot be resampled to "
                         f"{tuple(own[wk].shape)}")
    old_scale = networks.subpixel_scale(sd[wk].shape[0], meta.out_channels)
    sd[wk] = w
    if b is not None:
        sd[bk] = b
    get_root_logger().info(f"{name}: the x{old_scale} sub-pixel tail of {path} resampled to x{meta.scale}")


def load_weights(net: nn.Module, path: str, *, strict: bool, param_key: str | None,
                 resample_tail: str | None = None) -> None:
    """Load ``path`` into ``net``: ``param_key`` when the file has it, else the usual unwrapping
    (``params_ema`` > ``params`` > flat), ``module.`` stripped. ``resample_tail``: the name of ``net``'s conv
    that feeds its PixelShuffle; when the file's is for another scale it is resampled to ``net``'s
    (:func:`networks.resample_subpixel_conv`) instead of being left initialised."""
    from restore.weights import read_checkpoint, read_state_dict, unwrap_state_dict

    if path.endswith(".pb"):
        sd = read_state_dict(path)
    else:
        obj = read_checkpoint(path)
        if param_key and isinstance(obj, dict) and isinstance(obj.get(param_key), dict):
            obj = obj[param_key]
        sd = unwrap_state_dict(obj, source=path)
    skipped: list[str] = []
    if resample_tail is not None:
        sd = dict(sd)
        _resample_tail(net, sd, resample_tail, path)
    if not strict:  # warm start across scales / channel counts: tensors whose shape differs stay initialised
        own = net.state_dict()
        skipped = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
        sd = {k: v for k, v in sd.items() if k not in skipped}
    missing, unexpected = net.load_state_dict(sd, strict=strict)
    if missing or unexpected or skipped:
        get_root_logger().warning(f"{path}: loaded non-strictly; missing {missing[:5]}, unexpected {unexpected[:5]}, "
                                  f"shape differs (kept initialised) {skipped[:5]}")


@contextlib.contextmanager
def capture(net: nn.Module, names: list[str]) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of the named submodules during the ``with`` block (first element of tuples)."""
    feats: dict[str, Tensor] = {}
    handles = []
    for name in names:
        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            feats[name] = out[0] if isinstance(out, tuple | list) else out

        try:
            module = net.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{type(net).__name__} has no layer {name!r} to distil from") from None
        handles.append(module.register_forward_hook(hook))
    try:
        yield feats
    finally:
        for h in handles:
            h.remove()


class RestoreSRModel(SRModel):
    """Super-resolution with a pixel loss (L1 / MSE / Charbonnier)."""

    task = "sr"

    def __init__(self, opt: dict[str, Any]) -> None:
        BaseModel.__init__(self, opt)
        self.logger = get_root_logger()
        lora = opt["train"].get("lora")
        self.arch = networks.arch_record(opt["network_g"], lora)
        net = build_network(opt["network_g"])  # BasicSR's builder, our ARCH_REGISTRY entries
        path = opt["path"]
        if path.get("pretrain_network_g"):
            load_weights(net, path["pretrain_network_g"], strict=path.get("strict_load_g", True),
                         param_key=path.get("param_key_g", "params"), resample_tail=path.get("resample_tail_g"))
            self.logger.info(f"Loaded network_g weights from {path['pretrain_network_g']}")
        if lora is not None:
            net = networks.add_lora(net, networks.lora_targets(lora["targets"]), fuse_first=lora["fuse_first"])
            n_train = sum(p.numel() for p in net.parameters() if p.requires_grad)
            self.logger.info(f"ConvLoRA on {len(networks.lora_targets(lora['targets']))} layers; "
                             f"{n_train:,d} trainable of {sum(p.numel() for p in net.parameters()):,d} parameters")
        nhwc = bool(opt["train"].get("channels_last"))
        self.memory_format = torch.channels_last if nhwc else torch.contiguous_format
        self.net_g = self.model_to_device(net.to(memory_format=self.memory_format))
        if nhwc:
            self.logger.info("Training in channels-last (NHWC) memory format")
        meta = net.meta
        if meta.task != self.task or (self.task == "sr" and meta.scale != opt["scale"]):
            raise ValueError(f"network_g is a {meta.task} x{meta.scale} network; model_type "
                             f"{opt['model_type']} with scale {opt['scale']} needs a {self.task} x{opt['scale']} one")
        self.in_range = float(meta.input_range)
        self.print_network(self.net_g)
        self.best_metric_results: dict[str, Any] = {}
        self.init_training_settings()

    # ---------------------------------------------------------------------------------------- setup

    def model_to_device(self, net: nn.Module) -> nn.Module:
        """``net`` on the device; under a launcher wrapped in DDP (``device_ids``: the current CUDA device, or None on
        the CPU), with SyncBatchNorm on CUDA. Without one, ``num_gpu`` is 0 or 1, so BasicSR's DataParallel never
        applies."""
        net = net.to(self.device)
        if not self.opt["dist"]:
            return net
        net = dist.sync_batchnorm(net, self.device)
        ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids,
                                       find_unused_parameters=bool(self.opt.get("find_unused_parameters", False)))

    def init_training_settings(self) -> None:
        self.net_g.train()
        train_opt = self.opt["train"]
        self.ema_decay = float(train_opt.get("ema_decay", 0) or 0)
        if self.ema_decay > 0:
            self.logger.info(f"Use Exponential Moving Average with decay: {self.ema_decay}")
            self.net_g_ema = dist.plain_batchnorm(copy.deepcopy(self.get_bare_model(self.net_g))).eval()
            for p in self.net_g_ema.parameters():
                p.requires_grad_(False)
        self.cri_pix = build_loss(dict(train_opt["pixel_opt"])).to(self.device) if train_opt.get("pixel_opt") else None
        bf16 = train_opt.get("amp_dtype", "fp16") == "bf16"
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.use_amp = bool(train_opt.get("amp", True)) and (bf16 or self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and not bf16)
        if self.use_amp:
            self.logger.info(f"Mixed precision ({'bf16 autocast' if bf16 else 'fp16 autocast + GradScaler'} "
                             f"on {self.device.type}) is on")
        self.setup_optimizers()
        if train_opt.get("scheduler"):
            self.setup_schedulers()

    def setup_optimizers(self) -> None:
        train_opt = self.opt["train"]
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        frozen = sum(1 for p in self.net_g.parameters() if not p.requires_grad)
        if frozen:
            self.logger.info(f"{frozen} parameter tensors are frozen and will not be optimized")
        optim_opt = dict(train_opt["optim_g"])
        optim_type = optim_opt.pop("type")
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
        for group in self.optimizer_g.param_groups:  # BasicSR's warm-up reads it (schedulers set it too)
            group.setdefault("initial_lr", group["lr"])
        self.optimizers.append(self.optimizer_g)

    @torch.no_grad()
    def model_ema(self, decay: float = 0.999) -> None:
        net_g = self.get_bare_model(self.net_g)
        src = dict(net_g.named_parameters())
        for k, p in self.net_g_ema.named_parameters():
            p.mul_(decay).add_(src[k].detach(), alpha=1 - decay)
        bufs = dict(net_g.named_buffers())
        for k, b in self.net_g_ema.named_buffers():
            b.copy_(bufs[k])

    # -------------------------------------------------------------------------------------- training

    def feed_data(self, data: dict[str, Any]) -> None:
        self.lq = data["lq"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if "gt" in data:
            self.gt = data["gt"].to(self.device, non_blocking=True)

    def forward_g(self, x: Tensor) -> Tensor:
        """The network on [0, 1] data (scaled to its ``input_range`` and back)."""
        if self.in_range == 1.0:
            return self.net_g(x)
        return self.net_g(x * self.in_range) / self.in_range

    def compute_losses(self) -> tuple[Tensor, OrderedDict[str, Tensor]]:
        self.output = self.forward_g(self.lq)
        losses: OrderedDict[str, Tensor] = OrderedDict()
        if self.cri_pix is not None:
            losses["l_pix"] = self.cri_pix(self.output, self.gt)
        return sum(losses.values()), losses  # type: ignore[return-value]

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            l_total, losses = self.compute_losses()
        self.scaler.scale(l_total).backward()
        self.scaler.step(self.optimizer_g)
        self.scaler.update()
        if len(losses) > 1:
            losses["l_total"] = l_total
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    # ------------------------------------------------------------------------------------ validation

    def eval_net(self) -> nn.Module:
        return self.net_g_ema if hasattr(self, "net_g_ema") else self.get_bare_model(self.net_g)

    def restore_image(self, runner: Any, item: dict[str, Any]) -> np.ndarray:
        return runner.run(item["lq"])

    def validation(self, dataset: Any, current_iter: int, tb_logger: Any, save_img: bool = False) -> dict[str, float]:
        """Score ``dataset`` (a validation ``SRImageDataset`` / ``DenoiseDataset``) with our metrics."""
        from restore.engine.restorer import Restorer
        from restore.metrics.psnr_ssim import calculate_psnr, calculate_ssim

        metrics = self.opt["val"].get("metrics") or {}
        fns = {"calculate_psnr": calculate_psnr, "calculate_ssim": calculate_ssim}
        net = self.eval_net()
        runner = Restorer(net, device=self.device, precision="fp32")
        sums = dict.fromkeys(metrics, 0.0)
        try:
            for i in range(len(dataset)):
                item = dataset[i]
                out = self.restore_image(runner, item)
                if out.dtype != np.uint8:
                    out = pixels.to_uint(out, np.uint8)
                if save_img:
                    image.write_image(Path(self.opt["path"]["visualization"]) / item["name"]
                                   / f"{item['name']}_{current_iter}.png", out)
                for name, m in metrics.items():
                    sums[name] += fns[m["type"]](out, item["gt"], crop_border=m.get("crop_border", 0),
                                                 test_y_channel=m.get("test_y_channel", False),
                                                 round_y=m.get("round_y", False))
        finally:
            if net is self.get_bare_model(self.net_g):
                self.net_g.train()
        results = {k: v / max(1, len(dataset)) for k, v in sums.items()}
        self.metric_results = results
        name = dataset.name
        self._initialize_best_metric_results(name)
        for k, v in results.items():
            self._update_best_metric_result(name, k, v, current_iter)
        self._log_validation_metric_values(current_iter, name, tb_logger)
        return results

    # ---------------------------------------------------------------------------------- checkpoints

    def network_checkpoint(self) -> dict[str, Any]:
        def sd(net: nn.Module) -> dict[str, Tensor]:
            return {k: v.detach().cpu().contiguous() for k, v in self.get_bare_model(net).state_dict().items()}

        out: dict[str, Any] = {"params": sd(self.net_g)}
        if hasattr(self, "net_g_ema"):
            out["params_ema"] = sd(self.net_g_ema)
        out["restore_arch"] = self.arch
        return out

    def replicated_tensors(self) -> dict[str, Tensor]:
        """What every rank must hold identically: the network's parameters and buffers, and the EMA's."""
        out = {f"net_g.{k}": v for k, v in self.get_bare_model(self.net_g).state_dict().items()}
        if hasattr(self, "net_g_ema"):
            out.update({f"net_g_ema.{k}": v for k, v in self.net_g_ema.state_dict().items()})
        return out

    def save_network_file(self, label: str) -> Path:
        path = Path(self.opt["path"]["models"]) / f"net_g_{label}.pth"
        return checkpoint.atomic_save(self.network_checkpoint(), path)

    def save_checkpoint(self, *, epoch: int, current_iter: int, batch_in_epoch: int) -> Path:
        """Model file, then the training state that points to it (both atomic)."""
        model_path = self.save_network_file(str(current_iter))
        state = {
            "iter": current_iter,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "rng": checkpoint.capture_rng(),
            "best_metric_results": copy.deepcopy(self.best_metric_results),
            "model_file": model_path.name,
        }
        return checkpoint.atomic_save(state, Path(self.opt["path"]["training_states"]) / f"{current_iter}.state")

    def resume_checkpoint(self, state: dict[str, Any], state_path: Path) -> None:
        """Networks (+EMA), optimiser, scheduler, scaler, RNG and best metrics from a training state."""
        ckpt = checkpoint.load(state_path.parent.parent / "models" / state["model_file"])
        self.get_bare_model(self.net_g).load_state_dict(ckpt["params"], strict=True)
        if hasattr(self, "net_g_ema"):
            self.net_g_ema.load_state_dict(ckpt.get("params_ema", ckpt["params"]), strict=True)
        self.resume_training(state)  # BasicSR: optimizers and schedulers
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_metric_results = copy.deepcopy(state.get("best_metric_results") or {})
        checkpoint.restore_rng(state["rng"])


class DenoiseModel(RestoreSRModel):
    """Residual learning: the loss compares predicted noise ``lq - net(lq)`` with the true noise ``lq - gt``."""

    task = "denoise"

    def compute_losses(self) -> tuple[Tensor, OrderedDict[str, Tensor]]:
        self.output = self.forward_g(self.lq)
        losses: OrderedDict[str, Tensor] = OrderedDict()
        losses["l_pix"] = self.cri_pix(self.lq - self.output, self.lq - self.gt)
        return losses["l_pix"], losses


class DistillModel(RestoreSRModel):
    """DSCLoRA distillation: student ``network_g`` (usually with ConvLoRA), frozen teacher ``network_t``."""

    def __init__(self, opt: dict[str, Any]) -> None:
        teacher = build_network(opt["network_t"])
        path = opt["path"]
        load_weights(teacher, path["pretrain_network_t"], strict=path.get("strict_load_t", True),
                     param_key=path.get("param_key_t"))
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.net_t = teacher.eval()
        super().__init__(opt)
        self.net_t = self.net_t.to(self.device)
        mt, ms = self.net_t.meta, self.get_bare_model(self.net_g).meta
        if (mt.scale, mt.in_channels, mt.out_channels, mt.color_space) != (ms.scale, ms.in_channels,
                                                                             ms.out_channels, ms.color_space):
            raise ValueError(f"teacher ({mt.variant} x{mt.scale}, {mt.color_space}) does not match the student "
                             f"({ms.variant} x{ms.scale}, {ms.color_space})")
        self.teacher_range = float(mt.input_range)
        self.logger.info(f"Teacher {type(teacher).__name__} {mt.variant} from {path['pretrain_network_t']} "
                         f"({mt.params:,d} parameters, frozen)")

    def init_training_settings(self) -> None:
        super().init_training_settings()
        t = self.opt["train"]
        self.cri_distill = build_loss(dict(t["distill_opt"])).to(self.device) if t.get("distill_opt") else None
        self.cri_aff = build_loss(dict(t["affinity_opt"])).to(self.device) if t.get("affinity_opt") else None

    def compute_losses(self) -> tuple[Tensor, OrderedDict[str, Tensor]]:
        s_layers = self.cri_aff.student_layers if self.cri_aff is not None else []
        t_layers = self.cri_aff.teacher_layers if self.cri_aff is not None else []
        with capture(self.get_bare_model(self.net_g), s_layers) as fs:
            self.output = self.forward_g(self.lq)
        with torch.no_grad(), capture(self.net_t, t_layers) as ft:
            out_t = self.net_t(self.lq * self.teacher_range) / self.teacher_range
        losses: OrderedDict[str, Tensor] = OrderedDict()
        if self.cri_pix is not None:
            losses["l_pix"] = self.cri_pix(self.output, self.gt)
        if self.cri_distill is not None:
            losses["l_distill"] = self.cri_distill(self.output, out_t.to(self.output.dtype))
        if self.cri_aff is not None:
            losses["l_aff"] = self.cri_aff([fs[n] for n in s_layers], [ft[n] for n in t_layers])
        return sum(losses.values()), losses  # type: ignore[return-value]
