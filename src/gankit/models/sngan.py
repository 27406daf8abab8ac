"""SN-GAN (Miyato, Kataoka, Koyama, Yoshida 2018): three architectures behind one config.

Spectral normalization divides each weight by its largest singular value, bounding every layer's Lipschitz
constant by 1, so D is (roughly) 1-Lipschitz, the condition under which a critic's score difference estimates
the Wasserstein-1 distance. WGAN enforced it by clipping weights (which wastes capacity) and WGAN-GP by a
gradient penalty on interpolates (an extra backward); SN needs one power iteration per step. The original GAN
loss (BCE), at the optimal D, minimises the Jensen-Shannon divergence; hinge and non-saturating BCE are the
losses the SN-GAN paper trains with. Any loss of :mod:`gankit.losses` works with any architecture here.

``arch`` picks the network (``g_conv_dim`` / ``d_conv_dim`` set the widths):

- ``mnist``: the seed article's MNIST model, 28x28 only. G: ``z (B, z_dim, 1, 1)`` -> ConvT k3 s2 -> ``4g x 3x3``
  -> ConvT k4 s1 -> ``2g x 6x6`` -> ConvT k3 s2 -> ``g x 13x13`` (each with BN + ReLU) -> ConvT k4 s2 ->
  ``channels x 28x28``, tanh (no padding: that is what makes 28 come out). D: SN Conv k4 s2 p1 -> ``d x 14x14``
  -> SN Conv k4 s2 p1 -> ``2d x 7x7`` (each with BN and LeakyReLU 0.2) -> SN Conv k7 -> ``1 x 1x1``. With
  ``g_conv_dim 64``, ``d_conv_dim 16`` the widths are the article's 256-128-64 and 16-32. One fix to the
  article's D: its three unpadded k4 s2 convs (28 -> 13 -> 5 -> 1) drop the last row and column at each step, so
  its logit depends only on the top-left 22x22 pixels and G is never trained on the bottom and right 6 rows and
  columns (they stay noise); padding 1 and a last 7x7 conv make every pixel count.
- ``cnn``: the paper's "standard CNN" (DCGAN-like). G: dense ``z -> 8g x M x M`` (BN, ReLU) with
  ``M = image_size / 8``, three ConvT k4 s2 p1 (BN, ReLU) to ``4g, 2g, g``, Conv k3 to ``channels``, tanh.
  D: Conv k3 s1 ``d``, k4 s2 ``d``, k3 s1 ``2d``, k4 s2 ``2d``, k3 s1 ``4d``, k4 s2 ``4d``, k3 s1 ``8d`` (each
  LeakyReLU, slope 0.1 in the paper), dense ``8d M M -> 1``. The paper's widths: ``g = d = 64``.
- ``resnet``: the paper's CIFAR-10 ResNet. G: dense ``z -> g x M x M``, three up-blocks of ``g`` channels,
  BN, ReLU, Conv k3, tanh (``g = 256``). D: an optimized down-block, a down-block, then two blocks at the
  same resolution (``32 -> 16 -> 8 -> 8 -> 8``), all ``d = 128`` wide, ReLU, global sum pooling, dense -> 1.

Spectral norm: on every convolution, linear and projection embedding of D (the last layer included, as in the
paper and the article) when ``d_spectral_norm``; on every layer of G except its last (to-image) layer when
``g_spectral_norm`` (off in the paper: SN-GAN normalises D only).

Class-conditional form (``num_classes > 0``): conditional batch norm in G and a projection discriminator
``D(x, y) = psi(phi(x)) + <embed(y), sum_hw phi(x)>`` (Miyato & Koyama 2018), ``phi`` being D's last feature
map. With ``arch resnet`` this is the paper's cGAN with projection discriminator for CIFAR-10.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gankit.errors import UserError
from gankit.models.base import Discriminator, Generator, ModelConfig, check_conv_family, latent_matrix
from gankit.models.blocks import (
    DConvBlock,
    DResBlock,
    GConvBlock,
    GResBlock,
    LayerMaker,
    Norm2d,
    check_block_options,
    projection,
    projection_embedding,
)

SNGAN_ARCHS = ("mnist", "cnn", "resnet")
MNIST_SIZE = 28


@dataclasses.dataclass(frozen=True)
class SNGANConfig(ModelConfig):
    """Defaults are the paper's CIFAR-10 ResNet (unconditional, SN on D only, Xavier init)."""

    family = "sngan"

    arch: str = "resnet"
    image_size: int = 32
    g_conv_dim: int = 256
    d_conv_dim: int = 128
    g_spectral_norm: bool = False
    d_spectral_norm: bool = True
    embedding_spectral_norm: bool = True  # SN on the projection embedding (when d_spectral_norm is on)
    sn_power_iterations: int = 1
    d_batch_norm: bool = False  # BN after D's convolutions (arch mnist / cnn; the article's MNIST D has it)
    d_leaky_slope: float = 0.1  # LeakyReLU slope in D (arch mnist / cnn; resnet uses ReLU)
    init: str = "xavier"

    def bottom_width(self) -> int:
        """Side of G's first feature map: 1 (mnist, z as a 1x1 map) or ``image_size / 8``."""
        return 1 if self.arch == "mnist" else self.image_size // 8

    def validate(self) -> None:
        if self.arch not in SNGAN_ARCHS:
            raise UserError(f"model.arch must be one of {', '.join(SNGAN_ARCHS)}, got {self.arch!r}")
        if self.arch == "mnist":
            if self.image_size != MNIST_SIZE:
                raise UserError(
                    f"model.arch mnist makes 28x28 images only (got image_size {self.image_size!r}); "
                    "use arch cnn or resnet for other sizes"
                )
        elif self.image_size % 8 or not 16 <= self.image_size <= 128:
            raise UserError(
                f"model.image_size must be a multiple of 8 from 16 to 128 for arch {self.arch}, got {self.image_size!r}"
            )
        check_conv_family(self)
        if self.arch == "resnet" and self.d_batch_norm:
            raise UserError("model.d_batch_norm is for arch mnist / cnn; the SN-GAN ResNet D has no batch norm")
        check_block_options(self)


class SNGANGenerator(Generator):
    """``G(z (B, z_dim), y (B,) | None) -> (B, channels, S, S)`` in [-1, 1]; ``S = 28`` for arch mnist."""

    config_class = SNGANConfig

    def __init__(self, cfg: SNGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(init=cfg.init, sn=cfg.g_spectral_norm, n_power_iterations=cfg.sn_power_iterations)
        last = LayerMaker(init=cfg.init, sn=False)  # never SN on the to-image layer
        g, k, m = cfg.g_conv_dim, cfg.num_classes, cfg.bottom_width()
        self.stem: nn.Module | None = None
        self.stem_norm: Norm2d | None = None
        self.out_norm: Norm2d | None = None
        self.stem_channels = cfg.z_dim
        if cfg.arch == "mnist":
            specs = [(cfg.z_dim, 4 * g, 3, 2), (4 * g, 2 * g, 4, 1), (2 * g, g, 3, 2)]
            self.blocks = nn.ModuleList(
                GConvBlock(make(nn.ConvTranspose2d(i, o, ks, s)), o, k, cfg.init) for i, o, ks, s in specs
            )
            self.to_image = last(nn.ConvTranspose2d(g, cfg.channels, 4, 2))
        elif cfg.arch == "cnn":
            self.stem_channels = 8 * g
            self.stem = make(nn.Linear(cfg.z_dim, 8 * g * m * m))
            self.stem_norm = Norm2d(8 * g, k, cfg.init)
            widths = [8 * g, 4 * g, 2 * g, g]
            self.blocks = nn.ModuleList(
                GConvBlock(make(nn.ConvTranspose2d(i, o, 4, 2, 1)), o, k, cfg.init)
                for i, o in zip(widths[:-1], widths[1:], strict=True)
            )
            self.to_image = last(nn.Conv2d(g, cfg.channels, 3, 1, 1))
        else:  # resnet
            self.stem_channels = g
            self.stem = make(nn.Linear(cfg.z_dim, g * m * m))
            self.blocks = nn.ModuleList(GResBlock(g, g, num_classes=k, make=make) for _ in range(3))
            self.out_norm = Norm2d(g, k, cfg.init)
            self.to_image = last(nn.Conv2d(g, cfg.channels, 3, 1, 1))

    def latent_weight(self) -> torch.Tensor:
        first = self.stem if self.stem is not None else self.blocks[0].conv  # dense stem, or mnist's 1x1 ConvT
        return latent_matrix(first, self.z_dim)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y, z.shape[0])
        b, m = z.shape[0], self.config.bottom_width()
        if self.stem is None:
            h = z.reshape(b, self.z_dim, 1, 1)
        else:
            h = self.stem(z).reshape(b, self.stem_channels, m, m)
        if self.stem_norm is not None:
            h = torch.relu(self.stem_norm(h, y))
        for block in self.blocks:
            h = block(h, y)
        if self.out_norm is not None:
            h = torch.relu(self.out_norm(h, y))
        return torch.tanh(self.to_image(h))


class SNGANDiscriminator(Discriminator):
    """``D(x (B, channels, S, S), y (B,) | None) -> (B,)`` logits (plus the projection term when conditional)."""

    config_class = SNGANConfig

    def __init__(self, cfg: SNGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(init=cfg.init, sn=cfg.d_spectral_norm, n_power_iterations=cfg.sn_power_iterations)
        d, c, m = cfg.d_conv_dim, cfg.channels, cfg.bottom_width()
        conv_block = dict(batch_norm=cfg.d_batch_norm, slope=cfg.d_leaky_slope, init=cfg.init)
        if cfg.arch == "mnist":
            # k4 s2 p1: 28 -> 14 -> 7, then a 7x7 conv to one logit: every pixel reaches it (see the module doc)
            self.blocks = nn.ModuleList(
                DConvBlock(make(nn.Conv2d(i, o, 4, 2, 1)), o, **conv_block) for i, o in ((c, d), (d, 2 * d))
            )
            feature_channels = 2 * d
            self.to_logit = make(nn.Conv2d(2 * d, 1, 7))
        elif cfg.arch == "cnn":
            # (in, out, kernel, stride): k3 s1 keeps the size, k4 s2 p1 halves it
            specs = [(c, d, 3, 1), (d, d, 4, 2), (d, 2 * d, 3, 1), (2 * d, 2 * d, 4, 2)]
            specs += [(2 * d, 4 * d, 3, 1), (4 * d, 4 * d, 4, 2), (4 * d, 8 * d, 3, 1)]
            self.blocks = nn.ModuleList(
                DConvBlock(make(nn.Conv2d(i, o, ks, s, 1)), o, **conv_block) for i, o, ks, s in specs
            )
            feature_channels = 8 * d
            self.to_logit = make(nn.Linear(8 * d * m * m, 1))
        else:  # resnet
            self.blocks = nn.ModuleList(
                [
                    DResBlock(c, d, downsample=True, optimized=True, make=make),
                    DResBlock(d, d, downsample=True, optimized=False, make=make),
                    DResBlock(d, d, downsample=False, optimized=False, make=make),
                    DResBlock(d, d, downsample=False, optimized=False, make=make),
                ]
            )
            feature_channels = d
            self.to_logit = make(nn.Linear(d, 1))
        self.embed = projection_embedding(cfg, feature_channels, cfg.init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        h = x
        for block in self.blocks:
            h = block(h)
        arch = self.config.arch
        if arch == "mnist":
            out = self.to_logit(h).reshape(b)
        elif arch == "cnn":
            out = self.to_logit(h.flatten(1)).reshape(b)
        else:
            h = torch.relu(h)
            out = self.to_logit(h.sum(dim=(2, 3))).reshape(b)
        return out + projection(self.embed, y, h)
