"""``restore test -opt FILE``: score trained weights on the test sets of a BasicSR-style test option file.

The sequence of ``basicsr/test.py``, with torch only (no basicsr): the options are parsed once
(:func:`restore.train.options.load_test_options`); ``network_g`` is built by :mod:`restore.train.networks`
(the training code's table) and ``path.pretrain_network_g`` is loaded into it (``param_key_g``, falling
back from ``params_ema`` to ``params`` as BasicSR does; strictly unless ``strict_load_g: false``). Without
``network_g`` the architecture is detected from the weights, as :func:`restore.weights.load_model` does.

Data, noise and rounding are ``restore eval``'s (:mod:`restore.evaluate`): SR pairs from ``find_pairs``
(HR/ + LR_bicubic/X{S}/, SelfExSR ``image_SRF_{S}``, or HR only with MATLAB-bicubic LR) or from BasicSR's
``dataroot_gt`` + ``dataroot_lq`` + ``filename_tmpl``; HR mod-cropped to LR x scale; denoising noise from
``add_noise`` (``noise_seed`` reset per image, unclipped); outputs rounded to uint8. Each image is scored
with every ``val.metrics`` entry (its ``crop_border`` / ``test_y_channel`` / ``round_y``), so the file's
metrics ``{crop_border: S, test_y_channel: true}`` give exactly ``restore eval``'s Y-PSNR / SSIM.

Outputs under ``ROOT/results/<name>/``: ``<dataset>/<image>_<suffix>.png`` when ``val.save_img`` (suffix:
``val.suffix``, else the run's name, as BasicSR), and ``metrics.json``; every file is written atomically.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restore.train.options import TestDatasetOptions, TestOptions


@dataclass
class DatasetResult:
    phase: str
    name: str
    data: str
    sigma: float | None
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def means(self) -> dict[str, float]:
        keys = [k for k in (self.per_image[0] if self.per_image else {}) if k != "image"]
        return {k: float(np.mean([r[k] for r in self.per_image])) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "data": self.data, "sigma": self.sigma, "images": len(self.per_image),
                **{k: round(v, 4) for k, v in self.means().items()}, "per_image": self.per_image}


@dataclass
class TestResult:
    __test__ = False
    name: str
    task: str
    scale: int
    weights: str
    weights_key: str
    network: str
    device: str
    results_dir: Path
    datasets: list[DatasetResult] = field(default_factory=list)

    @property
    def metrics_file(self) -> Path:
        return self.results_dir / "metrics.json"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "scale": self.scale, "weights": self.weights,
                "weights_key": self.weights_key, "network": self.network, "device": self.device,
                "datasets": {d.name: d.to_dict() for d in self.datasets}}


# -------------------------------------------------------------------------------------------- weights


def read_checkpoint(path: str | Path, param_key: str | None) -> tuple[dict[str, torch.Tensor], str, dict | None]:
    """(flat state dict, the key it came from, the ``restore_arch`` record of a training checkpoint or None).

    ``param_key`` when the file has it (``params_ema`` falls back to ``params``, as BasicSR's
    ``load_network``); ``None``: ``params_ema`` > ``params`` > the usual wrappers. ``module.`` is stripped.
    """
    from restore.weights import ModelLoadError, read_checkpoint, read_weights, unwrap_state_dict

    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such weights file (path.pretrain_network_g)")
    if p.suffix.lower() in (".pb", ".safetensors"):
        return read_weights(p), "(flat)", None
    obj = read_checkpoint(p)
    if not isinstance(obj, Mapping) or all(isinstance(v, torch.Tensor) for v in obj.values()):
        return unwrap_state_dict(obj, source=str(p)), "(flat)", None
    record = obj.get("restore_arch") if isinstance(obj.get("restore_arch"), Mapping) else None
    keys = [param_key] if param_key not in (None, "params_ema") else ["params_ema", "params"]
    for k in keys:
        if isinstance(obj.get(k), Mapping):
            return unwrap_state_dict(obj[k], source=str(p)), str(k), record
    if param_key:
        raise ModelLoadError(f"{p}: no {param_key!r} entry (path.param_key_g); found {', '.join(map(str, obj))}")
    return unwrap_state_dict(obj, source=str(p)), "(unwrapped)", record


def _load_into(net: nn.Module, sd: Mapping[str, torch.Tensor], *, strict: bool, source: str) -> list[str]:
    """Load ``sd``; strict: any missing / unexpected / reshaped tensor is a one-line error. Returns notes."""
    from restore.weights import ModelLoadError

    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    reshaped = [k for k in sd if k in own and own[k].shape != sd[k].shape]
    problems = ", ".join(f"{what} {keys[:4]}" for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                                 ("shape differs", reshaped)) if keys)
    if problems and strict:
        raise ModelLoadError(f"{source}: does not fit network_g ({type(net).__name__}): {problems}")
    net.load_state_dict({k: v for k, v in sd.items() if k not in reshaped}, strict=False)
    return [f"{source}: loaded non-strictly: {problems}"] if problems else []


def build_model(o: TestOptions) -> tuple[nn.Module, str, str, list[str]]:
    """(eval-mode network with ``meta``, weights key used, description, notes) for a test option file."""
    from restore.train import networks
    from restore.weights import ModelLoadError, resolve

    src = o.path.pretrain_network_g
    sd, key, record = read_checkpoint(src, o.path.param_key_g)
    notes = [f"{src}: no {o.path.param_key_g!r} entry; using 'params' (as BasicSR)"] if (
        o.path.param_key_g == "params_ema" and key == "params") else []
    if o.network_g is None:
        net, found = resolve(sd, source=src)
        what = found["detected"]
    else:
        spec = {"type": o.network_g.type, **o.network_g.kwargs}
        if record is not None and record.get("type") != o.network_g.type:
            raise ModelLoadError(f"{src}: trained as {record.get('type')}, but network_g is {o.network_g.type}")
        net = networks.build_network(spec)
        lora = record.get("lora") if record is not None else None
        if lora:  # a ConvLoRA run: the adapters the record describes, then the weights (as restore export)
            net = networks.add_lora(net, networks.lora_targets(lora["targets"]),
                                    fuse_first=bool(lora.get("fuse_first", True)))
        notes += _load_into(net, sd, strict=o.path.strict_load_g, source=src)
        what = f"{o.network_g.type}({', '.join(f'{k}={v}' for k, v in o.network_g.kwargs.items())})"
    for p in net.parameters():
        p.requires_grad_(False)
    meta = net.meta
    if meta.task != o.task or (o.task == "sr" and meta.scale != o.scale):
        got = f"{meta.task} x{meta.scale}" if meta.task == "sr" else meta.task
        want = f"sr x{o.scale}" if o.task == "sr" else "denoise"
        raise ValueError(f"{o.source}: {src} is a {got} network; model_type {o.model_type} with scale {o.scale} "
                         f"needs a {want} one")
    return net.eval(), key, what, notes


# ----------------------------------------------------------------------------------------------- data


def _sr_items(ds: TestDatasetOptions, scale: int, what: str) -> tuple[int, Iterator[tuple[str, Any, Any]]]:
    from restore.evaluate import Pair, find_pairs, sr_pairs
    from restore.train.data import list_folder, pair_lq_paths

    if ds.dataroot_lq is not None:
        gts = list_folder(ds.dataroot_gt, what)
        lqs = pair_lq_paths(gts, ds.dataroot_lq, ds.filename_tmpl, what)
        pairs = [Pair(g.stem, g, q) for g, q in zip(gts, lqs, strict=True)]
    else:
        pairs = find_pairs(ds.dataroot_gt, scale)
    return len(pairs), sr_pairs(pairs, scale)


def _denoise_items(ds: TestDatasetOptions, color: str, what: str) -> tuple[int, Iterator[tuple[str, Any, Any]]]:
    from restore.evaluate import add_noise
    from restore.train.data import list_folder, read_as

    files = list_folder(ds.dataroot_gt, what)
    assert ds.sigma is not None  # checked when parsed

    def items() -> Iterator[tuple[str, Any, Any]]:
        for f in files:
            clean = read_as(f, color)
            clean = clean[..., 0] if clean.shape[2] == 1 else clean
            yield f.stem, add_noise(clean, ds.sigma, ds.noise_seed), clean

    return len(files), items()


# ------------------------------------------------------------------------------------------------ run


def _device(o: TestOptions) -> str:
    from restore.train.loop import resolve_num_gpu

    return "cuda" if resolve_num_gpu(o) else "cpu"  # type: ignore[arg-type]


def run_test(o: TestOptions, *, root: str | Path = ".", progress: bool = True) -> TestResult:
    """Every ``datasets.test_*`` of ``o``: restore, score, optionally save; then ``metrics.json``."""
    from tqdm import tqdm

    from restore import pixels
    from restore.engine.restorer import Restorer
    from restore.io import files, image
    from restore.metrics.psnr_ssim import calculate_psnr, calculate_ssim

    fns = {"calculate_psnr": calculate_psnr, "calculate_ssim": calculate_ssim}
    device = _device(o)
    net, key, what, notes = build_model(o)
    for note in notes:
        print(f"restore: note: {note}", file=sys.stderr)
    runner = Restorer(net.to(device), device=device, precision="fp32")
    res = TestResult(name=o.name, task=o.task, scale=o.scale, weights=o.path.pretrain_network_g, weights_key=key,
                     network=what, device=device, results_dir=Path(root) / "results" / o.name)
    suffix = o.val.suffix or o.name
    for phase, ds in o.datasets.items():
        where = f"{o.source}: datasets.{phase}"
        if o.task == "sr":
            n, items = _sr_items(ds, o.scale, where)
        else:
            color = ds.color or ("rgb" if net.meta.in_channels == 3 else "gray")
            if (color == "rgb") != (net.meta.in_channels == 3):
                raise ValueError(f"{where}.color: {color} images for a {net.meta.in_channels}-channel network")
            n, items = _denoise_items(ds, color, where)
        out_dir = res.results_dir / ds.name
        dres = DatasetResult(phase=phase, name=ds.name, data=ds.dataroot_gt, sigma=ds.sigma)
        for img_name, lq, gt in tqdm(items, total=n, desc=ds.name, leave=False, disable=not (progress and o.val.pbar)):
            out = runner.run(lq)
            if out.dtype != np.uint8:
                out = pixels.to_uint(out, np.uint8)
            if o.val.save_img:
                image.write_image(out_dir / f"{img_name}_{suffix}.png", out)
            row: dict[str, Any] = {"image": img_name}
            for m_name, m in o.val.metrics.items():
                row[m_name] = float(fns[m.type](out, gt, crop_border=m.crop_border, test_y_channel=m.test_y_channel,
                                                round_y=m.round_y))
            dres.per_image.append(row)
        res.datasets.append(dres)
    res.results_dir.mkdir(parents=True, exist_ok=True)
    files.publish_bytes(res.metrics_file, (json.dumps(res.to_dict(), indent=2) + "\n").encode(), overwrite=True)
    return res
