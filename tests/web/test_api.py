"""The HTTP API (``/upscale``, ``/denoise``) of a live demo on 127.0.0.1, through ``gradio_client`` as users of other
upscalers call it; the results are what ``restore upscale`` / ``restore denoise`` give with the same defaults."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from restore import Restorer, io  # noqa: E402
from restore.web import ui as webui  # noqa: E402
from restore.web.app import CONCURRENCY_ID, DemoApp  # noqa: E402
from restore.web.pictures import add_gaussian_noise  # noqa: E402
from restore.weights import SHIPPED_DIR, auto_sigma, load_model, resolve_model, shipped_models  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.web.conftest import free_port, gradient_image  # noqa: E402

pytestmark = [pytest.mark.shipped, pytest.mark.filterwarnings("ignore:::gradio.queueing")]


class Live:
    """An in-process demo served on a free loopback port (``launch(block=False)``) and a client for it."""

    def __init__(self, demo: Any, app: DemoApp, url: str, client: Any) -> None:
        self.demo, self.app, self.url, self.client = demo, app, url, client

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read().decode()


@pytest.fixture(scope="module")
def live(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    port = free_port()
    demo, app = webui.launch(port=port, weights_dir=weights_dir, device="cpu", block=False, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
        yield Live(demo, app, url, client)
    finally:
        demo.close()
        app.close()


def _need_shipped() -> None:
    if not shipped_models():
        pytest.skip("no weights shipped in restore/weights yet")


def _png(tmp_path: Path, img: np.ndarray, name: str = "in.png") -> Any:
    return gradio_client.handle_file(str(io.write_image(tmp_path / name, img)))


def _cli_result(img: np.ndarray, **choice: Any) -> np.ndarray:
    """What the command line computes with its default model for ``choice`` (same device, precision, tiles)."""
    return Restorer(load_model(resolve_model(None, **choice)), device="cpu", precision="auto", tile="auto").run(img)


def test_api_lists_only_the_two_endpoints_and_no_server_paths(live: Live, weights_dir: Path) -> None:
    """view_api() and the raw API info show /upscale and /denoise only (the page's events are private), with their
    parameters named; neither they nor the page's config reveal a server folder (models are offered by name)."""
    info = live.client.view_api(return_format="dict", print_info=False)
    assert set(info["named_endpoints"]) == {"/upscale", "/denoise"} and not info["unnamed_endpoints"]
    params = {k: [p["parameter_name"] for p in v["parameters"]] for k, v in info["named_endpoints"].items()}
    assert params == {"/upscale": ["image", "scale"], "/denoise": ["image", "sigma"]}
    for text in (json.dumps(info), live.get("gradio_api/info"), live.get("config")):
        for folder in (weights_dir, live.app.workdir, SHIPPED_DIR, REPO):
            assert str(folder) not in text
    assert "weights/espcn_x2.pth" in live.get("config")  # the page still offers the folder's models, by name


def test_api_events_share_the_page_queue(live: Live) -> None:
    """/upscale and /denoise run in the page's inference group (one job at a time, same bounded queue)."""
    groups = {fn.name: (fn.concurrency_id, fn.concurrency_limit) for fn in live.demo.fns.values()}
    for name in ("run_image", "api_upscale", "api_denoise"):
        assert groups[name] == (CONCURRENCY_ID, 1), groups


@pytest.mark.parametrize("scale", [4, "2"])
def test_upscale(live: Live, tmp_path: Path, scale: int | str) -> None:
    """``predict(handle_file(png), 4, api_name="/upscale")``: a PNG 4x the size, what ``restore upscale --scale 4``
    writes (the same shipped default model)."""
    _need_shipped()
    img = gradient_image(14, 10)
    out = live.client.predict(_png(tmp_path, img), scale, api_name="/upscale")
    s = int(scale)
    result = io.read_image(out)
    assert Path(out).name == f"in_x{s}.png" and result.shape == (10 * s, 14 * s, 3)
    expected = _cli_result(img, task="sr", scale=s, color="rgb")
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize(("sigma", "channels", "noise"), [("25", 3, 0), (25, 1, 0), ("blind", 3, 0), ("auto", 3, 0),
                                                         ("auto", 3, 25)])
def test_denoise(live: Live, tmp_path: Path, sigma: int | str, channels: int, noise: int) -> None:
    """``/denoise`` with sigma "25" (or 25, or "blind"): a same-size PNG from the model ``restore denoise --sigma``
    picks for that image (gray model for a gray image); "auto": the model for the level estimated on the image
    (the blind one for an image too small to tell, the sigma 25 one for a 72x72 image with noise at 25)."""
    _need_shipped()
    img = gradient_image(12, 9) if not noise else add_gaussian_noise(gradient_image(72, 72), noise)
    img = img[..., 0] if channels == 1 else img
    out = live.client.predict(_png(tmp_path, img), sigma, api_name="/denoise")
    result = io.read_image(out)
    assert Path(out).name == "in_denoised.png" and result.shape == img.shape
    level = str(sigma)
    if sigma == "auto":
        level = auto_sigma(img, "gray" if channels == 1 else "rgb")[0]
        assert level == ("25" if noise else "blind")
    expected = _cli_result(img, task="denoise", sigma=level, color="gray" if channels == 1 else "rgb")
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1


def test_api_errors_are_one_line(live: Live, tmp_path: Path) -> None:
    """Bad arguments: one-line messages from the server, which keeps serving."""
    good = _png(tmp_path, gradient_image(8, 8))
    cases = [((good, 5), "/upscale", "scale must be one of 2, 3, 4, not '5'."),
             ((good, "x9"), "/upscale", "scale must be one of 2, 3, 4, not 'x9'."),
             ((good, "30"), "/denoise", "sigma must be one of 15, 25, 50, blind, auto, not '30'."),
             ((None, 2), "/upscale", "No image: send an image file (PNG, JPEG, WebP, TIFF, BMP).")]
    for args, api, message in cases:
        with pytest.raises(gradio_client.exceptions.AppError) as e:
            live.client.predict(*args, api_name=api)
        assert str(e.value) == message
    assert json.loads(live.get("config"))["title"] == "restore demo"
