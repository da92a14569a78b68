"""``restore upscale|denoise --ray``: the same per-file work (:func:`restore.engine.batch.process_file`) spread over
the actors of a Ray cluster with Ray Data (the optional ``cluster`` extra: ``pip install 'restore[cluster]'``).

How it fits together:

- **Driver** (the ``restore`` process): plans the jobs and settles what needs no worker (outputs that exist,
  outputs that would overwrite an input) itself, so a rerun of a finished batch starts no cluster. The rest goes
  to ``ray.data.from_items`` as rows of (index, input, output, relative path), absolute paths, one row per block
  (up to :data:`MAX_BLOCKS` blocks), so a result comes back as soon as its image is done and a retry redoes one
  image. Results are streamed back (``iter_rows``, in completion order); the caller prints and journals each one.
- **Actors**: ``map_batches`` with :class:`RestoreWorker`, a callable class that builds its
  :class:`~restore.engine.batch.Runners` (the model choice of the command line, loaded once) in ``__init__`` and
  then reads, restores and publishes each image through restore's own io (16-bit, alpha, EXIF/ICC, atomic
  writes), never Ray's readers: outputs are the bytes the plain command line writes. One GPU per actor when the
  cluster has GPUs (and the device is not ``cpu``), otherwise an even share of a node's CPUs
  (:func:`plan_actors`). A usage error in ``__init__`` (a device or precision that is not there) is reported by
  every call instead of killing the actor; the driver stops at the first one (exit 2).
- **Retries**: an actor that dies (killed, out of memory, a node lost) is restarted (``max_restarts=-1``: restarts
  follow task failures, which are bounded) and its image retried up to :data:`TASK_RETRIES` times; an image that
  kills its worker every time is dropped after that (``max_errored_blocks=-1``) and reported failed by the driver.
  A retried image whose output the dead attempt had already published is recognised by its bytes
  (``ProcessOptions.verify_existing``) and reported ``written`` without a second write. The driver keeps the first
  result per input, so the journal has each input once per run.

Test hooks (tests/test_ray_batch.py), read from the driver's environment: with ``RESTORE_TEST_KILL_WORKER_ONCE=FILE``
the first actor to finish an image creates FILE and kills its own process before reporting the result; with
``RESTORE_TEST_POISON=NAME`` an actor kills itself whenever it starts on an input named NAME.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restore.engine.batch import ModelChoice, Outcome, ProcessOptions, Runners, process_file
from restore.errors import RestoreError
from restore.io.files import TEMP_STEM_CHARS
from restore.io.inputs import Job

INSTALL_HINT = "pip install 'restore[cluster]'"
TASK_RETRIES = 2  # an image is tried at most 3 times on (restarted) actors
MAX_BLOCKS = 10_000  # one input per block up to this many inputs, then a few per block
LOCAL_OBJECT_STORE = 128 * 1024**2  # bytes; rows here are file names and short results, never pixels
KILL_ONCE_ENV = "RESTORE_TEST_KILL_WORKER_ONCE"
POISON_ENV = "RESTORE_TEST_POISON"
USAGE = "usage"  # status of a row from an actor whose model could not be set up


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line RestoreError naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (pyarrow / pandas: the [data] part)
    except ImportError as e:
        raise RestoreError(f"--ray needs Ray Data, which is not installed ({e.name or e}): {INSTALL_HINT}") from None
    return ray


# ---------------------------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class ActorPlan:
    """How many actors, and what each asks of the cluster."""

    workers: int
    num_cpus: float
    num_gpus: float
    room: int  # actors the cluster can hold at once now (more wait for resources, e.g. an autoscaler)

    def describe(self) -> str:
        each = "1 GPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        return f"Ray: {self.workers} worker(s) x {each}"


def wants_gpus(device: str, gpus: float) -> bool:
    """Whether actors take a GPU each: the cluster has some and the device allows CUDA. One-line errors for a
    device that cannot work on a cluster (``cuda:N``: each actor sees only its own GPU; ``cuda`` without GPUs)."""
    if device.startswith("cuda:"):
        raise RestoreError(f"--device {device}: with --ray each worker gets a GPU of its own; use --device cuda "
                           f"(or auto)")
    if device == "cuda" and gpus < 1:
        raise RestoreError("--device cuda: the Ray cluster has no GPUs; use --device cpu (or auto)")
    return device in ("auto", "cuda") and gpus >= 1


def plan_actors(nodes: Sequence[tuple[float, float]], *, device: str, workers: int | None,
                inputs: int) -> ActorPlan:
    """Actors for ``inputs`` images on a cluster whose nodes have ``(CPUs, GPUs)``: one per GPU, else CPU
    actors with the largest even share of a node's CPUs that still fits ``workers`` of them (one CPU each by
    default, i.e. as many actors as CPUs); never more actors than inputs."""
    gpus = sum(math.floor(g) for _, g in nodes)
    if wants_gpus(device, gpus):
        n = max(1, min(workers or gpus, inputs))
        return ActorPlan(n, 1.0, 1.0, gpus)
    cpus = [max(0, math.floor(c)) for c, _ in nodes]
    total = max(1, sum(cpus))
    n = max(1, min(workers or total, inputs))
    share = max((c for c in range(1, max(cpus, default=1) + 1) if sum(x // c for x in cpus) >= n), default=1)
    return ActorPlan(n, float(share), 0.0, sum(x // share for x in cpus))


def cluster_nodes(ray: Any) -> list[tuple[float, float]]:
    """(CPUs, GPUs) of each live node."""
    return [(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


# ---------------------------------------------------------------------------------------------- the session


def _ray_note(say: Callable[[str], None]) -> Callable[[dict[str, Any], bool], None]:
    """A replacement for Ray's printer of cluster messages (worker deaths, retries): one short note line each."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")

    def emit(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            text = ansi.sub("", str(line)).strip()
            if text:
                first = " ".join(re.split(r"(?<=[.!?])\s", text, maxsplit=2)[:2])  # what happened, what Ray does
                say(f"ray ({data.get('pid', 'cluster')}): {first[:240]}")

    return emit


def _connect(ray: Any, address: str | None, debug: bool) -> bool:
    """``ray.init`` for :func:`ray_session`; whether this call connected (False: this process already was)."""
    if ray.is_initialized():  # a notebook, a test, an embedding program: use its connection, leave it open
        return False
    kwargs: dict[str, Any] = {"log_to_driver": debug, "logging_level": logging.INFO if debug else logging.CRITICAL}
    if address:
        kwargs["address"] = address
    elif not os.environ.get("RAY_ADDRESS"):  # "local": a new instance, never another program's local one
        kwargs.update(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RestoreError(f"--ray {where}: cannot start or reach Ray: {reason}") from None
    return True


class _Captured(logging.Handler):
    """Ray Data's error records (a task that failed for good), kept as one line each instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        text = f"{type(exc).__name__}: {exc}" if exc is not None else record.getMessage()
        self.lines.append(" ".join(text.split())[:300])


@dataclass
class Session:
    """A connected Ray (:func:`ray_session`) and the errors Ray Data reported while it ran."""

    ray: Any
    errors: _Captured


@contextlib.contextmanager
def _quiet(say: Callable[[str], None], debug: bool) -> Iterator[_Captured]:
    """Ray's loggers silenced (Ray Data's errors captured instead), its progress bars off, its cluster messages (a
    worker died, a task is retried) as notes through ``say``; all as before afterwards. ``debug`` keeps Ray's own
    output."""
    from ray.data import DataContext

    try:
        import ray._private.worker as ray_worker  # where Ray prints cluster messages (private, hence optional)
    except ImportError:
        ray_worker = None
    captured = _Captured()
    data_log = logging.getLogger("ray.data")
    data_setup = (data_log.handlers[:], data_log.propagate)
    loggers = {name: logging.getLogger(name).level for name in ("ray", "ray.data")}
    printer = getattr(ray_worker, "print_to_stdstream", None)
    with warnings.catch_warnings():  # Ray Data's own defaults warn about its deprecated settings
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = DataContext.get_current()
    settings = {"enable_progress_bars": debug, "print_on_execution_start": debug,
                "max_errored_blocks": 0 if debug else -1}  # an image that kills its worker each time: reported
    before = {k: getattr(ctx, k) for k in settings if hasattr(ctx, k)}
    try:
        if not debug:
            logging.getLogger("ray").setLevel(logging.CRITICAL)
            data_log.setLevel(logging.ERROR)
            data_log.handlers, data_log.propagate = [captured], False
        if printer is not None and not debug:
            ray_worker.print_to_stdstream = _ray_note(say)  # type: ignore[union-attr]
        for k in before:
            setattr(ctx, k, settings[k])
        yield captured
    finally:
        data_log.handlers, data_log.propagate = data_setup
        for k, v in before.items():
            setattr(ctx, k, v)
        if printer is not None:
            ray_worker.print_to_stdstream = printer  # type: ignore[union-attr]
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def ray_session(address: str | None, *, say: Callable[[str], None], debug: bool = False) -> Iterator[Session]:
    """Ray, connected for the ``with`` block: ``address`` (``HOST:PORT``, ``ray://...``, ``auto``), else
    ``RAY_ADDRESS`` when set, else a local instance on this machine's CPUs (and GPUs) started here; disconnected
    after the block (a local instance is stopped with it, a cluster attached to goes on). A process already
    connected keeps its connection. Ray's output is quietened (:func:`_quiet`)."""
    ray = require_ray()
    with _quiet(say, debug) as errors:
        owned = _connect(ray, address, debug)
        try:
            yield Session(ray, errors)
        finally:
            if owned:
                ray.shutdown()


# ---------------------------------------------------------------------------------------------- the actors


@dataclass(frozen=True)
class WorkerSpec:
    """What every actor is built from (picklable; paths absolute)."""

    choice: ModelChoice
    options: ProcessOptions
    cwd: str
    kill_once: str | None = None  # the test hooks (module docstring)
    poison: str | None = None


def _map(ds: Any, spec: WorkerSpec, plan: ActorPlan) -> Any:
    """``ds.map_batches`` with :class:`RestoreWorker` on ``plan``'s actors, restarted when they die
    (``max_restarts=-1``) with each image retried :data:`TASK_RETRIES` times. Ray 2.60 marks remote arguments given
    to ``map_batches`` as deprecated (for removal in 2.64) without a replacement for these two; where they are gone,
    Ray Data's own defaults apply (restarts and retries without limit)."""
    import ray.data

    common = {"fn_constructor_kwargs": {"spec": spec}, "batch_size": 1, "batch_format": "numpy",
              "compute": ray.data.ActorPoolStrategy(size=plan.workers), "num_cpus": plan.num_cpus,
              "num_gpus": plan.num_gpus or None}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        try:
            return ds.map_batches(RestoreWorker, **common, max_restarts=-1, max_task_retries=TASK_RETRIES)
        except TypeError:
            return ds.map_batches(RestoreWorker, **common)


def _text(s: str) -> bytes:
    """Text that may hold a file name (undecodable bytes as surrogates) as bytes: Arrow columns are strict UTF-8."""
    return s.encode("utf-8", "surrogateescape")


def _untext(b: Any) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def _row(i: int, o: Outcome, notes: Sequence[str]) -> dict[str, Any]:
    w, h = o.in_size or (0, 0)
    ow, oh = o.out_size or (0, 0)
    return {"i": i, "status": o.status, "message": _text(o.message), "seconds": o.seconds, "in_w": w, "in_h": h,
            "out_w": ow, "out_h": oh, "path": o.path, "notes": _text("\n".join(notes))}


def outcome_of(row: dict[str, Any]) -> tuple[Outcome, list[str]]:
    """A result row back into an :class:`Outcome` and its notes."""
    in_size = (int(row["in_w"]), int(row["in_h"])) if row["in_w"] else None
    out_size = (int(row["out_w"]), int(row["out_h"])) if row["out_w"] else None
    notes = [n for n in _untext(row["notes"]).split("\n") if n]
    return Outcome(str(row["status"]), _untext(row["message"]), float(row["seconds"]), in_size,  # type: ignore[arg-type]
                   out_size, str(row["path"])), notes


class RestoreWorker:
    """The Ray Data callable class: one :class:`Runners` per actor, built once; each call processes its rows."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.error: str | None = None
        self.runners: Runners | None = None
        if os.path.isdir(spec.cwd):
            os.chdir(spec.cwd)
        try:
            self.runners = Runners(spec.choice)
        except (ValueError, FileNotFoundError) as e:  # RestoreError included: reported by each call
            if spec.options.debug:
                raise
            self.error = str(e) or type(e).__name__

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [self._one(int(i), Job(Path(os.fsdecode(bytes(s))), Path(os.fsdecode(bytes(d))),
                                      Path(os.fsdecode(bytes(r)))))
                for i, s, d, r in zip(batch["i"], batch["src"], batch["dst"], batch["rel"], strict=True)]
        return {k: [row[k] for row in rows] for k in rows[0]} if rows else {}

    def _one(self, i: int, job: Job) -> dict[str, Any]:
        if self.error is not None or self.runners is None:
            return _row(i, Outcome(USAGE, self.error or "worker not ready"), [])  # type: ignore[arg-type]
        notes: list[str] = []
        if self.spec.poison and job.src.name == self.spec.poison:
            os._exit(1)
        try:
            o = process_file(job, self.runners, self.spec.options, on_note=notes.append)
        except Exception as e:  # a bug: this image's outcome, with its type, so the run goes on and says so
            if self.spec.options.debug:
                raise
            o = Outcome("failed", f"{job.src}: unexpected {type(e).__name__} in a Ray worker: {e} (--debug shows "
                                  f"the traceback)")
        self._maybe_die()
        return _row(i, o, notes)

    def _maybe_die(self) -> None:
        flag = self.spec.kill_once
        if not flag:
            return
        try:
            fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)  # as a SIGKILL would: no cleanup, the result never reported


# ---------------------------------------------------------------------------------------------- the run


def _display(message: str, job: Job, src: str, dst: str) -> str:
    """``message`` with the absolute paths the actor saw turned back into the paths the user gave."""
    names = {src: str(job.src), dst: str(job.dst)}
    pattern = "|".join(re.escape(k) for k in sorted(names, key=len, reverse=True))
    return re.sub(pattern, lambda m: names[m.group(0)], message)


def remove_partials(jobs: Sequence[Job]) -> int:
    """Remove the temporary files that killed actors left for ``jobs`` (call after Ray is shut down); how many."""
    gone = 0
    for job in jobs:
        for p in partials_of(job.dst):
            p.unlink(missing_ok=True)
            gone += 1
    return gone


def partials_of(final: Path) -> list[Path]:
    """Temporary files of :func:`restore.io.files.publishing` for ``final`` left behind by a killed writer."""
    head, tail = f".{final.stem[:TEMP_STEM_CHARS]}.", f".part{final.suffix}"
    try:
        names = os.listdir(final.parent)
    except OSError:
        return []
    return [final.parent / n for n in names if n.startswith(head) and n.endswith(tail)]


def run_jobs(session: Session, jobs: Sequence[Job], choice: ModelChoice, options: ProcessOptions, plan: ActorPlan,
             ) -> Iterator[tuple[Job, Outcome, list[str]]]:
    """Process ``jobs`` on the connected cluster; yields ``(job, outcome, notes)`` as results come back. Inputs
    whose worker died on every try come last, failed. A usage error from the actors (their model could not be set
    up) raises RestoreError. After an interrupted run, :func:`remove_partials` (once Ray is shut down) removes what
    killed actors left."""
    import ray.data

    absolute = [(os.path.abspath(j.src), os.path.abspath(j.dst)) for j in jobs]
    items = [{"i": i, "src": os.fsencode(s), "dst": os.fsencode(d), "rel": os.fsencode(j.rel)}  # any file name
             for i, (j, (s, d)) in enumerate(zip(jobs, absolute, strict=True))]
    spec = WorkerSpec(
        choice=dataclasses.replace(choice, weights=choice.weights and os.path.abspath(choice.weights),
                                   calib=choice.calib and os.path.abspath(choice.calib)),
        options=dataclasses.replace(options, verify_existing=not options.overwrite, tiles_progress=False),
        cwd=os.getcwd(), kill_once=os.environ.get(KILL_ONCE_ENV), poison=os.environ.get(POISON_ENV))
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), MAX_BLOCKS)))
    results = _map(ds, spec, plan)
    seen: set[int] = set()
    for row in results.iter_rows():
        i = int(row["i"])
        if i in seen:  # a block delivered twice by a retry: the first result stands
            continue
        seen.add(i)
        o, notes = outcome_of(row)
        if o.status == USAGE:
            raise RestoreError(f"Ray worker: {o.message}")
        job, (src, dst) = jobs[i], absolute[i]
        o = dataclasses.replace(o, message=_display(o.message, job, src, dst))
        yield job, o, [_display(n, job, src, dst) for n in notes]
    lost = [job for i, job in enumerate(jobs) if i not in seen]
    why = session.errors.lines[-1] if session.errors.lines else "out of memory? a crash in a decoder?"
    for job in lost:
        yield job, Outcome("failed", f"{job.src}: no result from Ray after {TASK_RETRIES + 1} tries ({why})"), []
