"""``restore video``: upscale a video file (or a live source) through :mod:`restore.engine.video`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from restore.cli.args import add_model_args, add_precision_args, crf, frame_range, positive, tile
from restore.engine.policy import COLOR_PATHS, GPU_BATCH


def segments_arg(value: str) -> tuple[int | None, int | None]:
    """``--segments``: ``K/N`` (only segment K of N, 0-based) -> (K, N); ``N`` (all N here) -> (None, N);
    ``concat`` (join the finished segments) -> (None, None)."""
    text = value.strip().lower()
    if text in ("concat", "join"):
        return None, None
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = (int(k_text), int(n_text)) if sep else (None, int(k_text))
    except ValueError:
        k, n = -1, 0
    if n < 1 or (k is not None and not 0 <= k < n):
        raise argparse.ArgumentTypeError(f"--segments takes K/N (0 <= K < N, 0-based: 0/4 .. 3/4), N or 'concat', "
                                         f"not {value!r}")
    return k, n


def ray_address(value: str) -> str:
    """``--ray [ADDRESS]``, checked as ``restore upscale --ray`` checks it."""
    from restore.cli.process import ray_address as check

    return check(value)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("video", help="upscale a video (keeps audio, subtitles, timing, rotation, colour)",
                              description="Upscale a video file (or, with --live, a camera / stream). Audio and "
                                          "subtitle streams are copied untouched; timestamps, rotation metadata "
                                          "and colour range are kept.")
    p.add_argument("input", metavar="INPUT", help="video file; with --live also /dev/videoN or a stream URL")
    p.add_argument("-o", "--output", help="output video (.mp4, .mkv, .mov, .webm, ...); optional with --live")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (checks the model's)")
    add_model_args(p, required=False)
    p.add_argument("--batch", type=positive, default=None,
                   help=f"frames per network call (default {GPU_BATCH} on CUDA, 1 on the CPU; with --live: up to N "
                        f"waiting frames)")
    add_precision_args(p, auto="fp16 on CUDA, bf16 on CPUs with native bf16 (AMX / AVX512-BF16) for half-safe "
                                "models, else the fastest fp32 path")
    p.add_argument("--tile", type=tile, default="auto",
                   help="tile size in LR px per frame, 'auto' (default), 'acs' or 0 (whole frame)")
    p.add_argument("--codec", default=None,
                   help="video encoder (default libx264; libvpx-vp9 for .webm; e.g. libx265, libsvtav1, ffv1)")
    p.add_argument("--crf", type=crf, default=None, help="constant-quality level (default 18)")
    p.add_argument("--preset", default=None, help="x264/x265 speed preset (default veryfast)")
    p.add_argument("--threads", type=positive, default=None,
                   help="torch CPU threads (default: all cores; on a machine busy with other work, fewer may "
                        "be faster)")
    p.add_argument("--color-path", choices=COLOR_PATHS, default="auto",
                   help="Y-only models (ESPCN) on 4:2:0 sources: 'yuv' runs the network on the Y plane and "
                        "encodes the planes directly (no RGB round trip); 'rgb' forces the RGB path; 'auto' "
                        "(default) takes 'yuv' where it applies")
    p.add_argument("--frames", type=frame_range, default=None, metavar="A:B",
                   help="only frames A..B-1 (0-based; 'A:' to the end, ':B' from the start)")
    p.add_argument("--live", action="store_true",
                   help="real-time mode: read at the source's pace, drop frames when behind, show measured fps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--allow-truncated", action="store_true",
                   help="exit 0 when the input has fewer frames than its header announces (the output keeps the "
                        "decodable ones either way)")
    p.add_argument("--bit-depth", choices=("auto", "8"), default="auto",
                   help="'auto' (default): sources of more than 8 bits stay so end to end (16-bit RGB or 10-bit "
                        "planes into the network in float, x265 Main 10 or the source codec's 10-bit profile, HDR10 "
                        "metadata kept with libx265); '8': the 8-bit pipeline and an 8-bit output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    far = p.add_argument_group("long videos across workers (split at keyframes, joined by stream copy)")
    far.add_argument("--segments", type=segments_arg, metavar="K/N|N|concat",
                     help="K/N: upscale only segment K of N (0-based: 0/4 .. 3/4; for array jobs without Ray, IN and "
                          "OUT's folder shared); the run that completes the last segment writes OUTPUT. N: all N "
                          "segments here, one after another. concat: join the finished segments into OUTPUT. "
                          "Segments are kept in a hidden folder beside OUTPUT until it is written, so a rerun "
                          "resumes")
    far.add_argument("--ray", nargs="?", const="", default=None, type=ray_address, metavar="ADDRESS",
                     help="upscale the segments on a Ray cluster (the 'cluster' extra): ADDRESS (HOST:PORT, "
                          "ray://HOST:PORT, auto), else RAY_ADDRESS when set, else a local instance; IN and OUT's "
                          "folder must be visible to every node at the same path")
    far.add_argument("--workers", type=positive, metavar="N",
                     help="--ray: N segments at once (default: one per GPU of the cluster, else one per CPU)")
    p.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from restore import io
    from restore.engine.restorer import is_oom
    from restore.engine.video import PipelineStats, default_batch, default_threads, make_restorer, upscale_video
    from restore.weights import load_model, resolve_model

    if args.output is None and not args.live:
        raise ValueError("-o OUTPUT is required (it is optional only with --live)")
    far = _check_segment_args(args)
    weights = Path(args.weights) if args.weights else resolve_model(args.model, task="sr", scale=args.scale)
    model = load_model(weights)
    meta = model.meta
    if meta.task != "sr":
        raise ValueError(f"{weights}: a {meta.task} model; 'restore video' needs a super-resolution model")
    if args.scale is not None and args.scale != meta.scale:
        raise ValueError(f"{weights}: model is x{meta.scale}, but --scale {args.scale} was asked")
    if far:
        return _cmd_segments(args, weights, model)
    runner = make_restorer(model, device=args.device, precision=args.precision, tile=args.tile, calibration=args.calib)
    batch = args.batch or default_batch(runner.device)
    if runner.device.type == "cpu":
        import torch

        torch.set_num_threads(args.threads or default_threads())
    start, stop = args.frames if args.frames is not None else (0, None)
    bar: Any = None

    def on_start(info: io.VideoInfo, total: int) -> None:
        nonlocal bar
        print(f"{info.source}: {info.width}x{info.height} {info.codec} {info.fps:.3g} fps"
              f"{f', {info.pix_fmt}' if info.bit_depth > 8 else ''}{f', {info.hdr.describe()}' if info.hdr else ''}"
              f"{f', {total} frames' if total else ''}"
              f"{f', rotation {info.rotation}' if info.rotation else ''}"
              f"{''.join(f'; {s}' for s in info.streams)}", file=sys.stderr)
        bar = tqdm(total=None if args.live else total or None, unit="frame", desc="live" if args.live else "video",
                   dynamic_ncols=True, smoothing=0.1, leave=False)

    def progress(stats: PipelineStats) -> None:
        bar.update(1)
        if args.live and stats.frames_out % 5 == 0:
            bar.set_postfix_str(f"{stats.fps:.1f} fps, dropped {stats.dropped}, delay {stats.latency * 1e3:.0f} ms",
                                refresh=False)

    try:
        # SIGTERM unwinds like Ctrl-C (restore.cli.main), so the temporary output is removed
        res = upscale_video(args.input, args.output, runner, codec=args.codec, crf=args.crf, preset=args.preset,
                            start=start, stop=stop, batch=batch, overwrite=args.overwrite, live=args.live,
                            progress=progress, on_start=on_start, color_path=args.color_path,
                            bit_depth=_bit_depth(args))
    except io.VideoError as e:  # the input (or its output) failed: exit 1, as for an image that fails
        if args.debug:
            raise
        print(f"restore: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the output side: a file where a folder is needed, no permission, disk full
        if args.debug:
            raise
        print(f"restore: error: {args.input} -> {args.output}: {e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:
        if args.debug or not is_oom(e):
            raise
        print(f"restore: error: {args.input}: out of memory; try a smaller --tile (e.g. --tile 256), a smaller "
              f"--batch or --device cpu", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    for note in res.notes:
        print(f"restore: note: {note}", file=sys.stderr)
    dropped = f", {res.dropped} dropped" if res.dropped else ""
    where = f" -> {res.output}" if res.output else ""
    print(f"{res.source}{where}: {res.frames} frames{dropped} in {res.seconds:.1f} s, {res.fps:.1f} fps, "
          f"real-time factor {res.realtime_factor:.2f} ({res.video_seconds:.1f} s of video; "
          f"{res.in_size[0]}x{res.in_size[1]} -> {res.out_size[0]}x{res.out_size[1]}, {meta.family}/{meta.variant} "
          f"x{meta.scale}, {runner.device}, {runner.precision} {runner.backend}, {res.color_path} path"
          f"{f', {res.bit_depth}-bit' if res.bit_depth > 8 else ''}, batch {batch}"
          f"{f', {_threads()} threads' if runner.device.type == 'cpu' else ''})")
    if res.truncated and not args.allow_truncated:
        print(f"restore: error: {args.input}: {res.expected_frames} frames expected, {res.frames} decoded (the file "
              f"is cut short or damaged); pass --allow-truncated to accept this", file=sys.stderr)
        return 1
    return 0


def _bit_depth(args: argparse.Namespace) -> int | None:
    return 8 if args.bit_depth == "8" else None


def _check_segment_args(args: argparse.Namespace) -> bool:
    """Usage errors of --segments / --ray / --workers (exit 2, before any model loads); True when one is used.
    Without Ray installed, --ray is one line naming the extra."""
    if args.workers is not None and args.ray is None:
        raise ValueError("--workers is for --ray (without Ray, run one 'restore video ... --segments K/N' per "
                         "segment)")
    if args.segments is None and args.ray is None:
        return False
    flag = "--ray" if args.ray is not None else "--segments"
    if args.ray is not None and args.segments is not None:
        raise ValueError("--ray and --segments are alternatives: --ray --workers N splits the video in N segments")
    if args.live or args.frames is not None:
        raise ValueError(f"{flag} is for whole files: not with --live or --frames")
    if args.output is None:
        raise ValueError(f"{flag} needs -o OUTPUT")
    if args.ray is not None:
        from restore.engine.ray_batch import require_ray

        require_ray()
    return True


def _cmd_segments(args: argparse.Namespace, weights: Path, model: Any) -> int:
    """``--segments`` / ``--ray``: see :mod:`restore.engine.video_segments`."""
    from tqdm import tqdm

    from restore import io
    from restore.engine.video import default_batch, default_threads, make_restorer
    from restore.engine.video_segments import SegmentRecord, upscale_video_segments

    meta = model.meta
    k, n = args.segments if args.segments is not None else (None, None)
    join_only = args.segments is not None and n is None
    runner = None
    batch = args.batch
    if args.ray is None and not join_only:
        runner = make_restorer(model, device=args.device, precision=args.precision, tile=args.tile,
                               calibration=args.calib)
        batch = batch or default_batch(runner.device)
        if runner.device.type == "cpu":
            import torch

            torch.set_num_threads(args.threads or default_threads())
    bar: Any = None

    def on_start(info: io.VideoInfo, total: int) -> None:
        nonlocal bar
        if bar is None:
            print(f"{info.source}: {info.width}x{info.height} {info.codec} {info.pix_fmt} {info.fps:.3g} fps"
                  f"{f', {info.hdr.describe()}' if info.hdr else ''}", file=sys.stderr)
        else:
            bar.close()
        bar = tqdm(total=total or None, unit="frame", desc="segment", dynamic_ncols=True, leave=False)

    def on_segment(rec: SegmentRecord) -> None:
        tqdm.write(f"restore: segment {rec.index} done: {rec.frames} frames in {rec.seconds:.1f} s"
                   f"{f' on {rec.host}' if rec.host else ''}", file=sys.stderr)

    def say(msg: str) -> None:
        tqdm.write(f"restore: note: {msg}", file=sys.stderr)

    try:
        res = upscale_video_segments(
            args.input, args.output, str(weights), segments=n, only=k, join_only=join_only, ray=args.ray is not None,
            address=args.ray or None, workers=args.workers, runner=runner, codec=args.codec, crf=args.crf,
            preset=args.preset, color_path=args.color_path, bit_depth=_bit_depth(args), device=args.device,
            precision=args.precision, tile=args.tile, batch=batch, overwrite=args.overwrite,
            progress=lambda _s: bar.update(1) if bar is not None else None, on_start=on_start,
            on_segment=on_segment, say=say, debug=args.debug)
    except io.VideoError as e:
        if args.debug:
            raise
        print(f"restore: error: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    for note in res.notes:
        print(f"restore: note: {note}", file=sys.stderr)
    if join_only:
        print(f"{res.source} -> {res.output}: joined {res.segments} segments by stream copy in {res.seconds:.1f} s")
        return 0
    where = f" -> {res.output}" if res.joined else ""
    state = (f"joined into {res.output}" if res.joined else
             "OUTPUT is written when the last segment is done, or with --segments concat")
    print(f"{res.source}{where}: {res.frames} frames in {res.seconds:.1f} s, {res.fps:.1f} fps, real-time factor "
          f"{res.realtime_factor:.2f} ({res.video_seconds:.1f} s of video; {res.in_size[0]}x{res.in_size[1]} -> "
          f"{res.out_size[0]}x{res.out_size[1]}, {meta.family}/{meta.variant} x{meta.scale}, {res.how}, "
          f"{f'{res.bit_depth}-bit, ' if res.bit_depth > 8 else ''}segments: {len(res.processed)} processed, "
          f"{len(res.reused)} reused, {res.done} of {res.segments} done; {state})")
    if res.truncated and not args.allow_truncated:
        print(f"restore: error: {args.input}: {res.expected_frames} frames expected, {res.frames} decoded (the file "
              f"is cut short or damaged); pass --allow-truncated to accept this", file=sys.stderr)
        return 1
    return 0
