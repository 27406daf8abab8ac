"""Self-Attention GAN (Zhang et al. 2019) with the layer layout of the reference PyTorch port.

Generator: ``z -> (B, z_dim, 1, 1)``, a 4x4 transposed conv to ``(B, ch(4), 4, 4)``, then stride-2 transposed
convs doubling the resolution up to ``S/2``, each followed by (conditional) batch norm and ReLU, with
self-attention after the blocks whose output resolution is in ``g_attention_resolutions``; a last transposed
conv to ``channels`` and tanh. Discriminator: stride-2 convs halving down to 4x4 with LeakyReLU(0.1), attention
after the chosen resolutions, and a last 4x4 valid conv to one logit. Spectral norm on every conv of both
networks except each network's last layer (as in the port). The width at resolution ``r`` is
``conv_dim * (S / 2) / r`` (optionally capped by ``max_channels``), which for ``S = 64`` and ``conv_dim = 64``
gives the port's 512-256-128-64.

Class-conditional form (``num_classes > 0``): conditional batch norm in G and a projection discriminator
``D(x, y) = psi(phi(x)) + <embed(y), sum_hw phi(x)>``, with ``phi(x)`` the last ``(B, ch(4), 4, 4)`` feature
map, ``psi`` the last conv, and the projection taken on the globally sum-pooled features (Miyato & Koyama 2018).
"""

from __future__ import annotations

import dataclasses
import re

import torch
from torch import nn

from gankit.errors import UserError, check_number
from gankit.models.base import (
    Discriminator,
    Generator,
    ModelConfig,
    check_conv_family,
    check_power_of_two,
    latent_matrix,
)
from gankit.models.blocks import DConvBlock, GConvBlock, LayerMaker, projection, projection_embedding
from gankit.nn import SelfAttention2d, spectral_norm_all


@dataclasses.dataclass(frozen=True)
class SAGANConfig(ModelConfig):
    """Defaults are the reference port's 64x64 CelebA model."""

    family = "sagan"

    g_conv_dim: int = 64
    d_conv_dim: int = 64
    max_channels: int | None = None
    g_attention_resolutions: tuple[int, ...] = (16, 32)
    d_attention_resolutions: tuple[int, ...] = (8, 4)
    attention_variant: str = "port"
    attention_spectral_norm: bool = False  # the port leaves the attention convs without SN
    g_spectral_norm: bool = True
    d_spectral_norm: bool = True
    embedding_spectral_norm: bool = True  # SN on the projection embedding (when d_spectral_norm is on)
    sn_power_iterations: int = 1
    d_leaky_slope: float = 0.1
    # Off in the port. On: G gets one more up-block to full resolution and a 3x3 conv to the image, D a 3x3
    # conv at full resolution before its first down-block. Small images (16x16) otherwise get nets only two
    # blocks deep, which learn slowly.
    full_resolution_layers: bool = False

    def g_resolutions(self) -> list[int]:
        """Feature-map sizes of G's blocks: 4, 8, ..., S/2 (..., S with ``full_resolution_layers``)."""
        top = self.image_size.bit_length() - (0 if self.full_resolution_layers else 1)
        return [2**i for i in range(2, top)]

    def d_resolutions(self) -> list[int]:
        """Feature-map sizes after D's layers: (S,) S/2, ..., 4."""
        return self.g_resolutions()[::-1]

    def width(self, conv_dim: int, resolution: int) -> int:
        ch = conv_dim * (self.image_size // 2) // resolution
        return min(ch, self.max_channels) if self.max_channels else ch

    def validate(self) -> None:
        check_power_of_two("image_size", self.image_size, 16, 256)
        check_conv_family(self)
        if self.max_channels is not None:
            check_number("model.max_channels", self.max_channels, integer=True, low=1, hint=" (or null: no cap)")
        if self.attention_variant not in ("port", "biggan"):
            raise UserError(f"model.attention_variant must be 'port' or 'biggan', got {self.attention_variant!r}")
        sizes = self.g_resolutions()
        for net in ("g", "d"):
            for r in getattr(self, f"{net}_attention_resolutions"):
                if r not in sizes:
                    raise UserError(
                        f"model.{net}_attention_resolutions has {r}, but the {net.upper()} of a "
                        f"{self.image_size}x{self.image_size} model has feature maps {sizes}; pick from those"
                    )
                conv_dim = self.g_conv_dim if net == "g" else self.d_conv_dim
                if self.width(conv_dim, r) < 8:
                    capped = self.max_channels is not None and self.max_channels < 8
                    fix = "raise max_channels" if capped else f"raise {net}_conv_dim"
                    raise UserError(f"attention at {r}x{r} in {net.upper()} needs >= 8 channels; {fix}")


def _attention(cfg: SAGANConfig, channels: int) -> SelfAttention2d:
    block = SelfAttention2d(channels, variant=cfg.attention_variant)  # type: ignore[arg-type]
    if cfg.attention_spectral_norm:
        spectral_norm_all(block, cfg.sn_power_iterations)
    return block


def _renamed(state: dict[str, torch.Tensor], pattern: str, replacement: str) -> dict[str, torch.Tensor]:
    return {re.sub(pattern, replacement, key): value for key, value in state.items()}


class SAGANGenerator(Generator):
    """``G(z (B, z_dim), y (B,) | None) -> (B, channels, S, S)`` in [-1, 1].

    Its blocks are the shared :class:`~gankit.models.blocks.GConvBlock` (the same math as DCGAN's: transposed
    conv, (conditional) batch norm, ReLU) with PyTorch's default initialisation, as in the port.
    """

    config_class = SAGANConfig

    def __init__(self, cfg: SAGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(init="default", sn=cfg.g_spectral_norm, n_power_iterations=cfg.sn_power_iterations)
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        in_ch = cfg.z_dim
        for r in cfg.g_resolutions():
            out_ch = cfg.width(cfg.g_conv_dim, r)
            conv = nn.ConvTranspose2d(in_ch, out_ch, 4, 1, 0) if r == 4 else nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1)
            self.blocks.append(GConvBlock(make(conv), out_ch, cfg.num_classes, "default"))
            if r in cfg.g_attention_resolutions:
                self.attention[str(r)] = _attention(cfg, out_ch)
            in_ch = out_ch
        # no SN on the last layer (port)
        if cfg.full_resolution_layers:
            self.to_image: nn.Module = nn.Conv2d(in_ch, cfg.channels, 3, 1, 1)
        else:
            self.to_image = nn.ConvTranspose2d(in_ch, cfg.channels, 4, 2, 1)

    @classmethod
    def upgrade_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """gankit <= 0.1 had SAGAN's own block with its norm at ``blocks.K.norm``; the shared block nests it in
        :class:`~gankit.models.blocks.Norm2d` at ``blocks.K.norm.norm``."""
        return _renamed(state, r"^blocks\.(\d+)\.norm\.(?!norm\.)", r"blocks.\1.norm.norm.")

    def latent_weight(self) -> torch.Tensor:
        return latent_matrix(self.blocks[0].conv, self.z_dim)  # the 1x1 -> 4x4 transposed conv

    def latent_layer(self) -> str:
        return "blocks.0.conv"

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y, z.shape[0])
        h = z.reshape(z.shape[0], self.z_dim, 1, 1)
        for block in self.blocks:
            h = block(h, y)
            key = str(h.shape[-1])
            if key in self.attention:
                h = self.attention[key](h)
        return torch.tanh(self.to_image(h))


class SAGANDiscriminator(Discriminator):
    """``D(x (B, channels, S, S), y (B,) | None) -> (B,)`` logits (projection when conditional).

    Its blocks are the shared :class:`~gankit.models.blocks.DConvBlock` without batch norm (conv, LeakyReLU).
    """

    config_class = SAGANConfig

    def __init__(self, cfg: SAGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(init="default", sn=cfg.d_spectral_norm, n_power_iterations=cfg.sn_power_iterations)
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        in_ch = cfg.channels
        for r in cfg.d_resolutions():
            out_ch = cfg.width(cfg.d_conv_dim, r)
            stride_one = r == cfg.image_size  # the full-resolution layer keeps the size
            conv = nn.Conv2d(in_ch, out_ch, 3, 1, 1) if stride_one else nn.Conv2d(in_ch, out_ch, 4, 2, 1)
            block = DConvBlock(make(conv), out_ch, batch_norm=False, slope=cfg.d_leaky_slope, init="default")
            self.blocks.append(block)
            if r in cfg.d_attention_resolutions:
                self.attention[str(r)] = _attention(cfg, out_ch)
            in_ch = out_ch
        self.to_logit = nn.Conv2d(in_ch, 1, 4)  # psi: no SN on the last layer (port)
        self.embed = projection_embedding(cfg, in_ch, "default")

    @classmethod
    def upgrade_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """gankit <= 0.1 built each D block as ``Sequential(conv, LeakyReLU)`` (conv at ``blocks.K.0``); the shared
        block names it ``blocks.K.conv``."""
        return _renamed(state, r"^blocks\.(\d+)\.0\.", r"blocks.\1.conv.")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
            key = str(h.shape[-1])
            if key in self.attention:
                h = self.attention[key](h)
        return self.to_logit(h).reshape(x.shape[0]) + projection(self.embed, y, h)
