"""From what the user typed to a list of (input, output) jobs, before any work starts (standard library only).

:func:`plan` expands files, folders (``recursive``: the whole tree, symbolic-link loops detected) and globs
(relative or absolute, ``**`` included), filters them with ``include`` / ``exclude`` globs on the path relative to
the folder given, maps each to its output (next to it, or under ``-o`` mirroring its subfolder), and finds every
output name that two inputs would share. Nothing here reads an image or touches an output.

Output names: ``<stem><suffix><ext>``, where ``ext`` is the input's own for lossless formats (PNG, TIFF, WebP) and
``.png`` otherwise (a restored photo is not re-compressed as JPEG). ``a.png`` and ``a.jpg`` in one folder would
both become ``a_x4.png``: :func:`plan` reports that as a collision (the caller refuses the run) rather than let the
second overwrite the first.

Sharding (``--shard K/N``, 0-based, for array jobs without Ray): :func:`select_shard` keeps the jobs whose
:func:`shard_of` (a stable hash of the relative path) is K; :func:`parse_shard` reads ``K/N`` and
:func:`shard_from_env` the launcher's variables (``RANK``/``WORLD_SIZE``, SLURM job arrays). The caller checks
collisions on the whole plan first.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from restore.io.files import IMAGE_SUFFIXES, names_folder

LOSSLESS_SUFFIXES = (".png", ".tif", ".tiff", ".webp")
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path
    rel: Path  # the input's path relative to the folder or glob root it was found under (its own name otherwise)


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # inputs that name nothing, loops, unreadable folders
    notes: list[str] = field(default_factory=list)

    def collisions(self) -> list[list[Job]]:
        """Groups of jobs (two or more) that would write the same output file."""
        by_dst: dict[str, list[Job]] = defaultdict(list)
        for job in self.jobs:
            by_dst[os.path.normcase(os.path.abspath(job.dst))].append(job)
        return [group for group in by_dst.values() if len(group) > 1]


def _matches(rel: Path, patterns: Sequence[str]) -> bool:
    text = rel.as_posix()
    return any(fnmatch.fnmatchcase(text, p) or fnmatch.fnmatchcase(rel.name, p) for p in patterns)


def walk_images(root: Path, *, recursive: bool, notes: list[str]) -> Iterator[Path]:
    """Image files (by suffix, hidden ones skipped) in ``root``, sorted; the whole tree with ``recursive``.
    Followed symbolic links to folders are entered once: a link back to a folder already being walked is a
    loop, reported in ``notes`` and not followed."""
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> Iterator[Path]:
        try:
            st = folder.stat()
        except OSError as e:
            notes.append(f"{folder}: cannot read this folder ({e.strerror or e})")
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            notes.append(f"{folder}: symbolic-link loop (a folder already being read); not followed")
            return
        seen.add(key)
        try:
            entries = sorted(folder.iterdir())
        except OSError as e:
            notes.append(f"{folder}: cannot list this folder ({e.strerror or e})")
            return
        for p in entries:
            if p.name.startswith("."):
                continue
            if p.is_dir():
                if recursive:
                    yield from visit(p)
            elif p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                yield p

    yield from visit(root)


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard (what relative paths are measured from)."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if any(c in p for c in GLOB_CHARS)),
                                     len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def output_for(src: Path, rel: Path, out: str | None, suffix: str, *, single: bool) -> Path:
    """Where the result of ``src`` goes (see the module docstring)."""
    ext = src.suffix.lower() if src.suffix.lower() in LOSSLESS_SUFFIXES else ".png"
    name = f"{src.stem}{suffix}{ext}"
    if out is None:
        return src.with_name(name)
    o = Path(out)
    if single and o.suffix and not o.is_dir() and not names_folder(out):  # "out.v2/" is a folder
        return o
    return o / rel.parent / name


def plan(inputs: Sequence[str], *, out: str | None, suffix: str, recursive: bool = False,
         include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Plan:
    """The jobs for ``inputs`` (see the module docstring); inputs that name nothing go to ``errors``."""
    res = Plan()
    found: list[tuple[Path, Path]] = []  # (file, path relative to its root)
    named: set[str] = set()  # files named one by one (never dropped below: the user asked for them)
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = list(walk_images(p, recursive=recursive, notes=res.notes))
            found += [(f, f.relative_to(p)) for f in files]
            if not files:
                res.notes.append(f"{item}: no images in this folder" + ("" if recursive else
                                                                       " (use -r to include subfolders)"))
        elif p.exists() or p.is_symlink():
            found.append((p, Path(p.name)))
            named.add(_key(p))
        elif any(c in item for c in GLOB_CHARS):
            root = _glob_root(item)
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                res.errors.append(f"{item}: no image matches this pattern")
            found += [(m, m.relative_to(root) if m.is_relative_to(root) else Path(m.name)) for m in files]
        else:
            res.errors.append(f"{item}: no such file, directory or matching glob")
    seen: set[str] = set()
    kept = [(f, rel) for f, rel in found
            if (not include or _matches(rel, include)) and not (exclude and _matches(rel, exclude))]
    out_dir = Path(out) if out is not None and (Path(out).is_dir() or not Path(out).suffix
                                                or names_folder(out)) else None
    if out_dir is not None:  # an output folder inside an input folder: its files are earlier results, not inputs
        inside = [f for f, _ in kept if _key(f) not in named and _under(f, out_dir)]
        if inside:
            res.notes.append(f"{len(inside)} image(s) in the output folder {out_dir} not read as inputs "
                             f"(e.g. {inside[0]})")
            gone = {_key(f) for f in inside}
            kept = [(f, rel) for f, rel in kept if _key(f) not in gone]
    for f, rel in kept:
        key = _key(f)
        if key in seen:  # named twice (a file and its folder, two overlapping globs): once is enough
            continue
        seen.add(key)
        res.jobs.append(Job(f, Path(), rel))
    single = len(res.jobs) == 1 and len(inputs) == 1 and not Path(inputs[0]).is_dir()
    res.jobs = [Job(j.src, output_for(j.src, j.rel, out, suffix, single=single), j.rel) for j in res.jobs]
    # a file found in a folder or by a glob that another input of this run writes (the result of an earlier run
    # next to its input): not an input again (it would become a_x4_x4.png and block a.png -> a_x4.png)
    outputs = {_key(j.dst): j.src for j in res.jobs}
    again = [j for j in res.jobs if _key(j.src) in outputs and _key(j.src) not in named]
    if again:
        res.notes.append(f"{len(again)} image(s) not read as inputs: this run writes them (e.g. {again[0].src}, "
                         f"the output of {outputs[_key(again[0].src)]})")
        res.jobs = [j for j in res.jobs if j not in again]
    return res


def _key(p: Path) -> str:
    return os.path.normcase(os.path.abspath(p))


def _under(f: Path, folder: Path) -> bool:
    try:
        return Path(os.path.abspath(f)).is_relative_to(os.path.abspath(folder))
    except (OSError, ValueError):
        return False


def shard_of(rel: Path, count: int) -> int:
    """Stable shard (0..count-1) of an input by its path relative to its root: the same on every machine and
    Python process (no salted ``hash``), so shards are disjoint and together cover the input."""
    digest = hashlib.sha1(rel.as_posix().encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (0-based); ValueError with a one-line message otherwise."""
    k_text, sep, n_text = text.strip().partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k, n = -1, 0
    if not sep or n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard takes K/N with 0 <= K < N (0-based: 0/4 .. 3/4), not {text!r}")
    return k, n


def shard_from_env(env: dict[str, str] | os._Environ[str]) -> tuple[int, int, str] | None:
    """The shard a launcher assigned through the environment, as ``(K, N, where)``, or None: ``RANK`` /
    ``WORLD_SIZE`` (torchrun, Kubernetes jobs that set them), else a SLURM job array (``SLURM_ARRAY_TASK_ID``
    minus ``SLURM_ARRAY_TASK_MIN``, divided by ``SLURM_ARRAY_TASK_STEP``, of ``SLURM_ARRAY_TASK_COUNT``: any
    ``--array=A-B[:S]``). ValueError (one line) when the variables are set but do not name a shard."""
    rank, world = env.get("RANK"), env.get("WORLD_SIZE")
    if rank is not None and world is not None:
        try:
            k, n = parse_shard(f"{rank}/{world}")
        except ValueError:
            raise ValueError(f"RANK={rank} WORLD_SIZE={world} do not name a shard (0 <= RANK < WORLD_SIZE); "
                             f"pass --shard K/N") from None
        return k, n, "RANK/WORLD_SIZE"
    task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return None
    try:
        first, step = int(env.get("SLURM_ARRAY_TASK_MIN", "0")), int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
        offset, n = int(task) - first, int(count)
        k = offset // step if step > 0 and offset % step == 0 else -1
        return (*parse_shard(f"{k}/{n}"), "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
    except ValueError:
        raise ValueError(f"SLURM_ARRAY_TASK_ID={task} (of {count}) is not a contiguous array index (--array=A-B[:S]); "
                         f"pass --shard K/N") from None


def select_shard(jobs: Sequence[Job], k: int, n: int) -> list[Job]:
    """The jobs of shard ``k`` of ``n`` (by :func:`shard_of` of each job's relative path), in order."""
    return [j for j in jobs if shard_of(j.rel, n) == k]
