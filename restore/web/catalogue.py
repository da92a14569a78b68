"""The models the web demo offers: shipped ones, a ``--weights-dir`` folder and uploads (no Gradio here).

A ``<stem>.json`` next to a checkpoint may give ``{"psnr": {"Set5": 32.1}, "sigma": "25", "name": "..."}``.

Every model has a public ``key`` (``shipped/<file>``, ``weights/<file>``, ``uploaded/<file>``: what the page's
dropdowns send and the API listing could show) and a private ``path`` on the server; server paths never leave
the server. A checkpoint that cannot be read, built or holds NaN/inf weights is skipped (folder, shipped) or
refused (upload) with one line that names the file by its base name, whatever the loader raised.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pb", ".safetensors")
KEY_PREFIXES = {"shipped": "shipped", "weights folder": "weights", "uploaded": "uploaded"}
MAX_MESSAGE_CHARS = 300
"""Longest message shown to a user (PyTorch's first lines can run to several hundred characters)."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


_ABS_DIRS = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+")


def tidy_message(msg: str) -> str:
    """One line, without the server's directories (``/tmp/gradio/ab12/photo.png`` -> ``photo.png``), at most
    :data:`MAX_MESSAGE_CHARS` long."""
    line = _ABS_DIRS.sub("", msg.strip().splitlines()[0] if msg.strip() else msg)
    return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"


def file_message(path: str | Path, err: BaseException | str) -> str:
    """One line about ``path`` that starts with its base name (``x.pth: why``), no server directories."""
    name = Path(path).name
    text = first_line(err) if isinstance(err, BaseException) else (str(err).strip().splitlines() or [""])[0]
    text = text.replace(str(path), name).replace(str(Path(path).resolve()), name)
    msg = tidy_message(text)
    return msg if msg.startswith(name) else tidy_message(f"{name}: {msg}")


def model_key(source: str, filename: str) -> str:
    """The public name of a model: ``shipped/espcn_x2.pth``, ``weights/mine.pth``, ``uploaded/mine.pth``."""
    return f"{KEY_PREFIXES.get(source, source)}/{filename}"


def _short_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}k" if n >= 1000 else str(n)


@dataclass(frozen=True)
class ModelEntry:
    """One model the page offers. ``key`` (:func:`model_key`, no server path) is the dropdown value; ``path``,
    the checkpoint on the server, stays on the server."""

    key: str
    path: str
    name: str
    source: str  # "shipped" | "weights folder" | "uploaded"
    task: str  # "sr" | "denoise"
    scale: int
    family: str = ""
    variant: str = ""
    params: int = 0
    sigma: str | None = None
    psnr: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        what = f"x{self.scale}" if self.task == "sr" else f"denoise σ{self.sigma or '?'}"
        psnr = f" · {self.psnr[0][0]} {self.psnr[0][1]:.2f} dB" if self.psnr else ""
        return f"{self.name} · {what} · {_short_count(self.params)} params{psnr}"

    def markdown(self) -> str:
        task = f"super-resolution ×{self.scale}" if self.task == "sr" else (
            f"denoising (σ {self.sigma})" if self.sigma else "denoising")
        arch = f"{self.family} {self.variant}".strip() or "unknown architecture"
        psnr = ", ".join(f"{k} {v:.2f} dB" for k, v in self.psnr) if self.psnr else "not measured"
        return (f"**{self.name}** — {arch}, {task}  \n{self.params:,} parameters · PSNR: {psnr} · "
                f"source: {self.source}")


def _sidecar(path: Path) -> dict[str, Any]:
    p = path.with_suffix(".json")
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        log.warning("%s: not valid JSON, ignored", p)
        return {}
    return data if isinstance(data, dict) else {}


def _psnr(value: object) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict):
        return ()
    out = []
    for k, v in value.items():
        try:
            out.append((str(k), float(v)))
        except (TypeError, ValueError):
            continue
    return tuple(out)


def nonfinite_tensor(model: Any) -> str | None:
    """Name of the first parameter or buffer of ``model`` holding NaN or inf (None when all are finite)."""
    import torch

    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return name
    return None


def load_checked(path: str | Path) -> Any:
    """The network in ``path`` (:func:`restore.weights.load_model`), refused when a weight is NaN/inf. Whatever
    fails while reading or building it is a one-line :class:`~restore.errors.ModelLoadError` that starts with the
    file's base name: caught by where it happens, not by exception type (PyTorch's unpickler raises IndexError,
    KeyError, struct.error, ... on files that are not checkpoints)."""
    from restore.errors import ModelLoadError
    from restore.weights import load_model

    p = Path(path)
    if p.is_dir():
        raise ModelLoadError(f"{p.name}: a directory, not a checkpoint file")
    try:
        model = load_model(p)
    except Exception as e:  # noqa: BLE001 - see the docstring
        raise ModelLoadError(file_message(p, e)) from None
    bad = nonfinite_tensor(model)
    if bad is not None:
        raise ModelLoadError(f"{p.name}: tensor {bad!r} has NaN/infinite values; the checkpoint is damaged")
    return model


def entry_from_file(path: str | Path, *, source: str, name: str | None = None) -> ModelEntry:
    """Describe a checkpoint by loading it (:func:`load_checked`: the metadata of the built network), plus its
    optional sidecar; a one-line ModelLoadError naming the file when it cannot be offered."""
    p = Path(path)
    meta = load_checked(p).meta
    extra = _sidecar(p)
    sigma = extra.get("sigma")
    return ModelEntry(key=model_key(source, p.name), path=str(p.resolve()),
                      name=str(extra.get("name") or name or p.name), source=source, task=str(meta.task),
                      scale=int(meta.scale), family=str(meta.family), variant=str(meta.variant),
                      params=int(meta.params), sigma=None if sigma is None else str(sigma),
                      psnr=_psnr(extra.get("psnr")))


def shipped_entries() -> tuple[list[ModelEntry], list[str]]:
    """The shipped models, from the manifest (loading a checkpoint only where the manifest is silent), and one
    line per model that was skipped (and why)."""
    from restore.weights import SHIPPED_DIR, shipped_models

    entries, skipped = [], []
    for m in shipped_models():
        path = SHIPPED_DIR / str(m.get("file", ""))
        try:
            if "task" in m and "params" in m:
                sigma = m.get("sigma")
                entries.append(ModelEntry(
                    key=model_key("shipped", path.name), path=str(path.resolve()),
                    name=str(m.get("name", path.name)), source="shipped", task=str(m["task"]),
                    scale=int(m.get("scale", 1)), family=str(m.get("family", "")), variant=str(m.get("variant", "")),
                    params=int(m["params"]), sigma=None if sigma is None else str(sigma), psnr=_psnr(m.get("psnr"))))
            else:
                e = entry_from_file(path, source="shipped", name=str(m.get("name", path.name)))
                entries.append(replace(e, psnr=_psnr(m["psnr"])) if m.get("psnr") else e)
        except Exception as err:  # noqa: BLE001 - one bad manifest entry must not stop the server
            skipped.append(f"shipped model {m.get('name', path.name)}: {file_message(path, err)}")
    return entries, skipped


def scan_weights_dir(folder: str | Path) -> tuple[list[ModelEntry], list[str]]:
    """Every loadable checkpoint directly in ``folder``, and one line per checkpoint-named entry that was skipped
    (and why): unreadable or damaged files, directories named ``*.pth``, ... (whatever the loader raises)."""
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"--weights-dir {d}: not a directory")
    entries, skipped = [], []
    for p in sorted(d.iterdir()):
        if p.suffix.lower() not in CHECKPOINT_SUFFIXES:
            continue
        try:
            entries.append(entry_from_file(p, source="weights folder"))
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the server
            skipped.append(file_message(p, e))
    return entries, skipped


def filter_models(entries: Sequence[ModelEntry], task: str, scale: int | str | None,
                  sigma: str | None) -> list[ModelEntry]:
    """Models for ``task`` at ``scale`` (SR) or trained for noise level ``sigma`` (denoisers with an unknown or
    'blind' level are offered for every level)."""
    if task == "sr":
        return [e for e in entries if e.task == "sr" and (scale in (None, "") or e.scale == int(scale))]
    return [e for e in entries if e.task == "denoise" and (e.sigma in (None, "blind") or e.sigma == sigma)]


