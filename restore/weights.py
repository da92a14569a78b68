"""``load_model``: unwrap a checkpoint, detect its family, build and load it strictly.

Accepted inputs: PyTorch checkpoints (``.pth``/``.pt``, read with ``weights_only=True``), flat or
wrapped in ``params_ema`` / ``params`` / ``state_dict`` / ``model``, with or without a ``module.``
(DataParallel) prefix; OpenCV dnn_superres ESPCN graphs (``.pb``). ``params_ema`` is preferred over
``params`` when both exist (BasicSR convention, and what official test scripts use).
"""

from __future__ import annotations

import pickle
import zipfile
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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights of ``path`` as a flat state dict (``.pb`` via OpenCV for ESPCN)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such weights file")
    if p.suffix.lower() == ".pb":
        from restore.archs import espcn

        return espcn.load_pb(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"{p}: not a readable PyTorch checkpoint ({first}); expected a .pth state dict or an ESPCN .pb"
        ) from None
    return unwrap_state_dict(obj, source=str(p))


def detect(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> Detection:
    """The single family that recognises ``state_dict``; a clear error when none or several do."""
    from restore.registry import FAMILIES, detect_all

    found = detect_all(state_dict)
    if not found:
        sample = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state_dict.items())[:4])
        raise ModelLoadError(
            f"{source}: unrecognised architecture (known families: {', '.join(FAMILIES)}); "
            f"first keys: {sample or '(empty)'}"
        )
    if len(found) > 1:
        raise ModelLoadError(f"{source}: ambiguous, matches {[d.family for d in found]}")
    return found[0]


def build_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> nn.Module:
    det = detect(state_dict, source=source)
    model = det.build()
    try:
        model.load_state_dict(dict(det.state_dict), strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"{source}: detected {det.description} but strict load failed: {e}") from None
    return model.eval()


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """:func:`read_state_dict`, plus ``.safetensors`` files (through the optional zoo extra)."""
    p = Path(path)
    if p.suffix.lower() == ".safetensors" and p.is_file():
        from restore import zoo

        return strip_prefix(zoo.read_safetensors(str(p)), "module.")
    return read_state_dict(p)


def resolve(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> tuple[nn.Module, dict[str, str]]:
    """The model for ``state_dict`` (weights loaded, eval mode) and which loader recognised it.

    restore's own families come first and are authoritative: when one recognises the dict, its strict load
    either succeeds or raises; the fallback is never consulted. Only when no family matches is the
    optional spandrel zoo asked (:mod:`restore.zoo`); without spandrel installed the error says which
    extra to install.
    """
    from restore.registry import FAMILIES, detect_all

    found = detect_all(state_dict)
    if len(found) == 1:
        det = found[0]
        model = det.build()
        try:
            model.load_state_dict(dict(det.state_dict), strict=True)
        except RuntimeError as e:
            raise ModelLoadError(f"{source}: detected {det.description} but strict load failed: {e}") from None
        return model.eval(), {"loader": "restore", "detected": det.description}
    if found:
        raise ModelLoadError(f"{source}: ambiguous, matches {[d.family for d in found]}")
    from restore import zoo

    if not zoo.available():
        sample = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state_dict.items())[:4])
        raise ModelLoadError(
            f"{source}: unrecognised architecture (known families: {', '.join(FAMILIES)}); "
            f"first keys: {sample or '(empty)'}. Other architectures (ESRGAN, SwinIR, HAT, OmniSR, ...) load "
            f"through the optional model zoo: {zoo.INSTALL_HINT}"
        )
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
