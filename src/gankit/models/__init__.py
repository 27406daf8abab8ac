"""Model families: SAGAN, SN-GAN, DCGAN (and the registry that finds families by name)."""

from gankit.models.base import Discriminator, Generator, ModelConfig
from gankit.models.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator
from gankit.models.registry import (
    FAMILIES,
    build_discriminator,
    build_generator,
    get_family,
    model_config_from_dict,
)
from gankit.models.sagan import SAGANConfig, SAGANDiscriminator, SAGANGenerator
from gankit.models.sngan import SNGANConfig, SNGANDiscriminator, SNGANGenerator

__all__ = [
    "DCGANConfig",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "FAMILIES",
    "Discriminator",
    "Generator",
    "ModelConfig",
    "SAGANConfig",
    "SAGANDiscriminator",
    "SAGANGenerator",
    "SNGANConfig",
    "SNGANDiscriminator",
    "SNGANGenerator",
    "build_discriminator",
    "build_generator",
    "get_family",
    "model_config_from_dict",
]
