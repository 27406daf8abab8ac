"""Spectral normalization with BigGAN-PyTorch's rule (Brock et al. 2019, the authors' PyTorch code).

The math of :class:`gankit.nn.spectral.SpectralNorm` (``W / sigma``, sigma by power iteration on the
``(out, in * kh * kw)`` matrix), with one difference in when the power iteration runs: here every forward, in
training and in eval mode alike, takes ``n_power_iterations`` steps from the stored left singular vector ``u``
(``v = normalize(u W)``, ``u' = normalize(v W^T)``, ``sigma = v W^T u'^T``) and divides by that sigma; only
training mode writes ``u'`` (and ``sigma``, kept for logging) back. PyTorch's rule instead freezes ``u`` and
``v`` in eval mode and uses ``sigma = u^T W v`` of the stored pair, a different number: the released BigGAN
checkpoints reproduce their samples only under this rule.

Buffers (per layer): ``u`` of shape ``(1, out)`` and ``sv`` of shape ``(1,)``, BigGAN-PyTorch's ``u0`` and ``sv0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from gankit.nn.spectral import _DivideBySigma, _MatrixLayout


class BigGANSpectralNorm(nn.Module):
    """Parametrization ``W -> W / sigma(W)`` with BigGAN-PyTorch's power-iteration rule (see the module doc).

    ``weight``: the layer's weight (conv ``(out, in, kh, kw)``, linear ``(out, in)``, embedding
    ``(num, dim)``; rows are the first axis). ``eps`` guards the normalisations (BigGAN-PyTorch's ``SN_eps``).
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-12) -> None:
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        if weight.dim() < 2:
            raise ValueError("BigGANSpectralNorm needs a weight of at least 2 dimensions")
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.register_buffer("u", torch.randn(1, weight.shape[0], device=weight.device))
        self.register_buffer("sv", torch.ones(1, device=weight.device))

    @torch.no_grad()
    def _iterate(self, matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, v)`` as 1-D vectors after the power iterations from the stored ``u`` (stored back in training)."""
        u = self.u
        for _ in range(self.n_power_iterations):
            v = F.normalize(u @ matrix, dim=1, eps=self.eps)
            u = F.normalize(v @ matrix.t(), dim=1, eps=self.eps)
            if self.training:
                self.u.copy_(u)
        return u.reshape(-1).clone(), v.reshape(-1).clone()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        layout = _MatrixLayout(weight, 0)
        natural = weight.detach().reshape(weight.shape[0], -1) if weight.is_contiguous() else None
        if natural is None:
            natural = weight.detach().contiguous().reshape(weight.shape[0], -1)
        u, v = self._iterate(natural.float())
        u, v = u.to(weight.dtype), v.to(weight.dtype)
        out, inv_sigma = _DivideBySigma.apply(weight, layout.matrix(weight.detach()), u, layout.to_memory(v), layout)
        if self.training:
            with torch.no_grad():
                self.sv.copy_(inv_sigma.reciprocal().reshape(1))
        return out

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def extra_repr(self) -> str:
        return f"n_power_iterations={self.n_power_iterations}, eps={self.eps}"


def biggan_spectral_norm(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Put :class:`BigGANSpectralNorm` on ``module.weight`` (in place) and return ``module``; its state-dict keys
    become ``parametrizations.weight.original`` and ``parametrizations.weight.0.u`` / ``.sv``."""
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        raise ValueError("BigGANSpectralNorm normalises over the first axis; transposed convolutions are not for it")
    parametrize.register_parametrization(module, "weight", BigGANSpectralNorm(module.weight, n_power_iterations, eps))
    return module


__all__ = ["BigGANSpectralNorm", "biggan_spectral_norm"]
