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

``resnet_layout: studiogan`` (arch resnet) is PyTorch-StudioGAN's ``src/models/resnet.py`` (its SNGAN and SAGAN),
so its checkpoints import exactly (:mod:`gankit.compat.studiogan`): G starts at 4x4 and has one up-block per
doubling, with widths ``g_conv_dim`` times ``4 4 4`` (32 px), ``16 8 4 2 -> 8 4 2 1`` (64 px), ``16 16 8 4 2 ->
16 8 4 2 1`` (128 px); D's blocks are ``2d`` wide at 32 px (down, down, same, same) and ``d, 2d, 4d, 8d, 16d``
(+ ``16d`` at 128 px; all down but the last) otherwise. ``g_attention_blocks`` / ``d_attention_blocks`` put the
BigGAN attention block (theta / phi ``C/8``, g ``C/2``, phi and g max-pooled, an output 1x1 conv, a scalar gain,
spectral norm as the network's) after those blocks (1-based: StudioGAN's ``attn_g_loc`` / ``attn_d_loc``); its
SAGAN has G ``[2]`` / D ``[1]`` at 32 px, ``[3]`` / ``[1]`` at 64 and ``[4]`` / ``[1]`` at 128. StudioGAN's other
choices are options too: ``bn_eps 1e-4``, ``sn_eps 1e-6``, ``g_last_spectral_norm`` (SN on G's to-image conv, with
``g_spectral_norm``), ``out_norm_conditional: false`` (G's last batch norm is a plain affine one) and
``d_shortcut_relu`` (D's blocks after the first keep ``ReLU(x)`` for the shortcut: StudioGAN's blocks apply an
in-place ReLU to the tensor they also keep for it). Their defaults keep the paper's networks above unchanged.

Class-conditional form (``num_classes > 0``): conditional batch norm in G and a projection discriminator
``D(x, y) = psi(phi(x)) + <embed(y), sum_hw phi(x)>`` (Miyato & Koyama 2018), ``phi`` being D's last feature
map. With ``arch resnet`` this is the paper's cGAN with projection discriminator for CIFAR-10.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gankit.errors import UserError, check_number
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
from gankit.nn import SelfAttention2d

SNGAN_ARCHS = ("mnist", "cnn", "resnet")
RESNET_LAYOUTS = ("sngan", "studiogan")
MNIST_SIZE = 28
STUDIOGAN_BOTTOM = 4

# StudioGAN's resnet.py tables, as multiples of g_conv_dim / d_conv_dim: G (in, out) per up-block; D (in, out,
# downsample) per block, the first one the "optimized" block taking the image (its in-width 0 = the channels).
_G_WIDTHS = {
    32: [(4, 4), (4, 4), (4, 4)],
    64: [(16, 8), (8, 4), (4, 2), (2, 1)],
    128: [(16, 16), (16, 8), (8, 4), (4, 2), (2, 1)],
    256: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)],
    512: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)],
}
_D_WIDTHS = {
    32: [(0, 2, True), (2, 2, True), (2, 2, False), (2, 2, False)],
    64: [(0, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, False)],
    128: [(0, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True), (16, 16, False)],
    256: [(0, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True), (16, 16, False)],
    512: [(0, 1, True), (1, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True),
          (16, 16, False)],
}  # fmt: skip


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
    resnet_layout: str = "sngan"  # arch resnet: "sngan" (the paper's CIFAR-10 ResNet) or "studiogan" (its resnet.py)
    g_attention_blocks: tuple[int, ...] = ()  # arch resnet: BigGAN attention after these G blocks (1-based)
    d_attention_blocks: tuple[int, ...] = ()  # ... and after these D blocks
    bn_eps: float = 1e-5  # batch norm epsilon (StudioGAN: 1e-4)
    sn_eps: float = 1e-12  # spectral norm's power-iteration epsilon (StudioGAN: 1e-6)
    g_last_spectral_norm: bool = False  # SN also on G's to-image conv (when g_spectral_norm; StudioGAN has it)
    out_norm_conditional: bool = True  # arch resnet: G's last batch norm conditional (StudioGAN: plain affine)
    d_shortcut_relu: bool = False  # arch resnet: D blocks' shortcut reads ReLU(x) (StudioGAN's in-place ReLU)

    def bottom_width(self) -> int:
        """Side of G's first feature map: 1 (mnist, z as a 1x1 map), 4 (resnet_layout studiogan) or
        ``image_size / 8``."""
        if self.arch == "mnist":
            return 1
        if self.arch == "resnet" and self.resnet_layout == "studiogan":
            return STUDIOGAN_BOTTOM
        return self.image_size // 8

    def g_resnet_widths(self) -> list[tuple[int, int]]:
        """arch resnet: (in, out) channels of each G up-block."""
        g = self.g_conv_dim
        if self.resnet_layout == "studiogan":
            return [(g * i, g * o) for i, o in _G_WIDTHS[self.image_size]]
        return [(g, g)] * 3

    def d_resnet_widths(self) -> list[tuple[int, int, bool]]:
        """arch resnet: (in, out, downsample) of each D block, the first taking the image."""
        d = self.d_conv_dim
        if self.resnet_layout == "studiogan":
            return [(d * i if i else self.channels, d * o, down) for i, o, down in _D_WIDTHS[self.image_size]]
        return [(self.channels, d, True), (d, d, True), (d, d, False), (d, d, False)]

    def validate(self) -> None:
        if self.arch not in SNGAN_ARCHS:
            raise UserError(f"model.arch must be one of {', '.join(SNGAN_ARCHS)}, got {self.arch!r}")
        if self.arch == "mnist":
            if self.image_size != MNIST_SIZE:
                raise UserError(
                    f"model.arch mnist makes 28x28 images only (got image_size {self.image_size!r}); "
                    "use arch cnn or resnet for other sizes"
                )
        elif self.arch == "resnet" and self.resnet_layout == "studiogan":
            if self.image_size not in _G_WIDTHS:
                sizes = ", ".join(map(str, _G_WIDTHS))
                raise UserError(
                    f"model.image_size must be one of {sizes} for resnet_layout studiogan, got {self.image_size!r}"
                )
        elif self.image_size % 8 or not 16 <= self.image_size <= 128:
            raise UserError(
                f"model.image_size must be a multiple of 8 from 16 to 128 for arch {self.arch}, got {self.image_size!r}"
            )
        check_conv_family(self)
        if self.resnet_layout not in RESNET_LAYOUTS:
            raise UserError(
                f"model.resnet_layout must be one of {', '.join(RESNET_LAYOUTS)}, got {self.resnet_layout!r}"
            )
        check_number("model.bn_eps", self.bn_eps, low=0, low_open=True)
        check_number("model.sn_eps", self.sn_eps, low=0, low_open=True)
        self._check_attention()
        if self.arch == "resnet" and self.d_batch_norm:
            raise UserError("model.d_batch_norm is for arch mnist / cnn; the SN-GAN ResNet D has no batch norm")
        check_block_options(self)

    def _check_attention(self) -> None:
        for net in ("g", "d"):
            blocks = getattr(self, f"{net}_attention_blocks")
            if not blocks:
                continue
            if self.arch != "resnet":
                raise UserError(f"model.{net}_attention_blocks is for arch resnet (got arch {self.arch})")
            widths = self.g_resnet_widths() if net == "g" else self.d_resnet_widths()
            for b in blocks:
                if not 1 <= b <= len(widths):
                    raise UserError(
                        f"model.{net}_attention_blocks has {b}, but {net.upper()} has blocks 1..{len(widths)}"
                    )
                if widths[b - 1][1] < 8:
                    raise UserError(
                        f"attention after {net.upper()} block {b} needs >= 8 channels, it has {widths[b - 1][1]}; "
                        f"raise model.{net}_conv_dim"
                    )


def attention_block(channels: int, make: LayerMaker) -> SelfAttention2d:
    """The BigGAN attention block (:class:`SelfAttention2d` variant ``biggan``) of ``channels``, its four 1x1
    convolutions initialised and spectrally normalised by ``make`` (the network's own SN setting)."""
    block = SelfAttention2d(channels, variant="biggan")
    for name in ("query", "key", "value", "out"):
        make(getattr(block, name))
    return block


class SNGANGenerator(Generator):
    """``G(z (B, z_dim), y (B,) | None) -> (B, channels, S, S)`` in [-1, 1]; ``S = 28`` for arch mnist."""

    config_class = SNGANConfig

    def __init__(self, cfg: SNGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(
            init=cfg.init, sn=cfg.g_spectral_norm, n_power_iterations=cfg.sn_power_iterations, sn_eps=cfg.sn_eps
        )
        # SN on the to-image layer only when asked (StudioGAN); the paper's G has none there
        last_sn = cfg.g_spectral_norm and cfg.g_last_spectral_norm
        last = LayerMaker(init=cfg.init, sn=last_sn, n_power_iterations=cfg.sn_power_iterations, sn_eps=cfg.sn_eps)
        g, k, m = cfg.g_conv_dim, cfg.num_classes, cfg.bottom_width()
        self.stem: nn.Module | None = None
        self.stem_norm: Norm2d | None = None
        self.out_norm: Norm2d | None = None
        self.attention = nn.ModuleDict()  # block number (1-based, as a string) -> attention after that block
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
            widths = cfg.g_resnet_widths()
            self.stem_channels = widths[0][0]
            self.stem = make(nn.Linear(cfg.z_dim, self.stem_channels * m * m))
            self.blocks = nn.ModuleList(GResBlock(i, o, num_classes=k, make=make, bn_eps=cfg.bn_eps) for i, o in widths)
            for b in cfg.g_attention_blocks:
                self.attention[str(b)] = attention_block(widths[b - 1][1], make)
            out = widths[-1][1]
            self.out_norm = Norm2d(out, k if cfg.out_norm_conditional else 0, cfg.init, cfg.bn_eps)
            self.to_image = last(nn.Conv2d(out, cfg.channels, 3, 1, 1))

    def latent_weight(self) -> torch.Tensor:
        first = self.stem if self.stem is not None else self.blocks[0].conv  # dense stem, or mnist's 1x1 ConvT
        return latent_matrix(first, self.z_dim)

    def latent_layer(self) -> str:
        return "stem" if self.stem is not None else "blocks.0.conv"

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y, z.shape[0])
        b, m = z.shape[0], self.config.bottom_width()
        if self.stem is None:
            h = z.reshape(b, self.z_dim, 1, 1)
        else:
            h = self.stem(z).reshape(b, self.stem_channels, m, m)
        if self.stem_norm is not None:
            h = torch.relu_(self.stem_norm(h, y))  # in place: no backward needs a norm's output
        for index, block in enumerate(self.blocks, 1):
            h = block(h, y)
            if self.attention and str(index) in self.attention:
                h = self.attention[str(index)](h)
        if self.out_norm is not None:
            h = torch.relu_(self.out_norm(h, y if self.out_norm.conditional else None))
        return torch.tanh(self.to_image(h))


class SNGANDiscriminator(Discriminator):
    """``D(x (B, channels, S, S), y (B,) | None) -> (B,)`` logits (plus the projection term when conditional)."""

    config_class = SNGANConfig

    def __init__(self, cfg: SNGANConfig) -> None:
        super().__init__(cfg)
        make = LayerMaker(
            init=cfg.init, sn=cfg.d_spectral_norm, n_power_iterations=cfg.sn_power_iterations, sn_eps=cfg.sn_eps
        )
        d, c, m = cfg.d_conv_dim, cfg.channels, cfg.bottom_width()
        self.attention = nn.ModuleDict()  # block number (1-based, as a string) -> attention after that block
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
            widths = cfg.d_resnet_widths()
            self.blocks = nn.ModuleList(
                DResBlock(i, o, downsample=down, optimized=n == 0, make=make, shortcut_relu=cfg.d_shortcut_relu)
                for n, (i, o, down) in enumerate(widths)
            )
            for b in cfg.d_attention_blocks:
                self.attention[str(b)] = attention_block(widths[b - 1][1], make)
            feature_channels = widths[-1][1]
            self.to_logit = make(nn.Linear(feature_channels, 1))
        self.embed = projection_embedding(cfg, feature_channels, cfg.init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        h = x
        for index, block in enumerate(self.blocks, 1):
            h = block(h)
            if self.attention and str(index) in self.attention:
                h = self.attention[str(index)](h)
        arch = self.config.arch
        if arch == "mnist":
            out = self.to_logit(h).reshape(b)
        elif arch == "cnn":
            out = self.to_logit(h.flatten(1)).reshape(b)
        else:
            h = torch.relu(h)
            out = self.to_logit(h.sum(dim=(2, 3))).reshape(b)
        return out + projection(self.embed, y, h)
