"""``gankit explore`` at the HTTP level: every endpoint with good and bad requests, on the tiny models of
``tests.tiny``.

A 500 is never an acceptable answer to bad input: the TestClient re-raises server exceptions, so a request that
reached the catch-all would fail the test that sent it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
    if os.environ.get("GANKIT_REQUIRE_BROWSER") == "1":
        raise RuntimeError("starlette / uvicorn are not installed: pip install -e '.[dev,explore]'")
    pytest.skip("the explore extra (starlette, uvicorn) is not installed", allow_module_level=True)

from starlette.testclient import TestClient  # noqa: E402

# imported after the skip above: gankit.apps.explore needs the explore extra
import gankit  # noqa: E402
from gankit.apps.explore import EXTRA_MESSAGE, Limits, create_app, serve  # noqa: E402
from gankit.apps.explore.core import PADDING, to_uint8  # noqa: E402
from gankit.apps.explore.server import LOOPBACK_HOST_HEADERS, bind, is_loopback  # noqa: E402
from gankit.errors import UserError  # noqa: E402
from tests.tiny import lively_sagan, seeded_dcgan  # noqa: E402

OLD_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "old_runs"
S = 16


@pytest.fixture(scope="module")
def sagan():
    return lively_sagan()


@pytest.fixture(scope="module")
def client(sagan):
    with TestClient(create_app(sagan, source="tiny-sagan")) as c:
        yield c


@pytest.fixture(scope="module")
def uncond():
    with TestClient(create_app(lively_sagan(num_classes=0), source="tiny-uncond")) as c:
        yield c


@pytest.fixture(scope="module")
def dcgan():
    with TestClient(create_app(seeded_dcgan(), source="tiny-dcgan")) as c:
        yield c


def png(response, size: tuple[int, int] | None = None) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    if size is not None:
        assert image.size == size
    return np.asarray(image)


def grid_side(n: int, cols: int | None = None) -> tuple[int, int]:
    cols = cols or math.ceil(math.sqrt(n))
    rows = -(-n // cols)
    return cols * (S + PADDING) + PADDING, rows * (S + PADDING) + PADDING


def cell(grid: np.ndarray, i: int, cols: int) -> np.ndarray:
    r, c = divmod(i, cols)
    y0, x0 = PADDING + r * (S + PADDING), PADDING + c * (S + PADDING)
    return grid[y0 : y0 + S, x0 : x0 + S]


# ---------------------------------------------------------------------------------------------------- good requests


def test_info_describes_model_and_limits(client, uncond, dcgan):
    info = client.get("/api/info").json()
    assert info["family"] == "sagan" and info["source"] == "tiny-sagan"
    assert (info["z_dim"], info["num_classes"], info["image_size"], info["channels"]) == (16, 10, S, 1)
    assert [a["name"] for a in info["attention"]] == ["attention.8"]
    assert info["attention"][0]["gamma"] == pytest.approx(0.25)
    assert info["limits"]["max_n"] == 64 and info["limits"]["max_steps"] == 32
    assert info["grid"]["padding"] == PADDING and info["modes"] == ["lerp", "slerp"]
    assert uncond.get("/api/info").json()["num_classes"] == 0
    d = dcgan.get("/api/info").json()
    assert d["family"] == "dcgan" and d["attention"] == []


def test_page_and_assets_are_served_and_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert "http://" not in r.text and "https://" not in r.text, f"{path} must load nothing from the network"
    assert 'src="/app.js"' in page.text and "http://" not in page.text and "https://" not in page.text


def test_sample_grid_is_deterministic(client):
    a = client.get("/api/sample.png?seed=3&n=16")
    grid = png(a, grid_side(16))
    assert a.content == client.get("/api/sample.png?seed=3&n=16").content  # same seed -> same bytes
    other = png(client.get("/api/sample.png?seed=4&n=16"), grid_side(16))
    assert not np.array_equal(grid, other)
    png(client.get("/api/sample.png?seed=3&n=5"), grid_side(5))  # 3 columns, 2 rows
    png(client.get("/api/sample.png?seed=3&n=1&class=7&truncation=0.5"), grid_side(1))
    assert "inline" in a.headers["content-disposition"]
    d = client.get("/api/sample.png?seed=3&n=16&download=1")
    assert d.headers["content-disposition"].startswith("attachment;") and "seed3" in d.headers["content-disposition"]
    assert d.content == a.content


def test_latents_follow_the_documented_seed_rule(client, sagan):
    n, seed, index = 9, 11, 4
    g = torch.Generator().manual_seed(seed)
    z = sagan.sample_latents(n, generator=g)
    y = torch.randint(10, (n,), generator=g)  # class=random: labels drawn next from the same generator
    expected = to_uint8(sagan(z[index : index + 1], y[index : index + 1]))[0, ..., 0]
    r = client.get(f"/api/image.png?seed={seed}&n={n}&index={index}")
    np.testing.assert_array_equal(png(r, (S, S)), expected)
    assert r.headers["x-sample-class"] == str(int(y[index]))
    grid = png(client.get(f"/api/sample.png?seed={seed}&n={n}"))
    assert np.abs(cell(grid, index, 3).astype(int) - expected.astype(int)).max() <= 1  # batch vs alone: float noise


def test_image_enlargement_and_class(client):
    small = png(client.get("/api/image.png?seed=2&n=4&index=3&class=5"), (S, S))
    big = png(client.get("/api/image.png?seed=2&n=4&index=3&class=5&scale=8"), (8 * S, 8 * S))
    np.testing.assert_array_equal(big[::8, ::8], small)  # nearest-neighbour upscaling
    assert client.get("/api/image.png?seed=2&n=4&index=3&class=5").headers["x-sample-class"] == "5"
    other = png(client.get("/api/image.png?seed=2&n=4&index=3&class=6"), (S, S))
    assert not np.array_equal(small, other)


def test_walk_strip_and_frames(client):
    strip = png(client.get("/api/walk.png?a=1&b=2&steps=8&class=3"), grid_side(8, cols=8))
    start = png(client.get("/api/image.png?seed=1&n=1&class=3"))
    end = png(client.get("/api/image.png?seed=2&n=1&class=3"))
    tol = 1  # a frame is rendered in a batch of 8, the image alone
    assert np.abs(cell(strip, 0, 8).astype(int) - start.astype(int)).max() <= tol
    assert np.abs(cell(strip, 7, 8).astype(int) - end.astype(int)).max() <= tol
    f0 = png(client.get("/api/walk_frame.png?a=1&b=2&t=0&class=3"), (S, S))
    np.testing.assert_array_equal(f0, start)
    half = client.get("/api/walk_frame.png?a=1&b=2&t=0.5&class=3")
    assert not np.array_equal(png(half), f0)
    assert half.content == client.get("/api/walk_frame.png?a=1&b=2&t=0.5&class=3").content
    slerp = png(client.get("/api/walk_frame.png?a=1&b=2&t=0.5&class=3&mode=slerp"))
    assert not np.array_equal(png(half), slerp)
    png(client.get("/api/walk_frame.png?a=1&b=2&t=0.5&class=3&scale=4"), (4 * S, 4 * S))
    # class=random: the class of seed a's sample, kept along the walk
    png(client.get("/api/walk.png?a=1&b=2&steps=32&mode=slerp&truncation=1.5"), grid_side(32, cols=32))
    d = client.get("/api/walk.png?a=1&b=2&download=1")
    assert d.headers["content-disposition"].startswith("attachment;")


def test_attention_of_a_clicked_pixel(client):
    r = client.get("/api/attention?seed=3&n=16&index=2&x=5&y=7")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert (body["x"], body["y"], body["index"], body["image_size"]) == (5, 7, 2, S)
    (layer,) = body["layers"]
    assert layer["name"] == "attention.8" and layer["gamma"] == pytest.approx(0.25)
    assert layer["size"] == [8, 8] and layer["key_size"] == [8, 8]
    assert layer["query"] == [7 * 8 // S, 5 * 8 // S]  # (row, col) = (y * h // S, x * w // S)
    heat = np.array(layer["heatmap"])
    assert heat.shape == (8, 8) and heat.min() >= 0
    assert heat.sum() == pytest.approx(1.0, abs=1e-4) and layer["sum"] == pytest.approx(1.0, abs=1e-6)
    assert layer["max"] == pytest.approx(heat.max(), abs=1e-6) and layer["uniform"] == 1 / 64
    assert layer["overlay"].startswith("data:image/png;base64,")
    import base64

    overlay = Image.open(io.BytesIO(base64.b64decode(layer["overlay"].split(",", 1)[1])))
    assert overlay.size == (layer["overlay_size"],) * 2 == (256, 256) and overlay.mode == "RGB"
    same_grid_class = client.get("/api/image.png?seed=3&n=16&index=2").headers["x-sample-class"]
    assert str(body["class"]) == same_grid_class
    far = client.get("/api/attention?seed=3&n=16&index=2&x=15&y=0").json()["layers"][0]
    assert far["query"] == [0, 7] and not np.allclose(np.array(far["heatmap"]), heat)


def test_unconditional_model(uncond):
    png(uncond.get("/api/sample.png?seed=1&n=4"), grid_side(4))
    assert "x-sample-class" not in uncond.get("/api/image.png?seed=1&n=4&index=1").headers
    png(uncond.get("/api/walk.png?a=0&b=5&steps=3"), grid_side(3, cols=3))
    body = uncond.get("/api/attention?seed=1&n=4&index=1&x=0&y=15").json()
    assert body["class"] is None and body["layers"][0]["query"] == [7, 0]


def test_dcgan_samples_but_has_no_attention(dcgan):
    png(dcgan.get("/api/sample.png?seed=1&n=4"), grid_side(4))
    png(dcgan.get("/api/walk_frame.png?a=0&b=5&t=0.25"), (S, S))
    r = dcgan.get("/api/attention?seed=1&x=1&y=1")
    assert r.status_code == 400
    assert r.json()["param"] == "attention" and "no self-attention layers" in r.json()["error"]
    assert "dcgan" in r.json()["error"]


def test_pgan_export_loads_and_unbounded_outputs_are_clamped():
    generator = gankit.load_generator(OLD_RUNS / "pgan_export.safetensors")
    with TestClient(create_app(generator, source="pgan")) as c:
        info = c.get("/api/info").json()
        assert info["family"] == "pgan" and info["attention"] == []
        size = info["image_size"]
        image = png(c.get("/api/image.png?seed=0&n=4&index=1&class=2"), (size, size))
        z = generator.sample_latents(4, generator=torch.Generator().manual_seed(0))[1:2]
        raw = generator(z, torch.tensor([2]))
        assert raw.abs().max() > 1  # PGAN outputs are unbounded: the PNG shows them clamped to [-1, 1]
        expected = ((raw.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0, 0].numpy()
        np.testing.assert_array_equal(image, expected)
        assert c.get("/api/attention?x=0&y=0").json()["param"] == "attention"


def test_to_uint8_clamps():
    x = torch.tensor([-5.0, -1.0, 0.0, 1.0, 7.0, float("nan")]).reshape(1, 1, 1, 6)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 128]


# ---------------------------------------------------------------------------------------------------- bad requests

BAD = [
    ("/api/sample.png", "seed=abc", "seed"),
    ("/api/sample.png", "seed=1.5", "seed"),
    ("/api/sample.png", "seed=-1", "seed"),
    ("/api/sample.png", f"seed={2**32}", "seed"),
    ("/api/sample.png", "seed=1e3", "seed"),
    ("/api/sample.png", "seed=1&seed=2", "seed"),
    ("/api/sample.png", "n=0", "n"),
    ("/api/sample.png", "n=-3", "n"),
    ("/api/sample.png", "n=65", "n"),
    ("/api/sample.png", "n=100000000", "n"),
    ("/api/sample.png", "n=four", "n"),
    ("/api/sample.png", "class=10", "class"),
    ("/api/sample.png", "class=-1", "class"),
    ("/api/sample.png", "class=cat", "class"),
    ("/api/sample.png", "truncation=0", "truncation"),
    ("/api/sample.png", "truncation=-0.5", "truncation"),
    ("/api/sample.png", "truncation=nan", "truncation"),
    ("/api/sample.png", "truncation=inf", "truncation"),
    ("/api/sample.png", "truncation=1e309", "truncation"),
    ("/api/sample.png", "truncation=11", "truncation"),
    ("/api/sample.png", "download=yes", "download"),
    ("/api/sample.png", "sed=1", "sed"),
    ("/api/image.png", "n=16&index=16", "index"),
    ("/api/image.png", "index=-1", "index"),
    ("/api/image.png", "scale=0", "scale"),
    ("/api/image.png", "scale=129", "scale"),
    ("/api/walk.png", "steps=33", "steps"),
    ("/api/walk.png", "steps=1", "steps"),
    ("/api/walk.png", "steps=x", "steps"),
    ("/api/walk.png", "mode=cubic", "mode"),
    ("/api/walk.png", "a=x", "a"),
    ("/api/walk.png", "b=-2", "b"),
    ("/api/walk.png", "t=0.5", "t"),
    ("/api/walk_frame.png", "t=1.5", "t"),
    ("/api/walk_frame.png", "t=-0.1", "t"),
    ("/api/walk_frame.png", "t=half", "t"),
    ("/api/walk_frame.png", "steps=8", "steps"),
    ("/api/walk_frame.png", "scale=1000", "scale"),
    ("/api/attention", "y=3", "x"),
    ("/api/attention", "x=3", "y"),
    ("/api/attention", f"x={S}&y=0", "x"),
    ("/api/attention", "x=0&y=-1", "y"),
    ("/api/attention", "x=1.5&y=0", "x"),
    ("/api/attention", "x=0&y=0&n=4&index=4", "index"),
    ("/api/attention", "x=0&y=0&class=11", "class"),
    ("/api/info", "seed=1", "seed"),
]


@pytest.mark.parametrize(("path", "query", "param"), BAD, ids=[f"{p}?{q}" for p, q, _ in BAD])
def test_bad_parameter_is_a_400_naming_it(client, path, query, param):
    r = client.get(f"{path}?{query}")
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["param"] == param and body["error"].startswith(f"{param}: ")


@pytest.mark.parametrize("query", ["class=0", "class=random"])
def test_class_for_an_unconditional_model_is_refused(uncond, query):
    r = uncond.get(f"/api/sample.png?{query}")
    assert r.status_code == 400 and r.json()["param"] == "class" and "unconditional" in r.json()["error"]


def test_garbage_never_reaches_the_catch_all(client):
    """Every parameter of every endpoint with odd values: a 200 or a 400 naming it, never a 500."""
    endpoints = {
        "/api/sample.png": {"seed": "1", "n": "1", "class": "1", "truncation": "1", "download": "0"},
        "/api/image.png": {"seed": "1", "n": "1", "index": "0", "class": "1", "truncation": "1", "scale": "1"},
        "/api/walk.png": {"a": "1", "b": "2", "steps": "2", "mode": "lerp", "class": "1", "truncation": "1"},
        "/api/walk_frame.png": {"a": "1", "b": "2", "t": "0.5", "mode": "slerp", "scale": "1", "download": "1"},
        "/api/attention": {"seed": "1", "n": "1", "index": "0", "class": "1", "truncation": "1", "x": "1", "y": "1"},
    }
    values = ["", " ", "-0", "+1", "0x10", "1_0", "\uff19", "1e309", "-1e-400", "NaN", "9" * 40, "\x00", "\u00e9", "[]"]
    codes = set()
    for path, good in endpoints.items():
        assert client.get(path, params=good).status_code == 200, path
        for param in good:
            for value in values:
                r = client.get(path, params={**good, param: value})
                assert r.status_code in (200, 400), (path, param, value, r.text)
                codes.add(r.status_code)
                if r.status_code == 400:
                    assert r.json()["param"] == param
    assert codes == {200, 400}


def test_oversized_requests_are_refused_by_the_limits(sagan):
    limits = Limits(max_pixels=4 * S * S, max_image_side=4 * S)  # 4 images per request, enlargement x4 at most
    with TestClient(create_app(sagan, limits=limits)) as c:
        info = c.get("/api/info").json()["limits"]
        assert (info["max_n"], info["max_steps"], info["max_scale"]) == (4, 4, 4)
        assert c.get("/api/sample.png?n=4").status_code == 200
        assert c.get("/api/sample.png?n=5").json()["param"] == "n"
        assert c.get("/api/walk.png?steps=5").json()["param"] == "steps"
        assert c.get("/api/image.png?n=4&scale=5").json()["param"] == "scale"
        assert c.get("/api/sample.png").status_code == 200  # the default n follows the cap
    with pytest.raises(ValueError):
        Limits(max_steps=1)


def test_unknown_path_and_method_are_json_errors(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and "error" in r.json()
    r = client.post("/api/sample.png")
    assert r.status_code == 405 and "error" in r.json()


def test_catch_all_turns_a_crash_into_a_json_500(sagan):
    class Broken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = sagan
            self.z_dim, self.num_classes, self.image_size, self.channels = 16, 10, S, 1
            self.config = sagan.config
            self.sample_latents = sagan.sample_latents

        def forward(self, z, y=None):
            raise RuntimeError("boom")

    with TestClient(create_app(Broken()), raise_server_exceptions=False) as c:
        r = c.get("/api/sample.png?n=1")
        assert r.status_code == 500 and r.json()["error"] == "internal error: RuntimeError: boom"


def test_generation_runs_off_the_event_loop_under_the_model_lock(sagan):
    """A slow generation does not block other requests, and two generations never overlap in the model."""
    state = {"inside": 0, "most": 0}
    guard = threading.Lock()

    class Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = sagan
            self.z_dim, self.num_classes, self.image_size, self.channels = 16, 10, S, 1
            self.config = sagan.config
            self.sample_latents = sagan.sample_latents

        def forward(self, z, y=None):
            with guard:
                state["inside"] += 1
                state["most"] = max(state["most"], state["inside"])
            time.sleep(0.3)
            with guard:
                state["inside"] -= 1
            return self.inner(z, y)

    with TestClient(create_app(Slow())) as c:
        answers: list[int] = []
        threads = [
            threading.Thread(target=lambda s=s: answers.append(c.get(f"/api/sample.png?n=1&seed={s}").status_code))
            for s in range(3)
        ]
        for t in threads:
            t.start()
        time.sleep(0.1)
        started = time.perf_counter()
        assert c.get("/api/info").status_code == 200
        assert time.perf_counter() - started < 0.25, "/api/info waited for the generations"
        for t in threads:
            t.join(10)
        assert answers == [200, 200, 200] and state["most"] == 1


def test_loopback_bind_refuses_foreign_host_headers(sagan):
    with TestClient(create_app(sagan, allowed_hosts=LOOPBACK_HOST_HEADERS), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200
        assert c.get("/api/info", headers={"host": "evil.example"}).status_code == 400


# ---------------------------------------------------------------------------------------------------- serving


def test_serve_loads_a_file_prints_the_url_and_warns_off_loopback(sagan, tmp_path, monkeypatch, capsys):
    import uvicorn

    path = sagan.save_export(tmp_path / "g.safetensors")
    runs: list[list[socket.socket]] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: runs.append(sockets))
    assert serve(str(path), port=0, device="cpu") == 0
    out, err = capsys.readouterr()
    assert "sagan 16x16, 10 classes" in out and "open http://127.0.0.1:" in out and err == ""
    assert len(runs) == 1 and runs[0][0].fileno() == -1  # the socket was handed over, then closed
    assert serve(str(path), host="0.0.0.0", port=0, device="cpu") == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert "reachable from other machines; gankit explore has no authentication" in err
    assert "open http://127.0.0.1:" in out

    def interrupted(self, sockets=None):
        raise KeyboardInterrupt  # what uvicorn re-raises after its graceful stop on Ctrl+C

    monkeypatch.setattr(uvicorn.Server, "run", interrupted)
    assert serve(str(path), port=0, device="cpu") == 0
    assert capsys.readouterr().out.endswith("gankit explore: stopped\n")


def test_sigterm_stops_the_server_as_ctrl_c_does_and_exits_143(sagan, tmp_path, monkeypatch, capsys):
    import uvicorn

    from gankit import interrupts

    path = sagan.save_export(tmp_path / "g.safetensors")

    def terminated(self, sockets=None):
        raise interrupts.Terminated  # what uvicorn re-raises after its graceful stop on SIGTERM, in gankit's handler

    monkeypatch.setattr(uvicorn.Server, "run", terminated)
    assert serve(str(path), port=0, device="cpu") == 143
    assert capsys.readouterr().out.endswith("gankit explore: stopped\n")


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 0)])
def test_a_user_stopping_the_explorer_sees_it_stop(sagan, tmp_path, signum, status):
    sagan.save_export(tmp_path / "g.safetensors")
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "explore", "g.safetensors", "--port", str(port),
                             "--device", "cpu"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "open http://127.0.0.1:" in lines[1], lines
        for _ in range(100):  # serving: the port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert out == "gankit explore: stopped\n" and err == ""


def test_loaded_file_renders_as_the_module(sagan, tmp_path):
    path = sagan.save_export(tmp_path / "g.safetensors")
    loaded = gankit.load_generator(path, ema=True, device="cpu")
    with TestClient(create_app(sagan)) as a, TestClient(create_app(loaded, source=str(path))) as b:
        url = "/api/sample.png?seed=5&n=9&truncation=0.8"
        assert a.get(url).content == b.get(url).content
        assert b.get("/api/info").json()["source"] == str(path)


def test_bind_errors_are_user_errors():
    with pytest.raises(UserError, match="--port"):
        bind("127.0.0.1", 70000)
    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(UserError, match="cannot listen on 127.0.0.1"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    with pytest.raises(UserError, match="--host"):
        bind("no-such-host.invalid", 0)


def test_is_loopback():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.com"))


def test_missing_extra_is_a_one_line_user_error(sagan, monkeypatch):
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "starlette", None)  # import starlette -> ImportError
        with pytest.raises(UserError) as e:
            create_app(sagan)
        assert str(e.value) == EXTRA_MESSAGE == "gankit explore needs the explore extra: pip install 'gankit[explore]'"
        with pytest.raises(UserError, match="explore extra"):
            serve("anything.pt")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "uvicorn", None)
        with pytest.raises(UserError, match="explore extra"):
            serve("anything.pt")
        create_app(sagan)  # the app itself needs only starlette


def test_info_is_json_serialisable_for_every_family(client, uncond, dcgan):
    for c in (client, uncond, dcgan):
        json.dumps(c.get("/api/info").json())


# ---------------------------------------------------------------------------------------------------- real images


def digit_png(width: int = 20, height: int = 24, seed: int = 0) -> bytes:
    """A greyscale PNG (not square: the upload is resized and centre-cropped as training data is)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), np.uint8)
    image[4:-4, width // 2 - 2 : width // 2 + 2] = 255  # a "1"
    image = np.clip(image.astype(int) + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header promises ``width x height`` greyscale pixels (and holds none)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


FAST = "steps=6&restarts=1&loss=pixel"  # a projection of a fraction of a second


def start_projection(c: TestClient, data: bytes, query: str = FAST) -> str:
    r = c.post(f"/api/project?{query}", content=data)
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "running" and r.json()["done"] == 0
    return r.json()["job"]


def finish(c: TestClient, job: str, seen: list[dict] | None = None, timeout: float = 120) -> dict:
    """Poll the job's progress until it has ended; ``seen`` collects every answer."""
    deadline = time.monotonic() + timeout
    while True:
        status = c.get(f"/api/project/status?job={job}").json()
        if seen is not None:
            seen.append(status)
        if status["state"] != "running":
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.02)


def projected(c: TestClient, data: bytes | None = None, query: str = FAST) -> tuple[str, dict]:
    job = start_projection(c, digit_png() if data is None else data, query)
    status = finish(c, job)
    assert status["state"] == "done", status
    return job, status


def test_upload_is_projected_as_a_job_with_progress(client, sagan):
    from gankit.apps.project import psnr
    from gankit.data.decode import decode_bytes

    data = digit_png()
    job = start_projection(client, data, "steps=5&restarts=2&class=3&name=one.png")  # the default loss
    seen: list[dict] = []
    status = finish(client, job, seen)
    assert status["state"] == "done" and status["done"] == status["total"] == 5
    assert all(0 <= s["done"] <= s["total"] == 5 for s in seen)
    assert [s["done"] for s in seen] == sorted(s["done"] for s in seen)
    assert (status["name"], status["mode"], status["class"], status["interrupted"]) == ("one.png", "z", 3, False)
    assert status["objective"] in ("lpips", "pixel")  # pixel when no LPIPS weights are installed
    assert (status["lpips"] is None) == (status["objective"] == "pixel")
    target = png(client.get(f"/api/project/target.png?job={job}"), (S, S))
    np.testing.assert_array_equal(target, decode_bytes(data, S, 1)[0])  # preprocessed as training data is
    recon = png(client.get(f"/api/project/reconstruction.png?job={job}"), (S, S))
    png(client.get(f"/api/project/reconstruction.png?job={job}&scale=4"), (4 * S, 4 * S))
    from_png = psnr(torch.from_numpy(recon / 127.5 - 1)[None], torch.from_numpy(target / 127.5 - 1)[None])
    assert status["psnr"] == pytest.approx(float(from_png), abs=0.3)  # the PNG is the rounded reconstruction
    assert math.isfinite(status["loss"]) and status["loss"] >= 0


def test_decode_bytes_is_decode_file_of_the_same_bytes(tmp_path):
    from gankit.data.decode import decode_bytes, decode_file

    data = digit_png(31, 17)
    (tmp_path / "x.png").write_bytes(data)
    for size, channels in ((S, 1), (8, 3)):
        from_file = decode_file(tmp_path / "x.png", size, channels)
        np.testing.assert_array_equal(decode_bytes(data, size, channels), from_file)


def test_cancel_returns_the_best_so_far_and_one_job_runs_at_a_time(client):
    ex = client.app.state.explorer
    with ex.lock:  # the job waits for the model: cancelled before its first step ends
        job = start_projection(client, digit_png(), "steps=300&restarts=1&loss=pixel")
        busy = client.post(f"/api/project?{FAST}", content=digit_png())
        assert busy.status_code == 409 and "projection is running" in busy.json()["error"]
        r = client.get(f"/api/project/reconstruction.png?job={job}")
        assert r.status_code == 409 and r.json()["error"].startswith("job: still projecting")
        cancel = client.post(f"/api/project/cancel?job={job}")
        assert cancel.status_code == 200 and cancel.json()["job"] == job
    status = finish(client, job)
    assert status["state"] == "cancelled" and status["interrupted"] is True
    assert status["done"] == 1 < status["total"] == 300
    assert math.isfinite(status["psnr"])
    png(client.get(f"/api/project/reconstruction.png?job={job}"), (S, S))  # the best latent so far


def test_direction_sliders_edit_the_projection(client, sagan):
    from gankit.apps.directions import find_directions

    job, _ = projected(client)
    recon = client.get(f"/api/project/reconstruction.png?job={job}")
    zero = client.get(f"/api/project/edit.png?job={job}")
    assert zero.content == recon.content
    assert client.get(f"/api/project/edit.png?job={job}&d0=0&d4=0.0").content == recon.content
    dirs = client.get("/api/directions").json()
    assert dirs["available"] and dirs["method"] == "sefa" and len(dirs["directions"]) == 5
    effects = [d["effect"] for d in dirs["directions"]]
    assert effects == sorted(effects, reverse=True)
    moved = png(client.get(f"/api/project/edit.png?job={job}&d0=3&d2=-1.5"), (S, S))
    assert not np.array_equal(moved, png(recon))
    # exactly the file's render of z + 3 v_0 - 1.5 v_2
    file = client.app.state.projector.jobs[job].file
    v = find_directions(sagan, "sefa", num=5).vectors
    expected = to_uint8(file.render(sagan, 0, file.latents[:1] + 3 * v[0] - 1.5 * v[2]))[0, ..., 0]
    assert np.abs(moved.astype(int) - expected.astype(int)).max() <= 1
    png(client.get(f"/api/project/edit.png?job={job}&d1=0.5&scale=3"), (3 * S, 3 * S))
    for query, param in ((f"job={job}&d0=3.1", "d0"), (f"job={job}&d5=1", "d5"), (f"job={job}&d0=x", "d0"),
                         (f"job={job}&d0=1&d0=2", "d0"), ("d0=1", "job"), ("job=nope", "job")):
        r = client.get(f"/api/project/edit.png?{query}")
        assert r.status_code == 400 and r.json()["param"] == param, (query, r.text)


def test_walk_between_two_projected_images(client):
    a, _ = projected(client, digit_png(seed=1))
    b, _ = projected(client, digit_png(30, 18, seed=2))
    strip = png(client.get(f"/api/project/walk.png?a={a}&b={b}&steps=8"), grid_side(8, 8))
    first, last = cell(strip, 0, 8), cell(strip, 7, 8)
    ra = png(client.get(f"/api/project/reconstruction.png?job={a}"))
    rb = png(client.get(f"/api/project/reconstruction.png?job={b}"))
    assert np.abs(first.astype(int) - ra.astype(int)).max() <= 1  # both ends are the reconstructions
    assert np.abs(last.astype(int) - rb.astype(int)).max() <= 1
    png(client.get(f"/api/project/walk.png?a={a}&b={b}&steps=3"), grid_side(3, 3))
    assert client.get(f"/api/project/walk.png?a={a}&b={b}&steps=33").json()["param"] == "steps"
    assert client.get(f"/api/project/walk.png?a={a}").json()["param"] == "b"


def test_latents_download_is_the_projection_file(client, sagan, tmp_path):
    from gankit.apps.project import ProjectionFile
    from gankit.io import weights_sha256

    a, status = projected(client)
    b, _ = projected(client, digit_png(seed=5))
    r = client.get(f"/api/project/latents.safetensors?job={a}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment;")
    (tmp_path / "a.safetensors").write_bytes(r.content)
    loaded = ProjectionFile.load(tmp_path / "a.safetensors")
    mine = client.app.state.projector.jobs[a].file
    torch.testing.assert_close(loaded.latents, mine.latents, rtol=0, atol=0)
    torch.testing.assert_close(loaded.classes, mine.classes, rtol=0, atol=0)
    assert loaded.psnr.item() == pytest.approx(status["psnr"]) and loaded.mode == "z"
    assert loaded.model_sha256 == weights_sha256(sagan.state_dict()) and loaded.names == ["upload"]
    loaded.check_model(sagan)
    mine.save(tmp_path / "saved.safetensors")  # what gankit project's writer makes of it: the same content
    from gankit.io import read_safetensors

    saved, downloaded = read_safetensors(tmp_path / "saved.safetensors"), read_safetensors(tmp_path / "a.safetensors")
    assert saved[1] == downloaded[1] and saved[0].keys() == downloaded[0].keys()
    assert all(torch.equal(saved[0][k], downloaded[0][k]) for k in saved[0])
    both = client.get(f"/api/project/latents.safetensors?job={a}&b={b}")
    (tmp_path / "ab.safetensors").write_bytes(both.content)
    pair = ProjectionFile.load(tmp_path / "ab.safetensors")
    assert len(pair) == 2 and torch.equal(pair.latents[0], mine.latents[0])


UPLOAD_BAD = [
    ("not an image", b"this is not an image", "", "image", "not an image"),
    ("empty", b"", "", "image", "is empty"),
    ("1x1", None, "", "image", "1x1: too small"),
    ("20000x20000 header", png_header(20000, 20000), "", "image", "promises more than 64 M pixels"),
    ("9000x9000 header", png_header(9000, 9000), "", "image", "9000x9000 pixels, more than projection decodes"),
    ("truncated", digit_png()[:60], "", "image", "corrupt"),
    ("steps", None, "steps=301", "steps", "must be in 1..300"),
    ("steps 0", None, "steps=0", "steps", "must be in 1..300"),
    ("restarts", None, "restarts=9", "restarts", "must be in 1..8"),
    ("mode", None, "mode=w", "mode", "must be one of z, features, finetune"),
    ("loss", None, "loss=l2", "loss", "must be one of"),
    ("dfeat without a discriminator", None, "loss=dfeat", "loss", "dfeat needs the run's discriminator"),
    ("class", None, "class=10", "class", "must be in 0..9"),
    ("unknown", None, "stepz=3", "stepz", "unknown parameter"),
    ("name", None, "name=%00", "name", "printable"),
]


@pytest.mark.parametrize(("what", "data", "query", "param", "message"), UPLOAD_BAD, ids=[b[0] for b in UPLOAD_BAD])
def test_bad_upload_is_a_one_line_400(client, what, data, query, param, message):
    if data is None:
        one = io.BytesIO()
        Image.new("L", (1, 1)).save(one, format="PNG")
        data = one.getvalue() if what == "1x1" else digit_png()
    r = client.post(f"/api/project?{query}", content=data)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["param"] == param and message in body["error"] and "\n" not in body["error"], body
    assert client.app.state.projector.running() is None  # nothing was started


def test_upload_caps_and_unknown_jobs(sagan):
    with TestClient(create_app(sagan, limits=Limits(max_upload_bytes=100, max_projection_steps=4,
                                                    max_restarts=2))) as c:
        info = c.get("/api/info").json()["projection"]
        assert (info["max_steps"], info["default_steps"], info["max_restarts"], info["max_upload_bytes"]) == (4, 4, 2,
                                                                                                              100)
        r = c.post("/api/project", content=digit_png())  # > 100 bytes
        assert r.status_code == 400 and "more than the explorer takes (100 bytes)" in r.json()["error"]
        assert c.post("/api/project?steps=5", content=b"x").json()["param"] == "steps"
        assert c.post("/api/project?restarts=3", content=b"x").json()["param"] == "restarts"
        r = c.post("/api/project", content=iter([b"x" * 60, b"x" * 60]))  # streamed, no length: cut at the cap
        assert r.status_code == 400 and r.json()["param"] == "image"
        for path in ("/api/project/status", "/api/project/target.png", "/api/project/latents.safetensors"):
            r = c.get(f"{path}?job=0123")
            assert r.status_code == 400 and r.json()["param"] == "job" and "no such projection" in r.json()["error"]
        assert c.get("/api/project/status").json()["param"] == "job"
        assert c.post("/api/project/cancel?job=x").status_code == 400
        assert c.get("/api/project").status_code == 405
    with TestClient(create_app(lively_sagan(num_classes=0))) as c:
        assert c.post("/api/project?class=1", content=digit_png()).json()["param"] == "class"


@pytest.mark.parametrize("mode", ["features", "finetune"])
def test_other_modes_render_through_the_projection_file(client, mode):
    job, status = projected(client, query=f"steps=4&restarts=1&loss=pixel&mode={mode}")
    assert status["mode"] == mode
    recon = client.get(f"/api/project/reconstruction.png?job={job}")
    assert client.get(f"/api/project/edit.png?job={job}").content == recon.content
    png(client.get(f"/api/project/edit.png?job={job}&d0=2"), (S, S))
    z, _ = projected(client)
    r = client.get(f"/api/project/walk.png?a={job}&b={z}")
    assert r.status_code == 400 and r.json()["param"] == "b" and "same mode" in r.json()["error"]


def test_uploads_are_never_written_to_disk(client, tmp_path, monkeypatch):
    import builtins
    import tempfile

    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    writes: list[str] = []
    real_open = builtins.open

    def spying_open(file, mode="r", *args, **kwargs):
        if any(flag in str(mode) for flag in "wax+"):
            writes.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spying_open)
    a, _ = projected(client, digit_png(300, 200))
    b, _ = projected(client, digit_png(seed=9))
    for url in (f"/api/project/edit.png?job={a}&d0=1", f"/api/project/walk.png?a={a}&b={b}",
                f"/api/project/latents.safetensors?job={a}&b={b}", f"/api/project/target.png?job={a}"):
        assert client.get(url).status_code == 200
    assert client.post("/api/project", content=png_header(20000, 20000)).status_code == 400
    assert writes == [] and list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []


def test_a_run_folder_projects_with_its_discriminator_features():
    source = OLD_RUNS / "sagan_run"
    with TestClient(create_app(gankit.load_generator(source), source=str(source))) as c:
        job, status = projected(c, query="steps=2&restarts=1&loss=dfeat&class=1")
        assert status["objective"] == "dfeat" and status["class"] == 1
        png(c.get(f"/api/project/reconstruction.png?job={job}"), (S, S))


def test_attention_of_an_imported_imagenet_layout_biggan():
    # BigGAN-PyTorch's 128 px layout (tests/fixtures/biggan_pytorch/i128, made by its own code): the explorer finds
    # its BigGAN attention block and maps a clicked pixel's attention, as for a SAGAN
    from gankit.compat.biggan_pytorch import import_biggan_pytorch

    fixture = Path(__file__).parents[1] / "fixtures" / "biggan_pytorch" / "i128"
    G = import_biggan_pytorch(fixture, ema=True).generator
    with TestClient(create_app(G, source="biggan-i128")) as c:
        info = c.get("/api/info").json()
        assert [layer["name"] for layer in info["attention"]] and info["image_size"] == 128
        body = c.get("/api/attention?seed=0&n=1&index=0&x=100&y=20").json()
        layer = body["layers"][0]
        heat = np.array(layer["heatmap"])
        assert layer["size"] == [64, 64] and layer["key_size"] == [32, 32]  # BigGAN pools its keys by 2
        assert heat.shape == (32, 32) and heat.sum() == pytest.approx(1.0, abs=1e-4)
        other = c.get("/api/attention?seed=0&n=1&index=0&x=5&y=120").json()["layers"][0]
        assert not np.allclose(np.array(other["heatmap"]), heat)  # another query attends elsewhere
