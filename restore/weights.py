"""``load_model``: unwrap a checkpoint, detect its family, build and load it strictly.

Accepted inputs: PyTorch checkpoints (``.pth``/``.pt``, read with ``weights_only=True``), flat or
wrapped in ``params_ema`` / ``params`` / ``state_dict`` / ``model``, with or without a ``module.``
(DataParallel) prefix; OpenCV dnn_superres ESPCN graphs (``.pb``). ``params_ema`` is preferred over
``params`` when both exist (BasicSR convention, and what official test scripts use).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from restore.archs.base import Detection, strip_prefix
from restore.errors import ModelLoadError

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "network")


def unwrap_state_dict(obj: object, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Return the flat ``name -> tensor`` dict inside a checkpoint object."""
    for _ in range(3):  # wrappers can nest at most a couple of levels
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return strip_prefix(obj, "module.")
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
        else:
            break
    keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise ModelLoadError(
        f"{source}: expected a state dict of tensors (flat, or under one of {', '.join(WRAPPER_KEYS)}); "
        f"found {keys}"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _check_file(p: Path) -> None:
    if p.is_dir():
        raise ModelLoadError(f"{p}: is a directory, not a weights file")
    if not p.exists():
        raise ModelLoadError(f"{p}: no such weights file")
    if not p.is_file():
        raise ModelLoadError(f"{p}: not a regular file (a device, pipe or socket), not a weights file")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights of ``path`` as a flat state dict (``.pb`` via OpenCV for ESPCN).

    Whatever goes wrong while reading the file (PyTorch's weights-only unpickler raises IndexError, KeyError,
    UnicodeDecodeError, ... on text and other non-checkpoints; a blocked unsafe pickle raises UnpicklingError)
    is a :class:`ModelLoadError` naming the file: the failure is caught by where it happens, not by its type.
    """
    p = Path(path)
    _check_file(p)
    if p.suffix.lower() == ".pb":
        from restore.archs import espcn

        try:
            return espcn.load_pb(p)
        except ModelLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure of the graph is the file's fault
            raise ModelLoadError(f"{p}: not a readable ESPCN .pb graph ({_first_line(e)})") from None
    return unwrap_state_dict(read_checkpoint(p), source=str(p))


def read_checkpoint(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with every failure a :class:`ModelLoadError` naming
    the file (see :func:`read_state_dict`) and no warning reaching the user."""
    p = Path(path)
    _check_file(p)
    try:
        with warnings.catch_warnings():  # e.g. the pickle-protocol UserWarning: the user can do nothing with it
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except MemoryError:
        raise ModelLoadError(f"{p}: not enough memory to read this checkpoint") from None
    except Exception as e:  # noqa: BLE001 - see read_state_dict
        raise ModelLoadError(f"{p}: not a readable PyTorch checkpoint ({_what_it_is(p, e)}); expected a .pth "
                             "state dict or an ESPCN .pb") from None


_KINDS = ((b"version https://git-lfs", "a Git LFS pointer, not the weights: fetch them with 'git lfs pull'"),
          (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"\x1f\x8b", "a gzip archive"),
          (b"PK\x03\x04", "a zip archive that is not a PyTorch checkpoint"), (b"<", "an HTML/XML page"),
          (b"{", "a JSON document"), (b"[", "a JSON document"))


def _what_it_is(p: Path, err: BaseException) -> str:
    """What the unreadable file looks like, in words (from its first bytes), else the loader's first line."""
    try:
        with open(p, "rb") as f:
            head = f.read(512)
    except OSError:
        return _first_line(err)
    if not head:
        return "the file is empty"
    unsafe = isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower()
    if unsafe and (head[:1] == b"\x80" or (head.startswith(b"PK\x03\x04") and _is_torch_zip(p))):
        return "it holds Python objects that are not plain tensors, refused for safety (weights_only)"
    stripped = head.lstrip()
    for magic, what in _KINDS:
        if stripped.startswith(magic):
            return f"it is {what}"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3") or head.startswith(b"RIFF"):
        return "it is a video or audio file"
    if p.suffix.lower() == ".onnx":
        return "it is an ONNX graph; restore loads networks from their PyTorch weights (the .pth it was exported from)"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it is a text file"
    if "weights only load failed" in str(err).lower():  # torch's advice (weights_only=False) is unsafe: not shown
        return "unrecognised contents"
    return _first_line(err)


def _is_torch_zip(p: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def check_finite(state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Refuse weights with NaN or infinite values, and weights and biases that are not real floating point (an
    integer or complex copy would be cast silently and run to a wrong image; integer buffers such as BatchNorm's
    ``num_batches_tracked`` or a transformer's ``relative_position_index`` are fine): ModelLoadError naming the
    first such tensor."""
    for name, t in state_dict.items():
        last = name.rsplit(".", 1)[-1]
        if t.is_complex() or (not t.is_floating_point() and last.startswith(("weight", "bias", "lora_"))):
            raise ModelLoadError(f"{source}: tensor {name!r} is {str(t.dtype).removeprefix('torch.')}, not floating "
                                 "point; these are not a network's weights as trained (export float weights)")
        if t.is_floating_point():
            if not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ModelLoadError(f"{source}: tensor {name!r} has {bad} NaN/infinite value(s); the checkpoint "
                                     "is damaged (a diverged training run?)")


def _unrecognised(state_dict: Mapping[str, torch.Tensor], source: str, families: Mapping[str, str],
                  hint: str = "") -> ModelLoadError:
    sample = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state_dict.items())[:4])
    return ModelLoadError(f"{source}: unrecognised architecture (known families: {', '.join(families)}); "
                          f"first keys: {sample or '(empty)'}{hint}")


def detect(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> Detection:
    """The single family that recognises ``state_dict``; a clear error when none or several do."""
    from restore.registry import FAMILIES, detect_all

    found = detect_all(state_dict)
    if not found:
        raise _unrecognised(state_dict, source, FAMILIES)
    if len(found) > 1:
        raise ModelLoadError(f"{source}: ambiguous, matches {[d.family for d in found]}")
    return found[0]


def build_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> nn.Module:
    """restore's own families only (no zoo fallback): :func:`resolve` without spandrel."""
    return resolve(state_dict, source=source, zoo=False)[0]


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """:func:`read_state_dict`, plus ``.safetensors`` files (through the optional zoo extra)."""
    p = Path(path)
    if p.suffix.lower() == ".safetensors" and p.is_file():
        from restore import zoo

        return strip_prefix(zoo.read_safetensors(str(p)), "module.")
    return read_state_dict(p)


def resolve(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict",
            zoo: bool = True) -> tuple[nn.Module, dict[str, str]]:
    """The model for ``state_dict`` (weights loaded, eval mode) and which loader recognised it.

    restore's own families come first and are authoritative: when one recognises the dict, its strict load
    either succeeds or raises; the fallback is never consulted. Only when no family matches is the
    optional spandrel zoo asked (:mod:`restore.zoo`); without spandrel installed the error says which
    extra to install. Non-finite weights are refused (:func:`check_finite`). Any failure while recognising
    or building is a :class:`ModelLoadError` naming ``source``.
    """
    check_finite(state_dict, source=source)
    try:
        return _resolve(state_dict, source, zoo)
    except ModelLoadError:
        raise
    except MemoryError:
        raise ModelLoadError(f"{source}: not enough memory to build this model") from None
    except Exception as e:  # noqa: BLE001 - a malformed dict can break a detector or a constructor anywhere
        raise ModelLoadError(f"{source}: cannot build a model from these weights ({type(e).__name__}: "
                             f"{_first_line(e)})") from None


def _resolve(state_dict: Mapping[str, torch.Tensor], source: str,
             use_zoo: bool) -> tuple[nn.Module, dict[str, str]]:
    from restore.registry import FAMILIES, detect_all

    found = detect_all(state_dict)
    if len(found) == 1:
        det = found[0]
        model = det.build()
        try:
            model.load_state_dict(dict(det.state_dict), strict=True)
        except RuntimeError as e:
            raise ModelLoadError(f"{source}: detected {det.description} but strict load failed: "
                                 f"{_first_line(e)}") from None
        return model.eval(), {"loader": "restore", "detected": det.description}
    if found:
        raise ModelLoadError(f"{source}: ambiguous, matches {[d.family for d in found]}")
    if not use_zoo:
        raise _unrecognised(state_dict, source, FAMILIES)
    from restore import zoo

    if not zoo.available():
        raise _unrecognised(state_dict, source, FAMILIES, hint=". Other architectures (ESRGAN, SwinIR, HAT, "
                            f"OmniSR, ...) load through the optional model zoo: {zoo.INSTALL_HINT}")
    model = zoo.from_state_dict(state_dict, source=source)
    return model, {"loader": "spandrel", "detected": f"{model.description()} via spandrel {zoo.spandrel_version()}"}


def tiling_note(receptive_field: int | None, *, loader: str) -> str:
    """How the engine tiles a model with this receptive field (for ``restore info``)."""
    if receptive_field is not None:
        return f"exact (receptive field {receptive_field} px)"
    return "feathered (receptive field unknown)" if loader != "restore" else "feathered (global statistics)"


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Build the network stored in ``path`` (strict load, eval mode) with its ``meta`` attached.

    restore's families first; architectures none of them knows go to the optional spandrel zoo.
    """
    model, _ = resolve(read_weights(path), source=str(path))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def describe(path: str | Path) -> dict[str, object]:
    """What the loader recognises in ``path`` (for ``restore info``): which loader, what it detected, how the
    engine will tile it, the defaults assumed for zoo models, and the model's metadata."""
    model, found = resolve(read_weights(path), source=str(path))
    meta = model.meta
    info: dict[str, object] = {"file": str(path), **found,
                               "tiling": tiling_note(meta.receptive_field, loader=found["loader"])}
    if found["loader"] != "restore":
        info["assumed"] = list(model.assumptions())
    return {**info, **meta.to_dict()}


# ------------------------------------------------------------------------------------------ shipped weights

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = SHIPPED_DIR / "manifest.json"


def shipped_models() -> list[dict[str, object]]:
    """Entries of ``restore/weights/manifest.json`` (weights this project trained); [] when none ship yet."""
    if not MANIFEST.is_file():
        return []
    import json

    return list(json.loads(MANIFEST.read_text())["models"])


def resolve_model(name: str | None, *, task: str, scale: int | None = None, sigma: str | None = None,
                  color: str | None = None) -> Path:
    """Path of a shipped model: by ``name``, else the default for (task, scale/sigma), preferring ``color``
    (``gray``/``rgb``) when defaults exist for both."""
    models = shipped_models()
    if name is not None:
        hit = next((m for m in models if m["name"] == name), None)
        if hit is None:
            known = ", ".join(str(m["name"]) for m in models) or "none shipped yet"
            raise ModelLoadError(f"no shipped model named {name!r} (available: {known}); or pass --weights FILE")
        return SHIPPED_DIR / str(hit["file"])
    want = {"task": task, **({"scale": scale} if scale is not None else {}),
            **({"sigma": sigma} if sigma is not None else {})}
    hits = [m for m in models if m.get("default") and all(m.get(k) == v for k, v in want.items())]
    if color is not None and sigma not in (None, "blind") and not any(m.get("color") == color for m in hits):
        # no sigma-specific model for this colour: the blind one of the right colour beats the wrong colour
        hits = [m for m in models if m.get("default") and m.get("task") == task and m.get("sigma") == "blind"
                and m.get("color") == color] + hits
    hits.sort(key=lambda m: m.get("color") != color)  # stable: the preferred colour first, manifest order kept
    if not hits:
        what = f"x{scale} " if scale else (f"sigma {sigma} " if sigma else "")
        raise ModelLoadError(f"no shipped default {what}{task} model in this version; pass --weights FILE "
                             f"(any supported checkpoint, see 'restore info FILE')")
    return SHIPPED_DIR / str(hits[0]["file"])


SHIPPED_SIGMAS = ("15", "25", "50")


def shipped_sigma(sigma: float | str | None) -> str:
    """The shipped noise level that serves ``sigma``: "15" / "25" / "50" for exactly those, else "blind"."""
    if sigma is None:
        return "blind"
    text = f"{float(sigma):g}" if not isinstance(sigma, str) else sigma
    return text if text in SHIPPED_SIGMAS else "blind"


# ``--sigma auto`` (what ``restore denoise`` does without --sigma): per colour of the image, the estimated noise
# levels each shipped per-sigma model serves; outside every band the blind model runs. Each band ends near where
# the blind model starts to win on held-out Set14 crops, read on the estimate's scale (it reads ~0.5-1 high on
# textured crops at low sigma); the gray blind model is the stronger, so the gray bands are narrower. Two edges move
# for what files hold: the sigma-50 bands start lower, as noise clipped to 0-255 in an 8-bit file reads low (sigma 50
# read 41-48 on CBSD68 / Kodak24 / Set12 saved as uint8), and the colour sigma-15 band starts at 12.5, above a clean
# textured photo (Set14's baboon reads 12.5 clean).
# scripts/sigma_bands.py measures it; docs/results.md (section sigma-bands) has the table.
SIGMA_BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "rgb": {"15": (12.5, 19.0), "25": (20.5, 29.5), "50": (40.5, 56.0)},
    "gray": {"15": (12.5, 18.5), "25": (21.5, 28.5), "50": (44.0, 53.0)},
}


def sigma_for_estimate(estimate: float | None, color: str) -> str:
    """The shipped noise level ("15" / "25" / "50" / "blind") ``--sigma auto`` runs for an image of ``color``
    ("gray" / "rgb") with an estimated sigma (None: the image was too small to estimate)."""
    if estimate is not None:
        for level, (lo, hi) in SIGMA_BANDS[color].items():
            if lo <= estimate <= hi:
                return level
    return "blind"


def estimated_sigma(img: object) -> tuple[float | None, str]:
    """The image's Gaussian noise level on the 0-255 scale (``restore.metrics.noise``) and "", or None and why it
    could not be estimated (too small, non-finite pixels)."""
    import numpy as np

    from restore.metrics.noise import estimate_noise_sigma

    try:
        return estimate_noise_sigma(np.asarray(img)), ""
    except ValueError as e:  # numpy's LinAlgError included
        return None, str(e)


def auto_sigma(img: object, color: str) -> tuple[str, str]:
    """What ``--sigma auto`` runs for ``img`` of ``color``: the shipped noise level ("15" / "25" / "50" /
    "blind") and, for the line the command prints, the estimate and the model ("noise sigma ~23.8: sigma 25
    model") or why there is no estimate."""
    est, why_not = estimated_sigma(img)
    level = sigma_for_estimate(est, color)
    model = f"sigma {level} model" if level != "blind" else "blind model"
    return level, (f"noise sigma ~{est:.1f}: {model}" if est is not None else f"{why_not.partition(' (')[0]}: {model}")


def default_denoiser(sigma: float | str | None, color: str) -> Path:
    """The model ``restore denoise [--sigma S]`` picks for an image of ``color`` ("gray" or "rgb"): the
    shipped default for that noise level and colour (``restore eval --sigma S`` without a model scores exactly
    this choice)."""
    return resolve_model(None, task="denoise", sigma=shipped_sigma(sigma), color=color)

