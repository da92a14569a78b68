"""The web demo's page: Gradio Blocks wired to a :class:`restore.web.app.DemoApp`, and :func:`launch`.

The page's own events are private (not in the API listing, not callable by the Gradio clients); the public API
is two named endpoints on hidden components: ``/upscale`` (image file, scale -> image file) and ``/denoise``
(image file, sigma -> image file), in the same queue and under the same limits as the page.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from restore import io
from restore.web.app import (
    CONCURRENCY_ID,
    IMAGE_TYPES,
    RUN_DIR_MAX_AGE_S,
    SCALES,
    SIGMAS,
    TASKS,
    TILES,
    DemoApp,
    Limits,
    _megapixels,
)
from restore.web.catalogue import CHECKPOINT_SUFFIXES, filter_models

log = logging.getLogger(__name__)

PRIVATE = "private"  # the page's events: neither listed by view_api() nor callable by the Gradio clients

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
                "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
CSS = """
#status, #video-status {min-height: 2.5em}
#model-info, #input-info {font-size: 0.9em}
footer {visibility: visible}
"""


# ------------------------------------------------------------------------------------------ the page


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only (nothing fetched from a font CDN)."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def build_ui(app: DemoApp) -> gr.Blocks:
    """The Blocks page; every event calls one :class:`DemoApp` method."""
    lim = app.limits
    task0, scale0, key0 = app.default_selection()
    with gr.Blocks(title="restore demo", analytics_enabled=False, delete_cache=(3600, RUN_DIR_MAX_AGE_S)) as demo:
        uploads = gr.State({})
        gr.Markdown("# restore — super-resolution and denoising\n"
                    "Lightweight networks, run on this machine. Upload an image, pick a model and press **Run**.")
        with gr.Tab("Image", id="image"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=320):
                    image_in = gr.File(label=f"Image (max {lim.max_upload_bytes / 2**20:.0f} MB, "
                                             f"{_megapixels(lim.max_pixels)})",
                                       file_types=IMAGE_TYPES, type="filepath", elem_id="image-in", height=120)
                    example_btn = gr.Button("Use the example photo", size="sm", elem_id="example-btn")
                    input_preview = gr.Image(label="Input", type="filepath", interactive=False, height=180,
                                             elem_id="input-preview", buttons=[])
                    input_info = gr.Markdown("Upload an image (PNG, JPEG, WebP, TIFF, BMP) or try the example.",
                                             elem_id="input-info")
                    task = gr.Radio(list(TASKS), value=task0, label="Task", elem_id="task")
                    scale = gr.Radio(list(SCALES), value=scale0, label="Scale", visible=task0 == "sr",
                                     elem_id="scale")
                    outscale = gr.Number(None, label="Upscaling: final size (× the input; empty: the model's scale)",
                                         minimum=0, maximum=16, step=0.25, elem_id="outscale")
                    with gr.Group(visible=task0 == "denoise") as noise_group:
                        sigma = gr.Radio(list(SIGMAS), value="25", label="Noise level (σ, 0-255 scale)",
                                         elem_id="sigma")
                        add_noise = gr.Checkbox(False, label="Add Gaussian noise of this level to the input first")
                    matches = filter_models(app.models, task0, scale0, "25")
                    # allow_custom_value: a filter change can race the list update and send the previous model;
                    # the handlers check the value themselves (Gradio's own check would show a raw error)
                    model = gr.Dropdown([(e.label, e.key) for e in matches], value=key0, label="Model",
                                        elem_id="model", allow_custom_value=True)
                    model_info = gr.Markdown(app.model_info(key0) if key0 else
                                             app.no_model_text(task0, scale0, "25"), elem_id="model-info")
                    with gr.Row():
                        tile = gr.Dropdown(list(TILES), value="auto", label="Tile size (input px)", elem_id="tile",
                                           info="auto: from free memory; none: whole image")
                        precision = gr.Radio(list(app.precisions), value="auto", label="Precision",
                                             elem_id="precision")
                    tta = gr.Checkbox(False, label="Test-time augmentation (8 flips / rotations averaged: 8x slower, "
                                                   "slightly better)", elem_id="tta")
                    run_btn = gr.Button("Run", variant="primary", elem_id="run-btn")
                    with gr.Accordion("Add your own checkpoint", open=False):
                        ckpt = gr.File(label="Checkpoint (.pth, .pt, .pb, .safetensors)",
                                       file_types=list(CHECKPOINT_SUFFIXES), type="filepath", height=100,
                                       elem_id="ckpt")
                        ckpt_note = gr.Markdown("")
                with gr.Column(scale=3, min_width=400):
                    compare = gr.ImageSlider(label="Before (input, nearest-neighbour) / after", type="filepath",
                                             format="png", interactive=False, max_height=600, elem_id="compare",
                                             buttons=["fullscreen"])
                    status = gr.Markdown("The result appears here, with the time taken.", elem_id="status")
                    download = gr.DownloadButton("Download full-resolution PNG", interactive=False,
                                                 elem_id="download-btn", variant="secondary")
            if app.skipped:
                with gr.Accordion(f"{len(app.skipped)} checkpoint(s) were skipped", open=False):
                    gr.Markdown("\n".join(f"- {s}" for s in app.skipped))

        video_model = None
        if app.video is not None:
            with gr.Tab("Video", id="video"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=320):
                        kinds = ", ".join(s.lstrip(".") for s in io.VIDEO_SUFFIXES)
                        video_in = gr.File(label=f"Short clip ({kinds}; first {lim.max_video_frames} frames, "
                                                 f"≤ {_megapixels(lim.max_video_pixels)} a frame)",
                                           file_types=list(io.VIDEO_SUFFIXES), type="filepath", height=120,
                                           elem_id="video-in")
                        vchoices = app.video_choices()
                        video_model = gr.Dropdown(vchoices, value=vchoices[0][1] if vchoices else None,
                                                  label="Upscaling model", elem_id="video-model",
                                                  allow_custom_value=True)
                        with gr.Row():
                            video_tile = gr.Dropdown(list(TILES), value="auto", label="Tile size (input px)")
                            video_precision = gr.Radio(list(app.precisions), value="auto", label="Precision")
                        video_btn = gr.Button("Upscale clip", variant="primary", elem_id="video-btn")
                    with gr.Column(scale=3, min_width=400):
                        video_out = gr.Video(label="Upscaled clip (with the source's audio)", interactive=False,
                                             elem_id="video-out")
                        video_status = gr.Markdown("Frames are upscaled one by one; audio and timing are kept.",
                                                   elem_id="video-status")
                video_btn.click(app.run_video, [video_in, video_model, video_tile, video_precision, uploads],
                                [video_out, video_status], concurrency_id=CONCURRENCY_ID, concurrency_limit=1,
                                show_progress_on=[video_out], api_visibility=PRIVATE)

        gr.Markdown(f"Runs on this machine ({app.device_name()}) · one job at a time, up to {lim.queue_size} "
                    f"waiting · nothing is sent elsewhere.", elem_id="footer-note")

        # .input (user actions only), not .change: a handler that sets these controls itself (add_checkpoint)
        # returns the matching model list, and must not be overridden by a refresh racing it
        filters = [task, scale, sigma, model, uploads]
        for control in (task, scale, sigma):
            control.input(app.refresh_models, filters, [model, model_info, scale, noise_group],
                          show_progress="hidden", api_visibility=PRIVATE)
        model.input(app.model_info, [model, uploads], model_info, show_progress="hidden", api_visibility=PRIVATE)
        image_in.change(app.inspect_image, image_in, [input_preview, input_info], show_progress="hidden",
                        api_visibility=PRIVATE)
        example_btn.click(app.example_image, None, image_in, api_visibility=PRIVATE)
        outs = [uploads, task, scale, noise_group, sigma, model, model_info, ckpt_note]
        ckpt_event = ckpt.upload(app.add_checkpoint, [ckpt, uploads, task, scale, sigma], outs,
                                 api_visibility=PRIVATE)
        if video_model is not None:
            ckpt_event.then(app.refresh_video_models, [video_model, uploads], video_model, api_visibility=PRIVATE)
        run_btn.click(app.run_image, [image_in, task, model, tile, precision, sigma, add_noise, uploads, outscale, tta],
                      [compare, download, status], concurrency_id=CONCURRENCY_ID, concurrency_limit=1,
                      show_progress_on=[compare], api_visibility=PRIVATE)
        add_api(app)
    demo.queue(default_concurrency_limit=1, max_size=lim.queue_size)
    return demo


def add_api(app: DemoApp) -> None:
    """The public endpoints ``/upscale`` and ``/denoise`` on hidden components (inside the current Blocks): files go
    through Gradio's upload (its byte limit), the handlers through the page's pixel limit and inference queue.
    The scale and sigma arrive as text so that ``4`` and ``"4"`` both work (the handlers check them)."""
    with gr.Group(visible=False):
        image = gr.File(label="image", file_types=IMAGE_TYPES, type="filepath")
        scale = gr.Textbox(label="scale", info="2, 3 or 4")
        sigma = gr.Textbox(label="sigma", info="15, 25, 50, blind or auto")
        result = gr.File(label="result")
        trigger = gr.Button("api")
    trigger.click(app.api_upscale, [image, scale], result, api_name="upscale", concurrency_id=CONCURRENCY_ID,
                  concurrency_limit=1, api_description="Upscale an image (2, 3 or 4 times) with the shipped default "
                                                       "model for that scale; returns a PNG.")
    trigger.click(app.api_denoise, [image, sigma], result, api_name="denoise", concurrency_id=CONCURRENCY_ID,
                  concurrency_limit=1, api_description="Denoise an image (noise level 15, 25, 50, blind, or auto: "
                                                       "estimated on the image) with the shipped default model for "
                                                       "that level; returns a PNG.")


def launch(*, host: str = "127.0.0.1", port: int = 7860, weights_dir: str | Path | None = None,
           device: str = "auto", limits: Limits | None = None, block: bool = True,
           quiet: bool = False, cache_in_workdir: bool = False) -> tuple[gr.Blocks, DemoApp]:
    """Build the app and serve it (``block=False`` returns at once, for tests; close with ``demo.close()`` and
    ``app.close()``). Blocking, it serves until Ctrl-C or SIGTERM, then closes the server and removes the work
    folder. Each skipped checkpoint is one warning line on stderr.

    ``cache_in_workdir``: Gradio's own cache (uploads, copies of results) goes into the work folder too (by setting
    ``GRADIO_TEMP_DIR`` for this process, unless it is set already), so that nothing users sent or got outlives
    the server; for a process that serves this one demo (``restore web``)."""
    with _sigterm_as_interrupt(block):
        app = DemoApp(weights_dir=weights_dir, device=device, limits=limits)
        if cache_in_workdir and not os.environ.get("GRADIO_TEMP_DIR"):
            os.environ["GRADIO_TEMP_DIR"] = str(app.workdir / "gradio")
        try:
            for line in app.skipped:
                print(f"restore web: warning: skipped {line}", file=sys.stderr, flush=True)
            demo = build_ui(app)
            demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
                        show_error=False, max_file_size=app.limits.max_upload_bytes,
                        allowed_paths=[str(app.workdir)], ssr_mode=False, pwa=False, mcp_server=False,
                        enable_monitoring=False, footer_links=["gradio", "settings"], theme=theme(), css=CSS)
            if not quiet:
                print(f"restore web: serving on {demo.local_url} ({len(app.models)} model(s); Ctrl-C to stop)",
                      flush=True)
            if block:
                demo.block_thread()
        except BaseException:
            app.close()
            raise
        if block:
            app.close()
    return demo, app


@contextlib.contextmanager
def _sigterm_as_interrupt(active: bool) -> Iterator[None]:
    """While serving in the main thread: SIGTERM raises KeyboardInterrupt, so a ``kill`` / ``docker stop`` /
    systemd stop ends the server the way Ctrl-C does (server closed, work folder removed) instead of leaving
    users' files behind; the previous handler is put back afterwards."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
