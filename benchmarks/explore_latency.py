"""Response times of ``gankit explore``'s endpoints over real HTTP (uvicorn on 127.0.0.1, one client).

Each request is repeated with different seeds (nothing is cached) and the median is reported, with the time
the server itself spent rendering (its ``Server-Timing`` header) beside it.

    python benchmarks/explore_latency.py RUN_FOLDER_OR_CHECKPOINT [--repeat 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
import urllib.request

import gankit
from gankit.apps.explore import create_app
from gankit.apps.explore.server import make_server

REQUESTS = [
    ("info", "/api/info"),
    ("grid n=16", "/api/sample.png?seed={s}&n=16"),
    ("grid n=64", "/api/sample.png?seed={s}&n=64"),
    ("image (enlarged x16)", "/api/image.png?seed={s}&n=16&index=3&scale=16"),
    ("walk strip 8 frames", "/api/walk.png?a={s}&b={t}&steps=8&mode=slerp"),
    ("walk strip 32 frames", "/api/walk.png?a={s}&b={t}&steps=32&mode=slerp"),
    ("walk frame", "/api/walk_frame.png?a={s}&b={t}&t=0.37&mode=slerp"),
    ("attention", "/api/attention?seed={s}&n=16&index=3&x=7&y=5"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    generator = gankit.load_generator(args.checkpoint, device=args.device)
    app = create_app(generator, source=args.checkpoint)
    server, sock, url = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    has_attention = bool(app.state.explorer.attention)
    try:
        print(f"{generator.config.family} {generator.image_size}px on {args.device}, median of {args.repeat}")
        print(f"{'request':24s} {'total ms':>9s} {'render ms':>10s} {'bytes':>8s}")
        for name, template in REQUESTS:
            if name == "attention" and not has_attention:
                continue
            urllib.request.urlopen(url.rstrip("/") + template.format(s=999, t=998)).read()  # warm-up
            totals, renders, size = [], [], 0
            for i in range(args.repeat):
                started = time.perf_counter()
                with urllib.request.urlopen(url.rstrip("/") + template.format(s=i, t=i + 100)) as r:
                    size = len(r.read())
                    timing = r.headers.get("Server-Timing") or ""
                totals.append((time.perf_counter() - started) * 1000)
                m = re.search(r"dur=([0-9.]+)", timing)
                if m:
                    renders.append(float(m.group(1)))
            render = f"{statistics.median(renders):10.1f}" if renders else f"{'-':>10s}"
            print(f"{name:24s} {statistics.median(totals):9.1f} {render} {size:8d}")
    finally:
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    main()
