"""``gankit directions``: interpretable latent directions in closed form (SeFa) or by PCA of activations (GANSpace),
each ranked by what it measurably does to the images.

**SeFa** (Shen & Zhou 2021). Every gankit generator starts with a linear map of the latent, ``A z + b``
(:meth:`~gankit.models.base.Generator.latent_weight`). The unit directions ``n`` that move that first layer most,
``argmax |A n|``, are the right singular vectors of ``A``: the SVD gives them in descending order of the singular
value (genforce's ``eig`` of ``A^T A`` does not guarantee an order). A singular vector's sign is arbitrary, so
each is flipped to make its entry of largest magnitude positive: the same file for the same weights.

**PCA** (Härkönen et al. 2020). Latents ``z ~ N(0, I)`` are sampled, the activations of ``layer`` are flattened and
their principal components found; the latent direction of component ``k`` is the regression of ``z`` on the
component coordinates (GANSpace's transfer to the latent space), normalised. At the first layer the activations
are ``A z + b`` exactly, and the directions are SeFa's.

**Effect.** Over a fixed seeded batch of latents, the mean distance (LPIPS-AlexNet; pixel RMS without its weights)
between ``G(z)`` and ``G(z +- n)`` per unit step. Each method gives four candidates per direction asked for (in its
order of value); the strongest by effect are kept, in descending order: ``k = 0`` changes the images most. (A
large singular value of the first layer need not mean a large change of the image: on pgan-digits SeFa's 3rd
component moves the images less than its 8th.)

**File.** ``DIRS.safetensors``: ``vectors (K, z_dim)`` (unit norm), ``values (K,)`` (singular values, or the
explained variance of the component), ``effect (K,)``, ``component (K,)`` (the rank by value before the
ranking by effect); metadata method, layer, metric, the model's weights sha256.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gankit.apps.outputs import claim_outputs
from gankit.errors import ParameterError, UserError
from gankit.io import read_safetensors, save_safetensors, weights_sha256
from gankit.models.base import Generator
from gankit.version import __version__

METHODS = ("sefa", "pca")
DIRECTIONS_FORMAT = "gankit-directions"
MAX_DIRECTIONS = 512
PCA_SAMPLES = 2000  # latents of the PCA (GANSpace uses 10^6 at ImageNet scale; 2000 suffice for <= 512 directions)
PCA_MAX_FEATURES = 16384  # wider activations are average-pooled to at most this many features before the PCA
EFFECT_BATCH = 16  # latents of the effect measure
CANDIDATES_PER_DIRECTION = 4  # components measured per direction kept


@dataclasses.dataclass
class Directions:
    """Latent directions of one model, in descending order of ``effect``."""

    vectors: torch.Tensor  # (K, z_dim), unit norm
    values: torch.Tensor  # (K,) singular values (sefa) or explained variance ratios (pca)
    effect: torch.Tensor  # (K,) mean image distance per unit step
    component: torch.Tensor  # (K,) int64: rank by value
    method: str
    layer: str
    metric: str  # "lpips" or "pixel"
    model_sha256: str

    def save(self, path: str | os.PathLike) -> Path:
        tensors = {"vectors": self.vectors.float().contiguous(), "values": self.values.float(),
                   "effect": self.effect.float(), "component": self.component.long()}
        meta = {"format": DIRECTIONS_FORMAT, "gankit_version": __version__, "method": self.method,
                "layer": self.layer, "metric": self.metric, "model_sha256": self.model_sha256}
        return save_safetensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Directions:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p} does not exist; make it with gankit directions")
        tensors, meta = read_safetensors(p)
        if meta.get("format") != DIRECTIONS_FORMAT or "vectors" not in tensors:
            raise UserError(f"{p} is not a gankit directions file (written by gankit directions)")
        vectors = tensors["vectors"]
        k = len(vectors)
        if vectors.dim() != 2 or not k or not torch.isfinite(vectors).all():
            raise UserError(f"{p}: damaged directions (vectors {tuple(vectors.shape)}); make the file again")
        return cls(vectors, tensors.get("values", torch.zeros(k)), tensors.get("effect", torch.zeros(k)),
                   tensors.get("component", torch.arange(k)), meta.get("method", ""), meta.get("layer", ""),
                   meta.get("metric", ""), meta.get("model_sha256", ""))

    def check_model(self, generator: Generator, source: object = "the directions file") -> None:
        """A one-line error unless ``generator`` is the model these directions were found for."""
        if self.vectors.shape[1] != generator.z_dim:
            raise UserError(f"{source} holds {self.vectors.shape[1]}-d directions; this generator takes "
                            f"{generator.z_dim}-d latents")
        mine = weights_sha256(generator.state_dict())
        if self.model_sha256 != mine:
            raise UserError(f"{source} was made for another model (weights sha256 {self.model_sha256[:12] or '?'}, "
                            f"this one {mine[:12]}); run gankit directions on this model")

    def __len__(self) -> int:
        return len(self.vectors)

    def vector(self, k: int) -> torch.Tensor:
        if not 0 <= k < len(self):
            raise ParameterError("direction", f"direction {k} is out of range: the file holds 0..{len(self) - 1}")
        return self.vectors[k]


# ------------------------------------------------------------------------------------------------ the methods


def fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Rows flipped so that each row's entry of largest magnitude is positive (the first such entry on ties)."""
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(vectors.gather(1, idx))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


def sefa(weight: torch.Tensor, num: int, *, normalize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa of a first layer ``A (features, z_dim)``: ``(vectors (num, z_dim), singular values (num,))``, the top
    right singular vectors of ``A`` in descending order of singular value, signs fixed (:func:`fix_signs`).
    ``normalize`` scales each row of ``A`` to unit norm first (genforce's variant); the paper's is without."""
    a = weight.detach().double().cpu()
    if normalize:
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    _, s, vh = torch.linalg.svd(a, full_matrices=False)
    num = min(num, len(s))
    return fix_signs(vh[:num]).float(), s[:num].float()


def pca_directions(activations: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, num: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """GANSpace: ``activations(z (B, z_dim)) -> (B, F)`` over the latents ``z (N, z_dim)``; the top ``num``
    principal components of the activations, each carried to the latent space by least squares (``z`` regressed on
    the component coordinates). ``(vectors (num, z_dim) unit norm, explained variance ratios (num,))``."""
    feats = []
    for start in range(0, len(z), 250):
        with torch.no_grad():
            feats.append(activations(z[start : start + 250]).detach().double().cpu().flatten(1))
    x = torch.cat(feats)
    x = x - x.mean(0, keepdim=True)
    num = min(num, z.shape[1], x.shape[1], len(z) - 1)
    if x.shape[1] <= len(x):  # the smaller Gram matrix: eigh of F x F or of N x N
        evals, evecs = torch.linalg.eigh(x.T @ x)
        order = evals.argsort(descending=True)[:num]
        coords = x @ evecs[:, order]  # (N, num)
        total = evals.clamp_min(0).sum()
    else:
        evals, evecs = torch.linalg.eigh(x @ x.T)
        order = evals.argsort(descending=True)[:num]
        coords = evecs[:, order] * evals[order].clamp_min(0).sqrt()
        total = evals.clamp_min(0).sum()
    variance = (evals[order].clamp_min(0) / total.clamp_min(1e-30)).float()
    # z ~ coords @ B: row k of B is component k's direction in z
    zc = z.double().cpu()
    basis = torch.linalg.lstsq(coords, zc - zc.mean(0, keepdim=True)).solution  # (num, z_dim)
    basis = basis / basis.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return fix_signs(basis).float(), variance


def whitened(z: torch.Tensor) -> torch.Tensor:
    """Latents ``(N, D)`` (``N > D``) made exactly white: zero mean and identity sample covariance. A finite sample of
    N(0, I) is white only to ``1 / sqrt(N)``; whitened, the PCA of the first layer's ``A z + b`` is exactly the SVD of
    ``A`` (SeFa), and deeper layers see latents as the prior draws them up to that small rotation."""
    x = z.double() - z.double().mean(0, keepdim=True)
    evals, evecs = torch.linalg.eigh(x.T @ x / (len(x) - 1))
    return (x @ evecs @ torch.diag(evals.clamp_min(1e-12).rsqrt()) @ evecs.T).to(z.dtype)


def layer_activations(generator: Generator, layer: str, y: torch.Tensor | None) -> Callable:
    """``z (B, z_dim) -> (B, F)``: the flattened output of ``generator``'s submodule ``layer`` (average-pooled to at
    most :data:`PCA_MAX_FEATURES` features when wider)."""
    if layer == first_layer_name(generator):
        # the first layer's output A z + b read off its weight (families compute a 1x1 map without calling the
        # module); the bias moves no principal component
        weight = generator.latent_weight()
        return lambda z: z.float().cpu() @ weight.T
    try:
        module = generator.get_submodule(layer)
    except AttributeError:
        raise ParameterError("layer", f"{layer!r} is no module of this generator; choose one of "
                                      f"{', '.join(layer_names(generator))}") from None

    def run(z: torch.Tensor) -> torch.Tensor:
        got: list[torch.Tensor] = []
        hook = module.register_forward_hook(lambda _m, _i, out: got.append(out))
        try:
            labels = None if y is None else y[: len(z)].to(generator.device)
            generator(z.to(generator.device), labels)
        finally:
            hook.remove()
        out = got[0][0] if isinstance(got[0], tuple) else got[0]
        out = out.float()
        if out.dim() == 4 and out[0].numel() > PCA_MAX_FEATURES:
            side = max(1, int(math.sqrt(PCA_MAX_FEATURES / out.shape[1])))
            out = nn.functional.adaptive_avg_pool2d(out, min(side, out.shape[-1]))
        return out.flatten(1)

    return run


def layer_names(generator: Generator) -> list[str]:
    """Names ``--layer`` takes: the first layer (``latent``: what SeFa factorises) and G's blocks in order."""
    from gankit.apps.project import feature_layers

    return [first_layer_name(generator)] + [name for name, _ in feature_layers(generator)]


def first_layer_name(generator: Generator) -> str:
    """The submodule whose weight :meth:`Generator.latent_weight` reads (what SeFa factorises)."""
    try:
        return generator.latent_layer()
    except NotImplementedError:
        raise UserError(f"{type(generator).__name__} does not name its first layer; use --method pca with --layer "
                        "a block") from None


# ------------------------------------------------------------------------------------------------ the effect


def effect_latents(generator: Generator, seed: int = 0, n: int = EFFECT_BATCH
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed latent batch (and labels of a conditional model) every effect is measured on."""
    g = torch.Generator().manual_seed(seed)
    z = generator.sample_latents(n, generator=g).cpu()
    y = generator.class_labels(n, generator=g)
    return z, y


@torch.no_grad()
def measure_effect(generator: Generator, vectors: torch.Tensor, lpips: nn.Module | None = None, *, seed: int = 0,
                   n: int = EFFECT_BATCH, step: float = 1.0) -> torch.Tensor:
    """``(K,)`` mean distance between ``G(z)`` and ``G(z + s * v)`` for ``s = +-step``, divided by ``step``, over
    a fixed seeded batch: LPIPS-AlexNet with ``lpips``, else the pixel RMS distance."""
    dev = generator.device
    z, y = effect_latents(generator, seed, n)
    z = z.to(dev)
    y = y.to(dev) if y is not None else None
    base = generator(z, y).float()
    out = []
    for v in vectors.to(dev, z.dtype):
        total = 0.0
        for s in (step, -step):
            moved = generator(z + s * v, y).float()
            if lpips is not None:
                total += float(lpips(moved, base).mean())
            else:
                total += float((moved - base).pow(2).flatten(1).mean(1).sqrt().mean())
        out.append(total / (2 * step))
    return torch.tensor(out)


def default_pca_layer(generator: Generator) -> str:
    """The middle block of G (GANSpace's choice of an early-to-middle layer: on the digits presets its components
    change the images more than those of the first or the last block)."""
    blocks = layer_names(generator)[1:]
    return blocks[len(blocks) // 2] if blocks else first_layer_name(generator)


def find_directions(generator: Generator, method: str, *, num: int = 10, layer: str | None = None,
                    lpips: nn.Module | None = None, seed: int = 0, samples: int = PCA_SAMPLES) -> Directions:
    """``num`` directions of ``generator`` by ``method`` (``sefa`` or ``pca``), ranked by measured effect.

    The method gives ``CANDIDATES_PER_DIRECTION * num`` components (at most ``z_dim``) in order of value; the
    ``num`` with the largest measured effect are kept, strongest first (``component``: their rank by value)."""
    if method not in METHODS:
        raise ParameterError("method", f"{method!r} is unknown; choose sefa or pca")
    if not 1 <= num <= MAX_DIRECTIONS:
        raise ParameterError("num", f"must be between 1 and {MAX_DIRECTIONS}, got {num}")
    generator = generator.eval().requires_grad_(False)
    pool = min(max(num, CANDIDATES_PER_DIRECTION * num), generator.z_dim)
    if method == "sefa":
        first = first_layer_name(generator)
        if layer is not None and layer not in (first, "latent"):
            raise ParameterError("layer", f"SeFa factorises the first layer ({first}); for {layer!r} use --method pca")
        try:
            weight = generator.latent_weight()
        except NotImplementedError as exc:
            raise UserError(f"{exc}; use --method pca") from None
        vectors, values = sefa(weight, pool)
        layer = first
    else:
        if layer in (None, ""):
            layer = default_pca_layer(generator)
        elif layer == "latent":
            layer = first_layer_name(generator)
        g = torch.Generator().manual_seed(seed + 1)
        z = whitened(generator.sample_latents(max(samples, 2 * generator.z_dim), generator=g).cpu())
        y = generator.class_labels(len(z), generator=g)
        vectors, values = pca_directions(layer_activations(generator, layer, y), z, pool)
    effect = measure_effect(generator, vectors, lpips, seed=seed)
    order = effect.argsort(descending=True, stable=True)[:num]
    return Directions(vectors[order], values[order], effect[order], order.long(), method, layer,
                      "lpips" if lpips is not None else "pixel", weights_sha256(generator.state_dict()))


def run_directions(checkpoint: str | os.PathLike, method: str, out: str | os.PathLike, *, num: int = 10,
                   layer: str | None = None, lpips_weights: str | None = None, seed: int = 0, device: str = "cpu",
                   ema: bool = True, overwrite: bool = False) -> tuple[Path, Directions]:
    """``gankit directions``: find, rank and write ``DIRS.safetensors``."""
    from gankit.api import load_generator
    from gankit.metrics.lpips import load_lpips_if_installed

    target = Path(out)
    if target.suffix != ".safetensors":
        raise ParameterError("out", f"{out} must end in .safetensors (DIRS.safetensors)")
    if method not in METHODS:
        raise ParameterError("method", f"{method!r} is unknown; choose sefa or pca")
    generator = load_generator(checkpoint, ema=ema, device=device)
    lpips = load_lpips_if_installed("alex", lpips_weights)
    if lpips is not None:
        lpips = lpips.to(generator.device)
    with claim_outputs([target], overwrite=overwrite):
        found = find_directions(generator, method, num=num, layer=layer, lpips=lpips, seed=seed)
        found.save(target)
    return target, found


def parse_direction(spec: str) -> tuple[str, int]:
    """``DIRS.safetensors:k`` (``k`` >= 0; without ``:k`` the top direction, 0) -> ``(path, k)``."""
    path, sep, index = spec.rpartition(":")
    if not sep or not index.lstrip("-").isdigit():
        return spec, 0
    k = int(index)
    if k < 0:
        raise ParameterError("direction", f"the direction index must be >= 0, got {k}")
    return path, k


def parse_strength(text: str) -> tuple[float, float]:
    """``A..B`` (e.g. ``-3..3``) or ``S`` (meaning ``-S..S``) -> ``(A, B)``, finite."""
    try:
        if ".." in text:
            lo, hi = (float(part) for part in text.split("..", 1))
        else:
            hi = abs(float(text))
            lo = -hi
    except ValueError:
        raise ParameterError("strength", f"expected A..B (e.g. -3..3) or a number, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
        raise ParameterError("strength", f"needs two different finite ends, got {text!r}")
    if max(abs(lo), abs(hi)) > 1000:
        raise ParameterError("strength", f"{text!r} is far outside the latent prior; use at most 1000")
    return lo, hi


__all__ = ["METHODS", "Directions", "find_directions", "fix_signs", "measure_effect", "parse_direction",
           "parse_strength", "pca_directions", "run_directions", "sefa", "whitened"]
