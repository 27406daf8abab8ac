"""BigGAN (Brock, Donahue, Simonyan 2019): the ResNet BigGAN of BigGAN-PyTorch and StudioGAN's ``big_resnet``.

Generator: ``z (B, z_dim)``; with the hierarchical latent (``hierarchical``) z is split into one chunk for the
first linear layer and one chunk per block (``torch.split`` order: the first linear's chunk first). A shared
class embedding ``shared(y) (B, shared_dim)`` is concatenated with each block's chunk; that vector conditions
both conditional batch norms of the block: ``BN(x) * (1 + gain(c)) + bias(c)`` with ``gain``, ``bias`` linear
maps without bias. The first linear maps its chunk to ``(B, w_0, 4, 4)``; each block is
``CBN -> ReLU -> nearest x2 -> conv3x3 -> CBN -> ReLU -> conv3x3`` plus a shortcut ``nearest x2 -> conv1x1``,
``(B, w_k, H, W) -> (B, w_{k+1}, 2H, 2W)``; the BigGAN attention block (:class:`~gankit.nn.SelfAttention2d`,
``variant="biggan"``: theta/phi ``C/8``, g ``C/2``, max-pooled phi and g, an output conv and a learned scalar
gamma) after the blocks listed in ``g_attention_blocks``; then batch norm (with its own affine), ReLU, a 3x3 conv
to ``channels`` and tanh. Without the hierarchical latent all of z enters the first linear and the blocks are
conditioned on ``shared(y)`` alone; with ``shared_dim 0`` (BigGAN-PyTorch without ``--G_shared``) each
conditional batch norm has its own class embeddings for gain and bias instead. An unconditional model
(``num_classes 0``) conditions its batch norms on the z chunks alone (hierarchical) or uses plain batch norm.

Discriminator: residual blocks ``[ReLU] -> conv3x3 -> ReLU -> conv3x3 -> [avgpool 2]`` plus a shortcut
(``conv1x1`` then pool; in the first block, which has no pre-activation, pool then conv), attention after the
blocks in ``d_attention_blocks``, ReLU, global sum pooling ``h (B, C)``, and the projection discriminator
``linear(h) + <embed(y), h>`` (Miyato & Koyama 2018).

Widths: ``g_ch * g_ch_mults`` (``len = blocks + 1``: the first linear's output, then each block's output) and
``d_ch * d_ch_mults`` (each D block's output) with ``d_downsample`` (which D blocks pool); left empty they are
BigGAN-PyTorch's tables for the image size (:data:`G_MULTS`, :data:`D_MULTS`). Orthogonal initialisation;
spectral norm on every conv, linear and D's embedding (not on G's class embeddings), by PyTorch's rule
(``sn_variant: torch``, StudioGAN) or BigGAN-PyTorch's (``biggan``: a power iteration on every forward, see
:mod:`gankit.nn.biggan_spectral`). One config expresses both sources' models; the converters in
:mod:`gankit.compat` build it from their checkpoints.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from gankit.errors import UserError, check_number
from gankit.models.base import Discriminator, Generator, ModelConfig, check_power_of_two
from gankit.models.blocks import projection
from gankit.nn import SelfAttention2d, conv1x1_avgpool, conv3x3_avgpool, upsample_conv1x1, upsample_conv3x3
from gankit.nn.biggan_spectral import biggan_spectral_norm
from gankit.nn.spectral import SpectralNorm

BOTTOM = 4  # side of G's first feature map
# BigGAN-PyTorch's width tables (its G_arch / D_arch), per image size: G (first linear, then each block's
# output), D (each block's output) and which D blocks pool. 16 px is gankit's (not in the sources).
G_MULTS: dict[int, tuple[int, ...]] = {
    16: (4, 4, 4),
    32: (4, 4, 4, 4),
    64: (16, 16, 8, 4, 2),
    128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1),
    512: (16, 16, 8, 8, 4, 2, 1, 1),
}
D_MULTS: dict[int, tuple[int, ...]] = {
    16: (4, 4, 4),
    32: (4, 4, 4, 4),
    64: (1, 2, 4, 8, 16),
    128: (1, 2, 4, 8, 16, 16),
    256: (1, 2, 4, 8, 8, 16, 16),
    512: (1, 1, 2, 4, 8, 8, 16, 16),
}
D_DOWNSAMPLE: dict[int, tuple[bool, ...]] = {
    16: (True, True, False),
    32: (True, True, False, False),
    64: (True, True, True, True, False),
    128: (True, True, True, True, True, False),
    256: (True, True, True, True, True, True, False),
    512: (True, True, True, True, True, True, True, False),
}
INITS = ("ortho", "N02", "xavier", "default")
SN_VARIANTS = ("torch", "biggan")


@dataclasses.dataclass(frozen=True)
class BigGANConfig(ModelConfig):
    """Defaults are BigGAN-PyTorch's released ImageNet 128 model (``--G_ch 96 --D_ch 96 --hier --dim_z 120
    --shared_dim 128 --G_attn 64 --D_attn 64 --SN_eps 1e-6 --BN_eps 1e-5``)."""

    family = "biggan"

    image_size: int = 128
    z_dim: int = 120
    num_classes: int = 1000
    g_ch: int = 96
    d_ch: int = 96
    g_ch_mults: tuple[int, ...] = ()  # () = G_MULTS[image_size]; else blocks + 1 entries
    d_ch_mults: tuple[int, ...] = ()  # () = D_MULTS[image_size]
    d_downsample: tuple[bool, ...] = ()  # () = D_DOWNSAMPLE[image_size]; one per D block
    shared_dim: int = 128  # shared class embedding; 0: per-layer class embeddings (not with hierarchical)
    hierarchical: bool = True  # z split into chunks: the first linear's and one per G block
    g_attention_blocks: tuple[int, ...] = (3,)  # attention after these G blocks (0-based; block k outputs 8 * 2^k)
    d_attention_blocks: tuple[int, ...] = (0,)  # attention after these D blocks (0-based)
    g_spectral_norm: bool = True
    d_spectral_norm: bool = True
    sn_variant: str = "biggan"  # "biggan": BigGAN-PyTorch's power-iteration rule; "torch": PyTorch's (StudioGAN)
    sn_eps: float = 1e-6
    sn_power_iterations: int = 1
    bn_eps: float = 1e-5  # the conditional batch norms' epsilon (StudioGAN: 1e-4)
    out_bn_eps: float = 1e-5  # the last batch norm's (BigGAN-PyTorch: always 1e-5; StudioGAN: 1e-4)
    init: str = "ortho"  # ortho, N02 (normal 0.02), xavier, default (PyTorch's)
    # StudioGAN's D: its in-place ReLU at the start of each pre-activation block also rectifies the block's
    # input on the shortcut path (x + F(x) becomes relu(x) + F(x)); BigGAN-PyTorch's D keeps x
    d_relu_shortcut: bool = False

    @property
    def num_blocks(self) -> int:
        """Number of G blocks: ``log2(image_size / 4)``."""
        return (self.image_size // BOTTOM).bit_length() - 1

    def g_widths(self) -> list[int]:
        """Channels of the first linear's map and of each G block's output (``num_blocks + 1`` entries)."""
        return [self.g_ch * m for m in (self.g_ch_mults or G_MULTS[self.image_size])]

    def d_widths(self) -> list[int]:
        """Channels of each D block's output."""
        return [self.d_ch * m for m in (self.d_ch_mults or D_MULTS[self.image_size])]

    def d_pools(self) -> list[bool]:
        """Whether each D block average-pools by 2."""
        return list(self.d_downsample or D_DOWNSAMPLE[self.image_size])

    def conditioning_dim(self) -> int:
        """Size of the vector each conditional batch norm reads (0: class embeddings per layer, or plain BN)."""
        shared = self.shared_dim if self.num_classes else 0
        return shared + (self.z_chunks()[1] if self.hierarchical else 0)

    def z_chunks(self) -> list[int]:
        """Sizes of z's chunks: the first linear's, then one per block (``[z_dim]`` without the hierarchy). When
        ``z_dim`` is not a multiple of ``blocks + 1`` the first linear's chunk takes the remainder."""
        if not self.hierarchical:
            return [self.z_dim]
        chunk = self.z_dim // (self.num_blocks + 1)
        return [self.z_dim - chunk * self.num_blocks] + [chunk] * self.num_blocks

    def validate(self) -> None:
        check_power_of_two("image_size", self.image_size, 16, 512)
        if self.channels not in (1, 3):
            raise UserError(f"model.channels must be 1 or 3, got {self.channels!r}")
        for name in ("z_dim", "g_ch", "d_ch", "sn_power_iterations"):
            check_number(f"model.{name}", getattr(self, name), integer=True, low=1)
        check_number("model.num_classes", self.num_classes, integer=True, low=0, hint=" (0 = unconditional)")
        check_number("model.shared_dim", self.shared_dim, integer=True, low=0, hint=" (0 = per-layer embeddings)")
        for name in ("sn_eps", "bn_eps", "out_bn_eps"):
            check_number(f"model.{name}", getattr(self, name), low=0, low_open=True)
        if self.init not in INITS:
            raise UserError(f"model.init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.sn_variant not in SN_VARIANTS:
            raise UserError(f"model.sn_variant must be one of {', '.join(SN_VARIANTS)}, got {self.sn_variant!r}")
        n = self.num_blocks
        if self.g_ch_mults and len(self.g_ch_mults) != n + 1:
            raise UserError(f"model.g_ch_mults needs {n + 1} entries for {self.image_size}x{self.image_size} "
                            f"(the first linear and {n} blocks), got {len(self.g_ch_mults)}")  # fmt: skip
        if self.d_ch_mults and self.d_downsample and len(self.d_ch_mults) != len(self.d_downsample):
            raise UserError("model.d_ch_mults and model.d_downsample need one entry per D block each, got "
                            f"{len(self.d_ch_mults)} and {len(self.d_downsample)}")  # fmt: skip
        if bool(self.d_ch_mults) != bool(self.d_downsample) and len(self.d_ch_mults or self.d_downsample) != len(
            D_MULTS[self.image_size]
        ):
            raise UserError("model.d_ch_mults and model.d_downsample go together when D has another block count")
        for name in ("g_ch_mults", "d_ch_mults"):
            if any(m < 1 for m in getattr(self, name)):
                raise UserError(f"model.{name} must be integers >= 1, got {list(getattr(self, name))}")
        pools = sum(self.d_pools())
        if 2**pools > self.image_size // 4 or pools < 1:
            raise UserError(f"model.d_downsample pools {pools} times, which a {self.image_size}x{self.image_size} "
                            "image cannot take (its D must end at 4x4 or larger)")  # fmt: skip
        if self.hierarchical and self.z_dim < n + 1:
            raise UserError(f"model.z_dim {self.z_dim} is too small for the hierarchical latent of {n} blocks "
                            f"(one chunk per block and one for the first layer: z_dim >= {n + 1})")  # fmt: skip
        if self.num_classes and self.shared_dim == 0 and self.hierarchical:
            raise UserError("model.hierarchical needs a shared class embedding (shared_dim > 0)")
        self._validate_attention("g", range(n), [self.image_size // 2 ** (n - k - 1) for k in range(n)],
                                 self.g_widths()[1:])  # fmt: skip
        sizes, side = [], self.image_size
        for pool in self.d_pools():
            side //= 2 if pool else 1
            sizes.append(side)
        self._validate_attention("d", range(len(sizes)), sizes, self.d_widths())

    def _validate_attention(self, net: str, blocks: range, sizes: list[int], widths: list[int]) -> None:
        for k in getattr(self, f"{net}_attention_blocks"):
            if k not in blocks:
                raise UserError(f"model.{net}_attention_blocks has {k}, but {net.upper()} has blocks "
                                f"0..{len(blocks) - 1} at {self.image_size}x{self.image_size}")  # fmt: skip
            if widths[k] < 8:
                raise UserError(f"attention after {net.upper()} block {k} needs >= 8 channels, it has {widths[k]}; "
                                f"raise model.{net}_ch")  # fmt: skip
            if sizes[k] % 2:
                raise UserError(f"attention after {net.upper()} block {k} pools its {sizes[k]}x{sizes[k]} map by 2")


# ----------------------------------------------------------------------------------------------- layers


class _Maker:
    """Initialise a fresh layer (``init``) and put spectral norm on it (``sn``) by the config's rule."""

    def __init__(self, cfg: BigGANConfig, sn: bool) -> None:
        self.cfg, self.sn = cfg, sn

    def init(self, layer: nn.Module) -> nn.Module:
        scheme = self.cfg.init
        if scheme == "default":
            return layer
        with torch.no_grad():
            if scheme == "ortho":
                nn.init.orthogonal_(layer.weight)
            elif scheme == "N02":
                nn.init.normal_(layer.weight, 0.0, 0.02)
            else:
                nn.init.xavier_uniform_(layer.weight)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)
        return layer

    def __call__(self, layer: nn.Module) -> nn.Module:
        self.init(layer)
        if not self.sn:
            return layer
        cfg = self.cfg
        if cfg.sn_variant == "biggan":
            return biggan_spectral_norm(layer, cfg.sn_power_iterations, cfg.sn_eps)
        norm = SpectralNorm(layer.weight, cfg.sn_power_iterations, 0, cfg.sn_eps)
        parametrize.register_parametrization(layer, "weight", norm)
        return layer

    def conv(self, c_in: int, c_out: int, kernel: int, bias: bool = True) -> nn.Module:
        return self(nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, bias=bias))

    def attention(self, channels: int) -> SelfAttention2d:
        block = SelfAttention2d(channels, variant="biggan")
        for conv in (block.query, block.key, block.value, block.out):
            self(conv)
        return block


class ConditionalBN(nn.Module):
    """``BN(x) * (1 + gain(c)) + bias(c)``: batch norm without affine, conditioned on ``c``.

    ``mode``: ``"linear"`` (``c (B, cond_dim)``, gain and bias linear maps without bias: BigGAN's shared
    embedding and z chunks), ``"embedding"`` (``c (B,)`` class ids, per-layer class embeddings) or ``"none"``
    (plain batch norm with a learned per-channel affine; ``c`` ignored). ``x (B, C, H, W)``.
    """

    def __init__(self, channels: int, mode: str, cond_dim: int, make: _Maker, eps: float) -> None:
        super().__init__()
        self.mode = mode
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=0.1, affine=mode == "none")
        if mode == "linear":
            self.gain: nn.Module = make(nn.Linear(cond_dim, channels, bias=False))
            self.bias: nn.Module = make(nn.Linear(cond_dim, channels, bias=False))
        elif mode == "embedding":
            self.gain = make.init(nn.Embedding(cond_dim, channels))
            self.bias = make.init(nn.Embedding(cond_dim, channels))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        out = self.bn(x)
        if self.mode == "none":
            return out
        # in out's dtype: under bf16 autocast float32 embedding tables would promote the whole map to a float32
        # copy (as in gankit.nn.ConditionalBatchNorm2d); a no-op in float32
        gain = (1 + self.gain(c)).reshape(x.shape[0], -1, 1, 1).to(out.dtype)
        bias = self.bias(c).reshape(x.shape[0], -1, 1, 1).to(out.dtype)
        return out * gain + bias


class GBlock(nn.Module):
    """``(B, C_in, H, W), c -> (B, C_out, 2H, 2W)``: CBN, ReLU, nearest x2, conv3x3, CBN, ReLU, conv3x3, plus
    the shortcut nearest x2 then conv1x1."""

    def __init__(self, c_in: int, c_out: int, mode: str, cond_dim: int, make: _Maker, eps: float) -> None:
        super().__init__()
        self.bn1 = ConditionalBN(c_in, mode, cond_dim, make, eps)
        self.conv1 = make.conv(c_in, c_out, 3)
        self.bn2 = ConditionalBN(c_out, mode, cond_dim, make, eps)
        self.conv2 = make.conv(c_out, c_out, 3)
        self.conv_sc = make.conv(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        # upsampling folded into conv1, the shortcut's 1x1 conv run before it: gankit.nn.resample
        # ReLUs in place: no backward needs a norm's output (as in gankit.models.blocks.GResBlock)
        h = upsample_conv3x3(self.conv1, torch.relu_(self.bn1(x, c)))
        h = self.conv2(torch.relu_(self.bn2(h, c)))
        return h + upsample_conv1x1(self.conv_sc, x)


class DBlock(nn.Module):
    """``(B, C_in, H, W) -> (B, C_out, H', W')`` (``H' = H / 2`` when ``downsample``): ``[ReLU] conv3x3, ReLU,
    conv3x3, [avgpool]`` plus a shortcut (conv1x1 when the width changes or the block pools) of ``x``, or of
    ``relu(x)`` with ``relu_shortcut`` (StudioGAN's in-place ReLU)."""

    def __init__(
        self, c_in: int, c_out: int, *, preactivation: bool, downsample: bool, make: _Maker, relu_shortcut: bool
    ) -> None:
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.relu_shortcut = relu_shortcut and preactivation
        self.conv1 = make.conv(c_in, c_out, 3)
        self.conv2 = make.conv(c_out, c_out, 3)
        self.conv_sc = make.conv(c_in, c_out, 1) if c_in != c_out or downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x) if self.preactivation else x
        if self.relu_shortcut:
            x = h
        h = torch.relu_(self.conv1(h))  # a convolution's backward needs its input, not its output
        # pooling folded into conv2; a pre-activation shortcut pools before its 1x1 conv: gankit.nn.resample
        h = conv3x3_avgpool(self.conv2, h) if self.downsample else self.conv2(h)
        if self.conv_sc is None:
            return h + x
        if not self.preactivation:
            return h + self.conv_sc(self._pool(x))
        return h + (conv1x1_avgpool(self.conv_sc, x) if self.downsample else self.conv_sc(x))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x


# ----------------------------------------------------------------------------------------------- networks


class BigGANGenerator(Generator):
    """``G(z (B, z_dim), y (B,) | None) -> (B, channels, S, S)`` in [-1, 1] (see the module doc)."""

    config_class = BigGANConfig

    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__(cfg)
        make = _Maker(cfg, cfg.g_spectral_norm)
        widths = cfg.g_widths()
        self.chunks = cfg.z_chunks()
        self.shared: nn.Embedding | None = None
        if cfg.num_classes and cfg.shared_dim:
            self.shared = make.init(nn.Embedding(cfg.num_classes, cfg.shared_dim))  # no SN on G's embedding
        if cfg.num_classes and not cfg.shared_dim:
            mode, cond_dim = "embedding", cfg.num_classes
        else:
            cond_dim = cfg.conditioning_dim()
            mode = "linear" if cond_dim else "none"
        self.linear = make(nn.Linear(self.chunks[0], widths[0] * BOTTOM * BOTTOM))
        self.blocks = nn.ModuleList(
            GBlock(widths[k], widths[k + 1], mode, cond_dim, make, cfg.bn_eps) for k in range(cfg.num_blocks)
        )
        self.attention = nn.ModuleDict({str(k): make.attention(widths[k + 1]) for k in cfg.g_attention_blocks})
        self.out_bn = nn.BatchNorm2d(widths[-1], eps=cfg.out_bn_eps, momentum=0.1)
        self.to_image = make.conv(widths[-1], cfg.channels, 3)

    def conditions(self, z: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """``(z0, [c_0, ..., c_{n-1}])``: the first linear's input ``(B, chunk_0)`` and each block's conditioning
        (``(B, cond_dim)``, class ids ``(B,)`` for per-layer embeddings, or None)."""
        n = len(self.blocks)
        cfg: BigGANConfig = self.config  # type: ignore[assignment]
        if cfg.hierarchical:
            z0, *rest = torch.split(z, self.chunks, 1)
            shared = None if self.shared is None else self.shared(y)
            conds: list[torch.Tensor | None] = [r if shared is None else torch.cat([shared, r], 1) for r in rest]
            return z0, conds
        if self.shared is not None:
            return z, [self.shared(y)] * n
        return z, [y] * n

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y, z.shape[0])
        z0, conds = self.conditions(z, y)
        h = self.linear(z0).reshape(z.shape[0], -1, BOTTOM, BOTTOM)
        for k, block in enumerate(self.blocks):
            h = block(h, conds[k])
            key = str(k)
            if key in self.attention:
                h = self.attention[key](h)
        return torch.tanh(self.to_image(torch.relu_(self.out_bn(h))))

    def latent_weight(self) -> torch.Tensor:
        """``(features, z_dim)``: the first linear's eval-mode effective weight on its z chunk, zero columns for
        the chunks that go to the blocks instead."""
        training = self.linear.training
        self.linear.eval()
        try:
            with torch.no_grad():
                w = self.linear.weight.detach().clone()
        finally:
            self.linear.train(training)
        full = w.new_zeros(w.shape[0], self.z_dim)
        full[:, : w.shape[1]] = w
        return full

    def latent_layer(self) -> str:
        return "linear"


class BigGANDiscriminator(Discriminator):
    """``D(x (B, channels, S, S), y (B,) | None) -> (B,)`` logits (projection when conditional)."""

    config_class = BigGANConfig

    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__(cfg)
        make = _Maker(cfg, cfg.d_spectral_norm)
        widths, pools = cfg.d_widths(), cfg.d_pools()
        ins = [cfg.channels, *widths[:-1]]
        self.blocks = nn.ModuleList(
            DBlock(
                ins[k],
                widths[k],
                preactivation=k > 0,
                downsample=pools[k],
                make=make,
                relu_shortcut=cfg.d_relu_shortcut,
            )
            for k in range(len(widths))
        )
        self.attention = nn.ModuleDict({str(k): make.attention(widths[k]) for k in cfg.d_attention_blocks})
        self.linear = make(nn.Linear(widths[-1], 1))
        self.embed: nn.Module | None = make(nn.Embedding(cfg.num_classes, widths[-1])) if cfg.num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C)``: the sum-pooled ReLU of the last block's map."""
        h = x
        for k, block in enumerate(self.blocks):
            h = block(h)
            key = str(k)
            if key in self.attention:
                h = self.attention[key](h)
        return torch.relu(h).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        return self.linear(h).reshape(x.shape[0]) + projection(self.embed, y, h)


__all__ = ["BigGANConfig", "BigGANDiscriminator", "BigGANGenerator"]
