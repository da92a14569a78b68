"""Long videos across workers: ``restore video IN -o OUT --segments K/N | N | concat`` and ``--ray [ADDRESS]``.

One concern, kept whole (hence over 500 lines): the plan, the work folder, the executors and the join.

The video is cut at keyframes into N segments of about equal duration (:mod:`restore.io.video_segments`: a
demux-only pass over the packets, no decoding), each segment is upscaled on its own (its frames exactly, by
pts, with the same model and encoder settings) into a video-only file of OUT's container, and the finished
segments are joined by stream copy (no re-encode) into OUT, with the source's audio / subtitle / data streams
copied once for the whole duration. Frame count and every frame's pts are those of a single-process run; the
pixels differ only by encoding (each segment starts with a keyframe of its own, so the packets are not the
single encode's; decoded frames agree within the encoder's tolerance, exactly at a lossless CRF).

Work folder (resumable at segment granularity): ``.OUT.<hash>.segments`` beside OUT (hidden; the hash is of the
input's name, size and mtime, so an edited input starts afresh). In it:

- ``plan-KEY.json``: the segments (pts ranges, seek points, frame counts). KEY is a hash of N, the model (its
  weights' bytes) and the encoder settings (codec, CRF, preset, colour path, bit depth), so runs with other
  settings never mix their pieces;
- ``KEY-00003-of-00008.mp4``: a finished segment (written under a temporary name and renamed when complete)
  and ``KEY-00003-of-00008.json``, its record (frames, timing, host), written after it: a segment is done when
  its record exists. A rerun (or another worker) skips done segments, so a job that was killed redoes only the
  segments that were not finished;
- ``join.lock`` while a process joins the segments.

The folder is deleted once OUT is published. Ways to run (all write the same folder, so they can be mixed):

- ``--segments N``: every segment, one after another, in this process (resumable), then the join;
- ``--segments K/N`` (0-based, as ``--shard``): only segment K, for schedulers without Ray (SLURM arrays,
  Kubernetes jobs; every process must see IN and OUT's folder at the same paths). The process that finishes the
  last missing segment joins them (the first to take ``join.lock``); ``--segments concat`` joins explicitly;
- ``--ray [ADDRESS] [--workers N]``: N segments (default: one per GPU of the cluster, else one per CPU), the
  missing ones as Ray tasks (one GPU each, or an even share of a node's CPUs; the helpers of
  :mod:`restore.engine.ray_batch`), then the join here. Workers read IN and write the segments through a
  shared file system (the paths are sent as they are, absolute).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restore.engine.video import VideoResult, check_output, make_restorer, upscale_video

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from restore.engine.restorer import Restorer
    from restore.io.video_segments import Segment

WORK_SUFFIX = ".segments"
LOCK_NAME = "join.lock"
PLAN_VERSION = 1


# ------------------------------------------------------------------------------------------ plan and work folder


def work_folder(source: str | Path, output: str | Path) -> Path:
    """The hidden work folder beside ``output`` for ``source`` (named from OUT and the input's name, size and
    mtime)."""
    from restore.io.files import TEMP_STEM_CHARS

    src, out = Path(source), Path(output)
    st = src.stat()
    tag = hashlib.sha1(f"{src.name}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return out.with_name(f".{out.stem[:TEMP_STEM_CHARS]}{out.suffix}.{tag}{WORK_SUFFIX}")


def model_fingerprint(model: Any) -> str:
    """A short hash of a model: its weights file's bytes, or the tensors of its state dict (a module, or a
    Restorer's network)."""
    h = hashlib.sha256()
    if isinstance(model, str | Path):
        with open(model, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:16]
    net = getattr(model, "model", model) if not hasattr(model, "state_dict") else model
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class EncodeSettings:
    """What every segment of one output shares (their hash keys the work folder's files)."""

    segments: int
    model: str
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    color_path: str = "auto"
    bit_depth: int | None = None

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SegmentPlan:
    """The segments of ``source`` for ``output`` with ``settings``, and where their pieces go."""

    source: str
    output: str
    work: str
    key: str
    settings: EncodeSettings
    time_base: Fraction
    segments: tuple[Segment, ...]

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)

    def _stem(self, seg: Segment) -> str:
        return f"{self.key}-{seg.index:05d}-of-{seg.count:05d}"

    def part(self, seg: Segment) -> Path:
        """The finished segment file (OUT's container)."""
        return Path(self.work) / f"{self._stem(seg)}{Path(self.output).suffix.lower()}"

    def record(self, seg: Segment) -> Path:
        """The segment's record: present once the segment is done."""
        return Path(self.work) / f"{self._stem(seg)}.json"

    def done(self, seg: Segment) -> bool:
        return self.record(seg).is_file() and self.part(seg).is_file()

    def missing(self) -> list[Segment]:
        return [s for s in self.segments if not self.done(s)]

    def to_json(self) -> str:
        return json.dumps({"version": PLAN_VERSION, "source": self.source, "output": self.output, "key": self.key,
                           "settings": asdict(self.settings),
                           "time_base": [self.time_base.numerator, self.time_base.denominator],
                           "segments": [asdict(s) for s in self.segments]}, indent=1)


def _plan_from_json(text: str, work: Path) -> SegmentPlan:
    from restore.io.video_segments import Segment

    d = json.loads(text)
    if d.get("version") != PLAN_VERSION:
        raise ValueError(f"plan version {d.get('version')}")
    return SegmentPlan(source=d["source"], output=d["output"], work=str(work), key=d["key"],
                       settings=EncodeSettings(**d["settings"]), time_base=Fraction(*d["time_base"]),
                       segments=tuple(Segment(**s) for s in d["segments"]))


def _plan_path(work: Path, key: str) -> Path:
    return work / f"plan-{key}.json"


def prepare_plan(source: str | Path, output: str | Path, settings: EncodeSettings) -> SegmentPlan:
    """The plan in the work folder for these settings: read when there, else made (demux-only pass) and
    written (first writer wins; every process derives the same plan from the same file)."""
    from restore.errors import VideoError
    from restore.io.files import publish_bytes
    from restore.io.video_segments import plan_segments, scan_packets

    work = work_folder(source, output)
    key = settings.key()
    path = _plan_path(work, key)
    if path.is_file():
        try:
            return _plan_from_json(path.read_text(), work)
        except (ValueError, KeyError, TypeError) as e:
            raise VideoError(f"{path}: damaged segment plan ({e}); delete {work} to start over") from None
    index = scan_packets(source)
    plan = SegmentPlan(source=str(source), output=str(output), work=str(work), key=key, settings=settings,
                       time_base=index.time_base, segments=tuple(plan_segments(index, settings.segments)))
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process wrote it meanwhile: the same plan
        publish_bytes(path, plan.to_json().encode(), overwrite=False)
    return plan


def find_plans(source: str | Path, output: str | Path) -> list[SegmentPlan]:
    """Every plan in the work folder (any settings), for ``--segments concat``."""
    work = work_folder(source, output)
    plans = []
    for p in sorted(work.glob("plan-*.json")) if work.is_dir() else []:
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            plans.append(_plan_from_json(p.read_text(), work))
    return plans


# ------------------------------------------------------------------------------------------ one segment


@dataclass
class SegmentRecord:
    """What processing one segment did (its ``.json`` in the work folder)."""

    index: int
    frames: int
    seconds: float
    video_seconds: float
    sr_seconds: float = 0.0
    color_path: str = "rgb"
    bit_depth: int = 8
    notes: list[str] = field(default_factory=list)
    host: str = ""
    out_size: tuple[int, int] = (0, 0)
    expected: int = 0  # frames the plan expected, when fewer could be decoded (a damaged source); else 0


def read_record(plan: SegmentPlan, seg: Segment) -> SegmentRecord | None:
    """The record of a done segment (None when missing or unreadable)."""
    try:
        d = json.loads(plan.record(seg).read_text())
        d["out_size"] = tuple(d.get("out_size") or (0, 0))
        return SegmentRecord(**d)
    except (OSError, ValueError, TypeError):
        return None


def run_segment(plan: SegmentPlan, seg: Segment, model: nn.Module | Restorer | str | Path, *, device: str = "auto",
                precision: str = "auto", tile: int | str | None = None, batch: int | None = None,
                progress: Callable[[Any], None] | None = None,
                on_start: Callable[[Any, int], None] | None = None) -> SegmentRecord:
    """Upscale segment ``seg`` into its file in the work folder and write its record; returns the record."""
    from restore.io.files import publish_bytes

    s = plan.settings
    res = upscale_video(plan.source, plan.part(seg), model, codec=s.codec, crf=s.crf, preset=s.preset,
                        color_path=s.color_path, bit_depth=s.bit_depth, segment=seg, overwrite=True, device=device,
                        precision=precision, tile=tile, batch=batch, progress=progress, on_start=on_start)
    rec = SegmentRecord(index=seg.index, frames=res.frames, seconds=round(res.seconds, 4),
                        video_seconds=round(res.video_seconds, 6), sr_seconds=round(res.sr_seconds, 4),
                        color_path=res.color_path, bit_depth=res.bit_depth, notes=list(res.notes),
                        host=socket.gethostname(), out_size=res.out_size, expected=res.expected_frames)
    publish_bytes(plan.record(seg), json.dumps(asdict(rec)).encode(), overwrite=True)
    return rec


# ------------------------------------------------------------------------------------------ the join


@contextlib.contextmanager
def _join_lock(work: Path, *, wait: bool) -> Iterator[bool]:
    """``join.lock`` in the work folder: True when this process holds it. ``wait=False``: False when another
    process holds it (it is joining); ``wait=True`` (an explicit join): taken over."""
    path = work / LOCK_NAME
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        if not wait:
            yield False
            return
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666)
    try:
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        os.close(fd)
        yield True
    finally:
        path.unlink(missing_ok=True)


def join_segments(plan: SegmentPlan, *, overwrite: bool, notes: list[str], wait: bool = True) -> bool:
    """Join the done segments into OUT (stream copy, the source's other streams copied once), publish it and
    delete the work folder. False (nothing done) when another process is joining and ``wait`` is False.
    Raises VideoError naming the missing segments when some are not done."""
    from restore.errors import VideoError
    from restore.io.files import publish, temp_path
    from restore.io.video_segments import concat_segments, rebases

    missing = plan.missing()
    if missing:
        names = ", ".join(str(s.index) for s in missing)
        raise VideoError(f"{plan.output}: segment(s) {names} of {len(plan.segments)} not done yet (run them with "
                         f"--segments K/{plan.settings.segments}, then join with --segments concat)")
    work, out = Path(plan.work), Path(plan.output)
    with _join_lock(work, wait=wait) as mine:
        if not mine:
            return False
        if out.exists() and not overwrite:
            raise VideoError(f"{out}: exists (use --overwrite)")
        tmp = temp_path(out)
        try:
            shifts = [s.shift * plan.time_base if rebases(out.suffix) else Fraction(0) for s in plan.segments]
            packets = concat_segments([plan.part(s) for s in plan.segments], tmp, source=plan.source,
                                      label=str(out), notes=notes, shifts=shifts)
            if packets != plan.frames:
                notes.append(f"{out}: {packets} video packets joined, the plan has {plan.frames} frames")
            try:
                publish(tmp, out, overwrite=overwrite)
            except FileExistsError:
                raise VideoError(f"{out}: created by someone else meanwhile (use --overwrite)") from None
        finally:
            tmp.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return True


# ------------------------------------------------------------------------------------------ Ray


@dataclass(frozen=True)
class _RayJob:
    """What a Ray task needs (picklable; paths absolute)."""

    plan: SegmentPlan
    segment: Segment
    model: Any  # weights path (str) or a module
    device: str
    precision: str
    tile: int | str | None
    batch: int | None
    threads: int


def _ray_task(job: _RayJob) -> SegmentRecord:
    """One segment on a Ray worker: its own model and Restorer, ``threads`` torch threads on the CPU."""
    import torch

    from restore.engine.restorer import resolve_device

    if resolve_device(job.device).type == "cpu":
        torch.set_num_threads(max(1, job.threads))
    return run_segment(job.plan, job.segment, job.model, device=job.device, precision=job.precision,
                       tile=job.tile, batch=job.batch)


@contextlib.contextmanager
def _ray_connected(address: str | None, *, say: Callable[[str], None], debug: bool) -> Iterator[Any]:
    """Ray for the block: the connection a program (or a test) already has, kept as it is; else
    :func:`restore.engine.ray_batch.ray_session` (``address``, else RAY_ADDRESS, else a local instance)."""
    from restore.engine.ray_batch import ray_session, require_ray

    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    with ray_session(address, say=say, debug=debug) as session:
        yield getattr(session, "ray", session)  # the ray module (ray_session yields it, or a Session holding it)


def _ray_error(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    text = str(cause) if cause is not None else str(e)
    return (text.strip().splitlines() or [type(e).__name__])[0]


def _run_on_ray(ray: Any, plan: SegmentPlan, todo: list[Segment], job: dict[str, Any], *, num_cpus: float,
                num_gpus: float, on_done: Callable[[SegmentRecord], None]) -> list[str]:
    """Run ``todo`` as Ray tasks; ``on_done`` per finished segment; returns the failures' one-line messages."""
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus or None, max_retries=2)(_ray_task)
    model = job["model"] if isinstance(job["model"], str) else ray.put(job["model"])
    refs = {remote.remote(_RayJob(plan=plan, segment=s, model=model, device=job["device"],
                                  precision=job["precision"], tile=job["tile"], batch=job["batch"],
                                  threads=max(1, int(num_cpus)))): s for s in todo}
    errors: list[str] = []
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                on_done(ray.get(ready[0]))
            except Exception as e:  # noqa: BLE001 - a RayTaskError (the worker's exception) or a lost worker
                errors.append(f"segment {refs[ready[0]].index}: {_ray_error(e)}")
    except BaseException:
        for r in pending:
            with contextlib.suppress(Exception):
                ray.cancel(r)
        raise
    return errors


# ------------------------------------------------------------------------------------------ the verb


@dataclass
class SegmentsResult(VideoResult):
    """:class:`VideoResult` of the frames processed by this run, plus how the segments went."""

    segments: int = 0
    processed: list[int] = field(default_factory=list)  # segment indices processed by this run
    reused: list[int] = field(default_factory=list)  # done before this run
    joined: bool = False
    done: int = 0  # segments done (all of them once joined)
    work: str = ""
    how: str = ""  # "this process" or the Ray worker plan


def upscale_video_segments(source: str | Path, output: str | Path, model: nn.Module | str | Path, *,
                           segments: int | None = None, only: int | None = None, join_only: bool = False,
                           ray: bool = False, address: str | None = None, workers: int | None = None,
                           runner: Restorer | None = None, codec: str | None = None, crf: int | None = None,
                           preset: str | None = None, color_path: str = "auto", bit_depth: int | None = None,
                           device: str = "auto", precision: str = "auto", tile: int | str | None = None,
                           batch: int | None = None, overwrite: bool = False,
                           progress: Callable[[Any], None] | None = None,
                           on_start: Callable[[Any, int], None] | None = None,
                           on_segment: Callable[[SegmentRecord], None] | None = None,
                           say: Callable[[str], None] = lambda _m: None, debug: bool = False) -> SegmentsResult:
    """Upscale ``source`` into ``output`` in segments (see the module docstring).

    ``segments``: N; ``only``: process only segment K (0-based) of N, then join if every segment is done and no
    other process is joining; neither: all missing segments here, one after another. ``join_only``: only join
    (the plan of the finished segments is found in the work folder). ``ray``: the missing segments as Ray tasks
    (``address``: as ``--ray ADDRESS``; ``workers``: N, default one per GPU else one per CPU). ``model``: the
    weights file (hashed for the work folder; what Ray workers load) or a module; ``runner``: a ready
    Restorer for the local work (else one is made from ``model``). ``progress`` / ``on_start`` as
    :func:`~restore.engine.video.upscale_video` for local segments; ``on_segment`` per finished segment.
    """
    from restore.io import probe_video

    src, dst = str(source), Path(output)
    info = probe_video(src)
    if info.live:
        raise ValueError(f"{src}: segments need a file, not a live source")
    check_output(src, dst, overwrite=overwrite)
    t0 = time.perf_counter()
    notes: list[str] = []
    if join_only:
        plan = _complete_plan(src, dst)
        joined = join_segments(plan, overwrite=overwrite, notes=notes, wait=True)
        return _result(plan, info, [], [], joined, time.perf_counter() - t0, notes, "join only")
    settings = EncodeSettings(segments=segments or 1, model=model_fingerprint(model), codec=codec, crf=crf,
                              preset=preset, color_path=color_path, bit_depth=bit_depth)
    if ray:
        return _segments_on_ray(src, dst, info, model, settings, address=address, workers=workers, device=device,
                                precision=precision, tile=tile, batch=batch, overwrite=overwrite, t0=t0,
                                on_segment=on_segment, say=say, debug=debug)
    if not segments:
        raise ValueError("segments: give N (or use ray)")
    if only is not None and not 0 <= only < segments:
        raise ValueError(f"--segments takes K/N with 0 <= K < N, not {only}/{segments}")
    plan = prepare_plan(src, dst, settings)
    chosen = [s for s in plan.segments if only is None or s.index == only]
    if only is not None and not chosen:
        notes.append(f"segment {only} of {segments} is empty: the video has keyframes for only {len(plan.segments)} "
                     f"segment(s); nothing to do")
    reused = [s.index for s in chosen if plan.done(s)]
    todo = [s for s in chosen if not plan.done(s)]
    records = []
    if todo:
        runner = runner if runner is not None else make_restorer(model, device=device, precision=precision, tile=tile)
        t0 = time.perf_counter()
        for seg in todo:
            rec = run_segment(plan, seg, runner, batch=batch, progress=progress, on_start=on_start)
            records.append(rec)
            if on_segment is not None:
                on_segment(rec)
    seconds = time.perf_counter() - t0
    joined = False
    if not plan.missing():
        joined = join_segments(plan, overwrite=overwrite, notes=notes, wait=only is None)
        if not joined:
            notes.append(f"{dst}: another process is joining the segments")
    return _result(plan, info, records, reused, joined, seconds, notes, "this process")


def _complete_plan(src: str, dst: Path) -> SegmentPlan:
    """For ``--segments concat``: the one plan in the work folder whose segments are all done."""
    from restore.errors import VideoError

    plans = find_plans(src, dst)
    if not plans:
        raise VideoError(f"{dst}: no segments of {src} to join (no work folder {work_folder(src, dst).name})")
    complete = [p for p in plans if not p.missing()]
    if len(complete) == 1:
        return complete[0]
    if not complete:
        p = max(plans, key=lambda q: len(q.segments) - len(q.missing()))
        names = ", ".join(str(s.index) for s in p.missing())
        raise VideoError(f"{dst}: segment(s) {names} of {len(p.segments)} not done yet (run them with --segments "
                         f"K/{p.settings.segments})")
    raise VideoError(f"{dst}: {len(complete)} complete sets of segments made with different settings in "
                     f"{work_folder(src, dst)}; delete the ones not wanted")


def _segments_on_ray(src: str, dst: Path, info: Any, model: Any, settings: EncodeSettings, *, address: str | None,
                     workers: int | None, device: str, precision: str, tile: int | str | None, batch: int | None,
                     overwrite: bool, t0: float, on_segment: Callable[[SegmentRecord], None] | None,
                     say: Callable[[str], None], debug: bool) -> SegmentsResult:
    from dataclasses import replace

    from restore.engine.ray_batch import cluster_nodes, plan_actors
    from restore.errors import VideoError

    notes: list[str] = []
    with _ray_connected(address, say=say, debug=debug) as ray_mod:
        actors = plan_actors(cluster_nodes(ray_mod), device=device, workers=workers, inputs=1 << 30)
        plan = prepare_plan(src, dst, replace(settings, segments=actors.workers))
        todo = plan.missing()
        reused = [s.index for s in plan.segments if s not in todo]
        records: list[SegmentRecord] = []

        def done(rec: SegmentRecord) -> None:
            records.append(rec)
            if on_segment is not None:
                on_segment(rec)

        weights = str(Path(model).resolve()) if isinstance(model, str | Path) else model
        job = {"model": weights, "device": device, "precision": precision, "tile": tile, "batch": batch}
        t0 = time.perf_counter()
        errors = _run_on_ray(ray_mod, plan, todo, job, num_cpus=actors.num_cpus, num_gpus=actors.num_gpus,
                             on_done=done) if todo else []
        seconds = time.perf_counter() - t0
    if errors:
        raise VideoError(f"{dst}: {len(errors)} of {len(plan.segments)} segment(s) failed ({errors[0]}); the "
                         f"finished ones are kept in {plan.work}: rerun to resume")
    joined = join_segments(plan, overwrite=overwrite, notes=notes, wait=True)
    return _result(plan, info, records, reused, joined, seconds, notes, actors.describe())


def _result(plan: SegmentPlan, info: Any, records: list[SegmentRecord], reused: list[int], joined: bool,
            seconds: float, notes: list[str], how: str) -> SegmentsResult:
    scale_notes = [n for r in records for n in r.notes if n not in notes]
    first = records[0] if records else None
    out_size = first.out_size if first else (0, 0)
    if first is None and joined:
        from restore.io import probe_video

        out = probe_video(plan.output)
        out_size = (out.width, out.height)
    return SegmentsResult(
        source=plan.source, output=plan.output if joined else None, frames=sum(r.frames for r in records),
        seconds=seconds, video_seconds=sum(r.video_seconds for r in records), in_size=(info.width, info.height),
        out_size=out_size, sr_seconds=sum(r.sr_seconds for r in records),
        notes=list(dict.fromkeys(scale_notes + notes)), color_path=first.color_path if first else "-",
        bit_depth=first.bit_depth if first else info.bit_depth, segments=len(plan.segments),
        expected_frames=sum(r.expected or r.frames for r in records) if any(r.expected for r in records) else 0,
        processed=[r.index for r in records], reused=list(reused), joined=joined, work=plan.work, how=how,
        done=len(plan.segments) if joined else len(plan.segments) - len(plan.missing()))
