"""The explorer's web server: a Starlette app (one page + a small JSON/PNG API) served by uvicorn.

Needs the ``explore`` extra (starlette, uvicorn); :mod:`gankit.apps.explore` checks for it and says how to
install it. Endpoints (all GET; every parameter optional unless noted; bad or out-of-range values are answered
with HTTP 400 and ``{"error": "<param>: ...", "param": "<param>"}``):

==========================  ==========================================================================
``/``                       the page (``page.html``, ``app.js``, ``style.css``; nothing from the network)
``/api/info``               the model (family, z_dim, num_classes, image_size, channels, attention layers
                            with gamma) and the limits of this server
``/api/sample.png``         grid of ``n`` samples: ``seed n class truncation download``
``/api/image.png``          sample ``index`` of that grid alone: ``+ index scale`` (header ``X-Sample-Class``)
``/api/walk.png``           strip of ``steps`` frames from seed ``a`` to seed ``b``:
                            ``a b steps mode class truncation download``
``/api/walk_frame.png``     one point ``t`` in [0, 1] of that walk: ``a b t mode class truncation scale download``
``/api/attention``          JSON: per attention layer, where image pixel ``(x, y)`` (required) of sample
                            ``index`` attends: ``seed n index class truncation x y``
==========================  ==========================================================================

Real images (:mod:`gankit.apps.explore.projection`; ``job``, ``a`` and ``b`` are ids an upload answered with):

- ``POST /api/project``: the body is one image's bytes (PNG, JPEG, WebP, BMP, TIFF, GIF; held in memory only);
  starts its projection (``steps restarts mode loss class seed name``) and answers the job's JSON status (202);
- ``/api/project/status?job``: ``state`` (running, done, cancelled, failed), ``done`` of ``total`` steps, and
  once ended LPIPS (null without weights), PSNR, loss and class; ``POST /api/project/cancel?job`` stops it (the
  best result so far is kept);
- ``/api/project/target.png`` (the upload as the model sees it), ``/api/project/reconstruction.png``: ``job
  scale``; ``/api/project/edit.png``: the reconstruction moved along direction ``k`` by ``dk`` in [-3, 3]
  (``job d0 .. d4 scale``); ``/api/project/walk.png``: ``steps`` frames from projection ``a`` to ``b``;
- ``/api/project/latents.safetensors?job[&b]``: the file ``gankit project`` writes; ``/api/directions``: the
  model's top SeFa directions (the sliders), ranked by effect.

``class`` is ``0..K-1`` or ``random`` (conditional models only), ``truncation`` a number in ``(0, max]`` or
empty (none), ``mode`` ``lerp`` or ``slerp`` (a projection's: ``z``, ``features`` or ``finetune``),
``download=1`` adds ``Content-Disposition: attachment``.
Generation runs in a worker thread (``run_in_threadpool``) under the explorer's model lock; a projection runs
in a background thread holding that lock (:mod:`gankit.apps.explore.projection`), one at a time: requests that
need a running projection's result are answered 409.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, TextIO

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# gankit imports: the only ones in this module
from gankit import interrupts
from gankit.api import load_generator
from gankit.apps.explore.core import MODES, Explorer, Limits, Query
from gankit.apps.explore.projection import DIRECTION_PARAMS, Busy, Projector, clean_name
from gankit.apps.project import LOSSES, ProjectionSettings
from gankit.apps.project import MODES as PROJECTION_MODES
from gankit.errors import ParameterError, UserError, check_number

LOOPBACK_HOST_HEADERS = ("127.0.0.1", "localhost", "[::1]", "::1")
PAGE_FILES = {"/": ("page.html", "text/html; charset=utf-8"),
              "/app.js": ("app.js", "text/javascript; charset=utf-8"),
              "/style.css": ("style.css", "text/css; charset=utf-8")}  # fmt: skip
# The page loads nothing from elsewhere: the policy lets the browser enforce that.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SAMPLE = Explorer.SAMPLE_PARAMS
WALK = ("a", "b", "mode", "class", "truncation")


def _page_file(name: str) -> bytes:
    return resources.files("gankit.apps.explore").joinpath(name).read_bytes()


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if param is not None:
        body["param"] = param
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _png(data: bytes, filename: str, download: bool, started: float, class_id: int | None = None) -> Response:
    disposition = "attachment" if download else "inline"
    headers = {
        "Content-Disposition": f'{disposition}; filename="{filename}"',
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Server-Timing": f"render;dur={(time.perf_counter() - started) * 1000:.1f}",
    }
    if class_id is not None:
        headers["X-Sample-Class"] = str(class_id)
    return Response(data, media_type="image/png", headers=headers)


def create_app(
    generator: torch.nn.Module,
    *,
    source: str = "",
    limits: Limits | None = None,
    allowed_hosts: list[str] | tuple[str, ...] | None = None,
) -> Starlette:
    """The explorer app for one loaded generator. ``source`` is shown on the page; ``limits`` caps requests
    (:class:`~gankit.apps.explore.core.Limits`); ``allowed_hosts`` (e.g. the loopback names, as :func:`serve`
    sets for a loopback bind) refuses other ``Host`` headers, against DNS rebinding."""
    ex = Explorer(generator, source=source, limits=limits)
    projector = Projector(ex)
    tag = ex.family or "gankit"

    def class_tag(class_id: int | None) -> str:
        return "" if class_id is None else f"-class{class_id}"

    async def page(request: Request) -> Response:
        name, media_type = PAGE_FILES[request.url.path]
        headers = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff",
                   "Cache-Control": "no-cache"}  # fmt: skip
        return Response(_page_file(name), media_type=media_type, headers=headers)

    async def info(request: Request) -> Response:
        Query(request.query_params.multi_items(), ())
        return JSONResponse({**ex.info(), "projection": projector.info()})

    async def sample_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), (*SAMPLE, "download"))
        s, download = ex.parse_sample(q), q.flag("download")
        data = await run_in_threadpool(ex.grid_png, s)
        return _png(data, f"{tag}-seed{s.seed}-n{s.n}{class_tag(s.class_id)}.png", download, started)

    async def image_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), (*SAMPLE, "index", "scale", "download"))
        s = ex.parse_sample(q)
        index, scale, download = ex.parse_index(q, s.n), ex.parse_scale(q), q.flag("download")
        data = await run_in_threadpool(ex.image_png, s, index, scale)
        name = f"{tag}-seed{s.seed}-n{s.n}-{index}{class_tag(s.class_id)}.png"
        return _png(data, name, download, started, ex.sample_class(s, index))

    def parse_walk(q: Query) -> tuple[int, int, str, int | None, float | None]:
        a = q.integer("a", 0, 0, ex.limits.max_seed)
        b = q.integer("b", 1, 0, ex.limits.max_seed)
        return a, b, q.choice("mode", "lerp", MODES), ex.parse_class(q), ex.parse_truncation(q)

    async def walk_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), (*WALK, "steps", "download"))
        a, b, mode, class_id, trunc = parse_walk(q)
        steps, download = q.integer("steps", min(8, ex.max_steps), 2, ex.max_steps), q.flag("download")
        data = await run_in_threadpool(ex.walk_strip_png, a, b, steps, mode, class_id, trunc)
        return _png(data, f"{tag}-walk-{a}-{b}-{mode}-{steps}{class_tag(class_id)}.png", download, started)

    async def walk_frame_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), (*WALK, "t", "scale", "download"))
        a, b, mode, class_id, trunc = parse_walk(q)
        t, scale, download = q.number("t", 0.0, 0.0, 1.0), ex.parse_scale(q), q.flag("download")
        data = await run_in_threadpool(ex.walk_frame_png, a, b, t, mode, class_id, trunc, scale)
        return _png(data, f"{tag}-walk-{a}-{b}-{mode}-t{t:g}{class_tag(class_id)}.png", download, started)

    async def attention(request: Request) -> Response:
        q = Query(request.query_params.multi_items(), (*SAMPLE, "index", "x", "y"))
        ex.require_attention()  # before any other check: the answer for a DCGAN is always the same
        s = ex.parse_sample(q)
        index, point = ex.parse_index(q, s.n), ex.parse_point(q)
        body = await run_in_threadpool(ex.attention_json, s, index, point)
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------------------------------ real images

    async def read_upload(request: Request) -> bytes:
        """The request body, refused as soon as it is longer than the cap (never more is held)."""
        cap = ex.limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            raise ParameterError("image", f"is {declared[:20]} bytes, more than the explorer takes ({cap} bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise ParameterError("image", f"is more than the explorer takes ({cap} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    def no_store(body: dict[str, Any], status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    async def project_start(request: Request) -> Response:
        q = Query(request.query_params.multi_items(), ("steps", "restarts", "mode", "loss", "class", "seed", "name"))
        limits = ex.limits
        settings = ProjectionSettings(
            steps=q.integer("steps", min(100, limits.max_projection_steps), 1, limits.max_projection_steps),
            restarts=q.integer("restarts", min(4, limits.max_restarts), 1, limits.max_restarts),
            mode=q.choice("mode", "z", PROJECTION_MODES),
            loss=q.choice("loss", "lpips", LOSSES),
            class_id=ex.parse_class(q),
            seed=q.integer("seed", 0, 0, limits.max_seed),
        )
        name = clean_name(q.raw("name"))
        data = await read_upload(request)
        job = await run_in_threadpool(projector.start, data, settings, name)
        return no_store(job.status(), 202)

    async def project_status(request: Request) -> Response:
        q = Query(request.query_params.multi_items(), ("job",))
        return no_store(projector.get(q.raw("job")).status())

    async def project_cancel(request: Request) -> Response:
        q = Query(request.query_params.multi_items(), ("job",))
        return no_store(projector.cancel(q.raw("job")).status())

    async def project_target_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), ("job", "scale"))
        job, scale = q.raw("job"), ex.parse_scale(q)
        return _png(projector.target_png(job, scale), f"{tag}-target.png", False, started)

    async def project_reconstruction_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), ("job", "scale", "download"))
        job, scale, download = q.raw("job"), ex.parse_scale(q), q.flag("download")
        data = await run_in_threadpool(projector.reconstruction_png, job, scale)
        return _png(data, f"{tag}-reconstruction.png", download, started)

    async def project_edit_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), ("job", *DIRECTION_PARAMS, "scale", "download"))
        strength = projector.info()["max_strength"]
        usable = DIRECTION_PARAMS[: projector.num_directions]
        for name in DIRECTION_PARAMS[projector.num_directions :]:
            if q.raw(name) is not None:
                raise ParameterError(name, f"this model has {len(usable)} directions ({', '.join(usable)})")
        strengths = [q.number(name, 0.0, -strength, strength) for name in usable]
        job, scale, download = q.raw("job"), ex.parse_scale(q), q.flag("download")
        data = await run_in_threadpool(projector.edit_png, job, strengths, scale)
        return _png(data, f"{tag}-edit.png", download, started)

    async def project_walk_png(request: Request) -> Response:
        started = time.perf_counter()
        q = Query(request.query_params.multi_items(), ("a", "b", "steps", "download"))
        steps, download = q.integer("steps", min(8, ex.max_steps), 2, ex.max_steps), q.flag("download")
        data = await run_in_threadpool(projector.walk_png, q.raw("a"), q.raw("b"), steps)
        return _png(data, f"{tag}-projected-walk-{steps}.png", download, started)

    async def project_latents(request: Request) -> Response:
        q = Query(request.query_params.multi_items(), ("job", "b"))
        data = await run_in_threadpool(projector.latents_bytes, q.raw("job"), q.raw("b"))
        headers = {"Content-Disposition": f'attachment; filename="{tag}-projection.safetensors"',
                   "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        return Response(data, media_type="application/octet-stream", headers=headers)

    async def directions(request: Request) -> Response:
        Query(request.query_params.multi_items(), ())
        return JSONResponse(await run_in_threadpool(projector.directions_json), headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------------------------------ errors

    async def busy_error(request: Request, exc: Exception) -> Response:
        return _error(409, str(exc))

    async def param_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ParameterError)
        return _error(400, f"{exc.param}: {exc.detail}", exc.param)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))

    async def internal_error(request: Request, exc: Exception) -> Response:  # last resort: bad input never gets here
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    routes = [Route(path, page) for path in PAGE_FILES]
    routes += [
        Route("/api/info", info),
        Route("/api/sample.png", sample_png),
        Route("/api/image.png", image_png),
        Route("/api/walk.png", walk_png),
        Route("/api/walk_frame.png", walk_frame_png),
        Route("/api/attention", attention),
        Route("/api/project", project_start, methods=["POST"]),
        Route("/api/project/status", project_status),
        Route("/api/project/cancel", project_cancel, methods=["POST"]),
        Route("/api/project/target.png", project_target_png),
        Route("/api/project/reconstruction.png", project_reconstruction_png),
        Route("/api/project/edit.png", project_edit_png),
        Route("/api/project/walk.png", project_walk_png),
        Route("/api/project/latents.safetensors", project_latents),
        Route("/api/directions", directions),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    handlers: dict[Any, Callable] = {ParameterError: param_error, Busy: busy_error, HTTPException: http_error,
                                     Exception: internal_error}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.explorer = ex
    app.state.projector = projector
    return app


# ---------------------------------------------------------------------------------------------------- serving


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0: any free port); a clear :class:`UserError` if it cannot."""
    check_number("--port", port, integer=True, low=0, high=65535)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise UserError(f"--host {host!r} is not an address or name this machine can resolve") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # every interface: this machine reaches it on loopback
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(app: Starlette, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "warning"):
    """``(uvicorn.Server, bound socket, URL)``; run it with ``server.run(sockets=[sock])`` (or
    ``await server.serve(sockets=[sock])``); ``server.should_exit = True`` stops it."""
    import uvicorn

    sock = bind(host, port)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    return uvicorn.Server(config), sock, url_of(sock)


def serve(
    checkpoint: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    limits: Limits | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Load ``checkpoint`` (anything :func:`gankit.load_generator` reads, EMA weights) and serve the explorer
    until interrupted (Ctrl+C or SIGTERM). Prints the URL; warns on stderr (one line) when ``host`` is not a
    loopback address. Either way the server stops gracefully and says so; returns 0 after Ctrl+C, 143 (the exit
    status of a terminated process) after SIGTERM."""
    out = out or sys.stdout
    err = err or sys.stderr
    generator = load_generator(checkpoint, ema=True, device=device)
    loopback = is_loopback(host)
    app = create_app(
        generator, source=str(checkpoint), limits=limits, allowed_hosts=LOOPBACK_HOST_HEADERS if loopback else None
    )
    server, sock, url = make_server(app, host, port)
    ex: Explorer = app.state.explorer
    what = f"{ex.family} {ex.size}x{ex.size}" + (f", {ex.num_classes} classes" if ex.num_classes else "")
    print(f"gankit explore: {checkpoint} ({what}) on {next(generator.parameters()).device}", file=out)
    print(f"gankit explore: open {url} (Ctrl+C to stop)", file=out, flush=True)
    if not loopback:
        print(
            f"gankit explore: warning: --host {host} is reachable from other machines; "
            "gankit explore has no authentication",
            file=err,
            flush=True,
        )
    status = 0
    try:
        with interrupts.sigterm_as_interrupt():  # SIGTERM as interrupts.Terminated, inside the CLI or not
            server.run(sockets=[sock])
    except KeyboardInterrupt as exc:  # uvicorn stops gracefully on Ctrl+C / SIGTERM, then re-raises the signal
        status = interrupts.TERMINATED if isinstance(exc, interrupts.Terminated) else 0
    finally:
        sock.close()
    print("gankit explore: stopped", file=out, flush=True)
    return status


__all__ = ["create_app", "make_server", "serve", "is_loopback", "bind", "url_of"]
