"""Real images in the explorer: an uploaded image projected into the generator (a background job with progress and
cancel), edited along the model's top SeFa directions, walked to a second projected upload, and downloaded as the
``OUT.safetensors`` that ``gankit project`` writes.

**Memory only.** An upload's bytes are checked from the header (byte size, pixel count, format, at least 2x2) and
decoded with :func:`gankit.data.decode.decode_bytes`: the preprocessing of training data and of ``gankit project``
(shorter side resized, centre crop, greyscale <-> RGB), from a ``BytesIO``. Nothing is written anywhere; the last
:data:`KEPT_PROJECTIONS` jobs (target, result, reconstruction) stay in this process's memory.

**One model lock.** A job runs :func:`gankit.apps.project.project` in a background thread that holds the
explorer's model lock from its first step to its score, so no other forward pass interleaves with it (the page's
other images wait for it). One job runs at a time. Cancelling sets a flag that the next step's ``on_step`` turns
into ``KeyboardInterrupt``: ``project`` then returns the best latent so far, as after a Ctrl-C.

Like :mod:`gankit.apps.explore.core`, nothing here needs a web framework.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import secrets
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.apps.directions import Directions, find_directions
from gankit.apps.explore.core import PAD_VALUE, PADDING, Explorer
from gankit.apps.interpolate import projected_walks
from gankit.apps.project import (
    LOSSES,
    MODES,
    Objective,
    ProjectionFile,
    ProjectionSettings,
    build_objective,
    load_discriminator_for,
    project,
    projectable_size,
    scored_file,
)
from gankit.data.decode import BadImage, decode_bytes
from gankit.errors import ParameterError, UserError
from gankit.images import png_bytes, tile_uint8, to_uint8
from gankit.io import weights_sha256

# Formats an upload may have. Pillow's other decoders are not offered to bytes from the network (EPS would run
# Ghostscript, which works through temporary files).
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
FORMAT_HINT = "give a PNG, JPEG, WebP, BMP, TIFF or GIF image"
DEFAULT_STEPS = 100
DEFAULT_RESTARTS = 4
NUM_DIRECTIONS = 5  # sliders on the page
MAX_STRENGTH = 3.0  # a slider's range is [-MAX_STRENGTH, MAX_STRENGTH] along a unit direction
STRENGTH_STEP = 0.1
KEPT_PROJECTIONS = 4  # finished jobs kept in memory (the page uses two: image A and image B)
MAX_NAME = 200
DIRECTION_PARAMS = tuple(f"d{k}" for k in range(NUM_DIRECTIONS))
STATES = ("running", "done", "cancelled", "failed")  # cancelled: stopped early, with the best result so far


class Busy(Exception):
    """A request that has to wait for a running projection (HTTP 409); the message is one line."""


# ---------------------------------------------------------------------------------------------------- uploads


def check_upload(data: bytes, max_bytes: int) -> tuple[int, int]:
    """``(width, height)`` from the header of an uploaded image, refusing what the projection would not read or
    could not afford to decode (:func:`~gankit.apps.project.projectable_size`, as for files);
    :class:`~gankit.errors.ParameterError` (param ``image``) with the reason."""
    if not data:
        raise ParameterError("image", f"is empty: {FORMAT_HINT}")
    if len(data) > max_bytes:
        raise ParameterError("image", f"is {len(data)} bytes, more than the explorer takes ({max_bytes} bytes)")
    try:
        return projectable_size(io.BytesIO(data), UPLOAD_FORMATS)
    except BadImage as exc:
        raise ParameterError("image", f"{exc}; {FORMAT_HINT}") from None


def decode_upload(data: bytes, size: int, channels: int, max_bytes: int) -> torch.Tensor:
    """Uploaded image bytes -> ``(1, channels, size, size)`` float32 in [-1, 1], preprocessed as ``gankit project``'s
    :func:`~gankit.apps.project.read_targets` does for files, in memory."""
    check_upload(data, max_bytes)
    try:
        array = decode_bytes(data, size, channels, UPLOAD_FORMATS)
    except BadImage as exc:
        raise ParameterError("image", f"{exc}; {FORMAT_HINT}") from None
    return torch.from_numpy(np.array(array[None])).float() / 127.5 - 1.0  # a writable copy


def clean_name(text: str | None) -> str:
    """The name an upload is recorded under (the file's name, as the page sends it): printable, at most
    :data:`MAX_NAME` characters."""
    if text is None:
        return "upload"
    if len(text) > MAX_NAME or not text.isprintable():
        raise ParameterError("name", f"must be at most {MAX_NAME} printable characters")
    return text


# ---------------------------------------------------------------------------------------------------- jobs


@dataclasses.dataclass(eq=False)
class ProjectionJob:
    """One upload's projection. ``target (1, C, S, S)`` in [-1, 1] on the CPU; when it has ended (``done`` or
    ``cancelled``): ``file`` (a one-image :class:`~gankit.apps.project.ProjectionFile`), ``reconstruction``
    ``(S, S, C)`` uint8 and ``loss`` (the objective's)."""

    id: str
    name: str
    settings: ProjectionSettings
    target: torch.Tensor
    objective: str  # the loss actually used (lpips falls back to dfeat or pixel without LPIPS weights)
    total: int
    done: int = 0
    state: str = "running"
    error: str | None = None
    file: ProjectionFile | None = None
    reconstruction: np.ndarray | None = None
    loss: float | None = None
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)

    def status(self) -> dict[str, Any]:
        state = self.state  # read once: the worker thread sets it last, after the result
        body: dict[str, Any] = {
            "job": self.id, "name": self.name, "state": state, "done": self.done, "total": self.total,
            "objective": self.objective, "mode": self.settings.mode, "steps": self.settings.steps,
            "restarts": self.settings.restarts,
        }
        if state == "failed":
            body["error"] = self.error
        elif state != "running" and self.file is not None:
            lpips = float(self.file.lpips[0])
            cls = int(self.file.classes[0])
            body.update({"lpips": None if math.isnan(lpips) else lpips, "psnr": float(self.file.psnr[0]),
                         "loss": self.loss, "class": None if cls < 0 else cls,
                         "interrupted": bool(self.file.meta.get("interrupted"))})
        return body


def combine(files: list[ProjectionFile], params: tuple[str, ...]) -> ProjectionFile:
    """One :class:`ProjectionFile` holding the images of ``files`` in order (all of one mode and layer; a mismatch
    is a :class:`~gankit.errors.ParameterError` naming the later file's parameter in ``params``)."""
    first = files[0]
    for f, param in zip(files[1:], params[1:], strict=True):
        if (f.mode, f.layer) != (first.mode, first.layer):
            raise ParameterError(param, f"was projected in mode {f.mode}, {params[0]} in mode {first.mode}; project "
                                        "both in the same mode")
    features = None if first.features is None else torch.cat([f.features for f in files])
    deltas = None if first.deltas is None else [d for f in files for d in (f.deltas or [])]
    metas = [f.meta for f in files]
    return ProjectionFile(torch.cat([f.latents for f in files]), torch.cat([f.classes for f in files]), first.mode,
                          first.model_sha256, torch.cat([f.lpips for f in files]), torch.cat([f.psnr for f in files]),
                          first.layer, features, deltas, [n for f in files for n in f.names],
                          metas[0] if all(m == metas[0] for m in metas) else {"images": metas})


class Projector:
    """The explorer's real-image side: projection jobs, the cached objective and directions, and the renderers
    of the projection endpoints (each returns bytes or a dict)."""

    def __init__(self, explorer: Explorer) -> None:
        self.ex = explorer
        self.generator = explorer.generator
        self.jobs: collections.OrderedDict[str, ProjectionJob] = collections.OrderedDict()
        self.jobs_lock = threading.Lock()  # guards self.jobs; the model has the explorer's lock
        self.setup_lock = threading.Lock()  # one loader of the objective at a time
        self.directions_lock = threading.Lock()
        self.objectives: dict[str, tuple[Objective, torch.nn.Module | None]] = {}
        self.discriminator: Any = None
        self.discriminator_loaded = False
        self.found: Directions | None = None
        self.directions_error: str | None = None
        self.directions_found = False
        self.sha256: str | None = None
        self.num_directions = min(NUM_DIRECTIONS, int(self.generator.z_dim))

    def info(self) -> dict[str, Any]:
        limits = self.ex.limits
        return {
            "max_steps": limits.max_projection_steps, "default_steps": min(DEFAULT_STEPS, limits.max_projection_steps),
            "max_restarts": limits.max_restarts, "default_restarts": min(DEFAULT_RESTARTS, limits.max_restarts),
            "max_upload_bytes": limits.max_upload_bytes, "modes": list(MODES), "losses": list(LOSSES),
            "directions": self.num_directions, "max_strength": MAX_STRENGTH, "strength_step": STRENGTH_STEP,
        }

    # -------------------------------------------------------------------------------------------- setup

    def load_discriminator(self) -> Any:
        """The run's discriminator when the explorer's source is a run folder, checkpoint or pretrained folder
        that has one (for the ``dfeat`` loss and ``lpips``'s fallback), else None."""
        if not self.discriminator_loaded:
            source = self.ex.source
            if source and Path(source).exists():
                try:
                    self.discriminator = load_discriminator_for(source, self.generator.device)
                except (UserError, OSError):  # an unreadable D only loses the dfeat loss
                    self.discriminator = None
            self.discriminator_loaded = True
        return self.discriminator

    def objective(self, loss: str) -> tuple[Objective, torch.nn.Module | None]:
        """``(objective, LPIPS or None)`` for ``loss``, built once per loss."""
        with self.setup_lock:
            if loss not in self.objectives:
                discriminator = self.load_discriminator() if loss in ("lpips", "dfeat") else None
                self.objectives[loss] = build_objective(loss, discriminator=discriminator, lpips_weights=None,
                                                        say=lambda _line: None)  # the page shows the loss used
            return self.objectives[loss]

    def model_sha256(self) -> str:
        if self.sha256 is None:
            self.sha256 = weights_sha256(self.generator.state_dict())
        return self.sha256

    # -------------------------------------------------------------------------------------------- jobs

    def start(self, data: bytes, settings: ProjectionSettings, name: str = "upload") -> ProjectionJob:
        """Check and decode an upload, then project it in a background thread; the job is returned at once."""
        if self.running() is not None:  # before decoding: a busy explorer answers at once
            raise Busy("a projection is running: cancel it or wait for it to finish")
        target = decode_upload(data, self.ex.size, int(self.generator.channels), self.ex.limits.max_upload_bytes)
        settings.check(self.generator)
        objective, lpips = self.objective(settings.loss)
        with self.jobs_lock:
            if self.running() is not None:
                raise Busy("a projection is running: cancel it or wait for it to finish")
            job = ProjectionJob(secrets.token_hex(8), name, settings, target, objective.kind, settings.steps)
            self.jobs[job.id] = job
            finished = [key for key, j in self.jobs.items() if j.state != "running"]
            for key in finished[: max(0, len(self.jobs) - KEPT_PROJECTIONS)]:
                del self.jobs[key]
        worker = threading.Thread(target=self._run, args=(job, objective, lpips), daemon=True,
                                  name=f"gankit-projection-{job.id}")
        worker.start()
        return job

    def running(self) -> ProjectionJob | None:
        return next((j for j in list(self.jobs.values()) if j.state == "running"), None)

    def _run(self, job: ProjectionJob, objective: Objective, lpips: torch.nn.Module | None) -> None:
        def on_step(done: int, total: int) -> None:
            job.done, job.total = done, total
            if job.cancel.is_set():
                raise KeyboardInterrupt  # project() stops here and returns the best latent so far

        try:
            with self.ex.lock:
                g = self.generator
                objective.to(g.device)  # score() leaves LPIPS on the CPU
                result = project(g, job.target, objective, job.settings, progress=False, on_step=on_step)
                file, recon = scored_file(g, result, job.target, lpips, settings=job.settings, names=[job.name],
                                          model_sha256=self.model_sha256())
            job.file, job.reconstruction, job.loss = file, to_uint8(recon)[0], float(result.loss[0])
            job.state = "cancelled" if result.interrupted else "done"
        except Exception as exc:  # noqa: BLE001 - a failed job reports its one line; the server carries on
            job.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            job.state = "failed"
        finally:
            job.finished.set()

    def get(self, job_id: str | None, param: str = "job") -> ProjectionJob:
        if job_id is None:
            raise ParameterError(param, "is required: the id the upload answered with")
        job = self.jobs.get(job_id)
        if job is None:
            raise ParameterError(param, f"no such projection (the explorer keeps the last {KEPT_PROJECTIONS}); "
                                        "upload the image again")
        return job

    def result(self, job_id: str | None, param: str = "job") -> ProjectionJob:
        """A job that has ended with a result; :class:`Busy` while it runs."""
        job = self.get(job_id, param)
        if job.state == "running":
            raise Busy(f"{param}: still projecting ({job.done} of {job.total} steps)")
        if job.state == "failed" or job.file is None:
            raise ParameterError(param, f"the projection failed: {job.error}")
        return job

    def cancel(self, job_id: str | None) -> ProjectionJob:
        job = self.get(job_id)
        job.cancel.set()
        return job

    # -------------------------------------------------------------------------------------------- directions

    def directions(self) -> Directions | None:
        """The model's top :data:`NUM_DIRECTIONS` SeFa directions (found once, under the model lock), or None
        when the generator has no linear first layer (:attr:`directions_error` says so)."""
        with self.directions_lock:
            if not self.directions_found:
                try:
                    with self.ex.lock:
                        self.found = find_directions(self.generator, "sefa", num=self.num_directions)
                except UserError as exc:
                    self.directions_error = str(exc)
                self.directions_found = True
            return self.found

    def directions_json(self) -> dict[str, Any]:
        found = self.directions()
        if found is None:
            return {"available": False, "reason": self.directions_error, "directions": []}
        return {"available": True, "method": found.method, "metric": found.metric, "max_strength": MAX_STRENGTH,
                "directions": [{"index": k, "effect": float(found.effect[k]), "value": float(found.values[k])}
                               for k in range(len(found))]}

    def edited_latent(self, file: ProjectionFile, strengths: list[float]) -> torch.Tensor:
        """``(1, z_dim)``: the projected latent plus ``sum_k strengths[k] * v_k``."""
        z = file.latents[:1].float()
        if not any(strengths):
            return z
        found = self.directions()
        if found is None:
            k = next(i for i, s in enumerate(strengths) if s)
            raise ParameterError(DIRECTION_PARAMS[k], f"no directions for this model: {self.directions_error}")
        vectors = found.vectors[: len(strengths)].float()
        return z + (torch.tensor(strengths[: len(vectors)], dtype=torch.float32) @ vectors)[None]

    # -------------------------------------------------------------------------------------------- rendering

    def target_png(self, job_id: str | None, scale: int = 1) -> bytes:
        return png_bytes(to_uint8(self.get(job_id).target)[0], scale)

    def reconstruction_png(self, job_id: str | None, scale: int = 1) -> bytes:
        return png_bytes(self.result(job_id).reconstruction, scale)

    def edit_png(self, job_id: str | None, strengths: list[float], scale: int = 1) -> bytes:
        """The projected image moved along the directions by ``strengths`` (one per direction, zeros: the
        reconstruction), rendered as the projection file renders (its class, feature map or weight delta)."""
        file = self.result(job_id).file
        z = self.edited_latent(file, strengths)
        with self.ex.lock:
            image = file.render(self.generator, 0, z)
        return png_bytes(to_uint8(image)[0], scale)

    def walk_png(self, a: str | None, b: str | None, steps: int) -> bytes:
        """The strip of ``steps`` frames from projection ``a``'s reconstruction to ``b``'s
        (:func:`~gankit.apps.interpolate.projected_walks`): ``steps`` cells in one row."""
        both = combine([self.result(a, "a").file, self.result(b, "b").file], ("a", "b"))
        with self.ex.lock:
            walk = projected_walks(self.generator, both, steps=steps)
        return png_bytes(tile_uint8(to_uint8(walk.images[0]), steps, PADDING, PAD_VALUE))

    def latents_bytes(self, job_id: str | None, other: str | None = None) -> bytes:
        """``OUT.safetensors`` of ``gankit project`` for projection ``job`` (and ``b`` after it), in memory."""
        files = [self.result(job_id).file]
        if other is not None:
            files.append(self.result(other, "b").file)
        return (combine(files, ("job", "b")) if len(files) > 1 else files[0]).to_bytes()


__all__ = ["Busy", "DIRECTION_PARAMS", "KEPT_PROJECTIONS", "ProjectionJob", "Projector", "UPLOAD_FORMATS",
           "check_upload", "combine", "decode_upload"]
