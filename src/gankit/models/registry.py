"""Families by name: config class, generator and discriminator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gankit.errors import UserError, did_you_mean
from gankit.models.base import Discriminator, Generator, ModelConfig
from gankit.models.biggan import BigGANDiscriminator, BigGANGenerator
from gankit.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gankit.models.pgan import ProgressiveDiscriminator, ProgressiveGenerator
from gankit.models.sagan import SAGANDiscriminator, SAGANGenerator
from gankit.models.sngan import SNGANDiscriminator, SNGANGenerator


@dataclass(frozen=True)
class Family:
    name: str
    config: type[ModelConfig]
    generator: type[Generator]
    discriminator: type[Discriminator]


def _family(generator: type[Generator], discriminator: type[Discriminator]) -> Family:
    config = generator.config_class
    assert discriminator.config_class is config, (generator, discriminator)
    return Family(config.family, config, generator, discriminator)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        _family(SAGANGenerator, SAGANDiscriminator),
        _family(ProgressiveGenerator, ProgressiveDiscriminator),
        _family(SNGANGenerator, SNGANDiscriminator),
        _family(DCGANGenerator, DCGANDiscriminator),
        _family(BigGANGenerator, BigGANDiscriminator),
    )
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
