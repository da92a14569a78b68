"""The models the web demo offers: shipped ones, a ``--weights-dir`` folder and uploads (no Gradio here).

A ``<stem>.json`` next to a checkpoint may give ``{"psnr": {"Set5": 32.1}, "sigma": "25", "name": "..."}``.
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


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


_ABS_DIRS = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+")


def tidy_message(msg: str) -> str:
    """One line, without the server's directories (``/tmp/gradio/ab12/photo.png`` -> ``photo.png``)."""
    return _ABS_DIRS.sub("", msg.strip().splitlines()[0] if msg.strip() else msg)


def _short_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}k" if n >= 1000 else str(n)


@dataclass(frozen=True)
class ModelEntry:
    """One model the page offers; ``key`` (the checkpoint's absolute path) is the dropdown value."""

    key: str
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


def entry_from_file(path: str | Path, *, source: str, name: str | None = None) -> ModelEntry:
    """Describe a checkpoint by loading it (:func:`restore.weights.describe`), plus its optional sidecar."""
    from restore.weights import describe

    p = Path(path)
    info = describe(p)
    extra = _sidecar(p)
    sigma = extra.get("sigma")
    return ModelEntry(key=str(p.resolve()), name=str(extra.get("name") or name or p.name), source=source,
                      task=str(info["task"]), scale=int(info["scale"]), family=str(info.get("family", "")),
                      variant=str(info.get("variant", "")), params=int(info.get("params", 0)),
                      sigma=None if sigma is None else str(sigma), psnr=_psnr(extra.get("psnr")))


def shipped_entries() -> list[ModelEntry]:
    """The shipped models, from the manifest (loading a checkpoint only where the manifest is silent)."""
    from restore.weights import SHIPPED_DIR, shipped_models

    entries = []
    for m in shipped_models():
        path = SHIPPED_DIR / str(m["file"])
        try:
            if "task" in m and "params" in m:
                sigma = m.get("sigma")
                entries.append(ModelEntry(
                    key=str(path.resolve()), name=str(m.get("name", path.name)), source="shipped",
                    task=str(m["task"]), scale=int(m.get("scale", 1)), family=str(m.get("family", "")),
                    variant=str(m.get("variant", "")), params=int(m["params"]),
                    sigma=None if sigma is None else str(sigma), psnr=_psnr(m.get("psnr"))))
            else:
                e = entry_from_file(path, source="shipped", name=str(m.get("name", path.name)))
                entries.append(replace(e, psnr=_psnr(m["psnr"])) if m.get("psnr") else e)
        except (ValueError, OSError, KeyError) as err:
            log.warning("shipped model %s skipped: %s", m.get("name"), first_line(err))
    return entries


def scan_weights_dir(folder: str | Path) -> tuple[list[ModelEntry], list[str]]:
    """Every loadable checkpoint directly in ``folder``, and one line per file that was skipped (and why)."""
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"--weights-dir {d}: not a directory")
    entries, skipped = [], []
    for p in sorted(d.iterdir()):
        if not (p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES):
            continue
        try:
            entries.append(entry_from_file(p, source="weights folder"))
        except (ValueError, OSError, RuntimeError) as e:
            msg = tidy_message(first_line(e))
            skipped.append(msg if msg.startswith(p.name) else f"{p.name}: {msg}")
    return entries, skipped


def filter_models(entries: Sequence[ModelEntry], task: str, scale: int | str | None,
                  sigma: str | None) -> list[ModelEntry]:
    """Models for ``task`` at ``scale`` (SR) or trained for noise level ``sigma`` (denoisers with an unknown or
    'blind' level are offered for every level)."""
    if task == "sr":
        return [e for e in entries if e.task == "sr" and (scale in (None, "") or e.scale == int(scale))]
    return [e for e in entries if e.task == "denoise" and (e.sigma in (None, "blind") or e.sigma == sigma)]


