"""``gankit explore`` in a real headless Chromium (Playwright), against a real uvicorn server on 127.0.0.1.

Skipped when Playwright or a Chromium is missing, unless ``GANKIT_REQUIRE_BROWSER=1`` (CI), where that is a
failure. The browser is the system's (``apt-get install chromium``): Playwright's own browser download is
never used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _require_browser() -> str:
    missing = []
    for module, what in (
        ("playwright", "the playwright Python package (pip install playwright; never `playwright install`)"),
        ("starlette", "starlette (pip install -e '.[explore]')"),
        ("uvicorn", "uvicorn (pip install -e '.[explore]')"),
    ):
        if importlib.util.find_spec(module) is None:
            missing.append(what)
    chromium = find_chromium()
    if chromium is None:
        missing.append("a Chromium browser on PATH (apt-get install chromium)")
    if missing:
        reason = "the explorer's browser test needs " + " and ".join(missing)
        if os.environ.get("GANKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; GANKIT_REQUIRE_BROWSER=1 makes that a failure")
        pytest.skip(reason)
    return chromium  # type: ignore[return-value]


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 in a background thread; yields the URL."""
    from gankit.apps.explore.server import make_server

    server, sock, url = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="gankit-chromium-") as profile:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1200, "height": 1000},
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.problems = problems
    yield page
    page.close()


def sagan_app():
    from gankit.apps.explore import create_app
    from tests.tiny import lively_sagan

    return create_app(lively_sagan(), source="tiny-sagan")


def ready(page, selector: str, url_part: str) -> None:
    """Wait until the image ``selector`` shows the answer of a request whose URL contains ``url_part``."""
    page.wait_for_function(
        "([sel, part]) => { const e = document.querySelector(sel);"
        " return e.dataset.state === 'ready' && (e.dataset.url || '').includes(part) && e.naturalWidth > 0; }",
        arg=[selector, url_part],
    )


def hash_params(page) -> dict[str, str]:
    return page.evaluate("() => Object.fromEntries(new URLSearchParams(location.hash.slice(1)))")


def test_explorer_page_end_to_end(page):
    with running(sagan_app()) as url:
        page.goto(url + "#seed=3&n=16&class=random")
        page.wait_for_selector("body[data-ready='1']")
        ready(page, "#grid", "seed=3")
        ready(page, "#image", "seed=3")
        assert "SAGAN" in page.inner_text("#model") and "attention.8" in page.inner_text("#model")
        before = page.locator("#grid").screenshot()

        # a new seed: a new grid is requested, loads, and looks different
        page.fill("#seed", "4")
        ready(page, "#grid", "seed=4&")
        assert page.locator("#grid").screenshot() != before
        assert hash_params(page)["seed"] == "4"

        # click sample 5 (row 1, column 1 of a 4 x 4 grid): it is enlarged alone
        box = page.locator("#grid").bounding_box()
        cell = box["width"] / 4
        page.mouse.click(box["x"] + 1.5 * cell, box["y"] + 1.5 * cell)
        ready(page, "#image", "index=5")
        assert hash_params(page)["sel"] == "5" and "6 of 16" in page.inner_text("#selected")
        assert page.eval_on_selector("#image", "e => getComputedStyle(e).imageRendering") == "pixelated"

        # click a pixel of the enlarged image: one attention overlay per layer, labelled with name and gamma
        img = page.locator("#image").bounding_box()
        page.mouse.click(img["x"] + img["width"] * 0.8, img["y"] + img["height"] * 0.3)
        page.wait_for_selector("#attention[data-state='ready'] figure img")
        assert page.locator("#attention figure").count() == 1
        caption = page.inner_text("#attention figcaption")
        assert "attention.8" in caption and "γ = 0.250" in caption
        page.wait_for_function("() => document.querySelector('#attention img').naturalWidth === 256")
        state = hash_params(page)
        assert (state["x"], state["y"]) == ("12", "4") and page.locator("#point-mark").is_visible()

        # the walk: moving the slider renders another frame; the strip animates
        ready(page, "#walk-frame", "t=0")
        frame0 = page.locator("#walk-frame").screenshot()
        page.locator("#walk-t").fill("0.6")
        ready(page, "#walk-frame", "t=0.6")
        assert page.locator("#walk-frame").screenshot() != frame0
        assert page.input_value("#walk-t") == "0.6" and hash_params(page)["t"] == "0.6"
        page.wait_for_function("() => document.querySelector('#walk-anim').dataset.frame === '3'")

        # reload: the URL restores the whole view
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#seed") == "4" and page.input_value("#walk-t") == "0.6"
        ready(page, "#image", "index=5")
        ready(page, "#walk-frame", "t=0.6")
        page.wait_for_selector("#attention[data-state='ready'] figure")
        assert page.get_attribute("#attention", "data-point") == "12,4"

        # a bad value is shown as the server's message, not a broken page
        page.fill("#truncation", "-1")
        page.wait_for_selector("#status.error")
        assert "truncation: must be in" in page.inner_text("#status")
        download = page.get_attribute("#grid-download", "href")
        assert download.startswith("/api/sample.png?") and "download=1" in download

    unexpected = [p for p in page.problems if "status of 400" not in p]
    assert unexpected == []


def test_attention_is_not_available_for_dcgan(page):
    from gankit.apps.explore import create_app
    from tests.tiny import seeded_dcgan

    with running(create_app(seeded_dcgan(), source="tiny-dcgan")) as url:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        ready(page, "#image", "index=0")
        assert page.locator("#class-field").is_hidden()  # unconditional: no class control
        img = page.locator("#image").bounding_box()
        page.mouse.click(img["x"] + 5, img["y"] + 5)
        assert page.get_attribute("#attention", "data-state") == "unavailable"
        assert "not available" in page.inner_text("#attention-hint")
        assert page.locator("#attention figure").count() == 0
    assert page.problems == []


def digit_png_bytes() -> bytes:
    """A 28x28 greyscale "7" as PNG bytes (made here, never written to disk)."""
    import io

    import numpy as np
    from PIL import Image

    image = np.zeros((28, 28), np.uint8)
    image[6:9, 7:21] = 255
    for row in range(9, 23):
        col = 20 - (row - 9) // 2
        image[row, col - 1 : col + 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def served_bytes(page, selector: str) -> list[int]:
    """The bytes the server answers for the URL an image shows (its ``data-url``)."""
    return page.evaluate(
        "async (sel) => { const r = await fetch(document.querySelector(sel).dataset.url);"
        " return Array.from(new Uint8Array(await r.arrayBuffer())); }",
        selector,
    )


def test_upload_projects_and_direction_sliders_edit_it(page):
    with running(sagan_app()) as url:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#proj-steps") == "100" and page.locator("#edit-box").is_hidden()
        page.fill("#proj-steps", "20")
        page.fill("#proj-restarts", "2")
        page.select_option("#proj-loss", "pixel")
        page.set_input_files("#file-a", files=[{"name": "seven.png", "mimeType": "image/png",
                                                "buffer": digit_png_bytes()}])
        ready(page, "#recon-a", "reconstruction.png")
        ready(page, "#target-a", "target.png")
        stats = page.inner_text("#stats-a")
        assert "PSNR" in stats and "dB" in stats and "20 steps" in stats
        assert page.locator("#progress-a").is_hidden() and page.locator("#cancel-a").is_hidden()

        # the sliders: five, at zero the edit is the reconstruction; moving one changes the image live
        page.wait_for_selector("#sliders input#dir-4")
        assert page.locator("#sliders input").count() == 5
        ready(page, "#proj-edit", "edit.png")
        assert served_bytes(page, "#proj-edit") == served_bytes(page, "#recon-a")
        before = page.locator("#proj-edit").screenshot()
        page.locator("#dir-0").fill("3")
        ready(page, "#proj-edit", "d0=3")
        assert served_bytes(page, "#proj-edit") != served_bytes(page, "#recon-a")
        assert page.locator("#proj-edit").screenshot() != before
        assert page.inner_text("#dir-0-label") == "3.0"
        page.click("#dir-reset")
        page.wait_for_function("() => !document.querySelector('#proj-edit').dataset.url.includes('d0=')")

        # the latents link downloads image A's projection file
        assert page.get_attribute("#latents-download", "href").startswith("/api/project/latents.safetensors?job=")

        # a second image: a walk strip from A to B
        page.set_input_files("#file-b", files=[{"name": "seven-again.png", "mimeType": "image/png",
                                                "buffer": digit_png_bytes()}])
        ready(page, "#proj-walk", "walk.png")
        assert page.eval_on_selector("#proj-walk", "e => e.naturalWidth") == 8 * (16 + 2) + 2
        assert "&b=" in page.get_attribute("#latents-download", "href")
    assert page.problems == []


def test_a_projection_shows_progress_and_can_be_cancelled(page):
    app = sagan_app()
    with running(app) as url:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#proj-steps", "300")
        page.select_option("#proj-loss", "pixel")
        with app.state.explorer.lock:  # the job waits for the model until the Cancel button has been pressed
            page.set_input_files("#file-a", files=[{"name": "seven.png", "mimeType": "image/png",
                                                    "buffer": digit_png_bytes()}])
            page.wait_for_selector("#progress-a:not([hidden])")
            assert "step 0 of 300" in page.inner_text("#stats-a")
            page.click("#cancel-a")
            page.wait_for_selector("#cancel-a:disabled")
        ready(page, "#recon-a", "reconstruction.png")  # the best result so far
        assert "cancelled after 1 of 300 steps" in page.inner_text("#stats-a")
        assert page.locator("#progress-a").is_hidden()
    assert page.problems == []
