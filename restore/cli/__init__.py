"""Command line: ``restore VERB ...``.

One module per verb (:mod:`~restore.cli.process` for upscale/denoise, :mod:`~restore.cli.evaluate`,
:mod:`~restore.cli.info` for info/models, :mod:`~restore.cli.video`, :mod:`~restore.cli.bench`,
:mod:`~restore.cli.train` for train/test/export, :mod:`~restore.cli.web`), each with ``add_parsers(sub)``;
shared argument types in :mod:`restore.cli.args`. Building the parser imports no torch (``restore --help`` and
every ``restore VERB --help`` stay fast); a verb imports its machinery when it runs.

Errors a user can act on (bad file, wrong scale, unknown checkpoint) print one line and exit 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence

from restore.cli import bench, cache, evaluate, info, process, train, video, web

EXIT_USAGE = 2
VERBS = (process, evaluate, info, train, bench, video, web, cache)


def build_parser() -> argparse.ArgumentParser:
    from restore._version import __version__

    ap = argparse.ArgumentParser(prog="restore", description="Lightweight super-resolution and denoising.")
    ap.add_argument("--version", action="version", version=f"restore {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for verb in VERBS:
        verb.add_parsers(sub)
    return ap


def _early_environment(argv: Sequence[str]) -> None:
    """Settings that must be in place before torch (and its OpenMP runtime) is imported: ``restore video``
    runs the network beside decoder and encoder threads, where spinning OpenMP workers (the default) take the
    cores the encoder needs (see :mod:`restore.engine.video`); an explicit ``OMP_WAIT_POLICY`` is kept. With
    ``--device mps`` PyTorch's per-operation CPU fallback is switched on (unless set)."""
    import os

    if list(argv[:1]) == ["video"] and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "mps" in argv:  # --device mps: operations MPS lacks run on the CPU instead of failing (read at torch import)
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's stop) unwinds like Ctrl-C, so temporary outputs are removed and the exit
    status is 130. Only in the main thread (elsewhere signals cannot be set)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    _early_environment(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from restore.errors import RestoreError

    try:
        with sigterm_as_interrupt():
            if getattr(args, "debug", False):
                return int(args.func(args) or 0)
            try:
                return int(args.func(args) or 0)
            except (RestoreError, FileNotFoundError, ValueError) as e:
                print(f"restore: error: {e}", file=sys.stderr)
                return EXIT_USAGE
    except KeyboardInterrupt:
        print("restore: interrupted", file=sys.stderr)
        return 130
