"""One input file of ``restore upscale`` / ``restore denoise``, start to finish: the body every batch runner shares.

:func:`process_file` takes a planned :class:`~restore.io.inputs.Job` (input, output, relative path), reads the image
with its metadata, runs the right :class:`~restore.engine.restorer.Restorer` on it, resamples to the asked size and
publishes the output atomically, and returns an :class:`Outcome`: ``written``, ``skipped`` (the output exists) or
``failed``, with the one-line message the command line prints. Everything that can go wrong with one file (an
unreadable image, a name the file system refuses, an allocator failure) is that file's outcome, never an exception;
what escapes is a bug (or ``debug``, which re-raises). The plain command-line loop (:mod:`restore.cli.process`) and
the Ray workers (:mod:`restore.engine.ray_batch`) both call it, so their outputs are the same bytes.

:class:`ModelChoice` is the model part of the command line in a picklable form (what a Ray worker receives), and
:class:`Runners` turns it into Restorers: the first one when built, others on demand when the choice depends on the
image (``restore denoise`` without a model: the gray or colour DnCNN by the input's channels, and without --sigma
the one for the noise level estimated on the image; ``restore upscale --outscale/--width/--height`` without a
scale: the smallest shipped scale that reaches the size).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from restore import io
from restore.engine.resample import Target
from restore.engine.restorer import Restorer, RunStats, is_oom
from restore.io.inputs import Job

SHIPPED_SCALES = (2, 3, 4)
Status = Literal["written", "skipped", "failed"]


@dataclass(frozen=True)
class Sizing:
    """``restore upscale``'s output size: the network runs at its scale, then a resample to this size."""

    outscale: float | None = None
    width: int | None = None
    height: int | None = None
    fit: str = "contain"
    resample: str = "bicubic"

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.outscale, self.width, self.height))

    def target(self, img: np.ndarray, *, limit: bool = True) -> Target | None:
        """The final size for ``img`` (None: the network's output as it is); ValueError for impossible sizes and,
        with ``limit``, for sizes over :data:`restore.engine.resample.MAX_OUTPUT_PIXELS`."""
        if not self.active:
            return None
        from restore.engine.resample import target_size

        return target_size(img.shape[0], img.shape[1], outscale=self.outscale, width=self.width,
                           height=self.height, fit=self.fit, limit=limit)


@dataclass(frozen=True)
class ModelChoice:
    """Which model(s) a run uses and how they run, as the command line says it (``weights`` / ``model`` / ``scale``
    / ``sigma``, device, tile, precision, int8 calibration, test-time augmentation); picklable."""

    task: str  # "sr" or "denoise"
    weights: str | None = None
    model: str | None = None
    scale: int | None = None
    sigma: str | None = None
    device: str = "auto"
    tile: int | str | None = "auto"
    precision: str = "auto"
    calib: str | None = None
    sizing: Sizing = Sizing()
    tta: bool = False

    @property
    def by_color(self) -> bool:
        """``restore denoise`` without a model: gray input -> gray DnCNN, colour -> colour."""
        return self.task == "denoise" and not self.weights and not self.model

    @property
    def by_size(self) -> bool:
        """``--outscale/--width/--height`` without a model or scale: the smallest shipped scale that reaches it."""
        return (self.task == "sr" and self.sizing.active and not self.weights and not self.model
                and self.scale is None)

    def pick(self, color: str, scale: int | None = None) -> Path:
        """The checkpoint for an input of ``color`` ("gray"/"rgb") at ``scale`` (None: the asked one)."""
        from restore.weights import default_denoiser, resolve_model

        if self.weights:
            return Path(self.weights)
        if self.by_color:
            return default_denoiser(self.sigma, color)
        return resolve_model(self.model, task=self.task, scale=scale or self.scale, sigma=self.sigma, color=color)

    def first_weights(self) -> Path:
        """The checkpoint loaded before any image is seen (its metadata names the outputs)."""
        first_scale = None
        if self.by_size and self.sizing.outscale is not None:
            first_scale = next((s for s in SHIPPED_SCALES if s >= self.sizing.outscale), SHIPPED_SCALES[-1])
        return self.pick("rgb", first_scale)

    def check_sizing(self) -> None:
        """One-line usage errors of ``--outscale/--width/--height`` before any work."""
        self.sizing.target(np.zeros((8, 8), np.uint8), limit=False)  # the size limit needs the real image

    def load_first(self) -> tuple[Path, Any]:
        """The first checkpoint and its network, checked against the task and ``scale`` (ValueError otherwise)."""
        from restore.weights import load_model

        weights = self.first_weights()
        model = load_model(weights)
        meta = model.meta
        if meta.task != self.task:
            raise ValueError(f"{weights}: a {meta.task} model (x{meta.scale}); use 'restore "
                             f"{'upscale' if meta.task == 'sr' else 'denoise'}'")
        if self.task == "sr" and self.scale is not None and self.scale != meta.scale:
            raise ValueError(f"{weights}: model is x{meta.scale}, but --scale {self.scale} was asked")
        return weights, model

    def restorer(self, model: Any) -> Restorer:
        return Restorer(model, device=self.device, tile=self.tile, precision=self.precision,  # type: ignore[arg-type]
                        calibration=self.calib, tta=self.tta)


class Runners:
    """The Restorer for each image of a run: built from :class:`ModelChoice`, one per checkpoint, cached.

    ``Runners(choice)`` loads and checks the first checkpoint and builds its Restorer (errors: ValueError /
    RestoreError, one line); pass ``first=(weights, model)`` when the caller has already loaded it."""

    def __init__(self, choice: ModelChoice, first: tuple[Path, Any] | None = None) -> None:
        self.choice = choice
        weights, model = first if first is not None else choice.load_first()
        self.meta = model.meta
        self.first = choice.restorer(model)
        self._by_weights: dict[Path, Restorer] = {weights: self.first}

    def __call__(self, img: np.ndarray) -> Restorer:
        """The Restorer for ``img``."""
        return self.route(img)[0]

    def route(self, img: np.ndarray) -> tuple[Restorer, str]:
        """The Restorer for ``img``, and what chose it when that depends on the image beyond its colour and size
        (``--sigma auto``: the estimated noise level and the model it picked), else ""."""
        from restore.weights import auto_sigma, default_denoiser, load_model

        c = self.choice
        why = ""
        color = "gray" if img.ndim == 2 or img.shape[2] == 2 else "rgb"
        if c.by_color and c.sigma == "auto":
            level, why = auto_sigma(img, color)
            w = default_denoiser(level, color)
        elif c.by_size:  # the smallest shipped scale that reaches the target (the resample then only shrinks)
            t = c.sizing.target(img)
            assert t is not None
            need = max(t.height / img.shape[0], t.width / img.shape[1])
            w = c.pick("rgb", next((s for s in SHIPPED_SCALES if s >= need - 1e-9), SHIPPED_SCALES[-1]))
        elif c.by_color:
            w = c.pick(color)
        else:
            return self.first, ""
        if w not in self._by_weights:
            self._by_weights[w] = c.restorer(load_model(w))
        return self._by_weights[w], why


@dataclass(frozen=True)
class ProcessOptions:
    """What :func:`process_file` does besides running the model."""

    overwrite: bool = False
    allow_large: bool = False
    debug: bool = False  # re-raise instead of turning an error into a failed outcome
    sizing: Sizing = Sizing()
    tiles_progress: bool = False  # a tile progress bar on a terminal (the command line's own loop)
    verify_existing: bool = False  # an output that exists (no overwrite): compute, and "written" if identical


@dataclass(frozen=True)
class Outcome:
    """What became of one input. ``message``: the line the command line prints (stdout for written, stderr
    ``restore: skip:`` / ``restore: error:`` otherwise)."""

    status: Status
    message: str
    seconds: float = 0.0
    in_size: tuple[int, int] | None = None  # (width, height)
    out_size: tuple[int, int] | None = None
    path: str = ""  # the Restorer that ran: "device, precision backend"

    @property
    def megapixels(self) -> float:
        return self.out_size[0] * self.out_size[1] / 1e6 if self.out_size else 0.0


class InputGuard:
    """``is_input(dst)``: would ``dst`` overwrite one of ``sources``? The same answer as
    ``any(io.same_file(dst, f) for f in sources)`` (links and case-insensitive names included), with the sources
    looked at once rather than once per output."""

    def __init__(self, sources: Iterable[Path]) -> None:
        self._ids: set[tuple[int, int]] = set()
        self._missing: set[str] = set()  # resolved names of sources that cannot be stat'ed
        self._names: set[str] = set()  # resolved names of all sources
        for f in sources:
            name = _resolved(f)
            self._names.add(name)
            try:
                st = os.stat(f)
            except OSError:
                self._missing.add(name)
                continue
            self._ids.add((st.st_dev, st.st_ino))

    def is_input(self, dst: Path) -> bool:
        try:
            st = os.stat(dst)
        except OSError:
            return _resolved(dst) in self._names
        return (st.st_dev, st.st_ino) in self._ids or (bool(self._missing) and _resolved(dst) in self._missing)


def _resolved(p: Path) -> str:
    return os.path.normcase(Path(p).resolve())


def _os_reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _size(a: np.ndarray) -> tuple[int, int]:
    return int(a.shape[1]), int(a.shape[0])


def _path_of(runner: Restorer) -> str:
    """The model and path that made an output, as the run's summary names it."""
    m = runner.meta
    return (f"{m.family}/{m.variant} x{m.scale}, {runner.device}, {runner.precision} {runner.backend}"
            + (", tta x8" if runner.tta else ""))


def _run(runner: Restorer, img: np.ndarray, src: Path, progress: bool) -> np.ndarray:
    if not progress:
        return runner.run(img)
    from tqdm import tqdm

    with tqdm(desc=f"{src.name} tiles", unit="tile", leave=False, disable=not sys.stderr.isatty()) as bar:
        stats = RunStats(on_forward=lambda n, b=bar: b.update(n - b.n))
        return runner.run(img, stats=stats)


def _same_bytes(dst: Path, out: np.ndarray, info: io.ImageInfo) -> bool:
    """True when ``dst`` holds exactly the bytes writing ``out`` would produce."""
    try:
        return dst.read_bytes() == io.encode_image(out, dst.suffix or ".png", info=info)
    except OSError:
        return False


def preflight(job: Job, options: ProcessOptions, guard: InputGuard | None = None) -> Outcome | None:
    """The outcome of ``job`` when it is settled without reading the image: ``failed`` when its output would
    overwrite an input (``guard``), ``skipped`` when the output exists and ``options.overwrite`` is off; else
    None. OSError from the file system propagates."""
    src, dst = job.src, job.dst
    if guard is not None and guard.is_input(dst):
        return Outcome("failed", f"{src}: output {dst} would overwrite an input; choose -o or --suffix")
    if os.path.isdir(dst):
        return Outcome("failed", f"{src}: the output name {dst} is a folder; use -o DIR or --suffix for another name")
    if os.path.lexists(dst) and not options.overwrite:
        return Outcome("skipped", f"{src}: {dst} exists (use --overwrite)")
    return None


def process_file(job: Job, runners: Runners, options: ProcessOptions, *,
                 guard: InputGuard | None = None, on_note: Callable[[str], None] | None = None) -> Outcome:
    """Read, restore, resize and publish one input (see the module docstring). ``guard`` refuses outputs that would
    overwrite an input of the run; ``on_note`` receives the notes (metadata that cannot be kept, conversions) as
    they arise. With ``options.verify_existing`` an output that already exists is not skipped at once: the image is
    computed and the outcome is ``written`` when the file holds exactly these bytes (a Ray task retried after its
    worker died between publishing and reporting), ``skipped`` otherwise; nothing is written twice."""
    src, dst = job.src, job.dst
    note = on_note or (lambda _msg: None)
    t0 = time.perf_counter()
    img: np.ndarray | None = None

    def done(status: Status, message: str, **kw: Any) -> Outcome:
        return Outcome(status, message, time.perf_counter() - t0, **kw)

    try:  # everything about one file, the output-name checks included: a failure is this file's alone
        early = preflight(job, options, guard)
        existing = early is not None and early.status == "skipped"
        if early is not None and not (existing and options.verify_existing):
            return done(early.status, early.message)
        img, info = io.read_image_info(src, allow_large=options.allow_large)
        for n in info.notes:
            note(f"{src}: {n}")
        target = options.sizing.target(img)  # an impossible size fails before the network runs
        runner, why = runners.route(img)
        out = _run(runner, img, src, options.tiles_progress)
        if target is not None:
            from restore.engine.resample import resample

            out = resample(out, target, options.sizing.resample)
        for n in io.conversion_notes(dst, out, info=info):
            note(f"{dst}: {n}")
        if existing:
            if not _same_bytes(dst, out, info):
                return done("skipped", f"{src}: {dst} exists (use --overwrite)")
        else:
            io.write_image(dst, out, info=info, overwrite=options.overwrite)
    except io.ImageReadError as e:
        return done("failed", str(e))
    except FileExistsError:
        return done("skipped", f"{src}: {dst} appeared while this image ran (use --overwrite)")
    except (OSError, ValueError) as e:
        if options.debug:
            raise
        return done("failed", f"{src} -> {dst}: {_os_reason(e) if isinstance(e, OSError) else e}")
    except Exception as e:  # an allocator failure (PyTorch or ONNX Runtime) is this image's; the rest is a bug
        if options.debug or not is_oom(e) or img is None:
            raise
        return done("failed", f"{src}: out of memory ({img.shape[1]}x{img.shape[0]}); try a smaller --tile "
                              f"(e.g. --tile 256) or --device cpu")
    return done("written", f"{src} -> {dst} ({img.shape[1]}x{img.shape[0]} -> {out.shape[1]}x{out.shape[0]}"
                           + (f"; {why})" if why else ")"),
                in_size=_size(img), out_size=_size(out), path=_path_of(runner))
