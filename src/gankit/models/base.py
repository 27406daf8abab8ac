"""What every model family shares: config (de)serialisation and the generator/discriminator interface.

The trainer, the CLI and the loaders only use this interface: ``G(z, y)``, ``G.sample(...)``, ``D(x, y)``,
``G.z_dim``, ``G.num_classes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from gankit.errors import ParameterError, UserError, build_section, check_field_types, check_number
from gankit.io import save_generator_export
from gankit.nn import fold_spectral_norm, has_spectral_norm

C = TypeVar("C", bound="ModelConfig")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the frozen per-family config dataclasses; stored as plain data in checkpoints.

    The fields every family has are declared here; a family redeclares one to change its default. Every field's
    type is checked when a config is made (:func:`gankit.errors.check_field_types`), its range by :meth:`validate`.
    """

    family: ClassVar[str] = ""

    image_size: int = 64  # side of the generated images (a growing model's final resolution)
    channels: int = 3  # 1 (greyscale) or 3 (RGB)
    z_dim: int = 128  # latent size
    num_classes: int = 0  # > 0: class-conditional with this many classes

    def __post_init__(self) -> None:
        check_field_types(self, "model")

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from plain data; unknown keys are an error (a typo must never become a default)."""
        values = dict(data)
        family = values.pop("family", cls.family)
        if family != cls.family:
            raise UserError(f"model.family is {family!r} but this is a {cls.family!r} config")
        cfg = build_section(cls, values, "model", unknown_hint=f" for family {cls.family!r}")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings), with the family name."""
        out: dict[str, Any] = {"family": self.family}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def validate(self) -> None:
        """Raise :class:`UserError` on an impossible configuration (the types were checked when it was made)."""


def check_conv_family(cfg: ModelConfig) -> None:
    """The checks every conv family (SAGAN, SN-GAN, DCGAN) shares: channels, widths, classes."""
    if cfg.channels not in (1, 3):
        raise UserError(f"model.channels must be 1 or 3, got {cfg.channels!r}")
    for name in ("z_dim", "g_conv_dim", "d_conv_dim", "sn_power_iterations"):
        check_number(f"model.{name}", getattr(cfg, name), integer=True, low=1)
    check_number("model.num_classes", cfg.num_classes, integer=True, low=0, hint=" (0 = unconditional)")


def check_state_matches(
    module: nn.Module, state: dict[str, torch.Tensor], source: object, *, skip: tuple[str, ...] = (), hint: str = ""
) -> None:
    """Raise a one-line :class:`UserError` naming the first tensor of ``state`` that ``module`` cannot take
    (missing, wrong shape, or unexpected); ``skip`` names module entries not expected in ``state``."""
    own = {k: v for k, v in module.state_dict().items() if k not in skip}
    for key, value in own.items():
        if key not in state:
            raise UserError(f"{source} does not match the model: tensor {key!r} is missing{hint}")
        if state[key].shape != value.shape:
            raise UserError(
                f"{source} does not match the model: {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(value.shape)}{hint}"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise UserError(f"{source} does not match the model: unexpected tensor {extra[0]!r}{hint}")


def check_power_of_two(name: str, value: int, low: int, high: int) -> None:
    """``model.{name}`` is a power of two in ``low .. high`` (its type was checked when the config was made)."""
    if not low <= value <= high or value & (value - 1):
        raise UserError(f"model.{name} must be a power of two from {low} to {high}, got {value!r}")


def check_truncation(truncation: object) -> float:
    """``truncation`` as a float; a :class:`ParameterError` unless it is a finite number > 0 (None, meaning no
    truncation, is for the callers to handle)."""
    if isinstance(truncation, bool) or not isinstance(truncation, numbers.Real) or not 0 < truncation < math.inf:
        raise ParameterError("truncation", f"must be a number > 0 (leave it out for none), got {truncation!r}")
    return float(truncation)


def truncated_normal_std(truncation: float) -> float:
    """Standard deviation of ``N(0, 1)`` restricted to ``[-T, T]``: ``sqrt(1 - 2 T phi(T) / erf(T / sqrt 2))``
    (0.284 at T = 0.5, 0.540 at 1, 0.880 at 2, 1 for large T; ``T / sqrt 3`` as T -> 0)."""
    t = check_truncation(truncation)
    if t < 1e-2:  # the closed form cancels; the series' next term is below 1e-10 of the value
        return t / math.sqrt(3) * math.sqrt(1 - 2 * t * t / 15)
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(1 - 2 * t * phi / math.erf(t / math.sqrt(2)))


def truncated_normal(z: torch.Tensor, truncation: float) -> torch.Tensor:
    """The truncation of standard normal latents ``z`` that :meth:`Generator.sample_latents` applies: a function
    of ``z`` alone (no random numbers of its own), with i.i.d. unit-variance truncated normal coordinates.

    Coordinates inside ``[-T, T]`` are kept; one beyond is redrawn inside, at the point of the same tail
    quantile: ``v = erfc(|z_i| / sqrt 2) / erfc(T / sqrt 2)``, uniform on (0, 1) given ``|z_i| > T``, goes to
    ``sqrt(2) erfinv(sign(z_i) v erf(T / sqrt 2))``, which is ``N(0, 1)`` restricted to ``[-T, T]``, exactly as a
    fresh draw (a value just past T stays near T, the far tail lands near 0). Then all is divided by
    :func:`truncated_normal_std`. So a seed's latents depend on T continuously (equal to the untruncated ones
    when nothing is beyond T), and the random numbers drawn, hence labels drawn next and batching, are those
    of no truncation.
    """
    t = check_truncation(truncation)
    x = z.double()
    outside = x.abs() > t
    if outside.any():
        tail = x[outside]
        v = torch.special.erfc(tail.abs() / math.sqrt(2)) / math.erfc(t / math.sqrt(2))
        x[outside] = (torch.special.erfinv(tail.sign() * v * math.erf(t / math.sqrt(2))) * math.sqrt(2)).clamp_(-t, t)
    return (x / truncated_normal_std(t)).to(z.dtype)


N = TypeVar("N", bound="_Network")


def latent_matrix(layer: nn.Module, z_dim: int) -> torch.Tensor:
    """The ``(features, z_dim)`` matrix of a first layer that maps the latent linearly: a ``Linear`` (its weight),
    a transposed convolution applied to the latent as a ``(B, z_dim, 1, 1)`` map (each output pixel is
    ``W[:, :, i, j]^T z``: the kernel read as ``(out * kh * kw, z_dim)``), or an equalised linear (weight times its
    run-time scale). Effective eval-mode weights: spectral norm applied, detached, float32, on the CPU."""
    with torch.no_grad():
        weight = layer.weight.detach().float().cpu() * float(getattr(layer, "scale", 1.0))
        if isinstance(layer, nn.ConvTranspose2d):
            matrix = weight.permute(1, 2, 3, 0).reshape(-1, weight.shape[0])
        else:
            matrix = weight.reshape(weight.shape[0], -1)
    if matrix.shape[1] < z_dim:
        raise NotImplementedError(f"the first layer takes {matrix.shape[1]} inputs, fewer than z_dim {z_dim}")
    return matrix[:, :z_dim].contiguous()


class _Network(nn.Module):
    """What G and D share: the constructor preamble (validate the config, keep it, ``num_classes``), building a
    network from stored weights (:meth:`from_state`) and loading weights written by any gankit version."""

    config_class: ClassVar[type[ModelConfig]]  # each family's G and D name their config class
    config: ModelConfig
    num_classes: int

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.num_classes = cfg.num_classes

    @classmethod
    def upgrade_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` with the tensor names of older gankit versions mapped to this version's (identity here;
        a family whose layout changed overrides it). Applied by :meth:`load_state_dict`."""
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """``nn.Module.load_state_dict`` after :meth:`upgrade_state_dict` (old checkpoints keep loading) and
        :meth:`adapt_to_state_dict` (a growing model takes the saved scale first)."""
        state = self.upgrade_state_dict(dict(state_dict))
        self.adapt_to_state_dict(state)
        return super().load_state_dict(state, strict=strict, assign=assign)

    def adapt_to_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Change the architecture to the one ``state`` was saved with, where a family can (a growing model's
        scale); a no-op for fixed architectures."""

    @classmethod
    def family_class(cls: type[N], config: ModelConfig) -> type[N]:
        """The subclass of ``cls`` whose ``config_class`` is ``config``'s class (``Generator.family_class(cfg)`` is
        e.g. ``SAGANGenerator``); a :class:`UserError` when no family's class takes that config."""
        if getattr(cls, "config_class", None) is type(config):
            return cls
        for sub in cls.__subclasses__():
            try:
                return sub.family_class(config)
            except UserError:
                continue
        raise UserError(f"no {cls.__name__} takes a {type(config).__name__} (family {config.family!r})")

    @classmethod
    def from_state(
        cls: type[N],
        config: ModelConfig,
        state: dict[str, torch.Tensor],
        *,
        source: object,
        folded: bool = False,
        hint: str = "",
    ) -> N:
        """The one way a network is built from stored weights: the family's network for ``config``, with ``state``
        loaded strictly (:meth:`load_weights`; ``source`` names the file in messages). ``folded``: the stored weights
        have spectral norm folded in (see :data:`gankit.io.SPECTRAL_NORM_FOLDED`), so the fresh network is folded
        the same way first. ``hint`` ends the message of a mismatch (e.g. the source's own config). Called on the
        base class it picks the family (``Generator.from_state(cfg, ...)``)."""
        network = cls.family_class(config)(config)
        if folded:
            fold_spectral_norm(network.eval())
        network.load_weights(state, source, hint=hint)
        return network

    def load_weights(self, state: dict[str, torch.Tensor], source: object, *, hint: str = "") -> None:
        """Load a saved state strictly: a missing, unexpected or wrongly shaped tensor is a one-line
        :class:`UserError` naming it and ``source`` (the file), never a silent partial load."""
        state = self.upgrade_state_dict(dict(state))
        self.adapt_to_state_dict(state)
        check_state_matches(self, state, source, hint=hint)
        nn.Module.load_state_dict(self, state)


class Generator(_Network):
    """Interface of every generator: ``forward(z (B, z_dim), y (B,) or None) -> (B, C, H, W)`` in [-1, 1]."""

    z_dim: int
    channels: int

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.z_dim, self.channels = cfg.z_dim, cfg.channels

    @property
    def image_size(self) -> int:
        """Side of the generated images (a growing model's current resolution)."""
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_export(self, path: str | os.PathLike, **meta: str) -> Path:
        """This generator as one safetensors file with its config in the metadata (``gankit.load_generator``
        reads it back); ``meta`` adds metadata strings."""
        return save_generator_export(self.state_dict(), self.config.to_dict(), path, **meta)

    def output_range(self) -> list[float] | None:
        """The range a final tanh bounds the outputs to, ``[-1, 1]``; None when they are unbounded (a Progressive
        GAN without ``output_tanh``: raw to_rgb outputs, trained toward [-1, 1], clamped for display)."""
        return None if getattr(self.config, "output_tanh", True) is False else [-1.0, 1.0]

    def latent_weight(self) -> torch.Tensor:
        """The first layer's linear map from the latent, as a ``(features, z_dim)`` matrix ``A`` with
        ``first_layer_preactivation(z) = A @ z + b`` (eval-mode effective weight: spectral norm and equalised-lr
        scales applied; columns of latent dims that do not enter the first layer are zero). What closed-form
        direction finding (SeFa) factorises; every family starts with such a map."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its first layer's latent map")

    def latent_layer(self) -> str:
        """The name of the submodule whose weight :meth:`latent_weight` reads (its output is ``A @ z + b``; some
        families compute it without calling the module, so hooks on it may see nothing)."""
        raise NotImplementedError(f"{type(self).__name__} does not name its first layer")

    def traceable(self) -> contextlib.AbstractContextManager[None]:
        """A context within which ``forward`` can be traced for export (``torch.export``, ONNX) at this generator's
        current state: what a family decides in Python from a buffer's value (a Progressive GAN's fade-in) is
        fixed at entry. Eager outputs inside are those outside. No-op for the fixed architectures."""
        return contextlib.nullcontext()

    def spectral_norm_folded(self) -> bool:
        """True when the spectral norm this family's config puts in G was folded into plain weights
        (``gankit export --fold-sn``): a loader must fold a fresh model the same way before loading them."""
        if any(has_spectral_norm(m) for m in self.modules()):
            return False
        flags = [getattr(self.config, f.name) for f in dataclasses.fields(self.config) if "spectral_norm" in f.name]
        if not any(flag is True for flag in flags):
            return False  # the config puts spectral norm nowhere (no need to build the model to ask it)
        # Build the config's architecture to see whether it has spectral norm in G (the flags also cover D).
        # On the CPU, with the caller's random state kept: the meta device would import torch._dynamo (seconds).
        with torch.random.fork_rng(devices=[]):
            fresh = type(self)(self.config)
        return any(has_spectral_norm(m) for m in fresh.modules())

    def sample_latents(
        self, n: int, generator: torch.Generator | None = None, truncation: float | None = None
    ) -> torch.Tensor:
        """``(n, z_dim)`` standard normal latents; with ``truncation`` T, the truncation trick's latents.

        The one function that draws latents for every path (``G.sample``, ``gankit sample``, ``gankit
        interpolate``, ``gankit evaluate``, the explorer), so a seed and T give the same latents everywhere.
        Drawn on the CPU (from ``generator`` when given) so a seed gives the same latents on every device.

        Truncation (:func:`truncated_normal`): each coordinate of the normal draw that falls outside ``[-T, T]`` is
        redrawn inside it (BigGAN's rule, Brock et al. 2019), then the latent is divided by the truncated
        normal's standard deviation :func:`truncated_normal_std` so that ``E|z|^2 = z_dim`` as for the untruncated
        prior. Every ``|z_i| <= T / truncated_normal_std(T)`` (1.73-2.3 for T up to 2), and ``|z|`` stays at the
        prior's typical ``sqrt(z_dim)``. For T >= 7 the latents are those of no truncation (a normal draw is beyond
        7 with probability 3e-12, and the scale is 1 to float32 precision), so large T is no truncation.

        Why the rescale: BigGAN's truncated normal alone also shrinks the latent norm (``|z|`` 11.3 -> 3.2 at
        T = 0.5 for z_dim 128), and the batch-normalised generators here (SAGAN, SN-GAN, DCGAN) map small-norm
        latents off the range their eval-mode batch-norm statistics were collected on: the ``sagan-digits`` demo
        gave G(0) all black, near-black images at T = 0.5 (FID 48 against 0.36 untruncated, precision 0.02) and
        FID 10 at T = 1 (``benchmarks/truncation.py``; with the rescale FID 0.36-0.38 at T = 2, 1 and 0.5).
        Their latent enters through a linear layer, so only the latents' scale, not the shape of each
        coordinate's distribution, reaches the image; keeping the scale keeps samples as good as untruncated ones
        at every T (the precision / diversity trade-off of BigGAN's truncation needs a generator trained for
        it, such as BigGAN with orthogonal regularisation). Progressive GANs normalise the latent anyway.
        """
        t = None if truncation is None else check_truncation(truncation)  # refused before anything is drawn
        z = torch.randn(n, self.z_dim, generator=generator)
        if t is not None:
            z = truncated_normal(z, t)
        return z.to(self.device)

    def check_class_id(self, class_id: int | None, param: str = "class_id") -> None:
        """The one check of a class id given by a caller: in ``0..num_classes-1``, and only for conditional
        models (None always passes)."""
        if class_id is None:
            return
        if self.num_classes == 0:
            raise ParameterError(param, "is not for this generator: it is unconditional (drop it)")
        if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < self.num_classes:
            raise ParameterError(
                param, f"{class_id} is out of range: this generator has classes 0..{self.num_classes - 1}"
            )

    def class_labels(
        self, n: int, *, class_id: int | None = None, balanced: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """``(n,)`` int64 labels on the CPU: all ``class_id``, or cycling ``0..K-1`` (``balanced``), or uniform
        random (from ``generator``); None for an unconditional model."""
        self.check_class_id(class_id)
        if self.num_classes == 0:
            if balanced:
                raise ParameterError("balanced", "is not for this generator: it is unconditional (drop it)")
            return None
        if class_id is not None:
            return torch.full((n,), class_id, dtype=torch.long)
        if balanced:
            return torch.arange(n) % self.num_classes
        return torch.randint(self.num_classes, (n,), generator=generator)

    def check_labels(self, y: torch.Tensor | None, batch: int) -> None:
        """``forward``'s argument check (a programming error, not a user's: ``ValueError``)."""
        if self.num_classes == 0:
            if y is not None:
                raise ValueError("this generator is unconditional: call G(z) without labels")
            return
        if y is None:
            raise ValueError(f"this generator is class-conditional ({self.num_classes} classes): call G(z, y)")
        if y.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(y.shape)}")

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | list[int] | int | None = None,
        generator: torch.Generator | None = None,
        truncation: float | None = None,
    ) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)``; ``labels`` a class id, a list, ``(n,)`` tensor or None (random)."""
        if isinstance(labels, int):
            self.check_class_id(labels, "labels")
        elif labels is not None and self.num_classes == 0:
            raise ParameterError("labels", "are not for this generator: it is unconditional (drop them)")
        z = self.sample_latents(n, generator, truncation)
        if self.num_classes == 0:
            return self(z)
        if labels is None:
            y = self.class_labels(n, generator=generator)
        else:
            y = torch.as_tensor(labels, dtype=torch.long)
            if y.dim() == 0:
                y = y.expand(n)
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ParameterError("labels", f"must be class ids in 0..{self.num_classes - 1}")
        return self(z, y.to(self.device))


class Discriminator(_Network):
    """Interface of every discriminator: ``forward(x (B, C, H, W), y (B,) or None) -> (B,)`` logits."""

    @property
    def batch_independent(self) -> bool:
        """Whether each logit depends on its own sample only: no batch norm and no layer that mixes samples
        (a module with ``mixes_samples = True``, e.g. minibatch stddev). Then reals and fakes can go through D as
        one batch (:meth:`gankit.losses.AdversarialLoss.discriminator_loss` does)."""
        return not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "mixes_samples", False)
            for m in self.modules()
        )
