"""``restore web``: start the browser demo (:mod:`restore.web.app`, needs the ``web`` extra).

Gradio is imported only when the command runs, never by ``import restore`` or ``restore --help``. Ctrl-C and
SIGTERM both stop it cleanly (the work folder with users' files is removed); checkpoints in ``--weights-dir``
that cannot be loaded are skipped with one warning line each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from restore.cli.args import device_arg, port, positive

EXIT_USAGE = 2
INSTALL_HINT = "pip install 'restore[web]'"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the network)")
    p.add_argument("--port", type=port, default=7860, help="port (default 7860)")
    p.add_argument("--weights-dir", type=Path, metavar="DIR",
                   help="offer every checkpoint in DIR (.pth/.pt/.pb/.safetensors) besides the shipped models")
    p.add_argument("--device", default="auto", type=device_arg, metavar="DEVICE",
                   help="where to run (auto: cuda when available)")
    p.add_argument("--max-pixels", type=positive, default=4_000_000,
                   help="largest input image, width x height (default 4000000)")
    p.add_argument("--max-upload-mb", type=positive, default=50, help="largest upload in MB (default 50)")
    p.add_argument("--max-video-frames", type=positive, default=300,
                   help="frames of a clip that are processed (default 300)")
    p.add_argument("--queue-size", type=positive, default=8,
                   help="requests that may wait while one runs (default 8)")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("web", help=f"start the browser demo (needs the web extra: {INSTALL_HINT})",
                              description="Serve the Gradio demo: image upscaling/denoising with a before/after "
                                          "slider, and a video tab when video support is installed.")
    _add_arguments(p)
    p.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print(f"restore: error: the web demo needs Gradio: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    if args.weights_dir is not None and not args.weights_dir.is_dir():
        print(f"restore: error: --weights-dir {args.weights_dir}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    bad_host = _unbindable(args.host)
    if bad_host:
        print(f"restore: error: --host {args.host}: {bad_host}", file=sys.stderr)
        return EXIT_USAGE
    from restore.web import app, ui

    limits = app.Limits(max_upload_bytes=args.max_upload_mb * 2**20, max_pixels=args.max_pixels,
                        max_video_frames=args.max_video_frames, queue_size=args.queue_size)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"restore web: listening on {args.host}: anyone who can reach this machine can use the demo",
              file=sys.stderr)
    try:
        ui.launch(host=args.host, port=args.port, weights_dir=args.weights_dir, device=args.device, limits=limits,
                  cache_in_workdir=True)
    except OSError as e:  # port taken, address not available
        print(f"restore: error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # --device cuda without a CUDA device
        text = str(e).strip().splitlines()
        print(f"restore: error: {text[0] if text else type(e).__name__}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _unbindable(host: str) -> str:
    """Why this machine cannot listen on ``host`` ('' when it can): an unknown name or an address of no interface
    here (checked by binding a socket to port 0, so the message is about the host, not the port)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        return f"not a host name or address this machine can resolve ({getattr(e, 'strerror', None) or e})"
    last = ""
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.bind(addr)
            return ""
        except OSError as e:
            last = e.strerror or str(e)
    return f"no interface of this machine has this address ({last})"
