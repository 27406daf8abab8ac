"""Spectral normalization (Miyato et al. 2018) behind one helper.

gankit uses PyTorch's parametrization (`torch.nn.utils.parametrizations.spectral_norm`): the weight is
divided by its largest singular value, estimated by power iteration with persistent vectors ``u`` and ``v``
(``v = W^T u / |W^T u|``, ``u = W v / |W v|``, ``sigma = u^T W v``). In training mode each forward runs
``n_power_iterations`` steps; in eval mode ``u`` and ``v`` are frozen, so two forwards give identical output.
Dividing by sigma bounds each layer's Lipschitz constant by 1, which keeps the discriminator (roughly)
1-Lipschitz, the condition of the Wasserstein dual, without WGAN's weight clipping or a gradient penalty.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

_NORMALISABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def maybe_spectral_norm(module: nn.Module, enabled: bool = True, n_power_iterations: int = 1) -> nn.Module:
    """Return ``module`` with spectral norm on its ``weight`` when ``enabled`` (else unchanged)."""
    if not enabled:
        return module
    if n_power_iterations < 1:
        raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
    return spectral_norm(module, n_power_iterations=n_power_iterations)


def spectral_norm_all(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Put spectral norm on every convolution, linear and embedding inside ``module`` (in place)."""
    for child in list(module.modules()):
        if isinstance(child, _NORMALISABLE) and not has_spectral_norm(child):
            maybe_spectral_norm(child, True, n_power_iterations)
    return module


def has_spectral_norm(module: nn.Module) -> bool:
    """True when ``module.weight`` is spectrally normalised."""
    return parametrize.is_parametrized(module, "weight")


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The effective weight as the ``(out, in * kh * kw)`` matrix that spectral norm normalises."""
    w = module.weight
    if isinstance(module, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # (in, out, kh, kw) -> (out, in, kh, kw)
    return w.reshape(w.shape[0], -1)


def fold_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrization by its current effective weight (in place).

    The module must be in eval mode so that the folded weight equals what the module computes.
    ``copy.deepcopy`` of a parametrized module shares its generated class (e.g. ``ParametrizedConv2d``) and
    removal deletes the ``weight`` property from that class, which would break every copy (the EMA generator is
    one): each module gets a private copy of its class first.
    """
    for child in list(module.modules()):
        if has_spectral_norm(child):
            cls = type(child)
            child.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
    return module
