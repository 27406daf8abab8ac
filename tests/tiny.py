"""Every tiny model and run config the tests build, in one place: widths of 2-16 channels, 16x16 images (28x28
and 32x32 for the SN-GAN architectures made for them), so a network builds in milliseconds and a training step
on the CPU takes a fraction of a second.

- Model configs of each family: :func:`sagan_config`, :func:`sngan_config`, :func:`dcgan_config`,
  :func:`pgan_config`, each a fixed tiny base that keyword arguments change.
- One tiny config per registered family for the tests every family goes through: :func:`family_config`
  (:data:`FAMILY_FIELDS`, :data:`VARIANTS`), with :func:`labels_for` and :func:`grown`.
- Run configs: :func:`model_run` and :func:`augmentation_run` (of one of those), :func:`sagan_digits_run` (the
  ``sagan-digits`` preset shrunk), :func:`trainer_run` (that, on the schedule the trainer tests use),
  :func:`pgan_digits_run`, and :func:`family_run` over :data:`TINY_MODELS` with :func:`synthetic_batches` to
  train on; :func:`seeded_batches` for any run.
- Command lines: :data:`TINY_SETS` (``--set`` flags that shrink the ``sagan-digits`` preset), :data:`WIDTH_SETS`,
  :data:`CELEBA64_AT_16_SETS`, :data:`SNGAN_WIDTH_SETS`, :func:`tiny_sets`, :func:`set_flags`.
- Generators with weights that make their outputs depend on classes and attention: :func:`lively_sagan`,
  :func:`attentive_sagan`, :func:`seeded_dcgan`.
"""

from __future__ import annotations

from typing import Any

import torch

from gankit.config import RunConfig, resolve_config
from gankit.data import TensorBatches
from gankit.models import FAMILIES, DCGANConfig, DCGANGenerator, SAGANConfig, SAGANGenerator, SNGANConfig
from gankit.models.base import ModelConfig
from gankit.models.pgan import PGANConfig
from gankit.nn import SelfAttention2d

# ------------------------------------------------------------------------------------------ model configs


def sagan_config(**changes: Any) -> SAGANConfig:
    """A 16x16 greyscale, 10-class SAGAN (z 16, widths 8, attention at 8x8 in G and D); ``changes`` replace
    fields."""
    base: dict[str, Any] = dict(
        image_size=16,
        channels=1,
        z_dim=16,
        g_conv_dim=8,
        d_conv_dim=8,
        g_attention_resolutions=(8,),
        d_attention_resolutions=(8,),
        num_classes=10,
    )
    return SAGANConfig(**{**base, **changes})


def sngan_config(arch: str, **changes: Any) -> SNGANConfig:
    """A greyscale SN-GAN of architecture ``arch`` (28x28 for ``mnist``, else 32x32; z 8, widths 4)."""
    base: dict[str, Any] = dict(arch=arch, image_size=28 if arch == "mnist" else 32, channels=1, z_dim=8,
                                g_conv_dim=4, d_conv_dim=4)  # fmt: skip
    return SNGANConfig(**{**base, **changes})


def dcgan_config(**changes: Any) -> DCGANConfig:
    """A 16x16 greyscale unconditional DCGAN (z 8, widths 8)."""
    base: dict[str, Any] = dict(image_size=16, channels=1, z_dim=8, g_conv_dim=8, d_conv_dim=8)
    return DCGANConfig(**{**base, **changes})


def pgan_config(**changes: Any) -> PGANConfig:
    """A Progressive GAN growing 4 -> 8 -> 16 (depths 8, 8, 4; 3, 6 and 4 steps per scale, fades of 4 steps that
    move alpha every step), greyscale, z 8."""
    base: dict[str, Any] = dict(image_size=16, channels=1, z_dim=8, depths=(8, 8, 4), steps_per_scale=(3, 6, 4),
                                fade_steps=4, fade_every=1)  # fmt: skip
    return PGANConfig(**{**base, **changes})


# ------------------------------------------------------------------------------ one config per family

# family -> the tiny config fields the tests of every family share (widths 4-16)
FAMILY_FIELDS: dict[str, dict[str, Any]] = {
    "sagan": dict(z_dim=8, g_conv_dim=8, d_conv_dim=8, max_channels=16, g_attention_resolutions=(8,),
                  d_attention_resolutions=(8,)),
    "sngan": dict(arch="resnet", z_dim=8, g_conv_dim=8, d_conv_dim=8),
    "dcgan": dict(z_dim=8, g_conv_dim=4, d_conv_dim=4),
    "biggan": dict(z_dim=8, g_ch=8, d_ch=8, shared_dim=8, g_attention_blocks=(0,), d_attention_blocks=(0,)),
    "pgan": dict(z_dim=8),
}  # fmt: skip
VARIANTS = [(family, k) for family in FAMILY_FIELDS for k in (0, 3)]  # unconditional and 3-class conditional


def family_config(family: str, image_size: int = 16, num_classes: int = 0, **changes: Any) -> ModelConfig:
    """The tiny greyscale config of ``family`` (:data:`FAMILY_FIELDS`) at ``image_size``; a PGAN gets one scale
    of depth 8 and 2 steps per resolution up to it, with fades of 1 step."""
    fields = {**FAMILY_FIELDS[family], "image_size": image_size, "channels": 1, "num_classes": num_classes, **changes}
    if family == "pgan":
        n = image_size.bit_length() - 2
        fields.update(depths=(8,) * n, steps_per_scale=(2,) * n, fade_steps=1)
    return FAMILIES[family].config.from_dict(fields)


def labels_for(cfg: ModelConfig, n: int) -> torch.Tensor | None:
    """``n`` labels cycling through the classes of a conditional config; None for an unconditional one."""
    return torch.arange(n) % cfg.num_classes if cfg.num_classes else None


def grown(G: torch.nn.Module) -> torch.nn.Module:
    """A growing network at its final scale, fully faded in; others as they are."""
    if getattr(G, "grows_progressively", False):
        G.set_scale(G.config.num_scales - 1)
    return G


# ------------------------------------------------------------------------------------------ run configs


def model_run(model: ModelConfig, *, preset: str | None = None, description: str = "", **training: Any) -> RunConfig:
    """A run of ``model`` in batches of 4 on the CPU without tensorboard (``training`` sets further training keys),
    read and checked as a config file is."""
    return RunConfig.from_dict({
        "preset": preset,
        "description": description,
        "model": model.to_dict(),
        "training": {"batch_size": 4, "device": "cpu", "tensorboard": False, **training},
    })  # fmt: skip


def augmentation_run(family: str, k: int, loss: str, augment: str, **training: Any) -> RunConfig:
    """:func:`model_run` of ``family_config(family, num_classes=k)``: 4 steps of ``loss`` with ``augment``, logging
    every step, a checkpoint every 2 (``training`` changes those too)."""
    t = {"steps": 4, "loss": loss, "augment": augment, "log_every": 1, "checkpoint_every": 2, **training}
    return model_run(family_config(family, num_classes=k), **t)


def seeded_batches(cfg: RunConfig, n: int) -> TensorBatches:
    """``n`` seeded uniform images in [-1, 1] of ``cfg``'s shape, labels cycling through its classes
    (:func:`labels_for`), in batches of its batch size."""
    g = torch.Generator().manual_seed(0)
    m = cfg.model
    images = torch.rand(n, m.channels, m.image_size, m.image_size, generator=g) * 2 - 1
    return TensorBatches(images, labels_for(m, n), batch_size=cfg.training.batch_size, seed=0, device="cpu")


# model-section overrides that shrink the sagan-digits preset (16x16, 10 classes) to seconds of CPU
SAGAN_DIGITS_WIDTHS: dict[str, Any] = {"z_dim": 16, "g_conv_dim": 8, "d_conv_dim": 8}


def sagan_digits_run(*, model: dict[str, Any] | None = None, **training: Any) -> RunConfig:
    """The ``sagan-digits`` preset with :data:`SAGAN_DIGITS_WIDTHS` (and ``model`` over them), batch 8, on the
    CPU, without tensorboard; ``training`` sets further training keys."""
    overrides = {
        "model": {**SAGAN_DIGITS_WIDTHS, **(model or {})},
        "training": {"batch_size": 8, "device": "cpu", "tensorboard": False, **training},
    }
    return resolve_config("sagan-digits", overrides=overrides)


def trainer_run(**training: Any) -> RunConfig:
    """:func:`sagan_digits_run` logging every 2 steps, sampling and checkpointing every 3 (``training`` may change
    those too)."""
    return sagan_digits_run(**{"log_every": 2, "sample_every": 3, "checkpoint_every": 3, **training})


def pgan_digits_run(steps: int, **model: Any) -> RunConfig:
    """The ``pgan-digits`` preset growing 4 -> 8 -> 16 in 3, 6 and 4 steps (fades of 4; depths 8, 8, 4; z 8),
    ``steps`` long, logging every step, sampling and checkpointing every 5; ``model`` sets further model keys."""
    overrides = {
        "model": {"z_dim": 8, "depths": [8, 8, 4], "steps_per_scale": [3, 6, 4], "fade_steps": 4, **model},
        "training": {
            "steps": steps,
            "batch_size": 8,
            "log_every": 1,
            "sample_every": 5,
            "checkpoint_every": 5,
            "device": "cpu",
            "tensorboard": False,
        },
    }
    return resolve_config("pgan-digits", overrides=overrides)


# Tiny models of every family / architecture (widths 4-8), as model sections of a run config.
TINY_MODELS: dict[str, dict[str, Any]] = {
    "sagan": sagan_config(z_dim=8).to_dict(),
    "sngan-mnist": sngan_config("mnist", d_batch_norm=True, d_leaky_slope=0.2, init="normal").to_dict(),
    "sngan-cnn": sngan_config("cnn", image_size=16, channels=3).to_dict(),
    "sngan-resnet": sngan_config("resnet", image_size=16, channels=3, g_conv_dim=8, d_conv_dim=8).to_dict(),
    "sngan-proj": sngan_config("resnet", image_size=16, channels=3, g_conv_dim=8, d_conv_dim=8,
                               num_classes=10).to_dict(),
    "dcgan": dcgan_config().to_dict(),
}  # fmt: skip


def family_run(name: str, loss: str, **model: Any) -> RunConfig:
    """One step of ``loss`` on the :data:`TINY_MODELS` entry ``name`` (``model`` changes it), batch 4, on the
    CPU, the digits as the data section."""
    m = {**TINY_MODELS[name], **model}
    training = {"batch_size": 4, "loss": loss, "device": "cpu", "tensorboard": False, "steps": 1, "n_critic": 1}
    return RunConfig.from_dict({"model": m, "data": {"dataset": "digits"}, "training": training})


def synthetic_batches(cfg: RunConfig) -> TensorBatches:
    """16 seeded uniform images in [-1, 1] of ``cfg``'s shape (with 10-class labels for a conditional model), in
    batches of its batch size."""
    g = torch.Generator().manual_seed(0)
    m = cfg.model
    images = torch.rand(16, m.channels, m.image_size, m.image_size, generator=g) * 2 - 1
    labels = torch.randint(10, (16,), generator=g) if m.num_classes else None
    return TensorBatches(images, labels, batch_size=cfg.training.batch_size, seed=0, device=torch.device("cpu"))


# ------------------------------------------------------------------------------------------ command lines


def _yaml(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def tiny_sets(**training: Any) -> list[str]:
    """``section.key=value`` assignments that shrink the ``sagan-digits`` preset (:data:`SAGAN_DIGITS_WIDTHS`),
    then ``training.key=value`` for each of ``training``."""
    return [*(f"model.{k}={v}" for k, v in SAGAN_DIGITS_WIDTHS.items()),
            *(f"training.{k}={_yaml(v)}" for k, v in training.items())]  # fmt: skip


def set_flags(assignments: list[str]) -> list[str]:
    """``["--set", a1, "--set", a2, ...]``."""
    return [arg for assignment in assignments for arg in ("--set", assignment)]


# --set flags for CLI runs of the sagan-digits preset: seconds, not minutes.
TINY_SETS = set_flags(tiny_sets(log_every=2, sample_every=2, batch_size=8))
# --set flags of the sagan-digits widths alone (for other SAGAN presets)
WIDTH_SETS = set_flags(tiny_sets())
# sagan-celeba64 shrunk to 16x16, for the tests that are not about the preset itself
CELEBA64_AT_16_SETS = [
    *set_flags(["model.image_size=16", "model.g_attention_resolutions=[8]", "model.d_attention_resolutions=[8]",
                "training.tensorboard=false"]),
    *TINY_SETS,
]
# SN-GAN presets with widths of 8
SNGAN_WIDTH_SETS = set_flags(["model.g_conv_dim=8", "model.d_conv_dim=8", "training.tensorboard=false"])


# ------------------------------------------------------------------------------------------ generators


def lively_sagan(num_classes: int = 10, seed: int = 0) -> SAGANGenerator:
    """A :func:`sagan_config` generator, eval mode without gradients, untrained but with a class and an attention
    that matter: its conditional batch-norm parameters are perturbed and every attention gamma is 0.25."""
    torch.manual_seed(seed)
    g = SAGANGenerator(sagan_config(num_classes=num_classes)).eval().requires_grad_(False)
    for name, p in g.named_parameters():
        if ".norm." in name:  # class-conditional batch norm starts the same for every class
            p.add_(torch.randn(p.shape) * 0.5)
        if name.endswith("gamma"):
            p.fill_(0.25)
    return g


def attentive_sagan(**changes: Any) -> SAGANGenerator:
    """A :func:`sagan_config` generator with z 8 and attention at 4x4 and 8x8 in G (``changes`` replace fields),
    seeded with 0, every attention gamma 0.5 (it starts at 0), in eval mode."""
    cfg = sagan_config(**{"z_dim": 8, "g_attention_resolutions": (4, 8), **changes})
    torch.manual_seed(0)
    G = SAGANGenerator(cfg)
    with torch.no_grad():  # make attention matter to the image as it does after training
        for block in G.modules():
            if isinstance(block, SelfAttention2d):
                block.gamma.fill_(0.5)
    return G.eval()


def seeded_dcgan() -> DCGANGenerator:
    """A :func:`dcgan_config` generator seeded with 0, in eval mode without gradients."""
    torch.manual_seed(0)
    return DCGANGenerator(dcgan_config()).eval().requires_grad_(False)
