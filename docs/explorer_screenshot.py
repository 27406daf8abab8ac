"""Screenshot of ``gankit explore`` for the README (docs/images/explorer.png), in the system's headless Chromium.

    python -m gankit train --preset sagan-digits --steps 300 --out /tmp/explore-demo --no-progress
    python docs/explorer_screenshot.py /tmp/explore-demo --out docs/images/explorer.png \
        --label "sagan-digits, 300 steps"

Needs the explore extra and playwright (``pip install playwright``; the browser is Debian's ``chromium``,
never ``playwright install``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time

from playwright.sync_api import sync_playwright

import gankit
from gankit.apps.explore import create_app
from gankit.apps.explore.server import make_server

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="docs/images/explorer.png")
    parser.add_argument("--view", default="seed=7&n=36&class=random&trunc=0.8&sel=9&x=8&y=5&a=7&b=12&steps=8&t=0.4")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--label", help="what the page calls the model (default: the checkpoint path)")
    args = parser.parse_args()

    generator = gankit.load_generator(args.checkpoint, device="cpu")
    server, sock, url = make_server(create_app(generator, source=args.label or args.checkpoint), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                args=ARGS,
                headless=True,
                viewport={"width": args.width, "height": 900},
            )
            page = context.new_page()
            page.goto(f"{url}#{args.view}")
            page.wait_for_selector("body[data-ready='1']")
            for selector in ("#grid", "#image", "#walk-strip", "#walk-frame"):
                page.wait_for_selector(f"{selector}[data-state='ready']")
            page.wait_for_selector("#attention[data-state='ready'] figure img, #attention[data-state='unavailable']")
            page.locator("#walk-play").click()  # pause the animation on a fixed frame
            time.sleep(0.3)
            page.screenshot(path=args.out, full_page=True)
            context.close()
    finally:
        server.should_exit = True
        thread.join(10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
