"""Model families: SAGAN (and the registry that finds families by name)."""

from gankit.models.base import Discriminator, Generator, ModelConfig
from gankit.models.registry import (
    FAMILIES,
    build_discriminator,
    build_generator,
    get_family,
    model_config_from_dict,
)
from gankit.models.sagan import SAGANConfig, SAGANDiscriminator, SAGANGenerator

__all__ = [
    "FAMILIES",
    "Discriminator",
    "Generator",
    "ModelConfig",
    "SAGANConfig",
    "SAGANDiscriminator",
    "SAGANGenerator",
    "build_discriminator",
    "build_generator",
    "get_family",
    "model_config_from_dict",
]
