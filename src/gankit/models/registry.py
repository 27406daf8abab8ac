"""Families by name: config class, generator and discriminator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gankit.errors import UserError
from gankit.models.base import Discriminator, Generator, ModelConfig, did_you_mean
from gankit.models.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator
from gankit.models.pgan import PGANConfig, ProgressiveDiscriminator, ProgressiveGenerator
from gankit.models.sagan import SAGANConfig, SAGANDiscriminator, SAGANGenerator
from gankit.models.sngan import SNGANConfig, SNGANDiscriminator, SNGANGenerator


@dataclass(frozen=True)
class Family:
    name: str
    config: type[ModelConfig]
    generator: type[Generator]
    discriminator: type[Discriminator]


FAMILIES: dict[str, Family] = {
    "sagan": Family("sagan", SAGANConfig, SAGANGenerator, SAGANDiscriminator),
    "pgan": Family("pgan", PGANConfig, ProgressiveGenerator, ProgressiveDiscriminator),
    "sngan": Family("sngan", SNGANConfig, SNGANGenerator, SNGANDiscriminator),
    "dcgan": Family("dcgan", DCGANConfig, DCGANGenerator, DCGANDiscriminator),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(
            f"unknown model family {name!r}{did_you_mean(name, list(FAMILIES))}; known: {', '.join(FAMILIES)}"
        )
    return FAMILIES[name]


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """``{"family": "sagan", ...}`` -> the family's config dataclass."""
    if "family" not in data:
        raise UserError("model.family is missing; set it to one of: " + ", ".join(FAMILIES))
    return get_family(data["family"]).config.from_dict(data)


def build_generator(cfg: ModelConfig) -> Generator:
    return get_family(cfg.family).generator(cfg)


def build_discriminator(cfg: ModelConfig) -> Discriminator:
    return get_family(cfg.family).discriminator(cfg)
