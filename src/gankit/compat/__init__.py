"""Foreign formats, opened only when a user asks for them (the core never imports this package eagerly).

- :mod:`gankit.compat.pgan_zoo`: facebookresearch/pytorch_GAN_zoo PGAN checkpoints (read with
  ``weights_only=True``), their conversion to gankit generators, and the public pretrained files.

The zoo's Torch Hub ``PGAN`` object (``buildNoiseData``, ``test``, ``getNetG``) is an application of these
readers: :mod:`gankit.apps.torchhub`.
"""

from gankit.compat.pgan_zoo import (
    ZOO_MODELS,
    ZooBaseConfig,
    download_pgan_zoo,
    is_pgan_zoo_file,
    load_pgan_zoo_generator,
    read_pgan_zoo,
)

__all__ = [
    "ZOO_MODELS",
    "ZooBaseConfig",
    "download_pgan_zoo",
    "is_pgan_zoo_file",
    "load_pgan_zoo_generator",
    "read_pgan_zoo",
]
