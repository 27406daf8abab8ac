"""``gankit project``: real images into a trained generator's latent space (GAN inversion), for every family.

**Objective.** Every loss here is a squared distance between *embeddings* of two images, so one image can be
compared with a whole pool of candidates by a matrix product (:meth:`Objective.pairwise`):

- ``lpips``: LPIPS-AlexNet (:mod:`gankit.metrics.lpips`, the channel-normalised features weighted by the v0.1
  heads) plus a pixel term;
- ``dfeat``: the run's own discriminator features (every convolution's output, channel-normalised), the
  Deep Generative Prior's loss, plus a pixel term: needs no weights beyond the run's; the fallback when no LPIPS
  weights are installed;
- ``pixel``: mean squared error.

**Search.** A seeded pool of latents (every class of a conditional model when no ``class_id`` is given: the class
search) is rendered once and ranked against each target; the best ``restarts`` start the optimisation, all images
and restarts in one batch. Latents stay on the prior's typical set: the optimised vector is mapped to the shell
``|z| = sqrt(z_dim)`` where nearly all of N(0, I)'s mass lies (PGAN's pixel norm makes the norm irrelevant to G,
and the shell keeps the stored latent canonical). Adam with a short warm-up and a cosine decay; early steps add
decaying noise to the latent to leave poor basins (StyleGAN2's projector does the same on w). The best latent of
each restart so far is kept at every step, so a Ctrl-C keeps it.

**Modes.** ``z``: the latent only. ``features``: the first half of the steps on z, then an intermediate feature
map (``--layer``, by default the block at a quarter of the image side) is optimised directly, the closer fit the
inversion literature recommends for non-style GANs (Bau et al. 2019). ``finetune``: the first half on z, then a
copy of G is tuned with the latent for each image (DGP, PTI); only the weight delta is saved.

**Output.** ``OUT.safetensors`` (:class:`ProjectionFile`: latents, classes, mode, the model's weights sha256,
per-image LPIPS / PSNR, the feature maps or weight deltas of the other modes) and ``OUT.png`` (one row per image:
target | reconstruction).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from gankit import interrupts, log
from gankit.apps.outputs import claim_outputs
from gankit.data.decode import BadImage, check_file, decode_file
from gankit.errors import ParameterError, UserError
from gankit.images import save_grid
from gankit.io import read_safetensors, save_safetensors, weights_sha256
from gankit.models.base import Discriminator, Generator
from gankit.version import __version__

MODES = ("z", "features", "finetune")
LOSSES = ("lpips", "dfeat", "pixel")
PROJECTION_FORMAT = "gankit-projection"
MAX_STEPS = 20_000
MAX_RESTARTS = 64
MAX_IMAGES = 256
MAX_PIXELS = 64_000_000  # a header promising more is refused before decoding (a 20000 x 20000 PNG is 400 M)
PIXEL_WEIGHT = 1.0  # weight of the pixel MSE next to a perceptual term (both are O(0.1) for a poor fit)
POOL_PER_CLASS = 32  # candidate latents per class of the start search
FINETUNE_RMS_FLOOR = 0.01  # the scale of a tensor that starts at zero (biases), for its finetune step


# ------------------------------------------------------------------------------------------------ targets


def read_targets(paths: list[str | os.PathLike], size: int, channels: int) -> torch.Tensor:
    """Image files -> ``(N, channels, size, size)`` float32 in [-1, 1], preprocessed as training data is (shorter
    side resized with antialiasing, centre crop, greyscale <-> RGB). Each bad file is one :class:`UserError`."""
    if not paths:
        raise ParameterError("images", "give at least one image file to project")
    if len(paths) > MAX_IMAGES:
        raise ParameterError("images", f"{len(paths)} images are more than one call projects (at most {MAX_IMAGES})")
    arrays = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            raise ParameterError("images", f"{p} is a folder; give image files")
        if not p.is_file():
            raise ParameterError("images", f"{p} does not exist")
        try:
            projectable_size(p)
            check_file(p)
            arrays.append(decode_file(p, size, channels))
        except BadImage as exc:
            raise UserError(f"{p}: {exc}; give a PNG, JPEG, WebP, BMP or TIFF image") from None
    return torch.from_numpy(np.stack(arrays)).float() / 127.5 - 1.0


def projectable_size(source: str | os.PathLike | IO[bytes], formats: tuple[str, ...] | None = None
                     ) -> tuple[int, int]:
    """``(width, height)`` from the header of an image file or of bytes in memory (``formats``: the Pillow decoders
    allowed), refusing with :class:`BadImage` what is no image, promises more than :data:`MAX_PIXELS` (decoding
    would need gigabytes) or is smaller than 2x2. Shared by ``gankit project`` and the explorer's uploads."""
    from PIL import Image

    from gankit.data.decode import DECODE_ERRORS

    limit = f"{MAX_PIXELS // 1_000_000} M"
    try:
        with Image.open(source, formats=formats) as img:
            w, h = img.size
    except Image.UnidentifiedImageError:
        raise BadImage("is not an image Pillow can read") from None
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: the header alone says too big
        raise BadImage(f"promises more than {limit} pixels; downscale it") from None
    except DECODE_ERRORS as exc:
        raise BadImage(f"is a corrupt image ({str(exc)[:80]})") from None
    if w * h > MAX_PIXELS:
        raise BadImage(f"is {w}x{h} pixels, more than projection decodes ({limit}); downscale it")
    if w < 2 or h < 2:
        raise BadImage(f"is {w}x{h}: too small to project (at least 2x2)")
    return w, h


# ------------------------------------------------------------------------------------------------ objective


class Objective(nn.Module):
    """``embed(images (B, C, H, W) in [-1, 1]) -> (B, F)``; the loss of two images is the squared distance of
    their embeddings, ``pairwise(a, b) -> (len(a), len(b))`` all at once."""

    def __init__(self, kind: str, lpips: nn.Module | None = None, discriminator: Discriminator | None = None):
        super().__init__()
        self.kind, self.lpips, self.discriminator = kind, lpips, discriminator

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        parts = [images.flatten(1) * math.sqrt(PIXEL_WEIGHT / images[0].numel())]  # -> PIXEL_WEIGHT * MSE
        if self.kind == "lpips":
            parts.append(self.lpips.embed(images.float()))
        elif self.kind == "dfeat":
            feats = discriminator_features(self.discriminator, images)
            for f in feats:
                f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                parts.append(f.flatten(1) / math.sqrt(len(feats) * f.shape[2] * f.shape[3]))
        return torch.cat(parts, dim=1)

    def distance(self, a: torch.Tensor, target_embedding: torch.Tensor) -> torch.Tensor:
        """``(B,)`` losses of images ``a`` against embedded targets ``(B, F)``."""
        return (self.embed(a) - target_embedding).pow(2).sum(1)

    @torch.no_grad()
    def pairwise(self, a: torch.Tensor, b_embedding: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        rows = []
        for start in range(0, len(a), chunk):
            e = self.embed(a[start : start + chunk])
            rows.append(torch.cdist(e.double(), b_embedding.double()).pow(2).float())
        return torch.cat(rows).T  # (len(b), len(a))


def discriminator_features(discriminator: Discriminator, images: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of every convolution of ``discriminator`` on ``images`` (class-free: no label is given)."""
    feats: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: feats.append(out))
             for m in discriminator.modules() if _is_conv(m)]
    try:
        y = torch.zeros(len(images), dtype=torch.long, device=images.device) if discriminator.num_classes else None
        discriminator(images, y)
    finally:
        for h in hooks:
            h.remove()
    return [f for f in feats if f.dim() == 4]


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) or type(module).__name__.endswith("Conv2d")  # PGAN's equalised convs


def build_objective(kind: str, *, discriminator: Discriminator | None, lpips_weights: str | None,
                    say: Callable[[str], None] = log.info) -> tuple[Objective, nn.Module | None]:
    """The objective ``kind`` asks for and the LPIPS-AlexNet that scores results (None without weights). Without
    LPIPS weights, ``lpips`` falls back to ``dfeat`` (or ``pixel`` without a discriminator) with one line."""
    from gankit.metrics.lpips import INSTALL_HINT, load_lpips_if_installed

    if kind not in LOSSES:
        raise ParameterError("loss", f"{kind!r} is unknown; choose one of {', '.join(LOSSES)}")
    lpips = load_lpips_if_installed("alex", lpips_weights)
    if kind == "lpips" and lpips is None:
        kind = "dfeat" if discriminator is not None else "pixel"
        say(f"gankit: no LPIPS weights ({INSTALL_HINT} or --lpips-weights FILE); projecting with the "
            f"{'discriminator features' if kind == 'dfeat' else 'pixel'} loss instead")
    if kind == "dfeat" and discriminator is None:
        raise ParameterError("loss", "dfeat needs the run's discriminator (a run folder or checkpoint, or a "
                                     "pretrained folder with discriminator/); choose lpips or pixel")
    return Objective(kind, lpips, discriminator), lpips


# ------------------------------------------------------------------------------------------------ layers


def feature_layers(generator: Generator, y: torch.Tensor | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, output shape (C, H, W))`` of G's blocks in forward order: top-level children and members of
    ``ModuleList`` / ``ModuleDict`` children, those whose output is a 4-d map (what ``features`` mode and the PCA of
    ``gankit directions`` can use)."""
    candidates = []
    for name, child in generator.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            candidates += [(f"{name}.{k}", m) for k, m in child.named_children()]
        else:
            candidates.append((name, child))
    order: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, module in candidates:
        def record(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and name not in dict(order):
                order.append((name, tuple(out.shape[1:])))
        hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            z = torch.zeros(1, generator.z_dim, device=generator.device)
            generator(z, y if y is not None else _labels(generator, [0]))
    finally:
        for h in hooks:
            h.remove()
    last = f"{len(order) - 1}"  # the to-image layer is no feature map to edit
    return [entry for i, entry in enumerate(order) if f"{i}" != last]


def default_feature_layer(generator: Generator) -> str:
    """The last block whose map side is at most a quarter of the image's (at least 4)."""
    layers = feature_layers(generator)
    if not layers:
        raise UserError(f"{type(generator).__name__} has no intermediate feature map to optimise; use --mode z")
    limit = max(4, generator.image_size // 4)
    fitting = [name for name, shape in layers if shape[-1] <= limit]
    return fitting[-1] if fitting else layers[0][0]


def _module(generator: Generator, name: str) -> nn.Module:
    try:
        return generator.get_submodule(name)
    except AttributeError:
        names = ", ".join(n for n, _ in feature_layers(generator))
        raise ParameterError("layer", f"{name!r} is no layer of this generator; choose one of {names}") from None


def _labels(generator: Generator, classes: list[int] | torch.Tensor) -> torch.Tensor | None:
    if not generator.num_classes:
        return None
    return torch.as_tensor(classes, dtype=torch.long, device=generator.device)


def capture(generator: Generator, layer: str, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The output of ``layer`` for latents ``z`` ``(B, z_dim)``: ``(B, C, h, w)``."""
    got: list[torch.Tensor] = []
    hook = _module(generator, layer).register_forward_hook(lambda _m, _i, out: got.append(out))
    try:
        generator(z, y)
    finally:
        hook.remove()
    return got[0]


def render_from(generator: Generator, layer: str, z: torch.Tensor, y: torch.Tensor | None,
                features: torch.Tensor) -> torch.Tensor:
    """G's output with ``layer``'s output replaced by ``features`` ``(B, C, h, w)`` (the rest of the forward as
    usual; ``z`` still feeds what does not pass through that layer)."""
    hook = _module(generator, layer).register_forward_hook(lambda _m, _i, _out: features)
    try:
        return generator(z, y)
    finally:
        hook.remove()


# ------------------------------------------------------------------------------------------------ the search


@dataclasses.dataclass(frozen=True)
class ProjectionSettings:
    """What :func:`project` does; the defaults suit the 16-64 px presets on a CPU."""

    steps: int = 200
    loss: str = "lpips"
    restarts: int = 4
    mode: str = "z"
    seed: int = 0
    class_id: int | None = None
    class_search: bool = False
    layer: str | None = None
    lr: float = 0.08
    feature_lr: float = 0.02
    finetune_lr: float = 4e-3  # relative to each weight tensor's RMS
    noise: float = 0.3

    def check(self, generator: Generator) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise ParameterError("steps", f"must be between 1 and {MAX_STEPS}, got {self.steps}")
        if not 1 <= self.restarts <= MAX_RESTARTS:
            raise ParameterError("restarts", f"must be between 1 and {MAX_RESTARTS}, got {self.restarts}")
        if self.mode not in MODES:
            raise ParameterError("mode", f"{self.mode!r} is unknown; choose one of {', '.join(MODES)}")
        if self.loss not in LOSSES:
            raise ParameterError("loss", f"{self.loss!r} is unknown; choose one of {', '.join(LOSSES)}")
        if self.class_id is not None and self.class_search:
            raise ParameterError("class_search", "searches the class; drop it or --class-id")
        if (self.class_id is not None or self.class_search) and not generator.num_classes:
            raise ParameterError("class_id", "is for class-conditional models; this generator is unconditional")
        generator.check_class_id(self.class_id, "class_id")
        if self.mode != "z" and self.steps < 2:
            raise ParameterError("steps", f"{self.mode} mode needs at least 2 steps (half on z, half on the rest)")


@dataclasses.dataclass
class Projection:
    """The result for ``N`` targets: ``latents (N, z_dim)`` (on the typical-set shell), ``classes (N,)`` (-1 when
    unconditional), ``loss (N,)`` of the objective, ``mode``; ``layer`` and ``features (N, C, h, w)`` for the
    features mode, ``deltas`` (one weight delta per image) for finetune; ``interrupted`` when a Ctrl-C ended the
    search early (the best so far is kept)."""

    latents: torch.Tensor
    classes: torch.Tensor
    loss: torch.Tensor
    mode: str
    objective: str
    layer: str | None = None
    features: torch.Tensor | None = None
    deltas: list[dict[str, torch.Tensor]] | None = None
    interrupted: bool = False


def to_shell(w: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` -> the same directions at norm ``sqrt(D)``: the typical set of N(0, I_D)."""
    return w * (math.sqrt(w.shape[1]) / w.norm(dim=1, keepdim=True).clamp_min(1e-12))


def _schedule(step: int, total: int, base: float) -> float:
    t = step / max(1, total)
    ramp = min(1.0, t / 0.05)
    return base * ramp * 0.5 * (1.0 + math.cos(math.pi * t))


def _starts(generator: Generator, objective: Objective, targets_e: torch.Tensor, settings: ProjectionSettings,
            g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The best ``restarts`` (latent, class) pairs per target from a seeded pool: ``(N, R, z_dim)``, ``(N, R)``."""
    k = generator.num_classes
    if not k:
        classes = [-1]
    elif settings.class_id is not None:
        classes = [settings.class_id]
    else:
        classes = list(range(k))  # the class search: every class of the pool is tried
    pool_n = max(POOL_PER_CLASS, settings.restarts)
    pool_z = to_shell(torch.randn(pool_n, generator.z_dim, generator=g))
    zs = pool_z.repeat(len(classes), 1)
    ys = torch.tensor(classes, dtype=torch.long).repeat_interleave(pool_n)
    images = []
    with torch.no_grad():
        for start in range(0, len(zs), 128):
            z = zs[start : start + 128].to(generator.device)
            images.append(generator(z, _labels(generator, ys[start : start + 128])).float())
    scores = objective.pairwise(torch.cat(images), targets_e)  # (N, pool)
    best = scores.topk(settings.restarts, dim=1, largest=False).indices.cpu()  # (N, R)
    return zs[best], ys[best]


def project(
    generator: Generator,
    targets: torch.Tensor,
    objective: Objective,
    settings: ProjectionSettings = ProjectionSettings(),
    *,
    progress: bool | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Projection:
    """Project ``targets`` ``(N, C, H, W)`` in [-1, 1] (already the generator's size) into ``generator``.

    Deterministic for ``settings.seed`` on the CPU. ``on_step(done, total)`` is called after every step (the
    explorer's progress; raising ``KeyboardInterrupt`` in it cancels like Ctrl-C: the best so far is returned).
    """
    settings.check(generator)
    generator = generator.eval().requires_grad_(False)
    dev = generator.device
    n, r = len(targets), settings.restarts
    targets = targets.to(dev)
    with torch.no_grad():
        targets_e = objective.embed(targets).detach()
    g = torch.Generator().manual_seed(settings.seed)
    start_z, start_y = _starts(generator, objective, targets_e, settings, g)
    z_steps = settings.steps if settings.mode == "z" else max(1, settings.steps // 2)
    # finetune tunes one copy of G per image, one after the other
    total = z_steps + (settings.steps - z_steps) * (n if settings.mode == "finetune" else 1)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        bar.update(1)
        if on_step is not None:
            on_step(done, total)

    interrupted = False
    with log.progress(total, desc="projecting", unit="step", enabled=progress) as bar:
        w = start_z.reshape(n * r, -1).clone().to(dev)
        y_flat = start_y.reshape(-1)
        y = _labels(generator, y_flat)
        expanded_e = targets_e.repeat_interleave(r, dim=0)
        best_w, best_loss = w.clone(), torch.full((n * r,), float("inf"), device=dev)
        w.requires_grad_(True)
        opt = torch.optim.Adam([w], lr=settings.lr, betas=(0.9, 0.999))
        try:
            for step in range(z_steps):
                for group in opt.param_groups:
                    group["lr"] = _schedule(step, z_steps, settings.lr)
                z = to_shell(w)
                losses = objective.distance(generator(z, y).float(), expanded_e)
                with torch.no_grad():
                    better = losses < best_loss
                    best_loss = torch.where(better, losses, best_loss)
                    best_w[better] = z[better]
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
                opt.step()
                noise_scale = settings.noise * max(0.0, 1.0 - step / (0.5 * z_steps)) ** 2
                if noise_scale > 0:
                    with torch.no_grad():
                        w.add_(torch.randn(w.shape, generator=g).to(dev) * noise_scale)
                tick()
        except KeyboardInterrupt:
            interrupted = True
        with torch.no_grad():
            final = objective.distance(generator(best_w, y).float(), expanded_e)
        pick = final.reshape(n, r).argmin(1)
        rows = torch.arange(n, device=dev) * r + pick
        latents, classes = best_w[rows].detach(), y_flat[rows.cpu()]
        loss = final[rows]
        result = Projection(latents.cpu(), classes.cpu(), loss.cpu(), settings.mode, objective.kind,
                            interrupted=interrupted)
        if settings.mode == "features" and not interrupted:
            _fit_features(generator, objective, targets_e, settings, result, tick)
        elif settings.mode == "finetune" and not interrupted:
            _fit_generators(generator, objective, targets_e, settings, result, tick)
    return result


def _fit_features(generator, objective, targets_e, settings, result: Projection, tick) -> None:
    dev = generator.device
    layer = settings.layer or default_feature_layer(generator)
    z = result.latents.to(dev)
    y = _labels(generator, result.classes) if generator.num_classes else None
    with torch.no_grad():
        start = capture(generator, layer, z, y).detach().float()
    feats = start.clone().requires_grad_(True)
    best, best_loss = start.clone(), result.loss.to(dev).clone()
    opt = torch.optim.Adam([feats], lr=settings.feature_lr)
    steps = settings.steps - settings.steps // 2
    scale = start.abs().mean().clamp_min(1e-3)
    try:
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = float(scale) * _schedule(step, steps, settings.feature_lr)
            losses = objective.distance(render_from(generator, layer, z, y, feats).float(), targets_e)
            with torch.no_grad():
                better = losses < best_loss
                best_loss = torch.where(better, losses, best_loss)
                best[better] = feats[better].detach()
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            tick()
    except KeyboardInterrupt:
        result.interrupted = True
    result.layer, result.features, result.loss = layer, best.cpu(), best_loss.detach().cpu()


def _fit_generators(generator, objective, targets_e, settings, result: Projection, tick) -> None:
    dev = generator.device
    steps = settings.steps - settings.steps // 2
    deltas: list[dict[str, torch.Tensor]] = []
    latents, losses = result.latents.clone(), result.loss.clone()
    n = len(latents)
    try:
        for i in range(n):
            tuned = copy.deepcopy(generator).requires_grad_(True)
            names = [name for name, p in tuned.named_parameters()]
            original = {name: p.detach().clone() for name, p in tuned.named_parameters()}
            z = latents[i : i + 1].to(dev).clone().requires_grad_(True)
            y = _labels(generator, result.classes[i : i + 1]) if generator.num_classes else None
            # each tensor's step relative to its own scale: equalised-lr (PGAN) weights are O(1), others O(0.05)
            bases = [settings.finetune_lr * max(float(p.detach().pow(2).mean().sqrt()), FINETUNE_RMS_FLOOR)
                     for p in tuned.parameters()] + [settings.lr * 0.1]
            opt = torch.optim.Adam([{"params": [p]} for p in tuned.parameters()] + [{"params": [z]}])
            best_state, best_z, best_loss = None, z.detach().clone(), float(losses[i])
            try:
                for step in range(steps):
                    for group, base in zip(opt.param_groups, bases, strict=True):
                        group["lr"] = _schedule(step, steps, base)
                    loss = objective.distance(tuned(to_shell(z), y).float(), targets_e[i : i + 1])[0]
                    if float(loss.detach()) < best_loss:
                        best_loss, best_z = float(loss.detach()), to_shell(z).detach().clone()
                        best_state = {k: p.detach().clone() for k, p in tuned.named_parameters()}
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    tick()
            finally:
                state = best_state or original
                deltas.append({k: (state[k] - original[k]).cpu() for k in names})
                latents[i], losses[i] = best_z[0].cpu(), best_loss
    except KeyboardInterrupt:
        result.interrupted = True
        deltas += [{} for _ in range(n - len(deltas))]
    result.deltas, result.latents, result.loss = deltas, latents, losses


# ------------------------------------------------------------------------------------------------ the file


@dataclasses.dataclass
class ProjectionFile:
    """``OUT.safetensors`` of ``gankit project``: what the explorer, ``sample`` and ``interpolate`` read back."""

    latents: torch.Tensor  # (N, z_dim)
    classes: torch.Tensor  # (N,) int64, -1 when unconditional
    mode: str
    model_sha256: str
    lpips: torch.Tensor  # (N,), NaN without LPIPS weights
    psnr: torch.Tensor  # (N,) dB
    layer: str | None = None
    features: torch.Tensor | None = None
    deltas: list[dict[str, torch.Tensor]] | None = None
    names: list[str] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"latents": self.latents.float(), "classes": self.classes.long(), "lpips": self.lpips.float(),
               "psnr": self.psnr.float()}
        if self.features is not None:
            out["features"] = self.features.float()
        for i, delta in enumerate(self.deltas or []):
            out.update({f"delta.{i}.{name}": t.float() for name, t in delta.items()})
        return out

    def metadata(self) -> dict[str, str]:
        return {"format": PROJECTION_FORMAT, "gankit_version": __version__, "mode": self.mode,
                "model_sha256": self.model_sha256, "layer": self.layer or "", "names": json.dumps(self.names),
                "settings": json.dumps(self.meta)}

    def save(self, path: str | os.PathLike) -> Path:
        return save_safetensors(path, self.tensors(), self.metadata())

    def to_bytes(self) -> bytes:
        """The content :meth:`save` writes, in memory (the explorer's download: nothing goes to the disk)."""
        from safetensors.torch import save

        plain = {k: v.detach().cpu().contiguous().clone() for k, v in self.tensors().items()}
        return save(plain, metadata=self.metadata())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProjectionFile:
        if not Path(path).is_file():
            raise UserError(f"{path} does not exist; make it with gankit project")
        tensors, meta = read_safetensors(path)
        if meta.get("format") != PROJECTION_FORMAT or "latents" not in tensors:
            raise UserError(f"{path} is not a gankit projection file (written by gankit project)")
        n = len(tensors["latents"])
        deltas = None
        if meta.get("mode") == "finetune":
            deltas = [{} for _ in range(n)]
            for key, t in tensors.items():
                if key.startswith("delta."):
                    _, i, name = key.split(".", 2)
                    deltas[int(i)][name] = t
        try:
            names = json.loads(meta.get("names") or "[]")
            settings = json.loads(meta.get("settings") or "{}")
        except ValueError:
            raise UserError(f"{path}: damaged metadata; project the images again") from None
        return cls(tensors["latents"], tensors["classes"], meta.get("mode", "z"), meta.get("model_sha256", ""),
                   tensors.get("lpips", torch.full((n,), float("nan"))), tensors.get("psnr", torch.zeros(n)),
                   meta.get("layer") or None, tensors.get("features"), deltas, names, settings)

    def check_model(self, generator: Generator, source: object = "the projection") -> None:
        """A one-line error unless ``generator`` has the weights the latents were found for."""
        if self.latents.shape[1] != generator.z_dim:
            raise UserError(f"{source} holds {self.latents.shape[1]}-d latents; this generator takes {generator.z_dim}")
        mine = weights_sha256(generator.state_dict())
        if self.model_sha256 and self.model_sha256 != mine:
            raise UserError(f"{source} was made with another model (weights sha256 {self.model_sha256[:12]}, this "
                            f"one {mine[:12]}); project the images with this model")

    def __len__(self) -> int:
        return len(self.latents)

    def index(self, spec: int) -> int:
        if not -len(self) <= spec < len(self):
            raise ParameterError("latents", f"image {spec} is out of range: the file holds {len(self)}")
        return spec % len(self)

    def render(self, generator: Generator, i: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """Image ``i`` reconstructed, or with its latent replaced by ``z`` ``(B, z_dim)`` (an edit or a walk): in
        features mode the edit moves the stored map by ``phi(z) - phi(z_i)``; in finetune mode image ``i``'s
        tuned weights render it. ``(B, C, H, W)``."""
        dev = generator.device
        z_i = self.latents[i : i + 1].to(dev)
        z = z_i if z is None else z.to(dev)
        y = None
        if generator.num_classes:
            y = torch.full((len(z),), int(self.classes[i]), dtype=torch.long, device=dev)
        with torch.no_grad():
            if self.mode == "features" and self.features is not None and self.layer:
                base = capture(generator, self.layer, z_i, y[:1] if y is not None else None)
                moved = capture(generator, self.layer, z, y)
                return render_from(generator, self.layer, z, y, self.features[i : i + 1].to(dev) + moved - base)
            if self.mode == "finetune" and self.deltas and self.deltas[i]:
                tuned = copy.deepcopy(generator)
                params = dict(tuned.named_parameters())
                for name, delta in self.deltas[i].items():
                    if name not in params or params[name].shape != delta.shape:
                        raise UserError(f"the projection's weight delta {name!r} does not fit this generator")
                    params[name].add_(delta.to(dev, params[name].dtype))
                return tuned(z, y)
            return generator(z, y)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B,)`` PSNR in dB of images in [-1, 1] (both clamped to it), peak 1 on the [0, 1] scale."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def score(generator: Generator, result: ProjectionFile, targets: torch.Tensor, lpips: nn.Module | None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(reconstructions (N, C, H, W), LPIPS (N,) (NaN without weights), PSNR (N,))`` of a projection."""
    recon = torch.cat([result.render(generator, i).float().cpu() for i in range(len(result))])
    with torch.no_grad():
        distance = lpips.cpu()(recon, targets.cpu()) if lpips is not None else torch.full((len(recon),), float("nan"))
    return recon, distance, psnr(recon, targets.cpu())


def scored_file(generator: Generator, result: Projection, targets: torch.Tensor, lpips: nn.Module | None, *,
                settings: ProjectionSettings, names: list[str], model_sha256: str | None = None
                ) -> tuple[ProjectionFile, torch.Tensor]:
    """The :class:`ProjectionFile` of ``result`` (``targets`` ``(N, C, H, W)``), scored: its per-image LPIPS and PSNR
    filled in, and the reconstructions ``(N, C, H, W)``. ``model_sha256`` spares hashing the weights again."""
    n = len(result.latents)
    file = ProjectionFile(result.latents, result.classes, result.mode,
                          model_sha256 or weights_sha256(generator.state_dict()), torch.zeros(n), torch.zeros(n),
                          result.layer, result.features, result.deltas, names,
                          {"steps": settings.steps, "loss": result.objective, "restarts": settings.restarts,
                           "seed": settings.seed, "interrupted": result.interrupted})
    recon, file.lpips, file.psnr = score(generator, file, targets, lpips)
    return file, recon


# ------------------------------------------------------------------------------------------------ the command


def output_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """``OUT`` (a ``.safetensors`` or ``.png`` suffix is dropped) -> ``(OUT.safetensors, OUT.png)``."""
    text = os.fspath(out)
    if text.endswith(("/", "\\")) or Path(text).is_dir():
        raise ParameterError("out", f"{text} is a folder; give a name OUT for OUT.safetensors and OUT.png")
    base = Path(text)
    if base.suffix in (".safetensors", ".png"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".png")


def load_discriminator_for(source: str | os.PathLike, device: str | torch.device = "cpu") -> Discriminator | None:
    """The discriminator that belongs to ``source`` (a run folder or gankit checkpoint: its ``D``; a pretrained
    folder: ``discriminator/``), or None when it has none."""
    from gankit.io import RunDir, load_checkpoint
    from gankit.models.registry import model_config_from_dict

    p = Path(source)
    ckpt_path = None
    if p.is_dir() and RunDir(p).is_run():
        ckpt_path = RunDir(p).generator_source()
        if ckpt_path is not None and ckpt_path.suffix != ".pt":
            ckpt_path = None
    elif p.is_file() and p.suffix == ".pt":
        ckpt_path = p
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        state = ckpt.get("D")
        if not isinstance(state, dict):
            return None
        model = model_config_from_dict(ckpt["config"]["model"])
        return Discriminator.from_state(model, state, source=ckpt_path).to(device).eval().requires_grad_(False)
    if p.is_dir() and (p / "discriminator").is_dir():
        from gankit.hub.pretrained import load_discriminator

        return load_discriminator(p, device=device)
    return None


def run_projection(
    checkpoint: str | os.PathLike,
    images: list[str | os.PathLike],
    out: str | os.PathLike,
    settings: ProjectionSettings,
    *,
    lpips_weights: str | None = None,
    device: str = "cpu",
    ema: bool = True,
    overwrite: bool = False,
    progress: bool | None = None,
) -> tuple[list[Path], ProjectionFile, bool]:
    """``gankit project``: load, check every input, project, write ``OUT.safetensors`` and ``OUT.png``. Returns the
    written paths, the file's content and whether a Ctrl-C cut the search short (the best so far is written)."""
    from gankit.api import load_generator

    targets_paths = output_paths(out)
    generator = load_generator(checkpoint, ema=ema, device=device)
    settings.check(generator)
    targets = read_targets(images, generator.image_size, generator.channels)
    if settings.mode == "features" and settings.layer:
        _module(generator, settings.layer)
    discriminator = None
    if settings.loss in ("dfeat", "lpips"):
        discriminator = load_discriminator_for(checkpoint, generator.device)
    objective, lpips = build_objective(settings.loss, discriminator=discriminator, lpips_weights=lpips_weights)
    with claim_outputs(targets_paths, overwrite=overwrite):
        with interrupts.sigterm_as_interrupt():
            result = project(generator, targets, objective, settings, progress=progress)
        file, recon = scored_file(generator, result, targets, lpips, settings=settings,
                                  names=[str(p) for p in images])
        file.save(targets_paths[0])
        pairs = torch.stack([targets.cpu(), recon], dim=1).flatten(0, 1)
        save_grid(pairs, targets_paths[1], 2)
    return list(targets_paths), file, result.interrupted


def iter_rows(file: ProjectionFile) -> Iterator[str]:
    for i in range(len(file)):
        name = file.names[i] if i < len(file.names) else str(i)
        cls = f", class {int(file.classes[i])}" if int(file.classes[i]) >= 0 else ""
        lp = "" if math.isnan(float(file.lpips[i])) else f"LPIPS {float(file.lpips[i]):.3f}, "
        yield f"  {name}: {lp}PSNR {float(file.psnr[i]):.1f} dB{cls}"


__all__ = ["LOSSES", "MODES", "Objective", "Projection", "ProjectionFile", "ProjectionSettings", "build_objective",
           "default_feature_layer", "feature_layers", "load_discriminator_for", "project", "projectable_size", "psnr",
           "read_targets",
           "run_projection", "scored_file"]
