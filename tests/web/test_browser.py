"""End to end in a real browser: the demo served on 127.0.0.1, driven by headless Chromium through Playwright.

Needs the ``web`` extra, the ``playwright`` Python package and a system Chromium (Debian: ``apt-get install
chromium``; Playwright's own browser download is never used). Skipped cleanly when any is missing. A
screenshot of the finished page is written to ``tests/artifacts/web_e2e.png`` (git-ignored; a CI artifact).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

from restore import Restorer, io, load_model  # noqa: E402
from restore.web.pictures import make_example  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.web.conftest import free_port  # noqa: E402

ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"]
TIMEOUT_MS = 30_000
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")  # pandas deprecations inside Gradio


def chromium_path() -> str | None:
    """``$RESTORE_CHROMIUM``, else the first Chromium / Chrome on PATH."""
    env = os.environ.get("RESTORE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set RESTORE_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        except Exception as e:  # a broken or incompatible browser install is a skip, not a failure
            pytest.skip(f"cannot start {exe} through Playwright: {str(e).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(weights_dir: Path) -> Iterator[str]:
    from restore.web.ui import launch

    hide = pytest.MonkeyPatch()  # module-scoped: the catalogue is built here, before the per-test patch applies
    hide.setattr("restore.weights.shipped_models", lambda: [])
    demo, _ = launch(host="127.0.0.1", port=free_port(), weights_dir=weights_dir, device="cpu", block=False,
                     quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()
        hide.undo()


def test_upscale_x2_in_the_browser(browser, server: str, weights_dir: Path, tmp_path: Path) -> None:
    img = make_example()[40:104, 70:166]  # a 96x64 crop of the bundled example photo
    src = io.write_image(tmp_path / "photo.png", img)
    bad = tmp_path / "broken.png"
    bad.write_text("not an image\n")

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((server, "data:", "blob:")) else None)
    try:
        page.goto(server)
        page.wait_for_selector("#run-btn")
        page.set_input_files("#image-in input[type=file]", str(src))
        page.wait_for_selector("#input-info >> text=photo.png")
        assert "espcn_x2.pth" in page.input_value("#model input")
        # the task / scale controls filter the model list
        page.click("#task label:has-text('Denoise')")
        page.wait_for_function("document.querySelector('#model input').value.includes('dncnn_tiny.pth')")
        page.wait_for_selector("#sigma", state="visible")
        page.wait_for_selector("#scale", state="hidden")
        page.click("#task label:has-text('Upscale')")
        page.click("#scale label:has-text('3')")
        page.wait_for_function("document.querySelector('#model input').value.includes('ESPCN x3 (test)')")
        assert "Set5 30.50 dB" in page.inner_text("#model-info")
        page.click("#scale label:has-text('2')")
        page.wait_for_function("document.querySelector('#model input').value.includes('espcn_x2.pth')")
        page.click("#run-btn")
        page.wait_for_selector("#status >> text=96×64 → 192×128")
        with page.expect_download() as dl:
            page.click("#download-btn")
        saved = tmp_path / "download.png"
        dl.value.save_as(saved)
        assert dl.value.suggested_filename == "photo_x2.png"
        result = io.read_image(saved)
        assert result.shape == (128, 192, 3)  # twice the size
        expected = Restorer(load_model(weights_dir / "espcn_x2.pth"), device="cpu", precision="fp32").run(img)
        np.testing.assert_array_equal(result, expected)

        page.wait_for_selector("#compare img")
        page.mouse.move(0, 0)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
        page.screenshot(path=str(ARTIFACTS / "web_e2e.png"), full_page=True)

        page.click("#image-in button[aria-label=Clear]")
        page.set_input_files("#image-in input[type=file]", str(bad))
        toast = page.wait_for_selector(".toast-body")
        page.wait_for_timeout(500)  # let the toast slide in before the screenshot
        text = toast.inner_text()
        assert "broken.png: not a readable image" in text and "Traceback" not in page.content()
        page.screenshot(path=str(ARTIFACTS / "web_e2e_error.png"))
    finally:
        ctx.close()
    assert outside == [], f"the page fetched from outside the server: {outside}"


def test_uploaded_checkpoint_is_selected(browser, server: str, weights_dir: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine_x3.pth"
    shutil.copy(weights_dir / "espcn_x3.pth", mine)
    src = io.write_image(tmp_path / "small.png", make_example()[:40, :60])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(server)
        page.wait_for_selector("#run-btn")
        page.get_by_text("Add your own checkpoint").click()
        page.set_input_files("#ckpt input[type=file]", str(mine))
        page.wait_for_selector("text=Added mine_x3.pth")
        assert "mine_x3.pth" in page.input_value("#model input")
        assert page.is_checked("#scale input[value='3']")
        page.set_input_files("#image-in input[type=file]", str(src))
        page.wait_for_selector("#input-info >> text=small.png")
        page.click("#run-btn")
        page.wait_for_selector("#status >> text=60×40 → 180×120")
        assert "with mine_x3.pth" in page.inner_text("#status")
        assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
    finally:
        page.close()
