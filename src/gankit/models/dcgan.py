"""Plain DCGAN (Radford, Metz, Chintala 2016): the baseline without spectral norm or attention.

Generator: ``z -> (B, z_dim, 1, 1)``, ConvT k4 s1 to ``(B, w(4), 4, 4)``, then ConvT k4 s2 p1 doubling the
resolution up to ``S/2`` (each with batch norm and ReLU), a last ConvT k4 s2 p1 to ``channels`` and tanh.
Discriminator: Conv k4 s2 p1 halving from ``S`` down to 4x4, LeakyReLU 0.2, batch norm on every conv but the
first, and a last k4 valid conv to one logit. The width at feature size ``r`` is ``conv_dim * (S / 2) / r``
(512-256-128-64 at 64x64 with ``conv_dim 64``, as in the paper). ``extra_layers`` adds that many conv3x3 +
BN + activation layers at ``S/2`` to each net (G: after its last up-sampling block; D: after its first conv), as
WassersteinGAN's DCGAN does. Weights ``N(0, 0.02)``, BN gains
``N(1, 0.02)``. Train it with the non-saturating BCE loss and Adam ``2e-4``, betas ``(0.5, 0.999)``.

For comparisons the same switches as the other families exist: spectral norm per network
(``g_spectral_norm`` on every G layer but the last, ``d_spectral_norm`` on every D layer), ``d_batch_norm``,
and a class-conditional form (conditional BN in G, projection discriminator) with ``num_classes > 0``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gankit.errors import check_number
from gankit.models.base import (
    Discriminator,
    Generator,
    ModelConfig,
    check_conv_family,
    check_power_of_two,
    latent_matrix,
)
from gankit.models.blocks import (
    DConvBlock,
    GConvBlock,
    LayerMaker,
    check_block_options,
    projection,
    projection_embedding,
)


@dataclasses.dataclass(frozen=True)
class DCGANConfig(ModelConfig):
    """Defaults are the DCGAN paper's 64x64 model (z 100, widths 64, no SN)."""

    family = "dcgan"

    z_dim: int = 100
    g_conv_dim: int = 64
    d_conv_dim: int = 64
    g_spectral_norm: bool = False
    d_spectral_norm: bool = False
    embedding_spectral_norm: bool = True
    sn_power_iterations: int = 1
    d_batch_norm: bool = True
    d_leaky_slope: float = 0.2
    init: str = "normal"
    # WassersteinGAN's DCGAN ``n_extra_layers``: conv3x3 + BN + activation layers at S/2, after G's last
    # up-sampling block and after D's first conv. At 16x16 a DCGAN is two layers deep; these add depth.
    extra_layers: int = 0

    def resolutions(self) -> list[int]:
        """Feature-map sizes of G's blocks: 4, 8, ..., S/2 (D visits them in reverse)."""
        return [2**i for i in range(2, self.image_size.bit_length() - 1)]

    def width(self, conv_dim: int, resolution: int) -> int:
        return conv_dim * (self.image_size // 2) // resolution

    def validate(self) -> None:
        check_power_of_two("image_size", self.image_size, 16, 256)
        check_number("model.extra_layers", self.extra_layers, integer=True, low=0)
        check_conv_family(self)
        check_block_options(self)


class DCGANGenerator(Generator):
    """``G(z (B, z_dim), y (B,) | None) -> (B, channels, S, S)`` in [-1, 1]."""

    config_class = DCGANConfig

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(init=cfg.init, sn=cfg.g_spectral_norm, n_power_iterations=cfg.sn_power_iterations)
        self.blocks = nn.ModuleList()
        in_ch = cfg.z_dim
        for r in cfg.resolutions():
            out_ch = cfg.width(cfg.g_conv_dim, r)
            conv = nn.ConvTranspose2d(in_ch, out_ch, 4, 1, 0) if r == 4 else nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1)
            self.blocks.append(GConvBlock(make(conv), out_ch, cfg.num_classes, cfg.init))
            in_ch = out_ch
        for _ in range(cfg.extra_layers):
            self.blocks.append(GConvBlock(make(nn.Conv2d(in_ch, in_ch, 3, 1, 1)), in_ch, cfg.num_classes, cfg.init))
        self.to_image = LayerMaker(init=cfg.init, sn=False)(nn.ConvTranspose2d(in_ch, cfg.channels, 4, 2, 1))

    def latent_weight(self) -> torch.Tensor:
        return latent_matrix(self.blocks[0].conv, self.z_dim)  # the 1x1 -> 4x4 transposed conv

    def latent_layer(self) -> str:
        return "blocks.0.conv"

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y, z.shape[0])
        h = z.reshape(z.shape[0], self.z_dim, 1, 1)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.to_image(h))


class DCGANDiscriminator(Discriminator):
    """``D(x (B, channels, S, S), y (B,) | None) -> (B,)`` logits (plus the projection term when conditional)."""

    config_class = DCGANConfig

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(init=cfg.init, sn=cfg.d_spectral_norm, n_power_iterations=cfg.sn_power_iterations)
        self.blocks = nn.ModuleList()
        in_ch = cfg.channels
        for i, r in enumerate(cfg.resolutions()[::-1]):
            out_ch = cfg.width(cfg.d_conv_dim, r)
            conv = make(nn.Conv2d(in_ch, out_ch, 4, 2, 1))
            batch_norm = cfg.d_batch_norm and i > 0  # DCGAN: no BN on the first D layer
            self.blocks.append(DConvBlock(conv, out_ch, batch_norm=batch_norm, slope=cfg.d_leaky_slope, init=cfg.init))
            in_ch = out_ch
            if i == 0:
                for _ in range(cfg.extra_layers):
                    extra = make(nn.Conv2d(in_ch, in_ch, 3, 1, 1))
                    norm, slope = cfg.d_batch_norm, cfg.d_leaky_slope
                    self.blocks.append(DConvBlock(extra, in_ch, batch_norm=norm, slope=slope, init=cfg.init))
        self.to_logit = make(nn.Conv2d(in_ch, 1, 4))
        self.embed = projection_embedding(cfg, in_ch, cfg.init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        return self.to_logit(h).reshape(x.shape[0]) + projection(self.embed, y, h)
