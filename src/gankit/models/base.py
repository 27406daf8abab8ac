"""What every model family shares: config (de)serialisation and the generator/discriminator interface.

The trainer, the CLI and the loaders only use this interface: ``G(z, y)``, ``G.sample(...)``, ``D(x, y)``,
``G.z_dim``, ``G.num_classes``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from gankit.errors import ParameterError, UserError
from gankit.io import PretrainedDir, atomic_write, model_card, save_generator_export
from gankit.nn import has_spectral_norm
from gankit.version import __version__

C = TypeVar("C", bound="ModelConfig")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the frozen per-family config dataclasses; stored as plain data in checkpoints."""

    family: ClassVar[str] = ""

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from plain data; unknown keys are an error (a typo must never become a default)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in data.items():
            if key == "family":
                if value != cls.family:
                    raise UserError(f"model.family is {value!r} but this is a {cls.family!r} config")
                continue
            if key not in fields:
                raise UserError(
                    f"unknown model key {key!r} for family {cls.family!r}{did_you_mean(key, list(fields))}; "
                    f"valid keys: {', '.join(fields)}"
                )
            if isinstance(value, list):
                value = tuple(value)
            values[key] = value
        cfg = cls(**values)
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
        """Raise :class:`UserError` on an impossible configuration."""


def check_integers(cfg: ModelConfig, names: tuple[str, ...], minimum: int) -> None:
    """Each named field is an int (not a bool) ``>= minimum``."""
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise UserError(f"model.{name} must be {what}, got {value!r}")


def check_conv_family(cfg: ModelConfig) -> None:
    """The checks every conv family (SAGAN, SN-GAN, DCGAN) shares: channels, widths, classes."""
    if cfg.channels not in (1, 3):  # type: ignore[attr-defined]
        raise UserError(f"model.channels must be 1 or 3, got {cfg.channels!r}")  # type: ignore[attr-defined]
    check_integers(cfg, ("z_dim", "g_conv_dim", "d_conv_dim", "sn_power_iterations"), 1)
    n = cfg.num_classes  # type: ignore[attr-defined]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"model.num_classes must be >= 0 (0 = unconditional), got {n!r}")


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
    if not isinstance(value, int) or value < low or value > high or value & (value - 1):
        raise UserError(f"model.{name} must be a power of two from {low} to {high}, got {value!r}")


class _Network(nn.Module):
    """What G and D share: the constructor preamble (validate the config, keep it, ``num_classes``) and loading
    weights written by any gankit version."""

    config: ModelConfig
    num_classes: int

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.num_classes = cfg.num_classes  # type: ignore[attr-defined]

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

    def load_weights(self, state: dict[str, torch.Tensor], source: object) -> None:
        """Load a saved state strictly: a missing, unexpected or wrongly shaped tensor is a one-line
        :class:`UserError` naming it and ``source`` (the file), never a silent partial load."""
        state = self.upgrade_state_dict(dict(state))
        self.adapt_to_state_dict(state)
        check_state_matches(self, state, source)
        nn.Module.load_state_dict(self, state)

    def pretrained_config(self) -> dict[str, Any]:
        """The flat ``config.json`` of a pretrained folder: the model config fields (``family`` included) and
        ``gankit_version``."""
        return {**self.config.to_dict(), "gankit_version": __version__}


class Generator(_Network):
    """Interface of every generator: ``forward(z (B, z_dim), y (B,) or None) -> (B, C, H, W)`` in [-1, 1]."""

    z_dim: int
    channels: int

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.z_dim, self.channels = cfg.z_dim, cfg.channels  # type: ignore[attr-defined]

    @property
    def image_size(self) -> int:
        """Side of the generated images (a growing model's current resolution)."""
        return self.config.image_size  # type: ignore[attr-defined]

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

    def pretrained_config(self) -> dict[str, Any]:
        """The flat ``config.json`` of a pretrained folder: the model config fields, ``gankit_version`` and the
        sampling convention (the keys of :attr:`gankit.io.PretrainedDir.META_KEYS`): latents ``z ~ N(0, I)`` of
        shape ``(z_dim,)``, no truncation, training images scaled to ``data_range``, outputs bounded to
        ``output_range`` (None: unbounded), evaluated in eval mode (BatchNorm running statistics)."""
        return {
            **super().pretrained_config(),
            "latent": "normal",
            "truncation": None,
            "data_range": [-1.0, 1.0],
            "output_range": self.output_range(),
            "eval_mode": True,
            "spectral_norm_folded": self.spectral_norm_folded(),
        }

    def model_card(
        self,
        repo_id: str | None = None,
        *,
        front_matter: dict[str, Any] | None = None,
        intro: tuple[str, ...] = (),
        sections: tuple[str, ...] = (),
    ) -> str:
        """The README.md of a pretrained folder: YAML front matter (``library_name``, ``pipeline_tag``, ``tags``,
        then ``front_matter``) and Markdown: what the model is, ``intro`` (e.g. the sample grid), how to load it
        (from ``repo_id``, or a placeholder), its sampling convention, then ``sections`` (training, evaluation)."""
        cfg, k = self.config, self.num_classes
        kind = f"class-conditional ({k} classes)" if k else "unconditional"
        size = self.image_size  # a growing model's current resolution: the one its weights produce
        front: dict[str, Any] = {
            "library_name": "gankit",
            "pipeline_tag": "unconditional-image-generation",
            "tags": ["gan", cfg.family, "pytorch", "class-conditional" if k else "unconditional"],
            **(front_matter or {}),
        }
        name = repo_id or "user/name"
        labels = f"torch.arange(16) % {k}" if k else "None"
        outputs = "in [-1, 1] (final tanh)" if self.output_range() else "unbounded (no final tanh; clamp to [-1, 1])"
        body = [
            f"# {repo_id or cfg.family + ' generator'}",
            f"A {kind} {cfg.family} generator of {size}x{size} images with {self.channels} channel(s), made with "
            "gankit.",
            *intro,
            "## Use\n\n```python\nimport torch\nimport gankit\n\n"
            f'G = gankit.load_generator("{name}")  # or the path of this folder\n'
            f"images = G.sample(16, labels={labels}, generator=torch.Generator().manual_seed(0))\n"
            f"# images: (16, {self.channels}, {size}, {size}) float tensor\n```\n\n"
            f"On the command line: `gankit sample --checkpoint {name} --num 64 --out samples.png`.",
            "## Sampling convention\n\n"
            f"- latents: `z ~ N(0, I)` of shape `(B, {self.z_dim})` (`G.sample_latents`), not truncated\n"
            + (f"- labels: class ids `0..{k - 1}` of shape `(B,)`: `G(z, y)`\n" if k else "- no labels: `G(z)`\n")
            + f"- outputs: `(B, {self.channels}, {size}, {size})`, {outputs}; training images were scaled to "
            "[-1, 1], so pixel values are `(x + 1) * 127.5`\n"
            "- eval mode: BatchNorm uses its running statistics (`gankit.load_generator` returns G in eval mode)\n"
            "- `config.json` holds the model config and this convention, `model.safetensors` the weights: the "
            "layout of `huggingface_hub.PyTorchModelHubMixin`",
            *sections,
        ]
        return model_card(front, "\n\n".join(body))

    def save_pretrained(self, folder: str | os.PathLike, *, overwrite: bool = False, card: str | None = None) -> Path:
        """Write this generator as a pretrained folder (:class:`gankit.io.PretrainedDir`): ``model.safetensors``
        (its state dict), the flat ``config.json`` (:meth:`pretrained_config`) and ``README.md`` (``card``, by
        default :meth:`model_card`). ``gankit.load_generator(folder)`` and PyTorchModelHubMixin classes read it.
        A non-empty ``folder`` is refused unless ``overwrite``. ``gankit.save_pretrained`` adds a sample grid, the
        training recipe, evaluation results and optionally the discriminator."""
        out = PretrainedDir(folder)
        out.prepare(overwrite)
        out.write(self.state_dict(), self.pretrained_config())
        atomic_write(out.card, self.model_card() if card is None else card)
        return out.root

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
