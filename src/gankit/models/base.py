"""What every model family shares: config (de)serialisation and the generator/discriminator interface.

The trainer, the CLI and the loaders only use this interface: ``G(z, y)``, ``G.sample(...)``, ``D(x, y)``,
``G.z_dim``, ``G.num_classes``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from gankit.checks import build_section, check_field_types, check_number
from gankit.errors import ParameterError, UserError
from gankit.io import save_generator_export
from gankit.nn import fold_spectral_norm, has_spectral_norm

C = TypeVar("C", bound="ModelConfig")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the frozen per-family config dataclasses; stored as plain data in checkpoints.

    The fields every family has are declared here; a family redeclares one to change its default. Every field's
    type is checked when a config is made (:func:`gankit.checks.check_field_types`), its range by :meth:`validate`.
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


N = TypeVar("N", bound="_Network")


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
        """``(n, z_dim)`` standard normal latents; with ``truncation`` T, normal truncated to ``[-T, T]``.

        Drawn on the CPU (from ``generator`` when given) so a seed gives the same latents on every device.
        """
        if truncation is None:
            z = torch.randn(n, self.z_dim, generator=generator)
        else:
            if not truncation > 0:
                raise ParameterError("truncation", f"must be > 0, got {truncation}")
            # Inverse-CDF sampling of the truncated normal: exact and one pass, unlike rejection.
            lo = 0.5 * (1 + math.erf(-truncation / math.sqrt(2)))
            u = torch.rand(n, self.z_dim, generator=generator, dtype=torch.float64) * (1 - 2 * lo) + lo
            z = (torch.special.erfinv(2 * u - 1) * math.sqrt(2)).float().clamp_(-truncation, truncation)
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
