"""BasicSR-style option files, parsed once into validated dataclasses.

One concern, kept whole (hence over 500 lines): the option schema and its validation messages.

The schema is BasicSR's (``name``, ``model_type``, ``scale``, ``num_gpu``, ``manual_seed``,
``datasets.{train,val*}``, ``network_g``, ``network_t``, ``path``, ``train``, ``val``, ``logger``), so a
BasicSR user reads these files at once. Differences, all additive: ``train.lora`` (ConvLoRA targets),
``train.distill_opt`` / ``train.affinity_opt`` (distillation losses), ``train.amp`` / ``train.amp_dtype``
(mixed precision: fp16 on CUDA, or bf16 on CUDA and the CPU), dataset keys ``color`` / ``sigma`` /
``sigma_range`` / ``noise_seed`` and ``io_backend.type: memory`` (in-memory cache), metric key ``round_y``.
BasicSR keys this implementation does not use (``dist_params``: the backend follows the device and the port
the launcher; ``logger.wandb`` without a project) are accepted and ignored; ``find_unused_parameters`` is
passed to DistributedDataParallel under a launcher. ``num_gpu`` and ``batch_size_per_gpu`` are per process.

Test files (``restore test -opt options/test/X.yml``, BasicSR's ``basicsr/test.py``) parse into
:class:`TestOptions` through the same converter and checks: ``name``, ``model_type``, ``scale``, ``num_gpu``,
``datasets.test_*`` (SR pairs, or clean images with ``sigma`` / ``noise_seed``), ``network_g`` (optional:
auto-detected from the weights when omitted), ``path.{pretrain_network_g, strict_load_g, param_key_g}`` and
``val.{metrics, save_img, suffix, pbar}``.

Every key is checked: an unknown or mistyped key, a value of the wrong type, or arguments that the named
network / optimiser / scheduler / loss does not take raise :class:`OptionsError` naming the file and the
dotted key. Relative paths in the file are relative to the working directory, as in BasicSR.

``--set key.sub=value`` overrides (:func:`apply_override`) are applied to the YAML tree *before*
validation, so they are checked like the file itself; the value is read as YAML (``--set
train.total_iter=20``, ``--set path.pretrain_network_g=~``).

This module imports neither torch nor basicsr (network arguments are checked against the constructors
through :mod:`restore.train.networks`, imported only by :func:`load_options`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

MODEL_TYPES = ("RestoreSRModel", "DenoiseModel", "DistillModel")
DATASET_TYPES = ("SRImageDataset", "DenoiseDataset")
OPTIMIZERS = ("Adam", "AdamW", "Adamax", "SGD", "ASGD", "RMSprop", "Rprop")  # what BasicSR's get_optimizer builds
# scheduler type -> (required, optional) keyword arguments of BasicSR's schedulers
SCHEDULERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MultiStepLR": (("milestones",), ("gamma", "restarts", "restart_weights")),
    "MultiStepRestartLR": (("milestones",), ("gamma", "restarts", "restart_weights")),
    "CosineAnnealingRestartLR": (("periods",), ("restart_weights", "eta_min")),
}
# loss type -> (required, optional) keyword arguments
LOSSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "L1Loss": ((), ("loss_weight", "reduction")),
    "MSELoss": ((), ("loss_weight", "reduction")),
    "CharbonnierLoss": ((), ("loss_weight", "reduction", "eps")),
    "SpatialAffinityLoss": (("student_layers", "teacher_layers"), ("loss_weight", "chunk_size")),
}
METRICS = ("calculate_psnr", "calculate_ssim")


class OptionsError(ValueError):
    """An option file that does not match the schema; the message names the file and the key."""


# ----------------------------------------------------------------------------------------------- schema
# A dataclass with ``_extra = "kwargs"`` collects the keys it does not declare into that field (the arch
# kwargs after ``type``, an optimiser's ``lr``...); they are checked against the named class afterwards.


@dataclass
class IOBackendOptions:
    type: Literal["disk", "memory"] = "disk"


@dataclass
class DatasetOptions:
    name: str
    type: str
    dataroot_gt: str | list[str]
    dataroot_lq: str | list[str] | None = None
    filename_tmpl: str = "{}"
    io_backend: IOBackendOptions = field(default_factory=IOBackendOptions)
    color: Literal["rgb", "gray", "y"] = "rgb"
    gt_size: int | None = None
    # which image a training sample crops: "image" = each image equally often (BasicSR), "area" = in proportion to
    # its patch positions, so a 4 MP photo gives ~100x the patches of a 180x180 crop
    sampling: Literal["image", "area"] = "image"
    use_hflip: bool = False
    use_rot: bool = False
    use_shuffle: bool = True
    sigma: float | None = None
    sigma_range: list[float] | None = None
    noise_seed: int = 0
    opponent: Literal["luma", "chroma"] | None = None  # DenoiseDataset: a part of restore.archs.dncnn.OpponentDnCNN
    num_worker_per_gpu: int = 0
    batch_size_per_gpu: int = 1
    dataset_enlarge_ratio: int = 1
    prefetch_mode: Literal["cpu", "cuda"] | None = None
    num_prefetch_queue: int = 1
    pin_memory: bool = False
    persistent_workers: bool = False


@dataclass
class NetworkOptions:
    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    _extra = "kwargs"


@dataclass
class PathOptions:
    pretrain_network_g: str | None = None
    strict_load_g: bool = True
    param_key_g: str = "params"
    resample_tail_g: str | None = None  # e.g. upsampler.0: warm-start another scale's sub-pixel tail, resampled
    resume_state: str | None = None
    pretrain_network_t: str | None = None
    strict_load_t: bool = True
    param_key_t: str | None = None


@dataclass
class ClassOptions:
    """``type`` plus the class's keyword arguments (optimisers, schedulers, losses)."""

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    _extra = "kwargs"


@dataclass
class LoRAOptions:
    targets: str | dict[str, list[float]] = "dsclora"
    fuse_first: bool = True


@dataclass
class TrainOptions:
    total_iter: int
    optim_g: ClassOptions
    scheduler: ClassOptions | None = None
    warmup_iter: int = -1
    ema_decay: float = 0.0
    pixel_opt: ClassOptions | None = None
    distill_opt: ClassOptions | None = None
    affinity_opt: ClassOptions | None = None
    lora: LoRAOptions | None = None
    amp: bool = True
    # fp16: autocast + GradScaler, CUDA only (the CPU trains in fp32); bf16: autocast on CUDA and on the CPU
    # (AMX / AVX512-BF16), no scaler. Check the network's gradients first: DnCNN's stay within cos 0.999 of
    # fp32, SPAN's (255-scaled features mapped straight to the image) do not.
    amp_dtype: Literal["fp16", "bf16"] = "fp16"
    # NHWC network and batches: faster oneDNN convolutions on CPUs (scripts/bench_train_step.py prints the
    # ratios); numerically the same model up to float summation order
    channels_last: bool = False


@dataclass
class MetricOptions:
    type: str
    crop_border: int = 0
    test_y_channel: bool = False
    better: Literal["higher", "lower"] = "higher"
    round_y: bool = False


@dataclass
class ValOptions:
    val_freq: int
    metrics: dict[str, MetricOptions]
    save_img: bool = False
    pbar: bool = False


@dataclass
class LoggerOptions:
    print_freq: int = 100
    save_checkpoint_freq: int = 5000
    use_tb_logger: bool = False
    wandb: dict[str, Any] | None = None


@dataclass
class Options:
    name: str
    model_type: str
    datasets: dict[str, DatasetOptions]
    network_g: NetworkOptions
    train: TrainOptions
    scale: int = 1
    num_gpu: int | Literal["auto"] = "auto"
    manual_seed: int | None = None
    network_t: NetworkOptions | None = None
    path: PathOptions = field(default_factory=PathOptions)
    val: ValOptions | None = None
    logger: LoggerOptions = field(default_factory=LoggerOptions)
    dist_params: dict[str, Any] | None = None
    find_unused_parameters: bool = False
    source: str = field(default="<options>", metadata={"internal": True})

    # ---------------------------------------------------------------------------------------- views

    def to_basicsr(self, root: str | Path, *, num_gpu: int, dist: bool = False, rank: int = 0,
                   world_size: int = 1) -> dict[str, Any]:
        """The plain nested dict BasicSR's models read (``opt['train']['optim_g']`` ...), with the
        experiment paths under ``root/experiments/<name>`` and BasicSR's run-time keys filled in (``dist``,
        ``rank``, ``world_size``: this process's place under a launcher; ``num_gpu`` is per process)."""
        plain = _plain(self)
        plain.pop("source", None)
        exp = Path(root) / "experiments" / self.name
        plain["path"].update(
            experiments_root=str(exp),
            models=str(exp / "models"),
            training_states=str(exp / "training_states"),
            log=str(exp),
            visualization=str(exp / "visualization"),
        )
        for phase, ds in plain["datasets"].items():
            ds["phase"] = phase.split("_")[0]
            ds["scale"] = self.scale
        plain.update(is_train=True, dist=dist, rank=rank, world_size=world_size, num_gpu=num_gpu, auto_resume=False)
        return plain


# ------------------------------------------------------------------------------------------ test files
# ``restore test -opt options/test/X.yml`` (BasicSR's ``basicsr/test.py``): the same top-level keys, with
# ``datasets.test_*`` and no ``train``; ``path.pretrain_network_g`` is required. Classes named Test* set
# ``__test__ = False`` so that pytest does not take them for test classes.


@dataclass
class TestDatasetOptions:
    """One ``datasets.test_*``: SR pairs (``dataroot_gt`` in any layout ``restore eval`` reads, or BasicSR's
    ``dataroot_gt`` + ``dataroot_lq`` + ``filename_tmpl``), or clean images plus ``sigma`` / ``noise_seed``."""

    __test__ = False
    name: str
    type: str
    dataroot_gt: str
    dataroot_lq: str | None = None
    filename_tmpl: str = "{}"
    io_backend: IOBackendOptions = field(default_factory=IOBackendOptions)
    color: Literal["rgb", "gray"] | None = None  # denoising only; default: what network_g takes
    sigma: float | None = None
    noise_seed: int = 0


@dataclass
class TestPathOptions:
    __test__ = False
    pretrain_network_g: str
    strict_load_g: bool = True
    param_key_g: str | None = "params"


@dataclass
class TestValOptions:
    __test__ = False
    metrics: dict[str, MetricOptions]
    save_img: bool = False
    suffix: str | None = None
    pbar: bool = True


@dataclass
class TestOptions:
    """A test option file (``restore test``); ``network_g`` omitted: the architecture is auto-detected."""

    __test__ = False
    name: str
    model_type: str
    datasets: dict[str, TestDatasetOptions]
    path: TestPathOptions
    val: TestValOptions
    network_g: NetworkOptions | None = None
    scale: int = 1
    num_gpu: int | Literal["auto"] = "auto"
    manual_seed: int | None = None  # accepted (BasicSR files carry it); test noise comes from noise_seed
    source: str = field(default="<options>", metadata={"internal": True})

    @property
    def task(self) -> Literal["sr", "denoise"]:
        return "denoise" if self.model_type == "DenoiseModel" else "sr"


def _plain(obj: Any) -> Any:
    """Dataclasses -> dicts, with ``_extra`` kwargs merged into their parent."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        extra = getattr(type(obj), "_extra", None)
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.name == extra:
                out.update({k: _plain(x) for k, x in v.items()})
            else:
                out[f.name] = _plain(v)
        return out
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------- conversion


class _Converter:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, msg: str) -> OptionsError:
        return OptionsError(f"{self.source}: {where or '<top level>'}: {msg}")

    def convert(self, tp: Any, value: Any, where: str) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None:
                if type(None) in args:
                    return None
                raise self.error(where, "must not be empty (null)")
            errors = []
            for a in args:
                if a is type(None):
                    continue
                try:
                    return self.convert(a, value, where)
                except OptionsError as e:
                    errors.append(str(e).split(": ", 2)[-1])
            raise self.error(where, " / ".join(dict.fromkeys(errors)))
        if origin is Literal:
            allowed = typing.get_args(tp)
            if value not in allowed:
                raise self.error(where, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
            return value
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, value, where)
        if origin is list:
            if not isinstance(value, list | tuple):
                raise self.error(where, f"expected a list, got {_show(value)}")
            (item,) = typing.get_args(tp)
            return [self.convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, Mapping):
                raise self.error(where, f"expected a mapping, got {_show(value)}")
            _, item = typing.get_args(tp)
            return {str(k): self.convert(item, v, f"{where}.{k}") for k, v in value.items()}
        if tp is bool:
            if not isinstance(value, bool):
                raise self.error(where, f"expected true/false, got {_show(value)}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    return int(value)
                raise self.error(where, f"expected an integer, got {_show(value)}")
            return value
        if tp is float:
            if isinstance(value, bool):
                raise self.error(where, f"expected a number, got {_show(value)}")
            if isinstance(value, int | float):
                return float(value)
            if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
                try:
                    return float(value)
                except ValueError:
                    pass
            raise self.error(where, f"expected a number, got {_show(value)}")
        if tp is str:
            if not isinstance(value, str):
                raise self.error(where, f"expected a string, got {_show(value)}")
            return value
        raise TypeError(f"unsupported schema type {tp!r} at {where}")  # pragma: no cover

    def dataclass(self, cls: type, value: Any, where: str) -> Any:
        if not isinstance(value, Mapping):
            raise self.error(where, f"expected a mapping, got {_show(value)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        extra = getattr(cls, "_extra", None)
        kwargs: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, v in value.items():
            key = str(key)
            sub = f"{where}.{key}" if where else key
            if key in fields and key != extra:
                kwargs[key] = self.convert(hints[key], v, sub)
            elif extra is not None:
                rest[key] = _yaml11_numbers(v)
            else:
                allowed = ", ".join(k for k in fields)
                raise self.error(sub, f"unknown key {key!r}{_did_you_mean(key, fields)} (allowed: {allowed})")
        if extra is not None:
            kwargs[extra] = rest
        missing = [
            n for n, f in fields.items()
            if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise self.error(f"{where}.{missing[0]}" if where else missing[0], "required key is missing")
        return cls(**kwargs)


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml11_numbers(v: Any) -> Any:
    """YAML 1.1 reads ``2e-4`` (no dot) as a string; in free-form class arguments read it as a float."""
    if isinstance(v, str) and _FLOAT_RE.match(v):
        return float(v)
    if isinstance(v, list):
        return [_yaml11_numbers(x) for x in v]
    return v


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _did_you_mean(key: str, names: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ------------------------------------------------------------------------------------------ overrides


def apply_override(tree: dict[str, Any], assignment: str, *, source: str = "--set") -> None:
    """Apply ``a.b.c=value`` to the raw YAML tree (value parsed as YAML), creating missing mappings."""
    if "=" not in assignment:
        raise OptionsError(f"{source}: {assignment!r}: expected key.sub=value")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise OptionsError(f"{source}: {assignment!r}: empty key component")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise OptionsError(f"{source}: {key}: value {raw!r} is not valid YAML ({e})") from None
    node: Any = tree
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p) if isinstance(node, dict) else None
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise OptionsError(f"{source}: {'.'.join(parts[:i + 1])} is not a mapping; cannot set {key}")
        node = nxt
    node[parts[-1]] = value


# ------------------------------------------------------------------------------------------- loading


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise OptionsError(f"{p}: no such option file")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise OptionsError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise OptionsError(f"{p}: expected a mapping at the top level, got {type(tree).__name__}")
    return tree


def parse_options(tree: Mapping[str, Any], *, source: str = "<options>", check_classes: bool = True) -> Options:
    """Validate a raw option tree into :class:`Options` (the only place options are parsed)."""
    conv = _Converter(source)
    opts: Options = conv.dataclass(Options, tree, "")
    opts.source = source
    _check_semantics(opts, conv)
    if check_classes:
        _check_classes(opts, conv)
    return opts


def read_with_overrides(path: str | Path, overrides: Sequence[str] = ()) -> tuple[dict[str, Any], str]:
    """The raw tree of ``path`` with ``--set`` overrides applied, and the source name errors use."""
    tree = read_yaml(path)
    for item in overrides:
        apply_override(tree, item, source=f"{path} (--set {item})")
    src = str(path) if not overrides else f"{path} (with --set {' '.join(overrides)})"
    return tree, src


def load_options(path: str | Path, overrides: Sequence[str] = (), *, check_classes: bool = True) -> Options:
    """Read ``path``, apply ``--set`` overrides, validate. Errors name the file and the key."""
    tree, src = read_with_overrides(path, overrides)
    return parse_options(tree, source=src, check_classes=check_classes)


def parse_test_options(tree: Mapping[str, Any], *, source: str = "<options>",
                       check_classes: bool = True) -> TestOptions:
    """Validate a raw test option tree into :class:`TestOptions` (same converter and checks as training)."""
    conv = _Converter(source)
    opts: TestOptions = conv.dataclass(TestOptions, tree, "")
    opts.source = source
    _check_test_semantics(opts, conv)
    if check_classes and opts.network_g is not None:
        _check_network(conv, "network_g", opts.network_g)
    return opts


def load_test_options(path: str | Path, overrides: Sequence[str] = (), *,
                      check_classes: bool = True) -> TestOptions:
    """Read a test option file (``options/test/*.yml``), apply ``--set`` overrides, validate."""
    tree, src = read_with_overrides(path, overrides)
    return parse_test_options(tree, source=src, check_classes=check_classes)


# ------------------------------------------------------------------------------------------- checks


def _check_top(o: Options | TestOptions, conv: _Converter) -> None:
    """``name``, ``model_type``, ``scale``, ``num_gpu`` (training and test files alike)."""
    err = conv.error
    if not o.name or "/" in o.name or o.name in (".", ".."):
        raise err("name", f"{o.name!r} is not a usable experiment folder name")
    if o.model_type not in MODEL_TYPES:
        raise err("model_type", f"{o.model_type!r} is not one of {', '.join(MODEL_TYPES)}"
                  f"{_did_you_mean(o.model_type, MODEL_TYPES)}")
    if o.scale < 1:
        raise err("scale", f"must be >= 1, got {o.scale}")
    if isinstance(o.num_gpu, int) and not 0 <= o.num_gpu <= 1:
        raise err("num_gpu", f"0 (CPU), 1 or auto; got {o.num_gpu} (per process: several GPUs run one process "
                  "each, restore train --launcher pytorch / slurm)")
    if o.model_type == "DenoiseModel" and o.scale != 1:
        raise err("scale", f"a DenoiseModel has scale 1, got {o.scale}")


def _check_metrics(metrics: Mapping[str, MetricOptions], conv: _Converter) -> None:
    for name, m in metrics.items():
        if m.type not in METRICS:
            raise conv.error(f"val.metrics.{name}.type", f"{m.type!r} is not one of {', '.join(METRICS)}")
        if m.crop_border < 0:
            raise conv.error(f"val.metrics.{name}.crop_border", "must be >= 0")


def _check_semantics(o: Options, conv: _Converter) -> None:
    err = conv.error
    _check_top(o, conv)
    if "train" not in o.datasets:
        raise err("datasets.train", "required key is missing")
    for phase, ds in o.datasets.items():
        where = f"datasets.{phase}"
        if phase != "train" and not phase.startswith("val"):
            raise err(where, "dataset phases are 'train' and 'val', 'val_1', ...")
        _check_dataset(ds, phase, o, conv, where)
    t = o.train
    if t.total_iter < 1:
        raise err("train.total_iter", f"must be >= 1, got {t.total_iter}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise err("train.ema_decay", f"must be in [0, 1), got {t.ema_decay}")
    if t.pixel_opt is None and t.distill_opt is None and t.affinity_opt is None:
        raise err("train.pixel_opt", "no loss configured (pixel_opt, distill_opt or affinity_opt)")
    if o.path.resample_tail_g is not None and o.path.pretrain_network_g is None:
        raise err("path.resample_tail_g", "resamples the warm start's tail: set path.pretrain_network_g too")
    if o.model_type == "DistillModel":
        if o.network_t is None:
            raise err("network_t", "a DistillModel needs a teacher network (network_t)")
        if o.path.pretrain_network_t is None:
            raise err("path.pretrain_network_t", "a DistillModel needs the teacher's weights")
    else:
        for k in ("distill_opt", "affinity_opt"):
            if getattr(t, k) is not None:
                raise err(f"train.{k}", f"only a DistillModel takes {k} (model_type is {o.model_type})")
        if o.network_t is not None:
            raise err("network_t", f"only a DistillModel takes a teacher (model_type is {o.model_type})")
    if t.lora is not None and isinstance(t.lora.targets, str) and t.lora.targets != "dsclora":
        raise err("train.lora.targets", f"'dsclora' or a mapping layer -> [rank, alpha], got {t.lora.targets!r}")
    if t.lora is not None and isinstance(t.lora.targets, dict):
        for name, ra in t.lora.targets.items():
            if len(ra) != 2 or ra[0] < 1 or int(ra[0]) != ra[0]:
                raise err(f"train.lora.targets.{name}", f"expected [rank, alpha] with an integer rank, got {ra}")
    lg = o.logger
    for k in ("print_freq", "save_checkpoint_freq"):
        if getattr(lg, k) < 1:
            raise err(f"logger.{k}", f"must be >= 1, got {getattr(lg, k)}")
    if lg.wandb and lg.wandb.get("project") is not None:
        raise err("logger.wandb.project", "wandb logging is not supported; use use_tb_logger")
    if o.val is not None:
        if o.val.val_freq < 1:
            raise err("val.val_freq", f"must be >= 1, got {o.val.val_freq}")
        if not any(p.startswith("val") for p in o.datasets):
            raise err("val", "validation is configured but there is no datasets.val")
        _check_metrics(o.val.metrics, conv)


def _check_dataset(ds: DatasetOptions, phase: str, o: Options | TestOptions, conv: _Converter, where: str) -> None:
    err = conv.error
    gts = ds.dataroot_gt if isinstance(ds.dataroot_gt, list) else [ds.dataroot_gt]
    if not gts:
        raise err(f"{where}.dataroot_gt", "at least one folder")
    if isinstance(ds.dataroot_lq, list) and len(ds.dataroot_lq) != len(gts):
        raise err(f"{where}.dataroot_lq", f"{len(ds.dataroot_lq)} LR folders for {len(gts)} HR folders")
    if isinstance(ds.dataroot_lq, str) and len(gts) != 1:
        raise err(f"{where}.dataroot_lq", "give one LR folder per HR folder (a list)")
    if ds.type not in DATASET_TYPES:
        raise err(f"{where}.type", f"{ds.type!r} is not one of {', '.join(DATASET_TYPES)}"
                  f"{_did_you_mean(ds.type, DATASET_TYPES)}")
    denoise = ds.type == "DenoiseDataset"
    if denoise != (o.model_type == "DenoiseModel"):
        raise err(f"{where}.type", f"{ds.type} does not go with model_type {o.model_type}")
    if denoise:
        if ds.dataroot_lq is not None:
            raise err(f"{where}.dataroot_lq", "a DenoiseDataset makes its noisy inputs; give dataroot_gt only")
        if phase == "train":
            if (ds.sigma is None) == (ds.sigma_range is None):
                raise err(f"{where}.sigma", "give exactly one of sigma (fixed) or sigma_range [lo, hi] (blind)")
        elif ds.sigma is None:
            raise err(f"{where}.sigma", "validation and test sets need a fixed sigma")
        if ds.sigma_range is not None and (len(ds.sigma_range) != 2 or not 0 <= ds.sigma_range[0]
                                           <= ds.sigma_range[1]):
            raise err(f"{where}.sigma_range", f"expected [lo, hi] with 0 <= lo <= hi, got {ds.sigma_range}")
        if ds.sigma is not None and ds.sigma < 0:
            raise err(f"{where}.sigma", f"must be >= 0, got {ds.sigma}")
        if ds.color == "y":
            raise err(f"{where}.color", "denoising data is 'rgb' or 'gray'")
        if ds.opponent is not None and ds.color != "rgb":
            raise err(f"{where}.opponent", "opponent planes are made from colour images: set color: rgb")
    else:
        for k in ("sigma", "sigma_range", "opponent"):
            if getattr(ds, k) is not None:
                raise err(f"{where}.{k}", "noise levels and opponent planes belong to a DenoiseDataset")
        if "{}" not in ds.filename_tmpl:
            raise err(f"{where}.filename_tmpl", f"must contain '{{}}', got {ds.filename_tmpl!r}")
    if phase == "train":
        if ds.gt_size is None:
            raise err(f"{where}.gt_size", "training needs a patch size (gt_size)")
        if ds.gt_size % o.scale:
            raise err(f"{where}.gt_size", f"{ds.gt_size} is not a multiple of scale {o.scale}")
        if ds.batch_size_per_gpu < 1 or ds.num_worker_per_gpu < 0 or ds.dataset_enlarge_ratio < 1:
            raise err(where, "batch_size_per_gpu >= 1, num_worker_per_gpu >= 0, dataset_enlarge_ratio >= 1")
        if ds.prefetch_mode == "cuda" and not ds.pin_memory:
            raise err(f"{where}.pin_memory", "prefetch_mode: cuda needs pin_memory: true")


def _check_test_semantics(o: TestOptions, conv: _Converter) -> None:
    err = conv.error
    _check_top(o, conv)
    if not o.datasets:
        raise err("datasets", "no test sets (datasets.test_1, datasets.test_2, ...)")
    seen: dict[str, str] = {}
    for phase, ds in o.datasets.items():
        where = f"datasets.{phase}"
        if not phase.startswith("test"):
            raise err(where, "test sets are named 'test', 'test_1', 'test_2', ...")
        # the validation-set checks, on the keys a test set shares with it
        shared = {f.name: getattr(ds, f.name) for f in dataclasses.fields(ds) if f.name != "color"}
        _check_dataset(DatasetOptions(**shared, color=ds.color or "rgb"), "val", o, conv, where)
        if ds.color is not None and ds.type != "DenoiseDataset":
            raise err(f"{where}.color", "SR test sets are read as RGB (a Y-channel network runs on their Y); "
                      "remove color")
        if not ds.name or "/" in ds.name or ds.name in (".", ".."):
            raise err(f"{where}.name", f"{ds.name!r} is not a usable folder name")
        if ds.name in seen:
            raise err(f"{where}.name", f"{ds.name!r} is also the name of datasets.{seen[ds.name]} (each test set "
                      "gets its own results folder)")
        seen[ds.name] = phase
    if not o.path.pretrain_network_g:
        raise err("path.pretrain_network_g", "the weights to test (a .pth file)")
    if not o.val.metrics:
        raise err("val.metrics", "no metrics (e.g. psnr: {type: calculate_psnr, crop_border: 4})")
    _check_metrics(o.val.metrics, conv)
    if o.val.suffix is not None and "/" in o.val.suffix:
        raise err("val.suffix", f"{o.val.suffix!r}: a file-name suffix, without '/'")


def _check_kwargs(conv: _Converter, where: str, kind: str, type_name: str, given: Iterable[str],
                  required: Iterable[str], optional: Iterable[str]) -> None:
    allowed = [*required, *optional]
    for k in given:
        if k not in allowed:
            raise conv.error(f"{where}.{k}", f"{kind} {type_name} takes no argument {k!r}{_did_you_mean(k, allowed)}"
                             f" (allowed: {', '.join(allowed) or 'none'})")
    for k in required:
        if k not in given:
            raise conv.error(f"{where}.{k}", f"{kind} {type_name} needs {k!r}")


def _check_network(conv: _Converter, key: str, net: NetworkOptions) -> None:
    """``type`` names one of our architectures and the other keys are its constructor's arguments."""
    from restore.registry import ARCHS
    from restore.train import networks

    try:
        sig = networks.arch_signature(net.type)
    except KeyError:
        hint = _did_you_mean(net.type, ARCHS)
        raise conv.error(f"{key}.type", f"unknown architecture {net.type!r}{hint} (known: "
                         f"{', '.join(ARCHS)})") from None
    req = [n for n, p in sig.items() if p.default is inspect.Parameter.empty]
    _check_kwargs(conv, key, "architecture", net.type, net.kwargs, req, [n for n in sig if n not in req])


def _check_classes(o: Options, conv: _Converter) -> None:
    for key in ("network_g", "network_t"):
        net: NetworkOptions | None = getattr(o, key)
        if net is not None:
            _check_network(conv, key, net)

    t = o.train
    if t.optim_g.type not in OPTIMIZERS:
        raise conv.error("train.optim_g.type", f"{t.optim_g.type!r} is not one of {', '.join(OPTIMIZERS)}")
    import torch.optim  # only for the signature

    sig = inspect.signature(getattr(torch.optim, t.optim_g.type))
    params = [n for n in sig.parameters if n not in ("self", "params")]
    _check_kwargs(conv, "train.optim_g", "optimizer", t.optim_g.type, t.optim_g.kwargs, ["lr"],
                  [p for p in params if p != "lr"])
    if t.scheduler is not None:
        if t.scheduler.type not in SCHEDULERS:
            raise conv.error("train.scheduler.type", f"{t.scheduler.type!r} is not one of {', '.join(SCHEDULERS)}")
        req, opt = SCHEDULERS[t.scheduler.type]
        _check_kwargs(conv, "train.scheduler", "scheduler", t.scheduler.type, t.scheduler.kwargs, req, opt)
    for key in ("pixel_opt", "distill_opt", "affinity_opt"):
        lo: ClassOptions | None = getattr(t, key)
        if lo is None:
            continue
        if lo.type not in LOSSES:
            raise conv.error(f"train.{key}.type", f"{lo.type!r} is not one of {', '.join(LOSSES)}"
                             f"{_did_you_mean(lo.type, LOSSES)}")
        if (key == "affinity_opt") != (lo.type == "SpatialAffinityLoss"):
            raise conv.error(f"train.{key}.type", "affinity_opt takes SpatialAffinityLoss; pixel/distill take "
                             "L1Loss, MSELoss or CharbonnierLoss")
        req, opt = LOSSES[lo.type]
        _check_kwargs(conv, f"train.{key}", "loss", lo.type, lo.kwargs, req, opt)
        if lo.type == "SpatialAffinityLoss":
            s, te = lo.kwargs["student_layers"], lo.kwargs["teacher_layers"]
            if not (isinstance(s, list) and isinstance(te, list) and s and len(s) == len(te)):
                raise conv.error(f"train.{key}", "student_layers and teacher_layers: two non-empty lists of the "
                                 "same length")
