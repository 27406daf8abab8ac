"""StudioGAN ``big_resnet`` (its BigGAN) state dicts -> gankit ``biggan`` networks, reproducing its eval-mode outputs.

StudioGAN (POSTECH-CVLab/PyTorch-StudioGAN, ``src/models/big_resnet.py``) builds BigGAN with PyTorch's spectral
norm (``weight_orig``, ``weight_u``, ``weight_v``; eps 1e-6: gankit's ``sn_variant: torch``), batch norms with eps
1e-4, always the hierarchical latent (``z_dim`` split into ``blocks + 1`` chunks), a shared class embedding for
``g_cond_mtd: cBN`` (none for ``W/O``), attention blocks as entries of its own in ``blocks`` (``attn_g_loc`` /
``attn_d_loc``: after the given 1-based block), and a projection D (``d_cond_mtd: PD``; ``W/O``: none) whose
in-place ReLU also rectifies each pre-activation block's shortcut input (``d_relu_shortcut``). The
architecture is read from the tensors' names and shapes; ``hints`` (values from the run's StudioGAN YAML, e.g.
``image_size``, ``num_classes``, ``z_dim``, ``g_shared_dim``) are checked against it. Not converted (a one-line
error naming the keys): other D conditionings (AC, 2C, D2DCE, MH, MD), InfoGAN heads, D without spectral norm
(batch norm in D), BigGAN-Deep.

:func:`convert_big_resnet` is what ``gankit.compat.studiogan`` calls for a ``big_resnet`` checkpoint.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from gankit.compat.biggan_common import common_width, load_mapped
from gankit.errors import UserError
from gankit.models.base import Discriminator, Generator
from gankit.models.biggan import D_DOWNSAMPLE, BigGANConfig, BigGANDiscriminator, BigGANGenerator

SN_EPS = 1e-6  # ops.snconv2d / snlinear / sn_embedding
BN_EPS = 1e-4  # ops.batchnorm_2d, the conditional batch norms and bn4
_ATTENTION = {"query": "conv1x1_theta", "key": "conv1x1_phi", "value": "conv1x1_g", "out": "conv1x1_attn"}
_G_CONVS = {"conv1": "conv2d1", "conv2": "conv2d2", "conv_sc": "conv2d0"}


def _sn(rest: str) -> str:
    """gankit's tail of a layer key -> StudioGAN's (PyTorch's ``spectral_norm`` names)."""
    rest = rest.replace("parametrizations.weight.original", "weight_orig")
    return rest.replace("parametrizations.weight.0._u", "weight_u").replace("parametrizations.weight.0._v", "weight_v")


def _weight(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    return state.get(prefix + ".weight_orig", state.get(prefix + ".weight"))


def _layout(state: dict[str, torch.Tensor], block: str, where: str) -> tuple[list[int], dict[int, int], dict[int, int]]:
    """StudioGAN's ``blocks`` list read: ``(block entries J of the residual blocks, {k: J} of each residual block,
    {k: J} of the attention after residual block k)``."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.0\.", k))})
    if indices != list(range(len(indices))) or not indices:
        raise UserError(f"{where} is not a StudioGAN big_resnet state dict (no blocks.0.0.*, blocks.1.0.*, ...)")
    residual: dict[int, int] = {}
    attention: dict[int, int] = {}
    for j in indices:
        if _weight(state, f"blocks.{j}.0.{block}") is not None:
            residual[len(residual)] = j
        elif _weight(state, f"blocks.{j}.0.conv1x1_theta") is not None and residual:
            attention[len(residual) - 1] = j
        else:
            raise UserError(f"{where}: blocks.{j} is neither a residual nor an attention block of big_resnet")
    return indices, residual, attention


def _shape(t: torch.Tensor | None, name: str, where: str) -> tuple[int, ...]:
    if t is None:
        raise UserError(f"{where} is not a StudioGAN big_resnet state dict (no {name})")
    return tuple(t.shape)


def _check_hints(fields: dict[str, Any], hints: dict[str, Any], where: str) -> None:
    """A one-line error when a StudioGAN config value contradicts the tensors."""
    pairs = {"image_size": "image_size", "img_size": "image_size", "z_dim": "z_dim", "num_classes": "num_classes",
             "g_shared_dim": "shared_dim"}  # fmt: skip
    for hint, field in pairs.items():
        if hint in hints and hints[hint] is not None and field in fields:
            value = hints[hint]
            if field == "num_classes" and fields[field] == 0:
                continue  # an unconditional model of a dataset with classes
            if field == "shared_dim" and fields.get("num_classes", 0) == 0:
                continue
            if value != fields[field]:
                raise UserError(f"{where}: the config says {hint} {value}, the weights have {fields[field]}")


def generator_fields(g: dict[str, torch.Tensor], where: str) -> tuple[dict[str, Any], dict[int, int], dict[int, int]]:
    """The :class:`BigGANConfig` fields of a big_resnet G, with its block layout (see :func:`_layout`)."""
    _, residual, attention = _layout(g, "conv2d1", where)
    n = len(residual)
    widths = [_shape(_weight(g, f"blocks.{residual[0]}.0.conv2d1"), "blocks.0.0.conv2d1.weight", where)[1]]
    widths += [_shape(_weight(g, f"blocks.{residual[k]}.0.conv2d1"), "conv2d1", where)[0] for k in range(n)]
    features, chunk = _shape(_weight(g, "linear0"), "linear0.weight", where)
    if features != widths[0] * 16:
        raise UserError(f"{where}: linear0 has {features} outputs, the first block needs {widths[0] * 16}")
    g_ch, mults = common_width(widths)
    affine = _shape(_weight(g, f"blocks.{residual[0]}.0.bn1.gain"), "blocks.0.0.bn1.gain.weight", where)[1]
    fields: dict[str, Any] = dict(image_size=4 * 2**n, channels=_shape(_weight(g, "conv2d5"), "conv2d5", where)[0],
                                  z_dim=chunk * (n + 1), hierarchical=True, g_ch=g_ch, g_ch_mults=mults,
                                  g_attention_blocks=tuple(sorted(attention)),
                                  g_spectral_norm="linear0.weight_orig" in g)  # fmt: skip
    if "shared.weight" in g:
        num_classes, shared_dim = g["shared.weight"].shape
        fields.update(num_classes=int(num_classes), shared_dim=int(shared_dim))
    else:
        fields.update(num_classes=0, shared_dim=0)
    if affine != fields["shared_dim"] + chunk:
        raise UserError(f"{where}: the batch norms read {affine} inputs, not the shared embedding "
                        f"({fields['shared_dim']}) plus a z chunk ({chunk})")  # fmt: skip
    return fields, residual, attention


def discriminator_fields(
    d: dict[str, torch.Tensor], image_size: int, where: str
) -> tuple[dict[str, Any], dict[int, int], dict[int, int]]:
    """The :class:`BigGANConfig` fields of a big_resnet D, with its block layout."""
    _, residual, attention = _layout(d, "conv2d1", where)
    table = D_DOWNSAMPLE.get(image_size)
    if table is None or len(residual) != len(table):
        raise UserError(f"{where} has {len(residual)} blocks; big_resnet's {image_size}x{image_size} D has "
                        f"{len(table or ())}")  # fmt: skip
    widths = [_shape(_weight(d, f"blocks.{residual[k]}.0.conv2d1"), "conv2d1", where)[0] for k in range(len(residual))]
    d_ch, mults = common_width(widths)
    fields = dict(d_ch=d_ch, d_ch_mults=mults, d_downsample=table, d_attention_blocks=tuple(sorted(attention)),
                  d_spectral_norm="linear1.weight_orig" in d)  # fmt: skip
    return fields, residual, attention


def _g_key(key: str, residual: dict[int, int], attention: dict[int, int]) -> str | None:
    if m := re.match(r"blocks\.(\d+)\.(conv1|conv2|conv_sc)\.(.*)$", key):
        return f"blocks.{residual[int(m.group(1))]}.0.{_G_CONVS[m.group(2)]}.{_sn(m.group(3))}"
    if m := re.match(r"blocks\.(\d+)\.(.*)$", key):  # bn1 / bn2: the same names
        return f"blocks.{residual[int(m.group(1))]}.0.{_sn(m.group(2))}"
    if m := re.match(r"attention\.(\d+)\.(\w+)(\..*)?$", key):
        return _attention_key(m, attention)
    if key.startswith("linear."):
        return "linear0." + _sn(key[len("linear.") :])
    if key.startswith("out_bn."):
        return "bn4." + key[len("out_bn.") :]
    if key.startswith("to_image."):
        return "conv2d5." + _sn(key[len("to_image.") :])
    return key  # shared.weight


def _attention_key(m: re.Match[str], attention: dict[int, int]) -> str:
    j, name, rest = attention[int(m.group(1))], m.group(2), m.group(3) or ""
    if name == "gamma":
        return f"blocks.{j}.0.sigma"
    return f"blocks.{j}.0.{_ATTENTION[name]}.{_sn(rest[1:])}"


def _d_key(key: str, residual: dict[int, int], attention: dict[int, int]) -> str | None:
    if m := re.match(r"blocks\.(\d+)\.(conv1|conv2|conv_sc)\.(.*)$", key):
        return f"blocks.{residual[int(m.group(1))]}.0.{_G_CONVS[m.group(2)]}.{_sn(m.group(3))}"
    if m := re.match(r"attention\.(\d+)\.(\w+)(\..*)?$", key):
        return _attention_key(m, attention)
    if key.startswith("linear."):
        return "linear1." + _sn(key[len("linear.") :])
    if key.startswith("embed."):
        return "embedding." + _sn(key[len("embed.") :])
    return key


def _scalar_gamma(key: str, value: torch.Tensor) -> torch.Tensor:
    return value.reshape(()) if key.endswith("gamma") and value.numel() == 1 else value


def convert_big_resnet(
    g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor] | None, *, hints: dict[str, Any]
) -> tuple[Generator, Discriminator | None]:
    """gankit ``biggan`` networks (eval mode) holding StudioGAN ``big_resnet`` G (and D) state dicts.

    Every source tensor is consumed (``num_batches_tracked`` included) or a one-line :class:`UserError` names the
    unexpected and the missing keys; ``hints`` (possibly empty) are checked against what the tensors say.
    """
    where_g, where_d = "the StudioGAN generator state dict", "the StudioGAN discriminator state dict"
    fields, g_res, g_att = generator_fields(g_state, where_g)
    _check_hints(fields, hints, where_g)
    d_layout: tuple[dict[int, int], dict[int, int]] | None = None
    if d_state is not None:
        d_fields, d_res, d_att = discriminator_fields(d_state, fields["image_size"], where_d)
        fields.update(d_fields)
        d_layout = (d_res, d_att)
        embedding = _weight(d_state, "embedding")
        if embedding is not None:
            classes = embedding.shape[0]
            if fields["num_classes"] == 0:
                raise UserError(f"{where_d} is class-conditional ({classes} classes) but the generator is not "
                                "(g_cond_mtd W/O with a projection D is not converted)")  # fmt: skip
            if classes != fields["num_classes"]:
                raise UserError(f"{where_d} has {classes} classes, the generator {fields['num_classes']}")
        elif fields["num_classes"]:
            raise UserError(f"{where_d} has no projection embedding but the generator is class-conditional "
                            "(only d_cond_mtd PD, or W/O with an unconditional G, is converted)")  # fmt: skip
    else:
        fields.update(d_ch=fields["g_ch"], d_attention_blocks=())
    fields.update(
        sn_variant="torch", sn_eps=SN_EPS, bn_eps=BN_EPS, out_bn_eps=BN_EPS, init="ortho", d_relu_shortcut=True
    )
    try:
        cfg = BigGANConfig.from_dict(fields)
    except UserError as exc:
        raise UserError(f"{where_g}: the architecture read from its tensors is not one gankit builds ({exc})") from None
    G = BigGANGenerator(cfg)
    load_mapped(G, g_state, lambda k: _g_key(k, g_res, g_att), where=where_g, transform=_scalar_gamma)
    D = None
    if d_state is not None and d_layout is not None:
        D = BigGANDiscriminator(cfg)
        res, att = d_layout
        load_mapped(D, d_state, lambda k: _d_key(k, res, att), where=where_d, transform=_scalar_gamma)
        D.eval()
    return G.eval(), D


def is_big_resnet_state(state: dict[str, torch.Tensor]) -> bool:
    """True when a StudioGAN generator state dict is a ``big_resnet`` one: its conditional batch norms' ``gain`` is a
    linear map reading the shared class embedding (``shared.weight``) plus a z chunk, or (unconditional) the z chunk
    alone, the size of ``linear0``'s input. resnet.py's generators have no ``shared`` and their batch norms read the
    one-hot class (or are plain)."""
    lin = _weight(state, "linear0")
    gain = _weight(state, "blocks.0.0.bn1.gain")
    if lin is None or gain is None or gain.dim() != 2:
        return False
    shared = state["shared.weight"].shape[1] if "shared.weight" in state else 0
    return gain.shape[1] == shared + lin.shape[1]


__all__ = ["convert_big_resnet", "is_big_resnet_state"]
